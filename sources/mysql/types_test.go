package mysql

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// typeColumns are the columns of the round-trip table, each with the SQL
// expression that reads the expected value back from the server and how
// to turn its text into the tapline value.
var typeColumns = []struct {
	name, def, expr string
	conv            string // int, uint, str, float32, float64, bool, bytes, json, null-or-str
}{
	{"ti", "tinyint", "CAST(%s AS CHAR)", "int"},
	{"tiu", "tinyint unsigned", "CAST(%s AS CHAR)", "int"},
	{"si", "smallint", "CAST(%s AS CHAR)", "int"},
	{"siu", "smallint unsigned", "CAST(%s AS CHAR)", "int"},
	{"mi", "mediumint", "CAST(%s AS CHAR)", "int"},
	{"miu", "mediumint unsigned", "CAST(%s AS CHAR)", "int"},
	{"i", "int", "CAST(%s AS CHAR)", "int"},
	{"iu", "int unsigned", "CAST(%s AS CHAR)", "int"},
	{"bi", "bigint", "CAST(%s AS CHAR)", "int"},
	{"biu", "bigint unsigned", "CAST(%s AS CHAR)", "uint"},
	{"d1", "decimal(65,30)", "CAST(%s AS CHAR)", "str"},
	{"d2", "decimal(10,2)", "CAST(%s AS CHAR)", "str"},
	{"d3", "decimal(5,0)", "CAST(%s AS CHAR)", "str"},
	{"d4", "decimal(30,10) unsigned", "CAST(%s AS CHAR)", "str"},
	{"f", "float", "CAST(%s AS DOUBLE)", "float32"},
	{"dbl", "double", "CAST(%s AS CHAR)", "float64"},
	{"b1", "bit(1)", "%s + 0", "bool"},
	{"b10", "bit(10)", "%s + 0", "uint"},
	{"b64", "bit(64)", "%s + 0", "uint"},
	{"dt", "date", "CAST(%s AS CHAR)", "date"},
	{"dtm", "datetime", "CAST(%s AS CHAR)", "datetime"},
	{"dtm6", "datetime(6)", "CAST(%s AS CHAR)", "datetime"},
	{"ts3", "timestamp(3) NULL", "CAST(%s AS CHAR)", "timestamp"},
	{"ts0", "timestamp NULL", "CAST(%s AS CHAR)", "timestamp"},
	{"tm", "time", "CAST(%s AS CHAR)", "str"},
	{"tm3", "time(3)", "CAST(%s AS CHAR)", "str"},
	{"tm6", "time(6)", "CAST(%s AS CHAR)", "str"},
	{"y", "year", "%s + 0", "int"},
	{"e", "enum('a','b','it''s','ü')", "CAST(%s AS CHAR)", "str"},
	{"st", "set('x','y','z')", "CAST(%s AS CHAR)", "str"},
	{"c", "char(5)", "%s", "str"},
	{"vc", "varchar(300)", "%s", "str"},
	{"tx", "text", "%s", "str"},
	{"ltx", "longtext", "%s", "str"},
	{"c1", "char(10) CHARACTER SET latin1", "%s", "str"},
	{"vl", "varchar(300) CHARACTER SET latin1", "%s", "str"},
	{"tl", "text CHARACTER SET latin1", "%s", "str"},
	{"v3", "varchar(10) CHARACTER SET utf8mb3", "%s", "str"},
	{"u16", "varchar(10) CHARACTER SET utf16", "%s", "str"},
	{"cyr", "varchar(10) CHARACTER SET cp1251", "%s", "str"},
	{"bn", "binary(4)", "HEX(%s)", "bytes"},
	{"vb", "varbinary(20)", "HEX(%s)", "bytes"},
	{"bl", "blob", "HEX(%s)", "bytes"},
	{"mbl", "mediumblob", "HEX(%s)", "bytes"},
	{"j", "json", "%s", "json"},
	{"g", "geometry", "CONCAT(IF(ST_SRID(%[1]s) = 0, '', CONCAT('SRID=', ST_SRID(%[1]s), ';')), ST_AsText(%[1]s))", "str"},
	{"pt", "point", "ST_AsText(%s)", "str"},
	{"u", "uuid", "CAST(%s AS CHAR)", "str"},
	{"i6", "inet6", "CAST(%s AS CHAR)", "str"},
	{"i4", "inet4", "CAST(%s AS CHAR)", "str"},
}

// typeRows are the rows inserted, one value list per row (in typeColumns
// order after the id).
var typeRows = []string{
	// typical values
	`1, -5, 5, -300, 300, -70000, 70000, -5, 5, -5, 5,
	 '12345678901234567890123456789012345.123456789012345678901234567890', '19.90', '-12345', '12345678901234567890.0123456789',
	 1.2345678, 0.1, b'1', b'1010', b'1', '2024-02-29', '2024-02-29 13:14:15', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.5',
	 '2024-02-29 13:14:15', '13:14:15', '-838:59:59.999', '00:00:00.000001', 2024, 'it''s', 'x,z',
	 'ab', 'héllo wörld ✓ 😀', 'text', REPEAT('long ', 1000), 'Füße', 'café €', 'latin ÿ', 'mb3 é', 'utf16 😀', 'Привет',
	 0x41000000, 0x00ff10, 0xdeadbeef, REPEAT(0xab, 70000), '{"a": [1, 2.50, "x"], "b": null}',
	 ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0),(1 1,2 1,2 2,1 1))', 4326), ST_GeomFromText('POINT(-1.5 2.25)'),
	 '123e4567-e89b-12d3-a456-426655440000', '2001:db8::ff00:42:8329', '192.168.1.255'`,
	// extremes
	`2, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
	 '-99999999999999999999999999999999999.999999999999999999999999999999', '-0.01', '99999', '99999999999999999999.9999999999',
	 -3.4028235e38, -1.7976931348623157e308, b'0', b'1111111111', b'1111111111111111111111111111111111111111111111111111111111111111',
	 '9999-12-31', '9999-12-31 23:59:59', '1000-01-01 00:00:00.000001', '2038-01-19 03:14:07.999', '1970-01-01 00:00:01',
	 '838:59:59', '838:59:59.999', '-00:00:00.000001', 1901, 'ü', 'x,y,z',
	 '', '', '', '', '', '', '', '', '', '',
	 X'', X'', X'', X'', '[]', ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 2),LINESTRING(0 0,1 1))'), ST_GeomFromText('POINT(0 0)'),
	 'f81d4fae-7dec-41d0-a765-00a0c91e6bf6', '::ffff:1.2.3.4', '255.255.255.255'`,
	// NULLs
	`3` + strings.Repeat(", NULL", 50),
	// zero dates and small values
	`4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '0', '0.00', '0', '0', 0, 0, b'0', b'0', b'0', '0000-00-00', '0000-00-00 00:00:00',
	 '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '00:00:00', '00:00:00', '-01:00:00.5', 0, 'a', '',
	 'a b', '  lead', 'trail  ', 'x', 'c  ', ' ', 'x', 'x', 'x', 'x',
	 0x00, 0x00, 0x00, 0x00, '"str"', ST_GeomFromText('LINESTRING(0 0,1e10 -1e-5)'), ST_GeomFromText('POINT(3 4)'),
	 '00000000-0000-0000-0000-000000000000', '::', '0.0.0.0'`,
}

// latin1Row fills the latin1 columns with every byte 0x20..0xFF.
func latin1Bytes() string {
	var b strings.Builder
	for c := 0x20; c <= 0xFF; c++ {
		if c == 0x7F {
			continue
		}
		b.WriteByte(byte(c))
	}
	return hex.EncodeToString([]byte(b.String()))
}

func createTypesTable(f *fixture) string {
	tbl := f.name + ".types"
	defs := []string{"id int PRIMARY KEY"}
	for _, c := range typeColumns {
		defs = append(defs, c.name+" "+c.def)
	}
	f.exec(fmt.Sprintf("CREATE TABLE %s (%s)", tbl, strings.Join(defs, ", ")))
	return tbl
}

func insertTypeRows(t *testing.T, f *fixture, tbl string) {
	conn, err := f.db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET SESSION sql_mode = ''", "SET SESSION time_zone = '+00:00'", "BEGIN"} {
		if _, err := conn.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range typeRows {
		if _, err := conn.ExecContext(context.Background(), fmt.Sprintf("INSERT INTO %s VALUES (%s)", tbl, r)); err != nil {
			t.Fatalf("row %d: %v", i+1, err)
		}
	}
	// Every latin1 byte, and every byte in binary columns.
	if _, err := conn.ExecContext(context.Background(), fmt.Sprintf("INSERT INTO %s (id, vl, tl, vb) VALUES (5, UNHEX('%s'), UNHEX('%s'), 0x0001fe7f80)", tbl, latin1Bytes(), latin1Bytes())); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "COMMIT"); err != nil {
		t.Fatal(err)
	}
}

// expectedRows reads the rows back through SQL, as tapline values.
func expectedRows(t *testing.T, f *fixture, tbl string) map[int64][]connectors.Value {
	conn, err := f.db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "SET SESSION time_zone = '+00:00'"); err != nil {
		t.Fatal(err)
	}
	exprs := []string{"id"}
	for _, c := range typeColumns {
		exprs = append(exprs, fmt.Sprintf(c.expr, c.name))
	}
	rows, err := conn.QueryContext(context.Background(), fmt.Sprintf("SELECT %s FROM %s ORDER BY id", strings.Join(exprs, ", "), tbl))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][]connectors.Value{}
	for rows.Next() {
		raw := make([]sql.NullString, len(exprs))
		dest := make([]any, len(raw))
		for i := range raw {
			dest[i] = &raw[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		id, _ := strconv.ParseInt(raw[0].String, 10, 64)
		vals := []connectors.Value{id}
		for i, c := range typeColumns {
			r := raw[i+1]
			if !r.Valid {
				vals = append(vals, nil)
				continue
			}
			s := r.String
			var v connectors.Value
			switch c.conv {
			case "int":
				v, err = strconv.ParseInt(s, 10, 64)
			case "uint":
				var u uint64
				u, err = strconv.ParseUint(s, 10, 64)
				v = u
				if u <= math.MaxInt64 {
					v = int64(u)
				}
			case "float32":
				var x float64
				x, err = strconv.ParseFloat(s, 64)
				v = float32(x)
			case "float64":
				v, err = strconv.ParseFloat(s, 64)
			case "bool":
				v = s != "0"
			case "bytes":
				v, err = hex.DecodeString(s)
			case "json":
				v = connectors.JSON(s)
			case "date":
				v = s
			case "datetime":
				v = strings.Replace(s, " ", "T", 1)
			case "timestamp":
				v = strings.Replace(s, " ", "T", 1) + "Z"
			default:
				v = s
			}
			if err != nil {
				t.Fatalf("row %d column %s: %q: %v", id, c.name, s, err)
			}
			vals = append(vals, v)
		}
		out[id] = vals
	}
	return out
}

// sameValue compares an event value with the expected one; floats of a
// float column are compared as float32.
func sameValue(got, want connectors.Value) bool {
	switch w := want.(type) {
	case float32:
		g, ok := got.(float64)
		return ok && float32(g) == w && strconv.FormatFloat(g, 'g', -1, 64) == strconv.FormatFloat(float64(w), 'g', -1, 32)
	case float64:
		g, ok := got.(float64)
		return ok && math.Float64bits(g) == math.Float64bits(w)
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(g, w)
	case connectors.JSON:
		g, ok := got.(connectors.JSON)
		return ok && string(g) == string(w)
	}
	return fmt.Sprintf("%T %v", got, got) == fmt.Sprintf("%T %v", want, want)
}

func compareRows(t *testing.T, what string, evs []connectors.Event, want map[int64][]connectors.Value) {
	t.Helper()
	if len(evs) != len(want) {
		t.Fatalf("%s: %d events, want %d rows", what, len(evs), len(want))
	}
	for _, ev := range evs {
		id := ev.After[0].(int64)
		w := want[id]
		for i, c := range ev.Schema.Columns {
			if !sameValue(ev.After[i], w[i]) {
				t.Errorf("%s: row %d column %s (%s): got %T %v, want %T %v", what, id, c.Name, c.Native, ev.After[i], short(ev.After[i]), w[i], short(w[i]))
			}
		}
	}
}

func short(v any) any {
	switch x := v.(type) {
	case string:
		if len(x) > 80 {
			return x[:80] + fmt.Sprintf("...(%d bytes)", len(x))
		}
	case []byte:
		if len(x) > 40 {
			return fmt.Sprintf("%x...(%d bytes)", x[:40], len(x))
		}
	}
	return v
}

// Every type round-trips: the value in the event, streamed from the binlog
// and read by the snapshot, equals the value read back through SQL; and the
// stream's schema (from TABLE_MAP metadata) equals the snapshot's (from
// information_schema).
func TestTypesRoundTrip(t *testing.T) {
	f := newFixture(t)
	tbl := createTypesTable(f)
	cfg := f.config()
	cfg.Tables = []string{tbl}
	s := f.source(t, cfg)
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	insertTypeRows(t, f, tbl)
	want := expectedRows(t, f, tbl)
	streamed := readN(t, s, len(want))
	compareRows(t, "stream", streamed, want)

	cfg.Snapshot = "initial_only"
	snap := f.source(t, cfg)
	if err := snap.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	read := readN(t, snap, len(want))
	compareRows(t, "snapshot", read, want)
	// initial_only ends with io.EOF once the tables are read.
	for {
		b, err := snap.ReadBatch(ctx, connectors.Limits{MaxEvents: 10, MaxWait: 100 * time.Millisecond})
		if len(b.Events) > 0 {
			t.Fatalf("initial_only read %d more events", len(b.Events))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after the snapshot: %v; want io.EOF", err)
		}
	}
	for i := range read {
		if read[i].Op != connectors.OpRead || !read[i].Source.Snapshot {
			t.Errorf("snapshot event %d: op %s snapshot %v", i, read[i].Op, read[i].Source.Snapshot)
		}
	}
	if a, b := streamed[0].Schema, read[0].Schema; !a.SameShape(b) {
		for i := range a.Columns {
			if i < len(b.Columns) && a.Columns[i] != b.Columns[i] {
				t.Errorf("column %d: stream %+v, snapshot %+v", i, a.Columns[i], b.Columns[i])
			}
		}
		t.Errorf("the stream's and the snapshot's schemas differ")
	}
}
