package pgconv

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tapline/tapline/connectors"
)

type V = connectors.Value

func TestColumnMapping(t *testing.T) {
	mood := TypeInfo{OID: 16500, Schema: "public", Name: "mood", Kind: 'e', Category: 'E', Delim: ','}
	moodArr := TypeInfo{OID: 16499, Schema: "public", Name: "_mood", Kind: 'b', Category: 'A', Elem: 16500, Delim: ','}
	price := TypeInfo{OID: 16510, Schema: "shop", Name: "Price", Kind: 'd', Category: 'N', BaseType: pgtype.NumericOID, BaseTypmod: (10<<16 | 2) + 4, Delim: ','}
	priceArr := TypeInfo{OID: 16509, Schema: "shop", Name: "_Price", Kind: 'b', Category: 'A', Elem: 16510, Delim: ','}
	hstore := TypeInfo{OID: 16600, Schema: "public", Name: "hstore", Kind: 'b', Category: 'U', Delim: ','}
	citext := TypeInfo{OID: 16700, Schema: "ext", Name: "citext", Kind: 'b', Category: 'S', Delim: ','}
	comp := TypeInfo{OID: 16800, Schema: "public", Name: "pair", Kind: 'c', Category: 'C', Delim: ','}
	loop := TypeInfo{OID: 16900, Schema: "public", Name: "loop", Kind: 'd', BaseType: 16900}
	ints := TypeInfo{OID: 17000, Schema: "public", Name: "ints", Kind: 'd', Category: 'A', BaseType: pgtype.Int4ArrayOID, BaseTypmod: -1, Delim: ','}
	intsArr := TypeInfo{OID: 16999, Schema: "public", Name: "_ints", Kind: 'b', Category: 'A', Elem: 17000, Delim: ','}
	types := TypeMap{}
	for _, ti := range []TypeInfo{mood, moodArr, price, priceArr, hstore, citext, comp, loop, ints, intsArr} {
		types[ti.OID] = ti
	}
	tests := []struct {
		oid    uint32
		typmod int32
		typ    connectors.Type
		elem   connectors.Type
		native string
	}{
		{pgtype.Int2OID, -1, connectors.TypeInt16, "", "smallint"},
		{pgtype.Int4OID, -1, connectors.TypeInt32, "", "integer"},
		{pgtype.Int8OID, -1, connectors.TypeInt64, "", "bigint"},
		{pgtype.OIDOID, -1, connectors.TypeInt64, "", "oid"},
		{pgtype.Float4OID, -1, connectors.TypeFloat32, "", "real"},
		{pgtype.Float8OID, -1, connectors.TypeFloat64, "", "double precision"},
		{pgtype.NumericOID, -1, connectors.TypeDecimal, "", "numeric"},
		{pgtype.NumericOID, (10<<16 | 2) + 4, connectors.TypeDecimal, "", "numeric(10,2)"},
		{pgtype.NumericOID, (5<<16 | 0) + 4, connectors.TypeDecimal, "", "numeric(5,0)"},
		{pgtype.NumericOID, (5<<16 | (-2 & 0x7ff)) + 4, connectors.TypeDecimal, "", "numeric(5,-2)"},
		{moneyOID, -1, connectors.TypeText, "", "money"},
		{pgtype.BoolOID, -1, connectors.TypeBool, "", "boolean"},
		{pgtype.TextOID, -1, connectors.TypeString, "", "text"},
		{pgtype.VarcharOID, 44, connectors.TypeString, "", "character varying(40)"},
		{pgtype.VarcharOID, -1, connectors.TypeString, "", "character varying"},
		{pgtype.BPCharOID, 5, connectors.TypeString, "", "character(1)"},
		{pgtype.BPCharOID, -1, connectors.TypeString, "", "bpchar"},
		{pgtype.NameOID, -1, connectors.TypeString, "", "name"},
		{pgtype.QCharOID, -1, connectors.TypeString, "", `"char"`},
		{pgtype.ByteaOID, -1, connectors.TypeBytes, "", "bytea"},
		{pgtype.UUIDOID, -1, connectors.TypeUUID, "", "uuid"},
		{pgtype.JSONOID, -1, connectors.TypeJSON, "", "json"},
		{pgtype.JSONBOID, -1, connectors.TypeJSON, "", "jsonb"},
		{pgtype.DateOID, -1, connectors.TypeDate, "", "date"},
		{pgtype.TimeOID, -1, connectors.TypeTime, "", "time without time zone"},
		{pgtype.TimeOID, 0, connectors.TypeTime, "", "time(0) without time zone"},
		{pgtype.TimetzOID, 3, connectors.TypeTime, "", "time(3) with time zone"},
		{pgtype.TimestampOID, 6, connectors.TypeTimestamp, "", "timestamp(6) without time zone"},
		{pgtype.TimestamptzOID, 3, connectors.TypeTimestampTZ, "", "timestamp(3) with time zone"},
		{pgtype.TimestamptzOID, -1, connectors.TypeTimestampTZ, "", "timestamp with time zone"},
		{pgtype.IntervalOID, -1, connectors.TypeInterval, "", "interval"},
		{pgtype.IntervalOID, 0x7fff<<16 | 3, connectors.TypeInterval, "", "interval(3)"},
		{pgtype.IntervalOID, (1<<3|1<<10|1<<11|1<<12)<<16 | 0xffff, connectors.TypeInterval, "", "interval day to second"},
		{pgtype.IntervalOID, (1<<3|1<<10|1<<11|1<<12)<<16 | 2, connectors.TypeInterval, "", "interval day to second(2)"},
		{pgtype.IntervalOID, (1<<2|1<<1)<<16 | 0xffff, connectors.TypeInterval, "", "interval year to month"},
		{pgtype.BitOID, 8, connectors.TypeText, "", "bit(8)"},
		{pgtype.BitOID, -1, connectors.TypeText, "", `"bit"`},
		{pgtype.VarbitOID, 16, connectors.TypeText, "", "bit varying(16)"},
		{pgtype.InetOID, -1, connectors.TypeText, "", "inet"},
		{pgtype.Int4rangeOID, -1, connectors.TypeText, "", "int4range"},
		{pgtype.Int4ArrayOID, -1, connectors.TypeArray, connectors.TypeInt32, "integer[]"},
		{pgtype.NumericArrayOID, (10<<16 | 2) + 4, connectors.TypeArray, connectors.TypeDecimal, "numeric(10,2)[]"},
		{pgtype.VarcharArrayOID, 44, connectors.TypeArray, connectors.TypeString, "character varying(40)[]"},
		{pgtype.BoxArrayOID, -1, connectors.TypeArray, connectors.TypeText, "box[]"},
		{16500, -1, connectors.TypeString, "", "public.mood"},
		{16499, -1, connectors.TypeArray, connectors.TypeString, "public.mood[]"},
		{16510, -1, connectors.TypeDecimal, "", `shop."Price"`},
		{16509, -1, connectors.TypeArray, connectors.TypeDecimal, `shop."Price"[]`},
		{16600, -1, connectors.TypeText, "", "public.hstore"},
		{16700, -1, connectors.TypeString, "", "ext.citext"},
		{16800, -1, connectors.TypeText, "", "public.pair"},
		{16900, -1, connectors.TypeText, "", "public.loop"}, // a cycle ends as text
		{17000, -1, connectors.TypeArray, connectors.TypeInt32, "public.ints"},
		{16999, -1, connectors.TypeArray, connectors.TypeText, "public.ints[]"},
		{99999, -1, connectors.TypeText, "", "99999"},
	}
	for _, tt := range tests {
		c := NewColumn("c", tt.oid, tt.typmod, types.Lookup)
		if c.Type != tt.typ || c.Elem != tt.elem || c.Native != tt.native || c.Name != "c" || !c.Nullable {
			t.Errorf("NewColumn(%d, %d) = %+v, want type %s elem %q native %q", tt.oid, tt.typmod, c.Column, tt.typ, tt.elem, tt.native)
		}
	}
	if c := NewColumn("c", 16500, -1, nil); c.Type != connectors.TypeText || c.Native != "16500" {
		t.Errorf("nil lookup: %+v", c.Column)
	}
	c := NewColumn("c", 17000, -1, types.Lookup)
	if v, err := c.Decode([]byte("{1,2}")); err != nil || !same(v, []V{int64(1), int64(2)}) {
		t.Errorf("domain over int[]: %#v, %v", v, err)
	}
	c = NewColumn("c", 16510, -1, types.Lookup)
	if v, err := c.Decode([]byte("12.50")); err != nil || v != "12.50" {
		t.Errorf("domain over numeric: %#v, %v", v, err)
	}
}

func col(oid uint32) Column { return NewColumn("c", oid, -1, nil) }

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func hexOf(b []byte) string {
	const h = "0123456789abcdef"
	var sb strings.Builder
	sb.WriteString(`\x`)
	for _, c := range b {
		sb.WriteByte(h[c>>4])
		sb.WriteByte(h[c&15])
	}
	return sb.String()
}

func escOf(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c == '\\':
			sb.WriteString(`\\`)
		case c < 0x20 || c > 0x7e:
			sb.WriteByte('\\')
			sb.WriteByte('0' + c>>6)
			sb.WriteByte('0' + c>>3&7)
			sb.WriteByte('0' + c&7)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

func TestDecode(t *testing.T) {
	tests := []struct {
		oid  uint32
		text string
		want V
	}{
		{pgtype.Int2OID, "-32768", int64(-32768)},
		{pgtype.Int2OID, "32767", int64(32767)},
		{pgtype.Int4OID, "-2147483648", int64(-2147483648)},
		{pgtype.Int4OID, "0", int64(0)},
		{pgtype.Int8OID, "-9223372036854775808", int64(math.MinInt64)},
		{pgtype.Int8OID, "9223372036854775807", int64(math.MaxInt64)},
		{pgtype.OIDOID, "4294967295", int64(4294967295)},
		{pgtype.Float8OID, "1.5", 1.5},
		{pgtype.Float8OID, "1e+300", 1e300},
		{pgtype.Float8OID, "Infinity", math.Inf(1)},
		{pgtype.Float8OID, "-Infinity", math.Inf(-1)},
		{pgtype.Float8OID, "2.2250738585072014e-308", 2.2250738585072014e-308},
		{pgtype.Float8OID, "5e-324", 5e-324},
		{pgtype.Float4OID, "0.1", 0.1},
		{pgtype.Float4OID, "3.4028235e+38", 3.4028235e+38},
		{pgtype.NumericOID, "123456789012345678901234567890.123456789012345678901234567890", "123456789012345678901234567890.123456789012345678901234567890"},
		{pgtype.NumericOID, "NaN", "NaN"},
		{pgtype.NumericOID, "-Infinity", "-Infinity"},
		{pgtype.NumericOID, "-0.00", "-0.00"},
		{moneyOID, "-$1,234.56", "-$1,234.56"},
		{pgtype.BoolOID, "t", true},
		{pgtype.BoolOID, "f", false},
		{pgtype.TextOID, "", ""},
		{pgtype.TextOID, "é😀\x00'\"\\", "é😀\x00'\"\\"},
		{pgtype.BPCharOID, "ab   ", "ab   "},
		{pgtype.ByteaOID, `\x`, []byte{}},
		{pgtype.ByteaOID, `\x00FFab`, []byte{0, 0xff, 0xab}},
		{pgtype.ByteaOID, hexOf(allBytes()), allBytes()},
		{pgtype.ByteaOID, escOf(allBytes()), allBytes()},
		{pgtype.ByteaOID, `a\\b\000`, []byte("a\\b\x00")},
		{pgtype.UUIDOID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{pgtype.JSONBOID, `{"a": [1, 2.50]}`, connectors.JSON(`{"a": [1, 2.50]}`)},
		{pgtype.DateOID, "2025-11-22", "2025-11-22"},
		{pgtype.DateOID, "0044-03-15 BC", "-0043-03-15"},
		{pgtype.DateOID, "0001-01-01 BC", "0000-01-01"},
		{pgtype.DateOID, "4713-01-01 BC", "-4712-01-01"},
		{pgtype.DateOID, "5874897-12-31", "+5874897-12-31"},
		{pgtype.DateOID, "infinity", "infinity"},
		{pgtype.DateOID, "-infinity", "-infinity"},
		{pgtype.TimeOID, "24:00:00", "24:00:00"},
		{pgtype.TimetzOID, "10:11:12.5+05:45:30", "10:11:12.5+05:45:30"},
		{pgtype.TimestampOID, "2025-11-22 10:11:12.123456", "2025-11-22T10:11:12.123456"},
		{pgtype.TimestampOID, "0044-03-15 10:00:00 BC", "-0043-03-15T10:00:00"},
		{pgtype.TimestampOID, "-infinity", "-infinity"},
		{pgtype.TimestamptzOID, "2025-11-22 10:11:12.5+01", "2025-11-22T09:11:12.5Z"},
		{pgtype.TimestamptzOID, "2025-11-22 10:11:12+05:30", "2025-11-22T04:41:12Z"},
		{pgtype.TimestamptzOID, "2025-11-22 10:11:12.000001+05:45:30", "2025-11-22T04:25:42.000001Z"},
		{pgtype.TimestamptzOID, "2025-01-01 03:00:00+05:45", "2024-12-31T21:15:00Z"},
		{pgtype.TimestamptzOID, "2024-02-29 23:30:00-02", "2024-03-01T01:30:00Z"},
		{pgtype.TimestamptzOID, "1850-01-01 00:00:00+05:41:16", "1849-12-31T18:18:44Z"},
		{pgtype.TimestamptzOID, "0001-01-01 00:00:00+05:30", "0000-12-31T18:30:00Z"},
		{pgtype.TimestamptzOID, "0044-03-15 10:00:00+00 BC", "-0043-03-15T10:00:00Z"},
		{pgtype.TimestamptzOID, "294277-01-01 05:44:59.999999+05:45", "+294276-12-31T23:59:59.999999Z"},
		{pgtype.TimestamptzOID, "infinity", "infinity"},
		{pgtype.IntervalOID, "P1Y2M3DT4H5M6.5S", "P1Y2M3DT4H5M6.5S"},
		{pgtype.InetOID, "192.168.0.1/24", "192.168.0.1/24"},
		{pgtype.Int4ArrayOID, "{}", []V{}},
		{pgtype.Int4ArrayOID, "{1,2,NULL}", []V{int64(1), int64(2), nil}},
		{pgtype.Int4ArrayOID, "{{1,2},{3,4}}", []V{[]V{int64(1), int64(2)}, []V{int64(3), int64(4)}}},
		{pgtype.Int4ArrayOID, "[0:1]={1,2}", []V{int64(1), int64(2)}},
		{pgtype.Int4ArrayOID, "[-2:-1][1:1]={{5},{6}}", []V{[]V{int64(5)}, []V{int64(6)}}},
		{pgtype.TextArrayOID, `{"a,b","c\"d","","NULL",NULL,null," x","a\\b",é😀}`, []V{"a,b", `c"d`, "", "NULL", nil, nil, " x", `a\b`, "é😀"}},
		{pgtype.TextArrayOID, `{ a\,b , c }`, []V{"a,b", "c"}},
		{pgtype.ByteaArrayOID, `{"\\x00ff",NULL}`, []V{[]byte{0, 0xff}, nil}},
		{pgtype.JSONBArrayOID, `{"{\"a\": 1}"}`, []V{connectors.JSON(`{"a": 1}`)}},
		{pgtype.TimestamptzArrayOID, `{"2025-11-22 10:11:12+01",infinity}`, []V{"2025-11-22T09:11:12Z", "infinity"}},
		{pgtype.BoxArrayOID, `{(1,1),(0,0);(2,2),(1,1)}`, []V{"(1,1),(0,0)", "(2,2),(1,1)"}},
		{pgtype.Float8ArrayOID, `{NaN,-Infinity,-0}`, []V{math.NaN(), math.Inf(-1), math.Copysign(0, -1)}},
		{pgtype.BoolArrayOID, `{{{t}},{{f}}}`, []V{[]V{[]V{true}}, []V{[]V{false}}}},
	}
	for _, tt := range tests {
		c := col(tt.oid)
		got, err := c.Decode([]byte(tt.text))
		if err != nil {
			t.Errorf("%s %q: %v", c.Native, tt.text, err)
			continue
		}
		if !same(got, tt.want) {
			t.Errorf("%s %q = %#v, want %#v", c.Native, tt.text, got, tt.want)
		}
	}
}

// same is reflect.DeepEqual that also tells NaN from NaN and -0 from 0.
func same(a, b V) bool {
	if fa, ok := a.(float64); ok {
		fb, ok := b.(float64)
		return ok && (fa == fb && math.Signbit(fa) == math.Signbit(fb) || math.IsNaN(fa) && math.IsNaN(fb))
	}
	if la, ok := a.([]V); ok {
		lb, ok := b.([]V)
		if !ok || len(la) != len(lb) || (la == nil) != (lb == nil) {
			return false
		}
		for i := range la {
			if !same(la[i], lb[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func TestDecodeFloat(t *testing.T) {
	c := col(pgtype.Float8OID)
	v, _ := c.Decode([]byte("NaN"))
	if !math.IsNaN(v.(float64)) {
		t.Errorf("NaN: %v", v)
	}
	v, _ = c.Decode([]byte("-0"))
	if f := v.(float64); f != 0 || !math.Signbit(f) {
		t.Errorf("-0: %v", v)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		oid  uint32
		text string
	}{
		{pgtype.Int4OID, ""},
		{pgtype.Int4OID, "1.5"},
		{pgtype.Int4OID, "-"},
		{pgtype.Int8OID, "9223372036854775808"},
		{pgtype.Int8OID, "-9223372036854775809"},
		{pgtype.Int8OID, "99999999999999999999"},
		{pgtype.Float8OID, "abc"},
		{pgtype.BoolOID, "true"},
		{pgtype.ByteaOID, `\x0`},
		{pgtype.ByteaOID, `\xzz`},
		{pgtype.ByteaOID, `a\b`},
		{pgtype.ByteaOID, `\400`},
		{pgtype.DateOID, "22/11/2025"},
		{pgtype.DateOID, "2025-13-01"},
		{pgtype.TimestampOID, "2025-11-22"},
		{pgtype.TimestampOID, "2025-11-22 10:11"},
		{pgtype.TimestamptzOID, "2025-11-22 10:11:12"},
		{pgtype.TimestamptzOID, "2025-11-22 10:11:12+5"},
		{pgtype.TimestamptzOID, "2025-11-22 10:11:12+05:60"},
		{pgtype.TimestamptzOID, "2025-11-22 10:11:12. +01"},
		{pgtype.Int4ArrayOID, ""},
		{pgtype.Int4ArrayOID, "{"},
		{pgtype.Int4ArrayOID, "{1,}"},
		{pgtype.Int4ArrayOID, "{1,2}x"},
		{pgtype.Int4ArrayOID, "{a}"},
		{pgtype.Int4ArrayOID, "[1:2]{1,2}"},
		{pgtype.TextArrayOID, `{"abc}`},
		{pgtype.TextArrayOID, `{a"b"}`},
		{pgtype.TextArrayOID, `{{{{{{{1}}}}}}}`},
	}
	for _, tt := range tests {
		c := col(tt.oid)
		if v, err := c.Decode([]byte(tt.text)); err == nil {
			t.Errorf("%s %q = %#v, want an error", c.Native, tt.text, v)
		}
	}
}

func TestDecodeTuple(t *testing.T) {
	c := col(pgtype.Int4OID)
	if v, err := c.DecodeTuple('n', nil); v != nil || err != nil {
		t.Errorf("null: %v %v", v, err)
	}
	if v, err := c.DecodeTuple('u', nil); !connectors.IsUnchanged(v) || err != nil {
		t.Errorf("toast: %v %v", v, err)
	}
	if v, err := c.DecodeTuple('t', []byte("7")); v != int64(7) || err != nil {
		t.Errorf("text: %v %v", v, err)
	}
	if _, err := c.DecodeTuple('b', []byte{0, 0, 0, 7}); err == nil {
		t.Error("binary: no error")
	}
}

func TestDecodeDoesNotRetain(t *testing.T) {
	for _, oid := range []uint32{pgtype.TextOID, pgtype.JSONOID, pgtype.ByteaOID, pgtype.TextArrayOID} {
		buf := []byte(`{"\\x01"}`)
		if oid == pgtype.ByteaOID {
			buf = []byte(`\x01`)
		}
		c := col(oid)
		v, err := c.Decode(buf)
		if err != nil {
			t.Fatal(err)
		}
		before := describe(v)
		for i := range buf {
			buf[i] = 'X'
		}
		if after := describe(v); after != before {
			t.Errorf("%s: value changed with the input buffer: %s → %s", c.Native, before, after)
		}
	}
}

func describe(v V) string {
	var b bytes.Buffer
	b.WriteString(reflect.TypeOf(v).String())
	switch x := v.(type) {
	case []V:
		for _, e := range x {
			b.WriteString(describe(e))
		}
	case []byte:
		b.Write(x)
	case connectors.JSON:
		b.Write(x)
	case string:
		b.WriteString(x)
	}
	return b.String()
}

func TestPostgresDate(t *testing.T) {
	tests := map[string]string{
		"2025-11-22":           "2025-11-22",
		"-0043-03-15":          "0044-03-15 BC",
		"0000-12-31T18:30:00Z": "0001-12-31T18:30:00Z BC",
		"-4712-01-01T00:00:00": "4713-01-01T00:00:00 BC",
		"+294276-12-31":        "294276-12-31",
		"infinity":             "infinity",
		"-infinity":            "-infinity",
		"-12345-01-01":         "12346-01-01 BC",
	}
	for in, want := range tests {
		if got := PostgresDate(in); got != want {
			t.Errorf("PostgresDate(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDDLType(t *testing.T) {
	tests := []struct {
		c    connectors.Column
		want string
	}{
		{NewColumn("a", pgtype.NumericOID, (10<<16|2)+4, nil).Column, "numeric(10,2)"},
		{NewColumn("a", pgtype.TimestamptzOID, 3, nil).Column, "timestamp(3) with time zone"},
		{NewColumn("a", pgtype.VarcharArrayOID, 44, nil).Column, "character varying(40)[]"},
		{NewColumn("a", pgtype.IntervalOID, (1<<3|1<<10|1<<11|1<<12)<<16|2, nil).Column, "interval day to second(2)"},
		{NewColumn("a", pgtype.BitOID, -1, nil).Column, `"bit"`},
		{NewColumn("a", pgtype.BPCharOID, -1, nil).Column, "bpchar"},
		{NewColumn("a", pgtype.QCharOID, -1, nil).Column, `"char"`},
		{NewColumn("a", pgtype.Int4rangeOID, -1, nil).Column, "int4range"},
		{NewColumn("a", pgtype.JSONOID, -1, nil).Column, "json"},
		{connectors.Column{Type: connectors.TypeDecimal, Native: `shop."Price"`}, "numeric"},
		{connectors.Column{Type: connectors.TypeString, Native: "public.mood"}, "text"},
		{connectors.Column{Type: connectors.TypeArray, Elem: connectors.TypeString, Native: "public.mood[]"}, "text[]"},
		{connectors.Column{Type: connectors.TypeUint64, Native: "bigint unsigned"}, "numeric(20,0)"},
		{connectors.Column{Type: connectors.TypeDecimal, Native: "decimal(65,30)"}, "numeric"},
		{connectors.Column{Type: connectors.TypeJSON, Native: "json"}, "json"},
		{connectors.Column{Type: connectors.TypeJSON}, "jsonb"},
		{connectors.Column{Type: connectors.TypeBytes, Native: "blob"}, "bytea"},
		{connectors.Column{Type: connectors.TypeTimestampTZ}, "timestamptz"},
		{connectors.Column{Type: connectors.TypeArray, Elem: connectors.TypeInt64}, "bigint[]"},
		{connectors.Column{Type: connectors.TypeArray, Elem: connectors.TypeInt64, Native: "integer[]"}, "bigint[]"}, // disagrees
		{connectors.Column{Type: connectors.TypeInt32, Native: "integer; drop table x"}, "integer"},
		{connectors.Column{Type: connectors.TypeDecimal, Native: "numeric(10,2); drop"}, "numeric"},
		{connectors.Column{Type: connectors.TypeDecimal, Native: "numeric(10,2)(3)"}, "numeric"},
		{connectors.Column{Type: connectors.TypeText}, "text"},
		{connectors.Column{Type: connectors.TypeTimestampTZ, Native: "timestamp with time zone(3)"}, "timestamptz"},
		{connectors.Column{Type: connectors.TypeInt32, Native: "integer(3)"}, "integer"},
		{connectors.Column{Type: connectors.TypeString, Native: "character varying(4,2)"}, "text"},
		{connectors.Column{Type: connectors.TypeDecimal, Native: "numeric(5,-2)"}, "numeric(5,-2)"},
		{connectors.Column{Type: connectors.TypeInterval, Native: "interval hour to minute"}, "interval hour to minute"},
		{connectors.Column{Type: connectors.TypeInterval, Native: "interval fortnight"}, "interval"},
		{connectors.Column{Type: "weird"}, "text"},
	}
	for _, tt := range tests {
		if got := DDLType(tt.c); got != tt.want {
			t.Errorf("DDLType(%+v) = %q, want %q", tt.c, got, tt.want)
		}
	}
}

func TestScanTypeInfo(t *testing.T) {
	row := []any{int64(16500), "public", "mood", "e", "E", int64(0), int32(-1), int64(0), ","}
	ti, err := ScanTypeInfo(func(dest ...any) error {
		for i, d := range dest {
			reflect.ValueOf(d).Elem().Set(reflect.ValueOf(row[i]))
		}
		return nil
	})
	want := TypeInfo{OID: 16500, Schema: "public", Name: "mood", Kind: 'e', Category: 'E', BaseTypmod: -1, Delim: ','}
	if err != nil || ti != want {
		t.Errorf("ScanTypeInfo = %+v, %v; want %+v", ti, err, want)
	}
}
