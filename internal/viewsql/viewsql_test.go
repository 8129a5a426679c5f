package viewsql

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
)

// fake is an in-memory Backend that records what Apply is given.
type fake struct {
	offsets  map[string]*Offset
	tables   map[string]*TableInfo
	applied  []*TableBatch
	inTx     bool
	commits  int
	advances int
	reads    int
	writes   int
}

func newFake() *fake { return &fake{offsets: map[string]*Offset{}, tables: map[string]*TableInfo{}} }

func (fake) ColumnType(c connectors.Column, _ bool, _ string) string { return string(c.Type) }
func (fake) Converter(def *ColumnDef) func(connectors.Value) (any, error) {
	return func(v connectors.Value) (any, error) {
		if s, ok := v.(string); ok && s == "unholdable" {
			return nil, errors.New("cannot hold it")
		}
		return v, nil
	}
}
func (fake) CanTake(have, want string) bool { return have == want }
func (fake) TransactionalDDL() bool         { return true }
func (fake) CaseInsensitive() bool          { return false }
func (fake) MaxIdentifier() int             { return 63 }

func (f *fake) Connect(context.Context) error { return nil }
func (f *fake) Close() error                  { return nil }
func (f *fake) Check(context.Context) error   { return nil }
func (f *fake) Begin(context.Context) error   { f.inTx = true; return nil }
func (f *fake) Commit(context.Context) error  { f.inTx = false; f.commits++; return nil }
func (f *fake) Rollback(context.Context)      { f.inTx = false }
func (f *fake) Healthy() bool                 { return true }
func (f *fake) ReadOffset(_ context.Context, key string, _ bool) (*Offset, error) {
	f.reads++
	if o, ok := f.offsets[key]; ok {
		c := *o
		return &c, nil
	}
	return nil, nil
}
func (f *fake) WriteOffset(_ context.Context, key string, o *Offset) error {
	f.writes++
	c := *o
	f.offsets[key] = &c
	return nil
}
func (f *fake) AdvanceOffset(_ context.Context, key string, from []byte, o *Offset) (bool, error) {
	f.advances++
	cur, ok := f.offsets[key]
	if !ok || !bytes.Equal(cur.Position, from) {
		return false, nil
	}
	c := *cur
	c.Position, c.Origins = o.Position, maps.Clone(o.Origins)
	f.offsets[key] = &c
	return true, nil
}
func (f *fake) DeleteOffset(_ context.Context, key string) error { delete(f.offsets, key); return nil }
func (f *fake) DescribeTable(_ context.Context, name string) (*TableInfo, error) {
	if t, ok := f.tables[name]; ok {
		c := *t
		return &c, nil
	}
	return nil, nil
}
func (f *fake) CreateTable(_ context.Context, name string, cols []*ColumnDef, key []string, history bool) error {
	t := &TableInfo{Key: key}
	if history {
		t.Columns = append(t.Columns, ColumnInfo{Name: HistorySeq, Type: "int64"})
	}
	for _, c := range cols {
		t.Columns = append(t.Columns, ColumnInfo{Name: c.Name, Type: c.Type})
	}
	f.tables[name] = t
	return nil
}
func (f *fake) AddColumn(_ context.Context, table string, c *ColumnDef) error {
	f.tables[table].Columns = append(f.tables[table].Columns, ColumnInfo{Name: c.Name, Type: c.Type})
	return nil
}
func (f *fake) DropColumn(context.Context, string, string) error { return nil }
func (f *fake) DropTable(_ context.Context, name string) error   { delete(f.tables, name); return nil }
func (f *fake) RenameTables(context.Context, []Rename) error     { return nil }

// Apply keeps a deep copy of tb: the sink reuses tb and its rows for the
// next batch.
func (f *fake) Apply(_ context.Context, tb *TableBatch) error {
	c := *tb
	copyRows := func(rs []Row) []Row {
		if rs == nil {
			return nil
		}
		out := make([]Row, len(rs))
		for i, r := range rs {
			out[i] = r
			out[i].Vals = append([]any(nil), r.Vals...)
		}
		return out
	}
	c.Deletes, c.Upserts, c.Updates, c.Appends = copyRows(tb.Deletes), copyRows(tb.Upserts), copyRows(tb.Updates), copyRows(tb.Appends)
	f.applied = append(f.applied, &c)
	return nil
}

var items = connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "items"}, 1, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Key: 1},
	{Name: "name", Type: connectors.TypeString, Nullable: true},
	{Name: "note", Type: connectors.TypeString, Nullable: true},
})

type evs struct{ n uint64 }

func (e *evs) ev(op connectors.Op, before, after []connectors.Value) connectors.Event {
	e.n++
	return connectors.Event{Op: op, Schema: items, Before: before, After: after,
		Position: connectors.TxPosition{Commit: e.n, Ordinal: 1}.Encode()}
}

func row(vals ...connectors.Value) []connectors.Value { return vals }

// describe prints a row of a table batch: the set columns as name=value.
func describe(tb *TableBatch, r Row) string {
	var parts []string
	for _, ci := range r.Set.Indexes() {
		parts = append(parts, fmt.Sprintf("%s=%v", tb.Columns[ci].Name, r.Vals[ci]))
	}
	return strings.Join(parts, " ")
}

func rows(tb *TableBatch, rs []Row) string {
	var out []string
	for _, r := range rs {
		out = append(out, describe(tb, r))
	}
	return strings.Join(out, "; ")
}

func newSink(t *testing.T, f *fake, cfg Config) *Sink {
	t.Helper()
	s, err := New("fake", cfg, f, connectors.Runtime{Pipeline: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func write(t *testing.T, s *Sink, b ...connectors.Event) error {
	t.Helper()
	return s.WriteBatch(context.Background(), connectors.Batch{Events: b, Last: b[len(b)-1].Position})
}

// The batch is coalesced to one change per key, in the order Apply
// documents, with unchanged columns merged into earlier values.
func TestCoalesce(t *testing.T) {
	f := newFake()
	s := newSink(t, f, DefaultConfig())
	var e evs
	u := connectors.Unchanged
	err := write(t, s,
		e.ev(connectors.OpCreate, nil, row(int64(1), "a", "n1")),
		e.ev(connectors.OpUpdate, nil, row(int64(1), "a2", u)), // merged: note n1
		e.ev(connectors.OpUpdate, nil, row(int64(2), "b", u)),  // stays an update
		e.ev(connectors.OpDelete, row(int64(3), nil, nil), nil),
		e.ev(connectors.OpCreate, nil, row(int64(3), "c", "n3")), // delete, then insert
		e.ev(connectors.OpCreate, nil, row(int64(4), "d", "n4")),
		e.ev(connectors.OpDelete, row(int64(4), nil, nil), nil),                       // only the delete
		e.ev(connectors.OpUpdate, row(int64(5), "e", "n5"), row(int64(6), "e", "n5")), // a key change
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.applied) != 1 {
		t.Fatalf("applied %d table batches, want 1", len(f.applied))
	}
	tb := f.applied[0]
	for _, c := range []struct{ what, got, want string }{
		{"deletes", rows(tb, tb.Deletes), "id=3; id=4; id=5"},
		{"upserts", rows(tb, tb.Upserts), "id=1 name=a2 note=n1; id=3 name=c note=n3; id=6 name=e note=n5"},
		{"updates", rows(tb, tb.Updates), "id=2 name=b"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s\nwant %s", c.what, c.got, c.want)
		}
	}
	if p := connectors.Position(f.offsets["p"].Position); p.Compare(e.evPos()) != 0 {
		t.Fatalf("stored position %s, want %s", p, e.evPos())
	}
}

func (e *evs) evPos() connectors.Position {
	return connectors.TxPosition{Commit: e.n, Ordinal: 1}.Encode()
}

// A truncate voids what came before it in the batch, for its table.
func TestTruncateVoidsEarlierChanges(t *testing.T) {
	f := newFake()
	s := newSink(t, f, DefaultConfig())
	var e evs
	if err := write(t, s,
		e.ev(connectors.OpCreate, nil, row(int64(1), "a", "n")),
		e.ev(connectors.OpDelete, row(int64(2), nil, nil), nil),
		e.ev(connectors.OpTruncate, nil, nil),
		e.ev(connectors.OpCreate, nil, row(int64(3), "c", "n")),
	); err != nil {
		t.Fatal(err)
	}
	tb := f.applied[0]
	if !tb.Truncate || len(tb.Deletes) != 0 || rows(tb, tb.Upserts) != "id=3 name=c note=n" {
		t.Fatalf("truncate %v, deletes %q, upserts %q", tb.Truncate, rows(tb, tb.Deletes), rows(tb, tb.Upserts))
	}
}

// Every event the store cannot hold is named, and nothing is applied.
func TestRejectNamesEveryEvent(t *testing.T) {
	f := newFake()
	s := newSink(t, f, DefaultConfig())
	var e evs
	err := write(t, s,
		e.ev(connectors.OpCreate, nil, row(int64(1), "unholdable", "n")),
		e.ev(connectors.OpCreate, nil, row(int64(2), "fine", "n")),
		e.ev(connectors.OpCreate, nil, row(nil, "no key", "n")),
	)
	var rej *connectors.RejectError
	if !errors.As(err, &rej) || len(rej.Events) != 2 || rej.Events[0].Index != 0 || rej.Events[1].Index != 2 {
		t.Fatalf("WriteBatch: %v; want events 0 and 2 rejected", err)
	}
	if len(f.applied) != 0 || f.commits != 0 || len(f.tables) != 0 {
		t.Fatalf("a rejected batch reached the store: %d applies, %d commits, %d tables", len(f.applied), f.commits, len(f.tables))
	}
	if !strings.Contains(err.Error(), "column name") || !strings.Contains(err.Error(), "NULL") {
		t.Fatalf("the reasons are not named: %v", err)
	}
}

// Batches at or before the stored position are skipped; empty batches
// still store theirs.
func TestSkipsAppliedBatches(t *testing.T) {
	f := newFake()
	s := newSink(t, f, DefaultConfig())
	var e evs
	a := e.ev(connectors.OpCreate, nil, row(int64(1), "a", "n"))
	b := e.ev(connectors.OpCreate, nil, row(int64(2), "b", "n"))
	for _, evs := range [][]connectors.Event{{a, b}, {a}, {a, b}} {
		if err := write(t, s, evs...); err != nil {
			t.Fatal(err)
		}
	}
	if f.commits != 1 {
		t.Fatalf("%d commits, want 1", f.commits)
	}
	last := connectors.TxPosition{Commit: 99, Ordinal: 1}.Encode()
	if err := s.WriteBatch(context.Background(), connectors.Batch{Last: last}); err != nil {
		t.Fatal(err)
	}
	if connectors.Position(f.offsets["p"].Position).Compare(last) != 0 || f.commits != 2 {
		t.Fatalf("an empty batch did not store its position")
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct {
		tmpl string
		t    connectors.TableID
		want string
	}{
		{"{table}", connectors.TableID{Schema: "s", Name: "t"}, "t"},
		{"{schema}_{table}", connectors.TableID{Schema: "s", Name: "t"}, "s_t"},
		{"{schema}_{table}", connectors.TableID{Name: "t"}, "t"},
		{"{schema}__{table}", connectors.TableID{Name: "t"}, "t"},
		{"v_{table}_x", connectors.TableID{Name: "t"}, "v_t_x"},
	} {
		if got := expand(c.tmpl, c.t); got != c.want {
			t.Errorf("expand(%q, %v) = %q, want %q", c.tmpl, c.t, got, c.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Tables = map[string]TableConfig{"shop.items": {Name: "products"}, "logs": {Mode: ModeHistory}}
	for _, c := range []struct {
		t       connectors.TableID
		name    string
		history bool
	}{
		{connectors.TableID{Schema: "shop", Name: "items"}, "products", false},
		{connectors.TableID{Schema: "other", Name: "items"}, "items", false},
		{connectors.TableID{Schema: "shop", Name: "logs"}, "logs_history", true},
	} {
		name, history := cfg.target(c.t)
		if name != c.name || history != c.history {
			t.Errorf("target(%v) = %q, %v; want %q, %v", c.t, name, history, c.name, c.history)
		}
	}
}

func TestMask(t *testing.T) {
	var m Mask
	for _, i := range []int{0, 3, 63, 64, 130} {
		m.Set(i)
	}
	m.Clear(3)
	if got := fmt.Sprint(m.Indexes()); got != "[0 63 64 130]" {
		t.Fatalf("Indexes() = %s", got)
	}
	if !m.Has(130) || m.Has(3) || m.Has(200) || m.Count() != 4 || m.Empty() {
		t.Fatal("Has, Count or Empty is wrong")
	}
	var n Mask
	for _, i := range []int{0, 63, 64, 130} {
		n.Set(i)
	}
	n.more = append(n.more, 0, 0)
	if !sameMask(m, n) || m.key() != n.key() {
		t.Fatal("equal masks differ")
	}
}

func TestParseDecimal(t *testing.T) {
	for in, want := range map[string]string{
		"19.90":   "+19.9",
		"-0.0100": "-0.01",
		"007":     "+7.",
		".5":      "+0.5",
		"NaN":     "NaN",
		"1e5":     "exp",
	} {
		d, err := ParseDecimal(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		got := ""
		switch {
		case d.Special != "":
			got = d.Special
		case d.Exponent:
			got = "exp"
		default:
			sign := "+"
			if d.Neg {
				sign = "-"
			}
			got = sign + map[bool]string{true: "0", false: d.Int}[d.Int == ""] + "." + d.Frac
			if d.Frac == "" {
				got = sign + d.Int + "."
			}
		}
		if got != want {
			t.Errorf("ParseDecimal(%q) = %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"", "1,5", "1.2.3", "e5", "--1"} {
		if _, err := ParseDecimal(bad); err == nil {
			t.Errorf("ParseDecimal(%q) succeeded", bad)
		}
	}
	if p, s, ok := ParseTypmod("numeric(10,2)"); !ok || p != 10 || s != 2 {
		t.Errorf("ParseTypmod(numeric(10,2)) = %d, %d, %v", p, s, ok)
	}
	if p, s, ok := ParseTypmod("character varying(40)"); !ok || p != 40 || s != -1 {
		t.Errorf("ParseTypmod(character varying(40)) = %d, %d, %v", p, s, ok)
	}
}

// In history mode a truncate without a schema is appended as a row too.
func TestHistoryTruncateWithoutSchema(t *testing.T) {
	f := newFake()
	cfg := DefaultConfig()
	cfg.Mode = ModeHistory
	s := newSink(t, f, cfg)
	var e evs
	if err := write(t, s, e.ev(connectors.OpCreate, nil, row(int64(1), "a", "n"))); err != nil {
		t.Fatal(err)
	}
	trunc := connectors.Event{Op: connectors.OpTruncate, Source: connectors.SourceInfo{Schema: "shop", Table: "items"},
		Position: connectors.TxPosition{Commit: 50, Ordinal: 1}.Encode()}
	if err := write(t, s, trunc); err != nil {
		t.Fatal(err)
	}
	if len(f.applied) != 2 || f.applied[1].Table != "items_history" || len(f.applied[1].Appends) != 1 {
		t.Fatalf("applied %d batches; the second: %+v", len(f.applied), f.applied[len(f.applied)-1])
	}
	tb := f.applied[1]
	if got := describe(tb, tb.Appends[0]); !strings.HasPrefix(got, "__op=t __position=0x54") {
		t.Fatalf("the truncate's history row is %s", got)
	}
}
