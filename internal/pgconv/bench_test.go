package pgconv

import (
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

func benchDecode(b *testing.B, oid uint32, text string) {
	c := NewColumn("c", oid, -1, nil)
	in := []byte(text)
	if _, err := c.Decode(in); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := c.Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeInt4(b *testing.B) { benchDecode(b, pgtype.Int4OID, "123456789") }
func BenchmarkDecodeInt4Small(b *testing.B) {
	benchDecode(b, pgtype.Int4OID, "42")
}
func BenchmarkDecodeBool(b *testing.B)   { benchDecode(b, pgtype.BoolOID, "t") }
func BenchmarkDecodeFloat8(b *testing.B) { benchDecode(b, pgtype.Float8OID, "1234.5678") }
func BenchmarkDecodeNumeric(b *testing.B) {
	benchDecode(b, pgtype.NumericOID, "123456789012345.123456789")
}
func BenchmarkDecodeText(b *testing.B) {
	benchDecode(b, pgtype.TextOID, "the quick brown fox jumps over the lazy dog")
}
func BenchmarkDecodeTimestamptz(b *testing.B) {
	benchDecode(b, pgtype.TimestamptzOID, "2025-11-22 10:11:12.123456+05:45")
}
func BenchmarkDecodeInt4Array10(b *testing.B) {
	benchDecode(b, pgtype.Int4ArrayOID, "{1,22,333,4444,55555,666666,7777777,88888888,999999999,1000}")
}
func BenchmarkDecodeTextArray10(b *testing.B) {
	benchDecode(b, pgtype.TextArrayOID, `{a,bb,"c c","d\"d",eeeee,ffffff,NULL,hhhhhhhh,iiiiiiiii,jjjjjjjjjj}`)
}

// BenchmarkParseInt is the integer parse alone, without boxing the result
// into a connectors.Value: what Decode costs beyond the interface.
func BenchmarkParseInt(b *testing.B) {
	in := []byte("123456789")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	var sum int64
	for b.Loop() {
		n, _ := parseInt(in)
		sum += n
	}
	_ = sum
}

// BenchmarkAppendUTC is the timestamptz conversion alone, without the
// string allocation and boxing.
func BenchmarkAppendUTC(b *testing.B) {
	in := []byte("2025-11-22 10:11:12.123456+05:45")
	var buf [48]byte
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, ok := appendUTC(buf[:0], in); !ok {
			b.Fatal("bad")
		}
	}
}
