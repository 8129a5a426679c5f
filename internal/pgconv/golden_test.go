package pgconv

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tapline/tapline/connectors"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// goldenCases are values as pgoutput sends them, one per line of
// testdata/decode.golden with the column they decode for and the JSON an
// event would carry.
var goldenCases = []struct {
	oid    uint32
	typmod int32
	text   string
}{
	{pgtype.Int2OID, -1, "-32768"},
	{pgtype.Int4OID, -1, "2147483647"},
	{pgtype.Int8OID, -1, "-9223372036854775808"},
	{pgtype.OIDOID, -1, "4294967295"},
	{pgtype.Float4OID, -1, "0.1"},
	{pgtype.Float8OID, -1, "-0"},
	{pgtype.Float8OID, -1, "NaN"},
	{pgtype.Float8OID, -1, "-Infinity"},
	{pgtype.NumericOID, (40<<16 | 30) + 4, "1234567890.123456789012345678901234567890"},
	{pgtype.NumericOID, -1, "NaN"},
	{moneyOID, -1, "$1,234.56"},
	{pgtype.BoolOID, -1, "t"},
	{pgtype.TextOID, -1, "é😀 \"quoted\"\n"},
	{pgtype.BPCharOID, 9, "ab   "},
	{pgtype.ByteaOID, -1, `\x00ff10`},
	{pgtype.UUIDOID, -1, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{pgtype.JSONBOID, -1, `{"a": [1, 2.50]}`},
	{pgtype.DateOID, -1, "0044-03-15 BC"},
	{pgtype.DateOID, -1, "infinity"},
	{pgtype.TimeOID, 3, "10:11:12.123"},
	{pgtype.TimetzOID, -1, "10:11:12+05:45"},
	{pgtype.TimestampOID, -1, "2025-11-22 10:11:12.123456"},
	{pgtype.TimestamptzOID, -1, "2025-11-22 10:11:12.5+05:45"},
	{pgtype.TimestamptzOID, -1, "1850-01-01 00:00:00+05:41:16"},
	{pgtype.TimestamptzOID, -1, "294277-01-01 05:44:59.999999+05:45"},
	{pgtype.IntervalOID, (1<<3|1<<10|1<<11|1<<12)<<16 | 2, "P1DT2H3M4.5S"},
	{pgtype.InetOID, -1, "192.168.0.1/24"},
	{pgtype.BitOID, 8, "10101010"},
	{pgtype.Int4rangeOID, -1, "[1,10)"},
	{pgtype.PointOID, -1, "(1.5,-2)"},
	{pgtype.Int4ArrayOID, -1, "{{1,2},{3,NULL}}"},
	{pgtype.Int4ArrayOID, -1, "[0:1]={1,2}"},
	{pgtype.TextArrayOID, -1, `{"a,b","c\"d","",NULL,"NULL"}`},
	{pgtype.TimestamptzArrayOID, -1, `{"2025-11-22 10:11:12+01",infinity}`},
	{pgtype.ByteaArrayOID, -1, `{"\\x00ff"}`},
	{pgtype.JSONArrayOID, -1, `{"{\"a\": 1}",null}`},
}

// eventJSON renders v as event JSON would: bytes as base64, JSON embedded,
// NaN and infinities (which JSON has no numbers for) as strings.
func eventJSON(v V) any {
	switch x := v.(type) {
	case connectors.JSON:
		return json.RawMessage(x)
	case float64:
		switch {
		case math.IsNaN(x):
			return "NaN"
		case math.IsInf(x, 1):
			return "Infinity"
		case math.IsInf(x, -1):
			return "-Infinity"
		}
	case []V:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = eventJSON(e)
		}
		return out
	}
	return v
}

func TestGolden(t *testing.T) {
	var b bytes.Buffer
	for _, g := range goldenCases {
		c := NewColumn("c", g.oid, g.typmod, nil)
		v, err := c.Decode([]byte(g.text))
		if err != nil {
			t.Fatalf("%s %q: %v", c.Native, g.text, err)
		}
		j, err := json.Marshal(eventJSON(v))
		if err != nil {
			t.Fatalf("%s %q: %v", c.Native, g.text, err)
		}
		typ := string(c.Type)
		if c.Elem != "" {
			typ += "<" + string(c.Elem) + ">"
		}
		b.WriteString(c.Native + " | " + strconv.Quote(g.text) + " → " + typ + " " + string(j) + "\n")
	}
	path := filepath.Join("testdata", "decode.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("decoded values differ from %s (go test -update rewrites it):\n%s", path, b.String())
	}
}
