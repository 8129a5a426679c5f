// Package mysqlconv maps MySQL and MariaDB columns and values to tapline's,
// losslessly and without I/O: a column as a binlog TABLE_MAP event or
// information_schema describes it becomes a Column (and a
// connectors.Column); values are decoded from binlog row images
// (RowDecoder) and from the text protocol (Column.DecodeText) to equal
// connectors.Values, so that a snapshot read through SQL and the binlog
// stream that follows it agree. See README.md for the mapping.
package mysqlconv
