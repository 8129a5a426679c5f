package connectors_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

type V = connectors.Value

var orders = connectors.MustSchema(connectors.TableID{Schema: "public", Name: "orders"}, 1, []connectors.Column{
	{Name: "status", Type: connectors.TypeString},
	{Name: "id", Type: connectors.TypeInt64, Key: 1},
	{Name: "body", Type: connectors.TypeText, Nullable: true},
})

var lines = connectors.MustSchema(connectors.TableID{Schema: "public", Name: "order_lines"}, 1, []connectors.Column{
	{Name: "line", Type: connectors.TypeInt32, Key: 2},
	{Name: "order_id", Type: connectors.TypeInt64, Key: 1},
})

func TestOp(t *testing.T) {
	for op, s := range map[connectors.Op]string{
		connectors.OpCreate: "c", connectors.OpUpdate: "u", connectors.OpDelete: "d",
		connectors.OpRead: "r", connectors.OpTruncate: "t", connectors.OpHeartbeat: "h", 'x': "Op(120)", 0: "Op(0)",
	} {
		if op.String() != s {
			t.Errorf("%d.String() = %q, want %q", byte(op), op.String(), s)
		}
	}
	for in, want := range map[string]connectors.Op{
		"c": connectors.OpCreate, "create": connectors.OpCreate, "INSERT": connectors.OpCreate,
		"u": connectors.OpUpdate, "update": connectors.OpUpdate, "d": connectors.OpDelete, "Delete": connectors.OpDelete,
		"r": connectors.OpRead, "read": connectors.OpRead, "snapshot": connectors.OpRead,
		"t": connectors.OpTruncate, "truncate": connectors.OpTruncate,
		"h": connectors.OpHeartbeat, "heartbeat": connectors.OpHeartbeat,
	} {
		if got, err := connectors.ParseOp(in); err != nil || got != want {
			t.Errorf("ParseOp(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := connectors.ParseOp("upsert"); err == nil || err.Error() != `unknown op "upsert" (want one of c, u, d, r, t, h)` {
		t.Errorf("ParseOp(upsert): %v", err)
	}
}

func TestEventKeyAndRow(t *testing.T) {
	src := connectors.SourceInfo{Schema: "public", Table: "orders"}
	for _, tc := range []struct {
		name string
		ev   connectors.Event
		row  []V
		key  string
	}{
		{"insert", connectors.Event{Op: connectors.OpCreate, Schema: orders, After: []V{"new", int64(1), nil}}, []V{"new", int64(1), nil}, "[{id 1}]"},
		{"update", connectors.Event{Op: connectors.OpUpdate, Schema: orders, Before: []V{"new", int64(1), nil}, After: []V{"paid", int64(1), nil}}, []V{"paid", int64(1), nil}, "[{id 1}]"},
		{"delete", connectors.Event{Op: connectors.OpDelete, Schema: orders, Before: []V{nil, int64(2), nil}}, []V{nil, int64(2), nil}, "[{id 2}]"},
		{"truncate", connectors.Event{Op: connectors.OpTruncate, Schema: orders, Source: src}, nil, "[]"},
		{"no schema", connectors.Event{Op: connectors.OpCreate, After: []V{"x"}, Source: src}, []V{"x"}, "[]"},
		{"composite", connectors.Event{Op: connectors.OpCreate, Schema: lines, After: []V{int64(3), int64(9)}}, []V{int64(3), int64(9)}, "[{order_id 9} {line 3}]"},
		{"toasted key", connectors.Event{Op: connectors.OpUpdate, Schema: orders,
			Before: []V{"new", int64(5), nil}, After: []V{"paid", connectors.Unchanged, connectors.Unchanged}}, []V{"paid", connectors.Unchanged, connectors.Unchanged}, "[{id 5}]"},
		{"short row", connectors.Event{Op: connectors.OpCreate, Schema: orders, After: []V{"x"}}, []V{"x"}, "[{id <nil>}]"},
	} {
		if got := fmt.Sprint(tc.ev.Row()); got != fmt.Sprint(tc.row) {
			t.Errorf("%s: Row() = %v, want %v", tc.name, got, tc.row)
		}
		if got := fmt.Sprint(tc.ev.Key()); got != tc.key {
			t.Errorf("%s: Key() = %v, want %v", tc.name, got, tc.key)
		}
		if got := tc.ev.Table(); got != (connectors.TableID{Schema: "public", Name: tc.ev.Table().Name}) {
			t.Errorf("%s: Table() = %v", tc.name, got)
		}
	}
	nokey := connectors.MustSchema(connectors.TableID{Name: "log"}, 1, []connectors.Column{{Name: "msg"}})
	if k := (&connectors.Event{Schema: nokey, After: []V{"x"}}).Key(); k != nil {
		t.Errorf("a table without a key: Key() = %v", k)
	}
}

func TestEventTableIsLogical(t *testing.T) {
	renamed := connectors.MustSchema(connectors.TableID{Schema: "archive", Name: "orders_v2"}, 1, orders.Columns)
	ev := connectors.Event{Schema: renamed, Source: connectors.SourceInfo{Schema: "public", Table: "orders"}}
	if ev.Table().String() != "archive.orders_v2" {
		t.Errorf("Table() = %v, want the schema's", ev.Table())
	}
	ev.Schema = nil
	if ev.Table().String() != "public.orders" {
		t.Errorf("Table() without a schema = %v, want the source's", ev.Table())
	}
}

func TestUnchanged(t *testing.T) {
	if !connectors.IsUnchanged(connectors.Unchanged) || !connectors.IsUnchanged(connectors.UnchangedValue{}) {
		t.Error("Unchanged is not unchanged")
	}
	for _, v := range []V{nil, "", int64(0), struct{}{}} {
		if connectors.IsUnchanged(v) {
			t.Errorf("%#v is unchanged", v)
		}
	}
}

func TestSizes(t *testing.T) {
	small := connectors.Event{Op: connectors.OpCreate, Schema: orders, After: []V{"a", int64(1), nil}}
	big := connectors.Event{Op: connectors.OpCreate, Schema: orders, After: []V{strings.Repeat("a", 1000), int64(1), connectors.JSON(strings.Repeat(" ", 500))},
		Before: []V{[]byte("0123456789"), []V{"x", int64(1)}, connectors.Unchanged}, Position: make(connectors.Position, 13)}
	if s, b := small.Size(), big.Size(); s <= 0 || b < s+1500 {
		t.Errorf("sizes %d and %d: the big event should count its 1500+ bytes of values", s, b)
	}
	batch := connectors.Batch{Events: []connectors.Event{small, big}}
	if batch.Size() != small.Size()+big.Size() {
		t.Errorf("Batch.Size = %d", batch.Size())
	}
}

func TestLimitsFull(t *testing.T) {
	for _, tc := range []struct {
		lim        connectors.Limits
		n, size    int
		full       bool
		whyNotFull string
	}{
		{connectors.Limits{MaxEvents: 10}, 9, 1 << 30, false, "no byte bound"},
		{connectors.Limits{MaxEvents: 10}, 10, 0, true, ""},
		{connectors.Limits{MaxBytes: 100}, 1000, 99, false, "no count bound"},
		{connectors.Limits{MaxBytes: 100}, 1, 100, true, ""},
		{connectors.Limits{MaxEvents: 10, MaxBytes: 100, MaxWait: time.Second}, 3, 30, false, "below both"},
		{connectors.Limits{}, 1 << 20, 1 << 30, false, "no bounds"},
	} {
		if got := tc.lim.Full(tc.n, tc.size); got != tc.full {
			t.Errorf("%+v.Full(%d, %d) = %v (%s)", tc.lim, tc.n, tc.size, got, tc.whyNotFull)
		}
	}
}

func TestErrors(t *testing.T) {
	base := io.ErrUnexpectedEOF
	r := connectors.Retryable(base)
	if !connectors.IsRetryable(r) || !errors.Is(r, base) || r.Error() != base.Error() {
		t.Errorf("Retryable(%v) = %v", base, r)
	}
	if wrapped := fmt.Errorf("postgres: read: %w", r); !connectors.IsRetryable(wrapped) {
		t.Error("a wrapped retryable error is not retryable")
	}
	if connectors.IsRetryable(base) || connectors.IsRetryable(nil) || connectors.Retryable(nil) != nil {
		t.Error("plain or nil errors are retryable")
	}
	rej := &connectors.RejectError{}
	for i := range 5 {
		rej.Events = append(rej.Events, connectors.EventError{Index: i * 2, Err: fmt.Errorf("bad %d", i)})
	}
	if got, want := rej.Error(), "sink rejected 5 event(s); event 0: bad 0; event 2: bad 1; event 4: bad 2; and 2 more"; got != want {
		t.Errorf("RejectError:\n got %s\nwant %s", got, want)
	}
	var target *connectors.RejectError
	if !errors.As(fmt.Errorf("write: %w", rej), &target) || len(target.Events) != 5 {
		t.Error("errors.As does not find a wrapped RejectError")
	}
}

func TestRuntimeLog(t *testing.T) {
	var rt connectors.Runtime
	rt.Log().Info("goes nowhere") // must not panic
	var b strings.Builder
	rt.Logger = slog.New(slog.NewTextHandler(&b, nil))
	rt.Log().Info("hello")
	if !strings.Contains(b.String(), "msg=hello") {
		t.Errorf("logged %q", b.String())
	}
}

func ExampleEvent_Key() {
	ev := connectors.Event{
		Op:     connectors.OpDelete,
		Schema: orders,
		Before: []connectors.Value{nil, int64(42), nil}, // deletes carry the key in Before
	}
	fmt.Println(ev.Table(), ev.Key())
	// Output: public.orders [{id 42}]
}
