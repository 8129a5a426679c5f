package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tapline/tapline/connectors"
)

// column maps a Relation message column to a tapline column. This is the
// interim mapping of the common types; the full, lossless one (arrays,
// ranges, domains, enums, numeric edge cases) replaces it.
func column(c *pglogrepl.RelationMessageColumn) connectors.Column {
	col := connectors.Column{Name: c.Name, Nullable: true}
	switch c.DataType {
	case pgtype.BoolOID:
		col.Type, col.Native = connectors.TypeBool, "boolean"
	case pgtype.Int2OID:
		col.Type, col.Native = connectors.TypeInt16, "smallint"
	case pgtype.Int4OID:
		col.Type, col.Native = connectors.TypeInt32, "integer"
	case pgtype.Int8OID:
		col.Type, col.Native = connectors.TypeInt64, "bigint"
	case pgtype.Float4OID:
		col.Type, col.Native = connectors.TypeFloat32, "real"
	case pgtype.Float8OID:
		col.Type, col.Native = connectors.TypeFloat64, "double precision"
	case pgtype.NumericOID:
		col.Type, col.Native = connectors.TypeDecimal, "numeric"
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID:
		col.Type, col.Native = connectors.TypeString, "text"
	case pgtype.JSONOID, pgtype.JSONBOID:
		col.Type, col.Native = connectors.TypeJSON, "jsonb"
	case pgtype.UUIDOID:
		col.Type, col.Native = connectors.TypeUUID, "uuid"
	default:
		col.Type, col.Native = connectors.TypeText, fmt.Sprintf("oid:%d", c.DataType)
	}
	return col
}

// decodeText decodes a text-format value for its column.
func decodeText(c *connectors.Column, b []byte) (connectors.Value, error) {
	switch c.Type {
	case connectors.TypeBool:
		return len(b) > 0 && b[0] == 't', nil
	case connectors.TypeInt16, connectors.TypeInt32, connectors.TypeInt64:
		return strconv.ParseInt(string(b), 10, 64)
	case connectors.TypeFloat32, connectors.TypeFloat64:
		return strconv.ParseFloat(string(b), 64)
	case connectors.TypeJSON:
		return connectors.JSON(append([]byte(nil), b...)), nil
	}
	return string(b), nil
}

// primaryKey returns the primary-key column names of a table, in key order.
func (s *Source) primaryKey(ctx context.Context, relid uint32) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT a.attname FROM pg_index i
		JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.n`, relid)
	if err != nil {
		return nil, fmt.Errorf("postgres: read the primary key of relation %d: %w", relid, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
