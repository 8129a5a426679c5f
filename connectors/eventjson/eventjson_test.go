package eventjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

type V = connectors.Value

// typed is an event of table public.t_<name>: an int64 key "id" and one
// column per value, all of type t.
func typed(t connectors.Type, native string, elem connectors.Type, vals ...V) connectors.Event {
	cols := []connectors.Column{{Name: "id", Type: connectors.TypeInt64, Native: "int8", Key: 1}}
	row := []V{int64(1)}
	for i, v := range vals {
		cols = append(cols, connectors.Column{Name: fmt.Sprintf("v%d", i+1), Type: t, Native: native, Nullable: true, Elem: elem})
		row = append(row, v)
	}
	name := "t_" + string(t)
	s := connectors.MustSchema(connectors.TableID{Schema: "public", Name: name}, 1, cols)
	return connectors.Event{
		Op: connectors.OpCreate, Schema: s, After: row,
		Source: connectors.SourceInfo{Connector: "test", DB: "db", Schema: "public", Table: name, Position: "1:1", TxID: 7, TsMs: 1763800000000},
		Tx:     connectors.TxInfo{ID: "7", TotalOrder: 1},
		TsMs:   1763800000123,
	}
}

var ordersSchema = connectors.MustSchema(connectors.TableID{Schema: "public", Name: "orders"}, 2, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Native: "int8", Key: 1},
	{Name: "status", Type: connectors.TypeString, Native: "text"},
	{Name: "amount", Type: connectors.TypeDecimal, Native: "numeric(10,2)", Nullable: true},
	{Name: "description", Type: connectors.TypeText, Native: "text", Nullable: true},
})

func ordersSource() connectors.SourceInfo {
	return connectors.SourceInfo{Connector: "postgres", Name: "legacy", DB: "shop", Schema: "public", Table: "orders",
		Position: "0/16B3748:3", TxID: 771, TsMs: 1763800000000,
		Extra: []connectors.Field{{Name: "lsn", Value: "0/16B3748"}, {Name: "xmin", Value: nil}, {Name: "sequence", Value: int64(3)}}}
}

// cases are the golden events, one file each in testdata.
func cases() map[string]connectors.Event {
	renamed := connectors.MustSchema(connectors.TableID{Schema: "archive", Name: "orders_v2"}, 2, ordersSchema.Columns)
	composite := connectors.MustSchema(connectors.TableID{Schema: "public", Name: "order_lines"}, 1, []connectors.Column{
		{Name: "line", Type: connectors.TypeInt32, Native: "int4", Key: 2},
		{Name: "order_id", Type: connectors.TypeInt64, Native: "int8", Key: 1},
		{Name: "sku", Type: connectors.TypeString, Native: "text"},
	})
	nokey := connectors.MustSchema(connectors.TableID{Name: "log"}, 1, []connectors.Column{
		{Name: "msg", Type: connectors.TypeText, Native: "text"},
	})
	return map[string]connectors.Event{
		"bool":   typed(connectors.TypeBool, "boolean", "", true, false, nil),
		"int16":  typed(connectors.TypeInt16, "int2", "", int64(math.MinInt16), int64(math.MaxInt16), int64(0)),
		"int32":  typed(connectors.TypeInt32, "int4", "", int64(math.MinInt32), int64(math.MaxInt32), nil),
		"int64":  typed(connectors.TypeInt64, "int8", "", int64(math.MinInt64), int64(math.MaxInt64), int64(-1), int64(255), int64(256)),
		"uint64": typed(connectors.TypeUint64, "bigint unsigned", "", uint64(math.MaxUint64), uint64(1<<63), int64(math.MaxInt64), int64(0)),
		"float32": typed(connectors.TypeFloat32, "float4", "",
			float64(float32(0.1)), 0.5, float64(math.MaxFloat32), math.NaN(), math.Inf(1), math.Inf(-1)),
		"float64": typed(connectors.TypeFloat64, "float8", "",
			0.1, 1.0, math.Copysign(0, -1), 1e21, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64,
			math.NaN(), math.Inf(1), math.Inf(-1), nil),
		"decimal":     typed(connectors.TypeDecimal, "numeric(30,10)", "", "19.90", "-0.0000000001", "NaN", "123456789012345678901234567890", nil),
		"string":      typed(connectors.TypeString, "text", "", "", "héllo wörld", "日本語 🎉", "quote \" backslash \\ slash /", "<a href=\"x\">&amp;</a>", "tab\tnl\ncr\rnul\x00bell\x07del\x7f", "\u2028\u2029", nil),
		"bytes":       typed(connectors.TypeBytes, "bytea", "", []byte{0, 1, 2, 0xfe, 0xff}, []byte{}, []byte("hello"), nil),
		"json":        typed(connectors.TypeJSON, "jsonb", "", connectors.JSON(`{"a":[1,2,{"b":null}],"c":"<&>","d":1.5e300}`), connectors.JSON(`[]`), connectors.JSON(`"just a string"`), connectors.JSON(`12345678901234567890123`), connectors.JSON(`{ "spaced" : true }`), nil),
		"uuid":        typed(connectors.TypeUUID, "uuid", "", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", nil),
		"date":        typed(connectors.TypeDate, "date", "", "2025-11-22", "-4712-01-01", "infinity"),
		"time":        typed(connectors.TypeTime, "timetz", "", "15:04:05.999999", "23:59:59+02:00"),
		"timestamp":   typed(connectors.TypeTimestamp, "timestamp", "", "2025-11-22T15:04:05.123456", nil),
		"timestamptz": typed(connectors.TypeTimestampTZ, "timestamptz", "", "2025-11-22T13:04:05.123456Z", "1970-01-01T00:00:00Z"),
		"interval":    typed(connectors.TypeInterval, "interval", "", "P1Y2M3DT4H5M6.5S", "PT0S"),
		"text":        typed(connectors.TypeText, "tsvector", "", "'fat':2 'rat':3", nil),
		"array": typed(connectors.TypeArray, "int8[]", connectors.TypeInt64,
			[]V{int64(1), nil, int64(3)}, []V{}, []V{[]V{int64(1), int64(2)}, []V{int64(3), nil}}, nil),
		"array_text": typed(connectors.TypeArray, "text[]", connectors.TypeString, []V{"a", nil, "", "{\"}"}),
		"unchanged": {
			Op: connectors.OpUpdate, Schema: ordersSchema,
			Before: []V{int64(42), "new", "10.00", connectors.Unchanged},
			After:  []V{int64(42), "paid", "19.90", connectors.Unchanged},
			Source: ordersSource(), Tx: connectors.TxInfo{ID: "771", TotalOrder: 3}, TsMs: 1763800000123,
		},
		"update_renamed_routed": {
			Op: connectors.OpUpdate, Schema: renamed,
			Before: []V{int64(42), "new", nil, nil},
			After:  []V{int64(42), "paid", "19.90", "a <b> & c"},
			Source: ordersSource(), Tx: connectors.TxInfo{ID: "771", TotalOrder: 3}, TsMs: 1763800000123,
			Destination: "archive.orders",
		},
		"delete": {
			Op: connectors.OpDelete, Schema: ordersSchema,
			Before: []V{int64(42), nil, nil, nil},
			Source: ordersSource(), TsMs: 1763800000123,
		},
		"truncate": {
			Op: connectors.OpTruncate, Schema: ordersSchema,
			Source: ordersSource(), Tx: connectors.TxInfo{ID: "772", TotalOrder: 1}, TsMs: 1763800000123,
		},
		"snapshot_read": {
			Op: connectors.OpRead, Schema: composite,
			After:  []V{int64(2), int64(1001), "SKU-1"},
			Source: connectors.SourceInfo{Connector: "mysql", DB: "shop", Table: "order_lines", Position: "binlog.000003:4711", TsMs: 1763800000000, Snapshot: true},
			TsMs:   1763800000123,
		},
		"no_key": {
			Op: connectors.OpCreate, Schema: nokey, After: []V{"hello"},
			Source: connectors.SourceInfo{Connector: "generate", DB: "generate", Table: "log"},
		},
	}
}

func TestGolden(t *testing.T) {
	for name, ev := range cases() {
		t.Run(name, func(t *testing.T) {
			got, err := eventjson.Marshal(&ev)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			path := filepath.Join("testdata", name+".json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(append(got, '\n'), want) {
				t.Fatalf("Marshal differs from %s (go test -update rewrites it):\n got %s\nwant %s", path, got, want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	dec := eventjson.NewDecoder()
	enc := eventjson.NewEncoder(eventjson.Options{ValidateJSON: true})
	for name, ev := range cases() {
		t.Run(name, func(t *testing.T) {
			first, err := enc.AppendEvent(nil, &ev)
			if err != nil {
				t.Fatal(err)
			}
			back, err := dec.Decode(first)
			if err != nil {
				t.Fatalf("Decode(%s): %v", first, err)
			}
			if diff := diffEvents(&ev, &back); diff != "" {
				t.Fatalf("decoded event differs: %s\n%s", diff, first)
			}
			second, err := eventjson.Marshal(&back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, second) {
				t.Fatalf("re-encoding differs:\n first %s\nsecond %s", first, second)
			}
			// The same schema block decodes to the same *Schema.
			again, err := dec.Decode(second)
			if err != nil {
				t.Fatal(err)
			}
			if again.Schema != back.Schema {
				t.Fatal("the same schema block decoded to two schemas")
			}
		})
	}
}

// diffEvents compares two events field by field, values exactly (NaN equals
// NaN, -0 differs from 0, types must match); Position is not compared.
func diffEvents(a, b *connectors.Event) string {
	switch {
	case a.Op != b.Op:
		return fmt.Sprintf("op %v, %v", a.Op, b.Op)
	case (a.Schema == nil) != (b.Schema == nil):
		return "schema presence"
	case a.TsMs != b.TsMs:
		return fmt.Sprintf("ts_ms %d, %d", a.TsMs, b.TsMs)
	case a.Tx != b.Tx:
		return fmt.Sprintf("tx %+v, %+v", a.Tx, b.Tx)
	case a.Destination != b.Destination:
		return "destination"
	}
	if a.Schema != nil {
		if a.Schema.Table != b.Schema.Table || a.Schema.Version != b.Schema.Version || !a.Schema.SameShape(b.Schema) {
			return fmt.Sprintf("schema %+v, %+v", *a.Schema, *b.Schema)
		}
	}
	sa, sb := a.Source, b.Source
	sa.Extra, sb.Extra = nil, nil
	if fmt.Sprint(sa) != fmt.Sprint(sb) {
		return fmt.Sprintf("source %+v, %+v", a.Source, b.Source)
	}
	if len(a.Source.Extra) != len(b.Source.Extra) {
		return fmt.Sprintf("source extra %v, %v", a.Source.Extra, b.Source.Extra)
	}
	for i := range a.Source.Extra {
		if a.Source.Extra[i].Name != b.Source.Extra[i].Name || !sameValue(a.Source.Extra[i].Value, b.Source.Extra[i].Value) {
			return fmt.Sprintf("source extra %v, %v", a.Source.Extra, b.Source.Extra)
		}
	}
	for _, img := range []struct {
		name string
		x, y []V
	}{{"before", a.Before, b.Before}, {"after", a.After, b.After}} {
		if (img.x == nil) != (img.y == nil) || len(img.x) != len(img.y) {
			return fmt.Sprintf("%s %#v, %#v", img.name, img.x, img.y)
		}
		for i := range img.x {
			if !sameValue(img.x[i], img.y[i]) {
				return fmt.Sprintf("%s[%d] %#v, %#v", img.name, i, img.x[i], img.y[i])
			}
		}
	}
	return ""
}

func sameValue(a, b V) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && (math.Float64bits(x) == math.Float64bits(y) || (math.IsNaN(x) && math.IsNaN(y)))
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case connectors.JSON:
		y, ok := b.(connectors.JSON)
		return ok && bytes.Equal(x, y)
	case []V:
		y, ok := b.([]V)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestKey(t *testing.T) {
	cs := cases()
	for _, tc := range []struct {
		name, want string
	}{
		{"unchanged", `{"id":42}`},
		{"delete", `{"id":42}`},
		{"snapshot_read", `{"order_id":1001,"line":2}`},
		{"truncate", ``},
		{"no_key", ``},
	} {
		ev := cs[tc.name]
		got, err := eventjson.MarshalKey(&ev)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(got) != tc.want || (tc.want == "") != (got == nil) {
			t.Errorf("%s: key %q, want %q", tc.name, got, tc.want)
		}
	}
	// A TOASTed key in after comes from before.
	ev := cs["unchanged"]
	ev.Before = []V{int64(7), nil, nil, nil}
	ev.After = []V{connectors.Unchanged, "paid", nil, nil}
	if got, ok, err := eventjson.AppendKey([]byte("k="), &ev); err != nil || !ok || string(got) != `k={"id":7}` {
		t.Errorf("AppendKey with an unchanged key = %q, %v, %v", got, ok, err)
	}
	ev.Before = nil
	if _, _, err := eventjson.AppendKey(nil, &ev); err == nil {
		t.Error("AppendKey of an unchanged key with no before: no error")
	}
}

func TestEncodeErrors(t *testing.T) {
	base := cases()["no_key"]
	for _, tc := range []struct {
		name   string
		mutate func(ev *connectors.Event)
		want   string
	}{
		{"unsupported type", func(ev *connectors.Event) { ev.After = []V{42} }, `after.msg of log: unsupported value type int`},
		{"short row", func(ev *connectors.Event) { ev.After = []V{} }, `after of log has 0 values for 1 columns`},
		{"bad op", func(ev *connectors.Event) { ev.Op = 'x' }, `invalid op`},
		{"rows without schema", func(ev *connectors.Event) { ev.Schema = nil }, `has rows but no schema`},
		{"clashing extra", func(ev *connectors.Event) {
			ev.Source.Extra = []connectors.Field{{Name: "table", Value: "x"}}
		}, `source field "table" of connector "generate" clashes`},
		{"bad array element", func(ev *connectors.Event) { ev.After = []V{[]V{int64(1), int32(2)}} }, `element 1: unsupported value type int32`},
		{"invalid json", func(ev *connectors.Event) { ev.After = []V{connectors.JSON(`{"a":`)} }, `invalid JSON document`},
	} {
		ev := base
		tc.mutate(&ev)
		out, err := eventjson.AppendEvent([]byte("prefix"), &ev, eventjson.Options{ValidateJSON: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
		if string(out) != "prefix" {
			t.Errorf("%s: a failed append left %q", tc.name, out)
		}
	}
}

func TestStringEncoding(t *testing.T) {
	ev := typed(connectors.TypeString, "text", "", "bad \xff utf8 \xed\xa0\x80 end", "\x1f")
	b, err := eventjson.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("\"v1\":\"bad \ufffd utf8 \ufffd\ufffd\ufffd end\",\"v2\":\"\\u001f\"")) {
		t.Fatalf("strings not escaped as expected: %s", b)
	}
	// encoding/json agrees on the text.
	var m struct{ After map[string]any }
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.After["v1"] != "bad \ufffd utf8 \ufffd\ufffd\ufffd end" {
		t.Fatalf("encoding/json reads %q", m.After["v1"])
	}
}

func TestJSONLineBreaksBecomeSpaces(t *testing.T) {
	ev := typed(connectors.TypeJSON, "json", "", connectors.JSON("{\n  \"a\": 1\r\n}"))
	b, err := eventjson.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsAny(b, "\r\n") || !bytes.Contains(b, []byte(`"v1":{   "a": 1  }`)) {
		t.Fatalf("line breaks kept: %q", b)
	}
}

// Every float64 encodes to a JSON number encoding/json accepts and that
// parses back to the same bits.
func TestFloatsAreExactAndValid(t *testing.T) {
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1.0 / 3, 1e20, 1e21, 1e-6, 1e-7, 5e-324, math.MaxFloat64, 2.5e-308, 123456789012345678}
	for i := uint64(1); i < 1<<62; i = i*3 + 1 {
		vals = append(vals, math.Float64frombits(i))
	}
	for _, f := range vals {
		b, err := eventjson.AppendValue(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		var back float64
		if err := json.Unmarshal(b, &back); err != nil || math.Float64bits(back) != math.Float64bits(f) {
			t.Fatalf("%v encoded as %s, reads back as %v (%v)", f, b, back, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := eventjson.Marshal(ptr(cases()["unchanged"]))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", ``, `eventjson: at byte 0: unexpected end of input looking for '{' starting an event`},
		{"not an object", `[1]`, `eventjson: at byte 0: invalid character '[' looking for '{' starting an event`},
		{"no op", `{"after":{"id":1}}`, `eventjson: field "op" at byte 0: missing`},
		{"bad op", `{"op":"x"}`, `eventjson: field "op" at byte 6: unknown op "x"`},
		{"bad after", `{"op":"c","after":{"id":1,}}`, `eventjson: field "after" at byte 26: invalid character '}' looking for a string key`},
		{"after not object", `{"op":"c","after":3}`, `eventjson: field "after" at byte 18: want an object or null`},
		{"trailing", `{"op":"c"} x`, `eventjson: at byte 11: unexpected data after the event: 'x'`},
		{"unterminated", `{"op":"c","after":{"id":"abc`, `eventjson: field "after" at byte 28: unexpected end of input in a string`},
		{"control char", "{\"op\":\"c\",\"source\":{\"db\":\"a\x01\"}}", `eventjson: field "source" at byte 27: control character '\x01' in a string`},
		{"bad number", `{"op":"c","ts_ms":01}`, `eventjson: field "ts_ms" at byte 19: invalid character '1' looking for ',' or '}' after a field`},
		{"float ts", `{"op":"c","ts_ms":1.5}`, `eventjson: field "ts_ms" at byte 18: want an integer, have 1.5`},
		{"bad snapshot", `{"op":"c","source":{"snapshot":1}}`, `eventjson: field "source.snapshot" at byte 31: want a string`},
		{"schema dup column", `{"op":"c","schema":{"table":"t","version":1,"columns":[{"name":"a","type":"text"},{"name":"a","type":"text"}]}}`, `eventjson: field "schema.columns" at byte 54: schema t: column "a" appears twice`},
		{"schema no columns", `{"op":"c","schema":{"table":"t"}}`, `eventjson: field "schema.columns" at byte 19: missing`},
		{"schema bad key", `{"op":"c","schema":{"table":"t","columns":[{"name":"a","key":"x"}]}}`, `eventjson: field "schema.columns[0].key" at byte 61: want an integer, have x`},
		{"unknown column", strings.Replace(string(good), `"status":"paid"`, `"statu":"paid"`, 1), `eventjson: field "after.statu" at byte 86: no such column in the schema of public.orders`},
		{"bad int", strings.Replace(string(good), `"id":42,"status":"paid"`, `"id":4.5,"status":"paid"`, 1), `eventjson: field "after.id" at byte 75: want an integer for a int64 column, have 4.5`},
		{"bad unchanged", strings.Replace(string(good), `["description"]`, `["nope"]`, 1), `eventjson: field "unchanged" at byte 404: no column "nope" in the schema of public.orders`},
		{"bad base64", `{"op":"c","after":{"b":"!!"},"schema":{"table":"t","columns":[{"name":"b","type":"bytes"}]}}`, `eventjson: field "after.b" at byte 23: invalid base64: illegal base64 data at input byte 0`},
		{"deep", `{"op":"c","after":{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`, `values nested more than 10000 deep`},
	} {
		_, err := eventjson.Unmarshal([]byte(tc.in))
		var de *eventjson.DecodeError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &de) {
			t.Errorf("%s: error\n  %v\nwant a *DecodeError containing\n  %s", tc.name, err, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// Debezium's own output (Kafka Connect's JSON converter with schemas
// enabled, here trimmed) decodes by inference.
func TestDecodeDebezium(t *testing.T) {
	in := `{"schema":{"type":"struct","fields":[],"optional":false,"name":"dbserver1.inventory.customers.Envelope"},
	"payload":{"before":null,"after":{"id":1004,"first_name":"Anne","email":"annek@noanswer.org","score":12.5,"big":18446744073709551615,"huge":123456789012345678901234,"tags":["a"],"active":true,"note":null},
	"source":{"version":"2.5.0.Final","connector":"postgresql","name":"dbserver1","ts_ms":1559033904863,"snapshot":"last","db":"postgres","sequence":"[\"24023119\",\"24023128\"]","schema":"inventory","table":"customers","txId":555,"lsn":24023128,"xmin":null},
	"op":"r","ts_ms":1559033904863,"transaction":null}}`
	ev, err := eventjson.Unmarshal([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Op != connectors.OpRead || ev.Table().String() != "inventory.customers" || !ev.Source.Snapshot || ev.Source.TxID != 555 || ev.Tx.ID != "" {
		t.Fatalf("event %+v", ev)
	}
	wantTypes := "id:int64 first_name:text email:text score:float64 big:uint64 huge:decimal tags:json active:bool note:text"
	var got []string
	for _, c := range ev.Schema.Columns {
		got = append(got, c.Name+":"+string(c.Type))
	}
	if strings.Join(got, " ") != wantTypes {
		t.Fatalf("inferred %s\nwant     %s", strings.Join(got, " "), wantTypes)
	}
	want := []V{int64(1004), "Anne", "annek@noanswer.org", 12.5, uint64(math.MaxUint64), "123456789012345678901234", connectors.JSON(`["a"]`), true, nil}
	for i := range want {
		if !sameValue(ev.After[i], want[i]) {
			t.Errorf("after[%d] = %#v, want %#v", i, ev.After[i], want[i])
		}
	}
	extra := fmt.Sprint(ev.Source.Extra)
	if extra != `[{version 2.5.0.Final} {sequence ["24023119","24023128"]} {lsn 24023128} {xmin <nil>}]` {
		t.Errorf("extra = %s", extra)
	}
}

// Without a schema block, values decode by inference, and what decodes
// re-encodes to the same event.
func TestOmitSchema(t *testing.T) {
	ev := cases()["unchanged"]
	b, err := eventjson.AppendEvent(nil, &ev, eventjson.Options{OmitSchema: true})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`"schema":{`)) {
		t.Fatalf("schema not omitted: %s", b)
	}
	d := eventjson.NewDecoder()
	back, err := d.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Schema.Version != 0 || back.Schema.HasKey() || back.Table() != ev.Table() {
		t.Fatalf("inferred schema %+v", back.Schema)
	}
	if !sameValue(back.After[0], int64(42)) || back.After[1] != "paid" || !connectors.IsUnchanged(back.After[3]) || !connectors.IsUnchanged(back.Before[3]) {
		t.Fatalf("after = %#v", back.After)
	}
	back2, err := d.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if back2.Schema != back.Schema {
		t.Fatal("inferred schemas are not shared")
	}
}

// Kinds mixed in one column infer a type that holds both exactly.
func TestInferMixedKinds(t *testing.T) {
	for _, tc := range []struct {
		before, after string
		typ           connectors.Type
		b, a          V
	}{
		{`1`, `2.5`, connectors.TypeFloat64, 1.0, 2.5},
		{`1.0`, `2`, connectors.TypeInt64, int64(1), int64(2)},
		{`1e2`, `-3`, connectors.TypeInt64, int64(100), int64(-3)},
		{`1`, `18446744073709551615`, connectors.TypeUint64, int64(1), uint64(math.MaxUint64)},
		{`9007199254740993`, `0.5`, connectors.TypeDecimal, "9007199254740993", "0.5"},
		{`0.1`, `0.10000000000000000001`, connectors.TypeDecimal, "0.1", "0.10000000000000000001"},
		{`1`, `"x"`, connectors.TypeJSON, connectors.JSON(`1`), connectors.JSON(`"x"`)},
		{`null`, `null`, connectors.TypeText, nil, nil},
		{`{"a":1}`, `[1]`, connectors.TypeJSON, connectors.JSON(`{"a":1}`), connectors.JSON(`[1]`)},
	} {
		in := `{"op":"u","before":{"x":` + tc.before + `},"after":{"x":` + tc.after + `}}`
		ev, err := eventjson.Unmarshal([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if ev.Schema.Columns[0].Type != tc.typ || !sameValue(ev.Before[0], tc.b) || !sameValue(ev.After[0], tc.a) {
			t.Errorf("%s: %s %#v %#v, want %s %#v %#v", in, ev.Schema.Columns[0].Type, ev.Before[0], ev.After[0], tc.typ, tc.b, tc.a)
		}
		checkStable(t, []byte(in))
	}
}

// Typed columns accept the lenient forms documented for them.
func TestDecodeLenient(t *testing.T) {
	schema := `"schema":{"table":"t","version":1,"columns":[{"name":"i","type":"int64"},{"name":"s","type":"decimal"},{"name":"f","type":"float64"},{"name":"u","type":"uint64"},{"name":"x","type":"custom"}]}`
	for _, tc := range []struct {
		after string
		want  []V
	}{
		{`{"i":"42","s":19.90,"f":"1.5","u":"18446744073709551615","x":1.25}`, []V{int64(42), "19.90", 1.5, uint64(math.MaxUint64), 1.25}},
		{`{"i":4.2e1,"s":true,"f":1,"u":5,"x":"t"}`, []V{int64(42), "true", 1.0, int64(5), "t"}},
		{`{"x":[1]}`, []V{nil, nil, nil, nil, connectors.JSON(`[1]`)}},
		{`{"f":"-Infinity","s":"\u00e9\ud83c\udf89\ud800"}`, []V{nil, "é🎉\ufffd", math.Inf(-1), nil, nil}},
	} {
		in := `{"op":"c","after":` + tc.after + `,` + schema + `}`
		ev, err := eventjson.Unmarshal([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		for i, w := range tc.want {
			if !sameValue(ev.After[i], w) {
				t.Errorf("%s: after[%d] = %#v, want %#v", tc.after, i, ev.After[i], w)
			}
		}
		checkStable(t, []byte(in))
	}
}

// checkStable is the fuzz property: if data decodes, its encoding decodes to
// the same event and encodes to the same bytes.
func checkStable(t *testing.T, data []byte) {
	t.Helper()
	ev, err := eventjson.Unmarshal(data)
	if err != nil {
		return
	}
	first, err := eventjson.Marshal(&ev)
	if err != nil {
		t.Fatalf("decoded event does not encode: %v\ninput %q\nevent %+v", err, data, ev)
	}
	back, err := eventjson.Unmarshal(first)
	if err != nil {
		t.Fatalf("re-encoded event does not decode: %v\ninput %q\nencoded %s", err, data, first)
	}
	if diff := diffEvents(&ev, &back); diff != "" {
		t.Fatalf("decode(encode(decode(x))) differs: %s\ninput %q\nencoded %s", diff, data, first)
	}
	second, err := eventjson.Marshal(&back)
	if err != nil || !bytes.Equal(first, second) {
		t.Fatalf("encoding not stable (%v):\n first %s\nsecond %s", err, first, second)
	}
	if !json.Valid(first) {
		t.Fatalf("encoded event is not valid JSON: %s", first)
	}
	if _, _, err := eventjson.AppendKey(nil, &ev); err != nil {
		t.Fatalf("key of a decoded event: %v", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, ev := range cases() {
		if b, err := eventjson.AppendEvent(nil, &ev, eventjson.Options{OmitSchema: true}); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"op":"u","before":{"x":1,"y":"a"},"after":{"x":2.5,"y":null,"z":[1,{"a":"\ud83c\udf89"}]},"unchanged":["w"]}`))
	f.Add([]byte(`{"schema":{"type":"struct"},"payload":{"op":"d","before":{"id":1},"source":{"snapshot":"true","lsn":1.0}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkStable(t, data)
	})
}

func TestDecoderSharesAndBoundsSchemas(t *testing.T) {
	d := eventjson.NewDecoder()
	first := map[string]*connectors.Schema{}
	for i := range 3000 {
		s := connectors.MustSchema(connectors.TableID{Name: fmt.Sprintf("t%d", i%1500)}, 1, []connectors.Column{{Name: "a", Type: connectors.TypeText}})
		b, err := eventjson.Marshal(&connectors.Event{Op: connectors.OpCreate, Schema: s, After: []V{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := d.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Schema.Table != s.Table {
			t.Fatalf("decoded table %v, want %v", ev.Schema.Table, s.Table)
		}
		if i < 1000 {
			first[s.Table.Name] = ev.Schema
		}
	}
	// Within the bound, the same bytes give the same schema.
	b, _ := eventjson.Marshal(&connectors.Event{Op: connectors.OpCreate, Schema: connectors.MustSchema(connectors.TableID{Name: "again"}, 1, nil)})
	e1, _ := d.Decode(b)
	e2, _ := d.Decode(b)
	if e1.Schema != e2.Schema {
		t.Fatal("same schema block, two schemas")
	}
}

func TestEncoderSchemaCache(t *testing.T) {
	var enc eventjson.Encoder
	ev := cases()["unchanged"]
	a, err := enc.AppendEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	b, err := enc.AppendEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	c, err := eventjson.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Fatalf("cached encoding differs:\n%s\n%s\n%s", a, b, c)
	}
}

func TestEncodeAllocs(t *testing.T) {
	ev := benchEvent()
	enc := eventjson.NewEncoder(eventjson.Options{})
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = enc.AppendEvent(buf[:0], &ev); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Encoder.AppendEvent allocates %v times per event", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		buf, _ = eventjson.AppendEvent(buf[:0], &ev, eventjson.Options{})
		buf, _, _ = eventjson.AppendKey(buf[:0], &ev)
	}); n != 0 {
		t.Fatalf("AppendEvent and AppendKey allocate %v times per event", n)
	}
}

var benchSchema = connectors.MustSchema(connectors.TableID{Schema: "public", Name: "orders"}, 1, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Native: "int8", Key: 1},
	{Name: "name", Type: connectors.TypeString, Native: "text", Nullable: true},
	{Name: "amount", Type: connectors.TypeDecimal, Native: "numeric(12,2)", Nullable: true},
	{Name: "created_at", Type: connectors.TypeTimestampTZ, Native: "timestamptz"},
	{Name: "payload", Type: connectors.TypeJSON, Native: "jsonb", Nullable: true},
	{Name: "flag", Type: connectors.TypeBool, Native: "boolean"},
})

// benchEvent is an insert of about 300 bytes without its schema block.
func benchEvent() connectors.Event {
	return connectors.Event{
		Op: connectors.OpCreate, Schema: benchSchema,
		After: []V{int64(123456), "Grace Hopper", "1234.56", "2025-11-22T13:04:05.123456Z", connectors.JSON(`{"n":123456,"tags":["a","b"]}`), true},
		Source: connectors.SourceInfo{Connector: "postgres", DB: "shop", Schema: "public", Table: "orders",
			Position: "0/16B3748:3", TxID: 771, TsMs: 1763800000000},
		Tx:   connectors.TxInfo{ID: "771", TotalOrder: 3},
		TsMs: 1763800000123,
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, opt := range []struct {
		name string
		opt  eventjson.Options
	}{{"WithSchema", eventjson.Options{}}, {"OmitSchema", eventjson.Options{OmitSchema: true}}} {
		b.Run(opt.name, func(b *testing.B) {
			ev := benchEvent()
			enc := eventjson.NewEncoder(opt.opt)
			buf, _ := enc.AppendEvent(nil, &ev)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = enc.AppendEvent(buf[:0], &ev)
			}
		})
	}
	b.Run("NoCache", func(b *testing.B) {
		ev := benchEvent()
		buf, _ := eventjson.AppendEvent(nil, &ev, eventjson.Options{})
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = eventjson.AppendEvent(buf[:0], &ev, eventjson.Options{})
		}
	})
	b.Run("EncodingJSON", func(b *testing.B) { // the baseline: a map through encoding/json
		ev := benchEvent()
		m := map[string]any{"op": "c", "before": nil, "after": map[string]any{}, "source": map[string]any{
			"connector": "postgres", "db": "shop", "schema": "public", "table": "orders", "position": "0/16B3748:3", "txId": 771, "ts_ms": 1763800000000, "snapshot": false},
			"transaction": map[string]any{"id": "771", "total_order": 3}, "ts_ms": 1763800000123}
		for i, c := range benchSchema.Columns {
			v := ev.After[i]
			if j, ok := v.(connectors.JSON); ok {
				v = json.RawMessage(j)
			}
			m["after"].(map[string]any)[c.Name] = v
		}
		out, _ := json.Marshal(m)
		b.SetBytes(int64(len(out)))
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(m)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for _, opt := range []struct {
		name string
		opt  eventjson.Options
	}{{"WithSchema", eventjson.Options{}}, {"OmitSchema", eventjson.Options{OmitSchema: true}}} {
		b.Run(opt.name, func(b *testing.B) {
			ev := benchEvent()
			data, _ := eventjson.AppendEvent(nil, &ev, opt.opt)
			d := eventjson.NewDecoder()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("EncodingJSON", func(b *testing.B) { // the baseline: into a map with encoding/json
		ev := benchEvent()
		data, _ := eventjson.AppendEvent(nil, &ev, eventjson.Options{OmitSchema: true})
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A heartbeat has no table, rows or schema; it round-trips with its source
// block and position.
func TestHeartbeatRoundTrip(t *testing.T) {
	ev := connectors.Event{
		Op:       connectors.OpHeartbeat,
		Source:   connectors.SourceInfo{Connector: "postgres", Name: "shop", DB: "shop", TsMs: 1763800000000},
		Position: connectors.TxPosition{Commit: 0x3A1C2F8}.Encode(),
		TsMs:     1763800000123,
	}
	b, err := eventjson.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := eventjson.NewDecoder().Decode(b)
	if err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if got.Op != connectors.OpHeartbeat || got.Schema != nil || got.Before != nil || got.After != nil ||
		got.Source.Connector != "postgres" || got.Source.DB != "shop" || got.Source.Name != "shop" || got.TsMs != ev.TsMs {
		t.Fatalf("decoded %+v from %s", got, b)
	}
	if !bytes.Contains(b, []byte(`"op":"h"`)) {
		t.Errorf("encoded %s; want op h", b)
	}
}
