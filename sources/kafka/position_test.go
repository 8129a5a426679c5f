package kafka_test

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/sources/kafka"
)

func TestPositionRoundTrip(t *testing.T) {
	for _, o := range []kafka.Offsets{
		{},
		{"orders": {0: 0}},
		{"orders": {0: 12, 1: 40, 11: 3}, "customers": {2: math.MaxInt64}, "a.b-c_d": {math.MaxInt32: 7}},
	} {
		p := o.Position()
		got, err := kafka.DecodePosition(p)
		if err != nil {
			t.Fatalf("decode %s: %v", p, err)
		}
		if len(o) == 0 {
			o = kafka.Offsets{}
		}
		if !reflect.DeepEqual(got, o) {
			t.Fatalf("round trip of %v gave %v", o, got)
		}
		if c := kafka.CursorPosition(o); !bytes.Equal(c, p) {
			t.Fatalf("the source's incremental encoding %x differs from Offsets.Position %x", c, p)
		}
		s := o.String()
		parsed, err := kafka.ParseOffsets(s)
		if err != nil || !bytes.Equal(parsed.Position(), p) {
			t.Fatalf("ParseOffsets(%q) = %v, %v", s, parsed, err)
		}
	}
}

func TestPositionErrors(t *testing.T) {
	good := kafka.Offsets{"b": {1: 5, 2: 6}, "a": {0: 1}}.Position()
	for name, p := range map[string][]byte{
		"empty":           nil,
		"foreign":         connectors.TxPosition{Commit: 1, Ordinal: 1}.Encode(),
		"version":         {'K', 9, 0},
		"truncated":       good[:len(good)-1],
		"trailing":        append(append([]byte(nil), good...), 0),
		"huge count":      {'K', 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"topics unsorted": {'K', 1, 2, 1, 'b', 1, 0, 0, 1, 'a', 1, 0, 0},
		"partitions dup":  {'K', 1, 1, 1, 'a', 2, 0, 0, 0, 0},
		"no partitions":   {'K', 1, 1, 1, 'a', 0},
	} {
		if _, err := kafka.DecodePosition(p); err == nil {
			t.Errorf("%s: DecodePosition(%x) succeeded", name, p)
		}
	}
	for _, s := range []string{"orders", "orders/x=1", "orders/1=-3", "bad topic/1=2", "a/1=2,a/1=3"} {
		if _, err := kafka.ParseOffsets(s); err == nil {
			t.Errorf("ParseOffsets(%q) succeeded", s)
		}
	}
}

func FuzzDecodePosition(f *testing.F) {
	f.Add([]byte(kafka.Offsets{"orders": {0: 12, 1: 40}, "c": {3: 1 << 40}}.Position()))
	f.Add([]byte{'K', 1, 0})
	f.Add([]byte{'K', 1, 1, 1, 'a', 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := kafka.DecodePosition(b)
		if err != nil {
			return
		}
		// A position that decodes is canonical: it encodes to itself.
		if again := o.Position(); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x as %v, which encodes as %x", b, o, []byte(again))
		}
		if back, err := kafka.ParseOffsets(o.String()); err != nil || !bytes.Equal(back.Position(), b) {
			t.Fatalf("ParseOffsets(%q) = %v, %v", o.String(), back, err)
		}
	})
}

func ExampleOffsets() {
	pos := kafka.Offsets{"tapline.public.orders": {0: 1200, 1: 977}}.Position()
	fmt.Println(kafka.PositionFormat.Format(pos))
	back, _ := kafka.PositionFormat.Parse("tapline.public.orders/1=977,tapline.public.orders/0=1200")
	fmt.Println(bytes.Equal(back, pos))
	// Output:
	// tapline.public.orders/0=1200,tapline.public.orders/1=977 <nil>
	// true
}

// Over the same partitions, positions compare with bytes.Compare as their
// offsets do (the view sinks skip batches at or before their stored
// position that way), also across byte boundaries where a varint would
// not: 255 < 256, 65535 < 65536.
func TestPositionsOrderLikeTheirOffsets(t *testing.T) {
	pos := func(a, b int64) connectors.Position {
		return kafka.Offsets{"t1": {0: a, 3: 7}, "t2": {1: b}}.Position()
	}
	for _, c := range [][4]int64{{255, 0, 256, 0}, {65535, 9, 65536, 9}, {5, 127, 5, 128}, {1 << 40, 0, 1<<40 + 1, 0}, {3, 300, 4, 2}} {
		lo, hi := pos(c[0], c[1]), pos(c[2], c[3])
		if bytes.Compare(lo, hi) >= 0 {
			t.Errorf("offsets %d,%d encode after (or equal to) %d,%d", c[0], c[1], c[2], c[3])
		}
		back, err := kafka.DecodePosition(hi)
		if err != nil || back["t1"][0] != c[2] || back["t2"][1] != c[3] {
			t.Errorf("round trip of %d,%d: %v %v", c[2], c[3], back, err)
		}
	}
}
