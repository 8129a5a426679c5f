package mysqlconv

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

func TestDecimal(t *testing.T) {
	for _, c := range []struct {
		hex         string
		prec, scale int
		want        string
	}{
		// The examples of MySQL's decimal.c documentation.
		{"810DFB38D204D2", 14, 4, "1234567890.1234"},
		{"7EF204C72DFB2D", 14, 4, "-1234567890.1234"},
		{"80000000", 8, 0, "0"},
		{"8000", 4, 2, "0.00"},
		{"7FFE", 4, 2, "-0.01"},
		{"7FFF", 4, 2, "0.00"}, // negative zero prints as zero
	} {
		b, _ := hex.DecodeString(c.hex)
		got, n, err := appendDecimal(nil, b, c.prec, c.scale)
		if err != nil || string(got) != c.want || n != decimalSize(c.prec, c.scale) {
			t.Errorf("decimal(%d,%d) %s = %q (%d bytes), %v; want %q", c.prec, c.scale, c.hex, got, n, err, c.want)
		}
	}
	if _, _, err := appendDecimal(nil, []byte{0x80}, 14, 4); err == nil {
		t.Error("a short decimal decoded")
	}
	if _, _, err := appendDecimal(nil, make([]byte, 40), 70, 4); err == nil {
		t.Error("decimal(70,4) decoded")
	}
}

func TestCivilMatchesTime(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		sec := rnd.Int64N(1 << 32)
		y, m, d, h, mi, s := civil(sec)
		got := fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d", y, m, d, h, mi, s)
		want := time.Unix(sec, 0).UTC().Format("2006-01-02T15:04:05")
		if got != want {
			t.Fatalf("civil(%d) = %s, want %s", sec, got, want)
		}
	}
}

func TestTemporalBinlogValues(t *testing.T) {
	d := &RowDecoder{}
	// datetime(6) 2024-02-29 13:14:15.123456: (year*13+month)<<22 | day<<17 | hour<<12 | min<<6 | sec, plus 0x8000000000.
	ymd := int64(2024*13+2)<<5 | 29
	packed := ymd<<17 | 13<<12 | 14<<6 | 15
	b := make([]byte, 8)
	v := uint64(packed + 0x8000000000)
	for i := 0; i < 5; i++ {
		b[i] = byte(v >> (8 * (4 - i)))
	}
	b[5], b[6], b[7] = 0x01, 0xE2, 0x40 // 123456
	got, n, err := d.datetime(&Column{Kind: KindDatetime, FSP: 6}, b)
	if err != nil || got != "2024-02-29T13:14:15.123456" || n != 8 {
		t.Errorf("datetime(6) = %v (%d bytes), %v", got, n, err)
	}
	// time(2) -00:00:01.10 (MySQL's own example of a negative fraction).
	got, _, err = d.time(&Column{Kind: KindTime, FSP: 2}, []byte{0x7F, 0xFF, 0xFE, 0xF6})
	if err != nil || got != "-00:00:01.10" {
		t.Errorf("time(2) = %v, %v", got, err)
	}
	// timestamp(3) 1970-01-01 00:00:01.5 UTC.
	got, _, err = d.timestamp(&Column{Kind: KindTimestamp, FSP: 3}, []byte{0, 0, 0, 1, 0x13, 0x88})
	if err != nil || got != "1970-01-01T00:00:01.500Z" {
		t.Errorf("timestamp(3) = %v, %v", got, err)
	}
	d.Opts.ZeroDates = ZeroDatesNull
	if got, _, _ := d.timestamp(&Column{Kind: KindTimestamp}, []byte{0, 0, 0, 0}); got != nil {
		t.Errorf("zero timestamp with ZeroDatesNull = %v", got)
	}
	if got := d.date(0, 0, 0); got != nil {
		t.Errorf("zero date with ZeroDatesNull = %v", got)
	}
}

func TestGeometryText(t *testing.T) {
	wkb := func(srid uint32, parts ...any) []byte {
		b := binary.LittleEndian.AppendUint32(nil, srid)
		for _, p := range parts {
			switch x := p.(type) {
			case byte:
				b = append(b, x)
			case uint32:
				b = binary.LittleEndian.AppendUint32(b, x)
			case float64:
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
			}
		}
		return b
	}
	for _, c := range []struct {
		v    []byte
		want string
	}{
		{wkb(0, byte(1), uint32(1), 1.5, -2.0), "POINT(1.5 -2)"},
		{wkb(4326, byte(1), uint32(2), uint32(2), 0.0, 0.0, 1e10, 1e-5), "SRID=4326;LINESTRING(0 0,10000000000 0.00001)"},
		{wkb(0, byte(1), uint32(4), uint32(2), byte(1), uint32(1), 1.0, 2.0, byte(1), uint32(1), 3.0, 4.0), "MULTIPOINT((1 2),(3 4))"},
		{wkb(0, byte(1), uint32(7), uint32(1), byte(1), uint32(1), 1.0, 2.0), "GEOMETRYCOLLECTION(POINT(1 2))"},
		{wkb(0, byte(1), uint32(9)), "HEX:000000000109000000"},
		{[]byte{1, 2}, "HEX:0102"},
	} {
		if got := geometryText(c.v); got != c.want {
			t.Errorf("geometryText(%x) = %q, want %q", c.v, got, c.want)
		}
	}
}

func FuzzGeometryText(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 7, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) { geometryText(b) })
}

func TestCharsets(t *testing.T) {
	latin1 := CharsetByName("latin1", 0)
	if got := latin1.Decode([]byte{'a', 0x80, 0x81, 0xE9, 0xFF}); got != "a€\u0081éÿ" {
		t.Errorf("latin1 = %q", got)
	}
	if got := CharsetByName("utf16", 0).Decode([]byte{0xD8, 0x3D, 0xDE, 0x00, 0, 'x'}); got != "😀x" {
		t.Errorf("utf16 = %q", got)
	}
	if got := CharsetByName("utf16le", 0).Decode([]byte{'x', 0}); got != "x" {
		t.Errorf("utf16le = %q", got)
	}
	if got := CharsetByName("utf32", 0).Decode([]byte{0, 1, 0xF6, 0x00}); got != "😀" {
		t.Errorf("utf32 = %q", got)
	}
	if got := CharsetByName("cp1251", 0).Decode([]byte{0xCF}); got != "П" {
		t.Errorf("cp1251 = %q", got)
	}
	if c := CharsetByName("armscii8", 1); c.Known() || !c.IsBinary() {
		t.Errorf("an unknown charset must be kept as bytes")
	}
	cs := DefaultCharsets()
	if cs.Lookup(45).Name != "utf8mb4" || cs.Lookup(63) != Binary || cs.Lookup(99999).Known() || cs.MaxLen("utf8mb4") != 4 {
		t.Errorf("charset lookups")
	}
}

func TestParseLabels(t *testing.T) {
	got, err := parseLabels(`enum('a','it''s','x,y','back\\slash','')`)
	if err != nil || fmt.Sprintf("%q", got) != `["a" "it's" "x,y" "back\\slash" ""]` {
		t.Errorf("parseLabels = %q, %v", got, err)
	}
	for _, bad := range []string{"enum", "enum('a'", "enum('a' 'b')", "enum(a)"} {
		if _, err := parseLabels(bad); err == nil {
			t.Errorf("parseLabels(%q) succeeded", bad)
		}
	}
}

// The same column from a TABLE_MAP event and from information_schema gives
// the same tapline column.
func TestBinlogAndInfoColumnsAgree(t *testing.T) {
	cs := DefaultCharsets()
	for _, c := range []struct {
		b BinlogColumn
		i InfoColumn
	}{
		{BinlogColumn{Name: "a", Type: TypeLongLong, Unsigned: true}, InfoColumn{Name: "a", DataType: "bigint", ColumnType: "bigint(20) unsigned"}},
		{BinlogColumn{Name: "a", Type: TypeNewDecimal, Meta: 65<<8 | 30}, InfoColumn{Name: "a", DataType: "decimal", Precision: 65, Scale: 30}},
		{BinlogColumn{Name: "a", Type: TypeVarchar, Meta: 1020, Collation: 45}, InfoColumn{Name: "a", DataType: "varchar", CharMaxLen: 255, Charset: "utf8mb4"}},
		{BinlogColumn{Name: "a", Type: TypeString, Meta: uint16(TypeString)<<8 | 40, Collation: 45}, InfoColumn{Name: "a", DataType: "char", CharMaxLen: 10, Charset: "utf8mb4"}},
		{BinlogColumn{Name: "a", Type: TypeString, Meta: uint16(TypeString)<<8 | 16, Collation: 63}, InfoColumn{Name: "a", DataType: "binary", CharMaxLen: 16}},
		{BinlogColumn{Name: "a", Type: TypeString, Meta: uint16(TypeEnum)<<8 | 1, Collation: 8, Labels: []string{"a", "\xe9"}}, InfoColumn{Name: "a", DataType: "enum", ColumnType: "enum('a','é')", Charset: "latin1"}},
		{BinlogColumn{Name: "a", Type: TypeBlob, Meta: 4, Collation: 46}, InfoColumn{Name: "a", DataType: "longtext", Charset: "utf8mb4"}},
		{BinlogColumn{Name: "a", Type: TypeDatetime2, Meta: 6}, InfoColumn{Name: "a", DataType: "datetime", FSP: 6}},
		{BinlogColumn{Name: "a", Type: TypeBit, Meta: 1<<8 | 2}, InfoColumn{Name: "a", DataType: "bit", Precision: 10}},
		{BinlogColumn{Name: "a", Type: TypeGeometry, Meta: 4, Geometry: 1}, InfoColumn{Name: "a", DataType: "point"}},
	} {
		bc, err := ColumnFromBinlog(c.b, cs)
		if err != nil {
			t.Fatal(err)
		}
		ic, err := ColumnFromInfo(c.i, nil)
		if err != nil {
			t.Fatal(err)
		}
		if bc.Connector() != ic.Connector() {
			t.Errorf("binlog %+v\n   info %+v", bc.Connector(), ic.Connector())
		}
	}
}

func rowImage(nulls byte, vals ...[]byte) []byte {
	b := []byte{nulls}
	for _, v := range vals {
		b = append(b, v...)
	}
	return b
}

func TestRowDecoder(t *testing.T) {
	cs := DefaultCharsets()
	var cols []Column
	for _, b := range []BinlogColumn{
		{Name: "id", Type: TypeLong},
		{Name: "name", Type: TypeVarchar, Meta: 40, Collation: 8},
		{Name: "e", Type: TypeString, Meta: uint16(TypeEnum)<<8 | 1, Collation: 45, Labels: []string{"x", "y"}},
		{Name: "big", Type: TypeLongLong, Unsigned: true},
	} {
		c, err := ColumnFromBinlog(b, cs)
		if err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	d := &RowDecoder{Cols: cols}
	data := rowImage(0, []byte{0xFE, 0xFF, 0xFF, 0xFF}, []byte{3, 'c', 'a', 0xE9}, []byte{2}, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	row := make([]connectors.Value, 4)
	n, err := d.Decode(data, []byte{0x0F}, row)
	if err != nil || n != len(data) || fmt.Sprintf("%#v", row) != `[]interface {}{-2, "caé", "y", 0xffffffffffffffff}` {
		t.Fatalf("Decode = %#v (%d of %d bytes), %v", row, n, len(data), err)
	}
	// Column 3 absent (a minimal row image) and column 1 NULL.
	data = rowImage(0x02, []byte{1, 0, 0, 0}, []byte{1})
	n, err = d.Decode(data, []byte{0x07}, row)
	if err != nil || n != len(data) || row[1] != nil || !connectors.IsUnchanged(row[3]) || row[2] != "x" {
		t.Fatalf("Decode of a partial image = %#v, %v", row, err)
	}
	for i := 0; i < len(data); i++ {
		if _, err := d.Decode(data[:i], []byte{0x07}, row); err == nil {
			t.Errorf("a row image cut at byte %d decoded", i)
		}
	}
}

func FuzzRowDecoder(f *testing.F) {
	cs := DefaultCharsets()
	var cols []Column
	for _, b := range []BinlogColumn{
		{Name: "a", Type: TypeLong}, {Name: "b", Type: TypeVarchar, Meta: 300, Collation: 45},
		{Name: "c", Type: TypeNewDecimal, Meta: 20<<8 | 5}, {Name: "d", Type: TypeTime2, Meta: 3},
		{Name: "e", Type: TypeBlob, Meta: 2, Collation: 63}, {Name: "f", Type: TypeGeometry, Meta: 4},
		{Name: "g", Type: TypeString, Meta: uint16(TypeSet)<<8 | 1, Collation: 45, Labels: []string{"p", "q"}},
		{Name: "h", Type: TypeDatetime2, Meta: 6}, {Name: "i", Type: TypeTimestamp2, Meta: 2}, {Name: "j", Type: TypeBit, Meta: 1<<8 | 3},
	} {
		c, _ := ColumnFromBinlog(b, cs)
		cols = append(cols, c)
	}
	f.Add([]byte{0xFF, 0x03}, []byte{0, 0, 1, 0, 0, 0, 2, 'h', 'i'})
	f.Fuzz(func(t *testing.T, present, data []byte) {
		d := &RowDecoder{Cols: cols}
		row := make([]connectors.Value, len(cols))
		n, err := d.Decode(data, present, row)
		if err == nil && n > len(data) {
			t.Fatalf("read %d of %d bytes", n, len(data))
		}
	})
}

func ExampleColumn_Native() {
	c, _ := ColumnFromBinlog(BinlogColumn{Name: "price", Type: TypeNewDecimal, Meta: 65<<8 | 30}, DefaultCharsets())
	fmt.Println(c.Native(), c.Type())
	v, _ := c.DecodeText([]byte("-0.000000000000000000000000000001"), Options{})
	fmt.Println(v)
	// Output:
	// decimal(65,30) decimal
	// -0.000000000000000000000000000001
}
