package pgconv

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
)

// pgColumns are the columns of the round-trip table: a SQL type and the SQL
// expressions of the values to insert (NULL is added to every column).
var pgColumns = []struct {
	name, typ string
	values    []string
}{
	{"c_int2", "smallint", []string{"-32768", "32767", "0"}},
	{"c_int4", "integer", []string{"-2147483648", "2147483647"}},
	{"c_int8", "bigint", []string{"-9223372036854775808", "9223372036854775807"}},
	{"c_oid", "oid", []string{"0", "4294967295"}},
	{"c_float4", "real", []string{"'0.1'", "'-0'", "'NaN'", "'Infinity'", "'-Infinity'", "'3.4028235e38'", "'1.4e-45'", "'1.17549435e-38'"}},
	{"c_float8", "double precision", []string{"'0.1'", "'-0'", "'NaN'", "'Infinity'", "'-Infinity'", "'1.7976931348623157e308'", "'5e-324'", "'2.2250738585072014e-308'"}},
	{"c_numeric", "numeric", []string{"'123456789012345678901234567890.123456789012345678901234567890'", "'NaN'", "'Infinity'", "'-Infinity'", "'-0.000'", "'1e-300'", "'-1e300'"}},
	{"c_numeric_10_2", "numeric(10,2)", []string{"'12345678.90'", "'-0.01'", "0"}},
	{"c_money", "money", []string{"'-1234.56'", "'92233720368547758.07'"}},
	{"c_bool", "boolean", []string{"true", "false"}},
	{"c_text", "text", []string{"''", "'é😀 漢字'", "E'tab\\there\\nnew \\\\ \"q\" '' '", "'NULL'", "'{1,2}'", "' padded '"}},
	{"c_varchar", "varchar(40)", []string{"'x'", "''"}},
	{"c_char", "char(5)", []string{"'ab'", "''", "'é😀'"}},
	{"c_bpchar", "bpchar", []string{"'ab  '"}},
	{"c_name", "name", []string{"'pg_catalog'"}},
	{"c_qchar", `"char"`, []string{"'a'", `'\377'::"char"`}},
	{"c_bytea", "bytea", []string{"decode('" + hexOf(allBytes())[2:] + "', 'hex')", `'\x'::bytea`, `'\x00'::bytea`}},
	{"c_uuid", "uuid", []string{"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"}},
	{"c_json", "json", []string{`'{"a": [1, 2.50], "b": "é\u00e9"}'`, "'[]'", "'null'", `'  {"dup":1,"dup":2} '`}},
	{"c_jsonb", "jsonb", []string{`'{"a": [1, 2.50], "b": "é"}'`, "'[]'", "'null'", `'{"k": "\u00e9\n"}'`}},
	{"c_date", "date", []string{"'2025-11-22'", "'0044-03-15 BC'", "'infinity'", "'-infinity'", "'4713-01-01 BC'", "'5874897-12-31'", "'0001-01-01'"}},
	{"c_time", "time", []string{"'00:00:00'", "'23:59:59.999999'", "'24:00:00'"}},
	{"c_time3", "time(3)", []string{"'12:34:56.789'"}},
	{"c_timetz", "timetz", []string{"'10:11:12.5+05:45:30'", "'00:00:00-15:59'", "'24:00:00+15:59'"}},
	{"c_timestamp", "timestamp", []string{"'2025-11-22 10:11:12.123456'", "'0044-03-15 10:00 BC'", "'infinity'", "'-infinity'", "'294276-12-31 23:59:59.999999'", "'4713-01-01 00:00 BC'", "'10000-01-01'"}},
	{"c_timestamp3", "timestamp(3)", []string{"'2025-11-22 10:11:12.123'"}},
	{"c_timestamptz", "timestamptz", []string{"'2025-11-22 10:11:12.5+01'", "'1850-01-01 00:00:00+00'", "'0001-01-01 00:00:00+00'", "'0001-01-01 02:00:00+00'", "'0044-03-15 10:00:00+00 BC'", "'infinity'", "'-infinity'", "'294276-12-31 23:59:59.999999+00'", "'4714-11-24 00:00:00+00 BC'", "'2024-02-29 23:59:59.000001-12'"}},
	{"c_timestamptz3", "timestamptz(3)", []string{"'2025-11-22 10:11:12.123+00'"}},
	{"c_interval", "interval", []string{"'1 year 2 months 3 days 04:05:06.5'", "'-1 day'", "'0'", "'-178000000 years'", "'1 microsecond'", "'-1 day +01:00'"}},
	{"c_interval_ds", "interval day to second(2)", []string{"'1 day 00:00:01.25'"}},
	{"c_inet", "inet", []string{"'192.168.0.1/24'", "'::1'"}},
	{"c_cidr", "cidr", []string{"'10.0.0.0/8'"}},
	{"c_macaddr", "macaddr", []string{"'08:00:2b:01:02:03'"}},
	{"c_macaddr8", "macaddr8", []string{"'08:00:2b:01:02:03:04:05'"}},
	{"c_bit", "bit(8)", []string{"B'10101010'"}},
	{"c_varbit", "varbit", []string{"B''", "B'101'"}},
	{"c_xml", "xml", []string{"'<a b=\"1\">é</a>'"}},
	{"c_tsvector", "tsvector", []string{"'a fat cat'"}},
	{"c_tsquery", "tsquery", []string{"'fat & cat'"}},
	{"c_point", "point", []string{"'(1.5,-2)'"}},
	{"c_line", "line", []string{"'{1,2,3}'"}},
	{"c_lseg", "lseg", []string{"'[(0,0),(1,1)]'"}},
	{"c_box", "box", []string{"'(1,1),(0,0)'"}},
	{"c_path", "path", []string{"'[(0,0),(1,1),(2,0)]'"}},
	{"c_polygon", "polygon", []string{"'((0,0),(1,1),(2,0))'"}},
	{"c_circle", "circle", []string{"'<(0,0),1.5>'"}},
	{"c_int4range", "int4range", []string{"'[1,10)'", "'empty'"}},
	{"c_numrange", "numrange", []string{"'(1.5,)'"}},
	{"c_tstzrange", "tstzrange", []string{"'[2025-01-01 00:00+00,infinity)'"}},
	{"c_daterange", "daterange", []string{"'[0044-03-15 BC,2025-01-01)'"}},
	{"c_pg_lsn", "pg_lsn", []string{"'16/B374D848'"}},
	{"c_enum", "{s}.mood", []string{"'happy'", "'très \"bien\"'"}},
	{"c_domain", "{s}.price", []string{"'12345678.90'", "'-0.01'"}},
	{"c_composite", "{s}.pair", []string{"ROW(1, 'a,b \"c\"')", "ROW(NULL, NULL)"}},
	{"c_hstore", "{h}.hstore", []string{`'a=>1, "b c"=>NULL'`}},
	{"c_int_arr", "integer[]", []string{"'{}'", "'{1,2,NULL}'", "'{{1,2},{3,4}}'", "'{{{1}},{{2}}}'"}},
	{"c_int8_arr", "bigint[]", []string{"'{-9223372036854775808,9223372036854775807}'"}},
	{"c_text_arr", "text[]", []string{`ARRAY['a,b', 'c"d', '', 'NULL', NULL, ' x', 'a\b', 'é😀', '{}', E'\t']`, "'{}'", `'{{a,b},{c,d}}'`}},
	{"c_varchar_arr", "varchar(40)[]", []string{"'{x,y}'"}},
	{"c_numeric_arr", "numeric(10,2)[]", []string{"'{1.50,NaN,-0.01}'"}},
	{"c_float8_arr", "float8[]", []string{"'{NaN,-Infinity,-0,0.1}'"}},
	{"c_bool_arr", "boolean[]", []string{"'{t,f,NULL}'"}},
	{"c_bytea_arr", "bytea[]", []string{`ARRAY['\x00ff'::bytea, '\x'::bytea, NULL]`}},
	{"c_jsonb_arr", "jsonb[]", []string{`ARRAY['{"a": "x,y"}'::jsonb, 'null', '[]']`}},
	{"c_date_arr", "date[]", []string{"'{2025-11-22,0044-03-15 BC,infinity}'"}},
	{"c_timestamptz_arr", "timestamptz[]", []string{"ARRAY['2025-11-22 10:11:12.5+01'::timestamptz, '0044-03-15 10:00:00+00 BC', 'infinity']"}},
	{"c_interval_arr", "interval[]", []string{"ARRAY['1 day'::interval, '-1 year']"}},
	{"c_uuid_arr", "uuid[]", []string{"'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'"}},
	{"c_box_arr", "box[]", []string{"ARRAY['(1,1),(0,0)'::box, '(3,3),(2,2)']"}},
	{"c_point_arr", "point[]", []string{"ARRAY['(1,2)'::point]"}},
	{"c_enum_arr", "{s}.mood[]", []string{"ARRAY['happy', 'très \"bien\"', NULL]::{s}.mood[]"}},
	{"c_domain_arr", "{s}.price[]", []string{"'{1.50,-0.01}'"}},
	{"c_composite_arr", "{s}.pair[]", []string{"ARRAY[ROW(1, 'x'), ROW(2, 'a,b \"c\"')]::{s}.pair[]"}},
	{"c_int4range_arr", "int4range[]", []string{"'{\"[1,10)\",empty}'"}},
}

// lossy are the values whose decoded form knowingly loses something: the
// lower bounds of arrays that do not start at 1. The test checks that they
// still decode, and that the loss is what the README says.
var lossy = []struct{ typ, value string }{
	{"integer[]", "'[0:1]={1,2}'"},
	{"text[]", "'[-3:-2][5:5]={{a},{b}}'"},
}

func TestPostgresRoundTrip(t *testing.T) {
	dsn := servicetest.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	schema := servicetest.Name(t, "pgconv")
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE SCHEMA " + schema)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	exec(strings.ReplaceAll(`CREATE TYPE {s}.mood AS ENUM ('sad', 'happy', 'très "bien"');
		CREATE DOMAIN {s}.price AS numeric(10,2);
		CREATE TYPE {s}.pair AS (a integer, b text)`, "{s}", schema))
	// hstore lives wherever it was first created; create it in our schema
	// (dropped with it) if it is nowhere yet.
	hstoreSchema := ""
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS hstore SCHEMA "+schema); err != nil {
		t.Logf("hstore is not available (%v); its column is left out", err)
	} else if err := conn.QueryRow(ctx, "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'hstore'").Scan(&hstoreSchema); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("hstore is in schema %s", hstoreSchema)
	}

	var defs []string
	type colDef struct {
		name   string
		values []string
	}
	var cols []colDef
	for _, c := range pgColumns {
		if strings.Contains(c.typ, "hstore") && hstoreSchema == "" {
			continue
		}
		sub := strings.NewReplacer("{s}", schema, "{h}", hstoreSchema)
		typ := sub.Replace(c.typ)
		defs = append(defs, c.name+" "+typ)
		vals := make([]string, len(c.values))
		for i, v := range c.values {
			vals[i] = sub.Replace(v)
		}
		cols = append(cols, colDef{c.name, append(vals, "NULL")})
	}
	for i, l := range lossy {
		name := fmt.Sprintf("lossy_%d", i)
		defs = append(defs, name+" "+l.typ)
		cols = append(cols, colDef{name, []string{l.value}})
	}
	table := schema + ".t"
	exec("CREATE TABLE " + table + " (id int PRIMARY KEY, " + strings.Join(defs, ", ") + ")")
	rows := 0
	for _, c := range cols {
		rows = max(rows, len(c.values))
	}
	for r := range rows {
		names, vals := []string{"id"}, []string{strconv.Itoa(r)}
		for _, c := range cols {
			if r < len(c.values) {
				names = append(names, c.name)
				vals = append(vals, c.values[r])
			}
		}
		exec("INSERT INTO " + table + " (" + strings.Join(names, ", ") + ") VALUES (" + strings.Join(vals, ", ") + ")")
	}

	// The columns as a Relation message describes them, and their types.
	type attr struct {
		name   string
		oid    uint32
		typmod int32
		format string
	}
	var attrs []attr
	rs, err := conn.Query(ctx, `SELECT attname::text, atttypid::int8, atttypmod, format_type(atttypid, atttypmod)
		FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 1 AND NOT attisdropped ORDER BY attnum`, table)
	if err != nil {
		t.Fatal(err)
	}
	var unknown []uint32
	for rs.Next() {
		var a attr
		var oid int64
		if err := rs.Scan(&a.name, &oid, &a.typmod, &a.format); err != nil {
			t.Fatal(err)
		}
		a.oid = uint32(oid)
		attrs = append(attrs, a)
		if !IsBuiltin(a.oid) {
			unknown = append(unknown, a.oid)
		}
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	types := TypeMap{}
	rs, err = conn.Query(ctx, TypeQuery, unknown)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		ti, err := ScanTypeInfo(rs.Scan)
		if err != nil {
			t.Fatal(err)
		}
		types[ti.OID] = ti
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}

	checked := 0
	for _, zone := range []string{"Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham", "UTC"} {
		exec("SET TimeZone = '" + zone + "'; SET IntervalStyle = iso_8601; SET DateStyle = ISO")
		for _, a := range attrs {
			c := NewColumn(a.name, a.oid, a.typmod, types.Lookup)
			if IsBuiltin(a.oid) && c.Native != a.format {
				t.Errorf("%s: Native %q, format_type says %q", a.name, c.Native, a.format)
			}
			if c.Type == connectors.TypeText && !IsBuiltin(a.oid) && types[a.oid].Kind != 'c' && !strings.Contains(a.format, "hstore") && !strings.HasSuffix(a.format, "[]") {
				t.Errorf("%s: %s resolved to text", a.name, a.format)
			}
			for r := range rows {
				raw, err := outputText(ctx, conn, "SELECT "+a.name+" FROM "+table+" WHERE id = $1", r)
				if err != nil {
					t.Fatalf("%s row %d: %v", a.name, r, err)
				}
				if raw == nil {
					continue
				}
				text := &raw[0]
				v, err := c.Decode([]byte(*text))
				if err != nil {
					t.Errorf("%s (%s) %q: %v", a.name, a.format, *text, err)
					continue
				}
				checkType(t, c, v)
				lit := literal(c.Column, v, c.delim)
				// Postgres reads the literal back; its output function
				// must print exactly what it printed for the stored value.
				back, err := outputText(ctx, conn, "SELECT $1::text::"+a.format, lit)
				if strings.HasPrefix(a.name, "lossy_") {
					if err != nil || len(back) != 1 || back[0] == *text {
						t.Errorf("%s %q: want a loss of bounds only, got %q (%v)", a.name, *text, back, err)
					} else if i := strings.Index(*text, "="); i < 0 || (*text)[i+1:] != back[0] {
						t.Errorf("%s %q: after the bounds, %q differs", a.name, *text, back[0])
					}
					continue
				}
				if err != nil || len(back) != 1 || back[0] != *text {
					t.Errorf("%s (%s) does not round-trip in %s: %q → %#v → %q → %q (%v)", a.name, a.format, zone, *text, v, lit, back, err)
					continue
				}
				// So does a sink's column of DDLType.
				ddl := DDLType(c.Column)
				back, err = outputText(ctx, conn, "SELECT $1::text::"+ddl, lit)
				if err != nil || len(back) != 1 || back[0] != *text {
					t.Errorf("%s (%s) in a sink's %s column: %q → %q (%v)", a.name, a.format, ddl, lit, back, err)
				}
				if IsBuiltin(a.oid) && ddl != a.format {
					t.Errorf("%s: DDLType %q, want %q", a.name, ddl, a.format)
				}
				checked++
			}
		}
	}
	t.Logf("%d values round-tripped through %d columns", checked, len(attrs))

	// Built-in tables agree with the catalog.
	for oid, b := range builtins {
		var name string
		var arr int64
		if err := conn.QueryRow(ctx, "SELECT format_type(oid, NULL), typarray::int8 FROM pg_type WHERE oid = $1", int64(oid)).Scan(&name, &arr); err != nil {
			t.Errorf("builtin %d (%s): %v", oid, b.head, err)
			continue
		}
		if want := b.head + b.tail; name != want {
			t.Errorf("builtin %d: format_type %q, have %q", oid, name, want)
		}
		if arr != 0 {
			if e, ok := builtinArrays[uint32(arr)]; !ok || e != oid {
				t.Errorf("builtin %d (%s): its array %d is missing from builtinArrays", oid, name, arr)
			}
		}
	}
	for a, e := range builtinArrays {
		var elem int64
		if err := conn.QueryRow(ctx, "SELECT typelem::int8 FROM pg_type WHERE oid = $1", int64(a)).Scan(&elem); err != nil || uint32(elem) != e {
			t.Errorf("builtin array %d: typelem %d, have %d (%v)", a, elem, e, err)
		}
	}
}

// outputText runs a one-value query asking for the result in text format,
// which is the type's output function: what pgoutput sends. (col::text is
// not always the same: true::text is "true", the output function "t".)
func outputText(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		if v := rows.RawValues()[0]; v != nil {
			out = append(out, string(v))
		}
	}
	return out, rows.Err()
}

// checkType checks that v has the Go type c.Type calls for.
func checkType(t *testing.T, c Column, v V) {
	t.Helper()
	ok := true
	switch c.Type {
	case connectors.TypeBool:
		_, ok = v.(bool)
	case connectors.TypeInt16, connectors.TypeInt32, connectors.TypeInt64:
		_, ok = v.(int64)
	case connectors.TypeFloat32, connectors.TypeFloat64:
		_, ok = v.(float64)
	case connectors.TypeBytes:
		_, ok = v.([]byte)
	case connectors.TypeJSON:
		_, ok = v.(connectors.JSON)
	case connectors.TypeArray:
		_, ok = v.([]V)
	default:
		_, ok = v.(string)
	}
	if !ok {
		t.Errorf("%s (%s): value %#v has the wrong Go type", c.Name, c.Type, v)
	}
}

// literal writes v back in Postgres' text input form, as a Postgres sink
// would: the test of losslessness is that Postgres reads it back as the
// same value.
func literal(c connectors.Column, v V, delim byte) string {
	if a, ok := v.([]V); ok {
		if delim == 0 {
			delim = ','
		}
		var b strings.Builder
		arrayLiteral(&b, c.Elem, a, delim)
		return b.String()
	}
	return scalarLiteral(c.Type, v)
}

func arrayLiteral(b *strings.Builder, elem connectors.Type, a []V, delim byte) {
	b.WriteByte('{')
	for i, e := range a {
		if i > 0 {
			b.WriteByte(delim)
		}
		switch x := e.(type) {
		case nil:
			b.WriteString("NULL")
		case []V:
			arrayLiteral(b, elem, x, delim)
		default:
			s := scalarLiteral(elem, x)
			b.WriteByte('"')
			for j := 0; j < len(s); j++ {
				if s[j] == '"' || s[j] == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(s[j])
			}
			b.WriteByte('"')
		}
	}
	b.WriteByte('}')
}

func scalarLiteral(typ connectors.Type, v V) string {
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		switch {
		case math.IsNaN(x):
			return "NaN"
		case math.IsInf(x, 1):
			return "Infinity"
		case math.IsInf(x, -1):
			return "-Infinity"
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []byte:
		return hexOf(x)
	case connectors.JSON:
		return string(x)
	case string:
		switch typ {
		case connectors.TypeDate, connectors.TypeTimestamp, connectors.TypeTimestampTZ:
			return PostgresDate(x)
		}
		return x
	}
	panic(fmt.Sprintf("unexpected value %#v", v))
}
