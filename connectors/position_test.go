package connectors_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
)

func TestTxPositionEncodeDecode(t *testing.T) {
	for _, p := range []connectors.TxPosition{
		{}, {Commit: 1, Ordinal: 1}, {Commit: 0x16B3748, Ordinal: 3},
		{Commit: math.MaxUint64, Ordinal: math.MaxUint32 - 1}, connectors.TxPosition{Commit: 7}.End(),
	} {
		enc := p.Encode()
		if len(enc) != connectors.TxPositionLen || enc[0] != 'T' {
			t.Fatalf("%v encodes as %x", p, []byte(enc))
		}
		back, err := connectors.DecodeTxPosition(enc)
		if err != nil || back != p {
			t.Fatalf("%v: decoded %v, %v", p, back, err)
		}
	}
	for _, bad := range []connectors.Position{nil, {}, connectors.Position("T123456789012"[:12]), bytes.Repeat([]byte{'X'}, 13)} {
		if _, err := connectors.DecodeTxPosition(bad); err == nil || !strings.Contains(err.Error(), "is not a transaction position") {
			t.Errorf("DecodeTxPosition(%x) = %v", []byte(bad), err)
		}
	}
}

// The encoding orders as the positions do, so that the engine and the
// offset store can compare positions without decoding them.
func TestTxPositionOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func() connectors.TxPosition {
		// Small ranges make equal commits common.
		return connectors.TxPosition{Commit: r.Uint64N(4) << (r.UintN(3) * 30), Ordinal: uint32(r.UintN(3)) << (r.UintN(2) * 30)}
	}
	for range 10000 {
		a, b := pick(), pick()
		want := 0
		switch {
		case a.Less(b):
			want = -1
		case b.Less(a):
			want = 1
		}
		if got := a.Encode().Compare(b.Encode()); got != want {
			t.Fatalf("%v vs %v: Compare %d, Less says %d", a, b, got, want)
		}
		if a.Less(a) {
			t.Fatalf("%v is less than itself", a)
		}
	}
	p := connectors.TxPosition{Commit: 10, Ordinal: 5}
	before, next := connectors.TxPosition{Commit: 10}, connectors.TxPosition{Commit: 11}
	if !p.Less(p.End()) || !before.Less(p) || !p.End().Less(next) {
		t.Error("End is not after every event of its transaction and before the next one")
	}
}

func TestTxPositionStringParse(t *testing.T) {
	for _, tc := range []struct {
		p connectors.TxPosition
		s string
	}{
		{connectors.TxPosition{Commit: 1200, Ordinal: 3}, "1200:3"},
		{connectors.TxPosition{}, "0:0"},
		{connectors.TxPosition{Commit: 1200}.End(), "1200:end"},
		{connectors.TxPosition{Commit: math.MaxUint64, Ordinal: math.MaxUint32 - 1}, "18446744073709551615:4294967294"},
	} {
		if got := tc.p.String(); got != tc.s {
			t.Errorf("%#v.String() = %q, want %q", tc.p, got, tc.s)
		}
		if back, err := connectors.ParseTxPosition(tc.s); err != nil || back != tc.p {
			t.Errorf("ParseTxPosition(%q) = %v, %v", tc.s, back, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"1200", `position "1200": want COMMIT:ORDINAL, e.g. 1200:3`},
		{"x:1", `commit "x" is not a number`},
		{"-1:1", `commit "-1" is not a number`},
		{"1:x", `ordinal "x" is not a number`},
		{"1:4294967296", `ordinal "4294967296" is not a number`},
		{"1:END", `ordinal "END" is not a number`},
	} {
		if _, err := connectors.ParseTxPosition(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTxPosition(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestPositionStringAndCompare(t *testing.T) {
	if s := connectors.Position(nil).String(); s != "(none)" {
		t.Errorf("nil position: %q", s)
	}
	if s := (connectors.Position{}).String(); s != "0x" {
		t.Errorf("empty position: %q", s)
	}
	if s := (connectors.Position{0x0a, 0xff}).String(); s != "0x0aff" {
		t.Errorf("position: %q", s)
	}
	if connectors.Position(nil).Compare(connectors.Position{0}) >= 0 || (connectors.Position{1}).Compare(connectors.Position{0, 9}) <= 0 {
		t.Error("Compare does not follow bytes.Compare")
	}
}

func TestTxPositionFormat(t *testing.T) {
	f := connectors.TxPositionFormat
	p := connectors.TxPosition{Commit: 42, Ordinal: 7}.Encode()
	s, err := f.Format(p)
	if err != nil || s != "42:7" {
		t.Fatalf("Format = %q, %v", s, err)
	}
	back, err := f.Parse(s)
	if err != nil || !bytes.Equal(back, p) {
		t.Fatalf("Parse(%q) = %v, %v", s, back, err)
	}
	if _, err := f.Format(connectors.Position{1, 2}); err == nil {
		t.Error("Format of a foreign position: no error")
	}
	if _, err := f.Parse("nope"); err == nil {
		t.Error("Parse of nonsense: no error")
	}
}

func TestRegistrationPositions(t *testing.T) {
	reg := connectors.NewRegistry()
	connectors.RegisterSourceIn(reg, "tx", "", func() struct{} { return struct{}{} }, nil, connectors.WithPositions(connectors.TxPositionFormat))
	connectors.RegisterSourceIn[struct{}](reg, "raw", "", nil, nil)
	tx, _ := reg.Lookup(connectors.KindSource, "tx")
	raw, _ := reg.Lookup(connectors.KindSource, "raw")
	p := connectors.TxPosition{Commit: 3, Ordinal: 1}.Encode()

	if s := tx.FormatPosition(p); s != "3:1" {
		t.Errorf("tx FormatPosition = %q", s)
	}
	if s := tx.FormatPosition(connectors.Position{0xab}); s != "0xab" {
		t.Errorf("a position the format cannot read falls back to hex: %q", s)
	}
	if s := raw.FormatPosition(p); s != p.String() {
		t.Errorf("raw FormatPosition = %q", s)
	}
	if s := raw.FormatPosition(nil); s != "(none)" {
		t.Errorf("FormatPosition(nil) = %q", s)
	}
	for _, r := range []*connectors.Registration{tx, raw} {
		back, err := r.ParsePosition(p.String())
		if err != nil || !bytes.Equal(back, p) {
			t.Errorf("%s ParsePosition(%s) = %x, %v", r.Name, p, []byte(back), err)
		}
	}
	if back, err := tx.ParsePosition("3:1"); err != nil || !bytes.Equal(back, p) {
		t.Errorf("ParsePosition(3:1) = %x, %v", []byte(back), err)
	}
	if _, err := raw.ParsePosition("3:1"); err == nil || !strings.Contains(err.Error(), "raw positions are given in hex") {
		t.Errorf("raw ParsePosition(3:1) = %v", err)
	}
	if _, err := raw.ParsePosition("0xzz"); err == nil || !strings.Contains(err.Error(), "bad hex") {
		t.Errorf("bad hex: %v", err)
	}
}

func ExampleTxPosition() {
	p := connectors.TxPosition{Commit: 1200, Ordinal: 3}
	enc := p.Encode()
	back, _ := connectors.DecodeTxPosition(enc)
	next := connectors.TxPosition{Commit: 1200, Ordinal: 4}
	fmt.Println(back, len(enc), enc.Compare(next.Encode()) < 0, p.End())
	// Output: 1200:3 13 true 1200:end
}
