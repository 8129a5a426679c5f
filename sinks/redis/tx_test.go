package redis

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// tableList returns the sorted table list of pipeline p (or p#shadow).
func (e *testEnv) tableList(t testing.TB, pipeline string) []string {
	t.Helper()
	m, err := e.rc.SMembers(context.Background(), e.cfg.OffsetsPrefix+pipeline+":tables").Result()
	if err != nil {
		t.Fatalf("SMEMBERS of the table list: %v", err)
	}
	sort.Strings(m)
	return m
}

// One batch of every kind of write (rows of varying shapes, two tables,
// deletes, a key written twice, a row moved to another key, a partial
// update) ends as the events say, in both formats, leaving no other key;
// the table list names the patterns of both tables.
func TestMixedBatch(t *testing.T) {
	for _, format := range []string{FormatHash, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			e := newEnv(t)
			s := e.open(t, func(c *Config) { c.Format = format })
			var evs []connectors.Event
			add := func(ev connectors.Event) { evs = append(evs, ev) }
			for i := int64(1); i <= 6; i++ {
				add(change(connectors.OpCreate, ordersSchema, uint64(i), nil, vals(i, i*10, "new", "n", "1.00")))
			}
			mustWrite(t, s, connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position})
			first := len(evs)
			add(change(connectors.OpUpdate, ordersSchema, 10, nil, vals(int64(1), nil, "paid", nil, "1.00")))    // fewer fields
			add(change(connectors.OpCreate, linesSchema, 11, nil, vals("a:b", int64(1), int64(3), nil)))         // another table
			add(change(connectors.OpDelete, ordersSchema, 12, vals(int64(2), nil, nil, nil, nil), nil))          // a delete
			add(change(connectors.OpCreate, ordersSchema, 13, nil, vals(int64(7), nil, "new", nil, nil)))        // a new row
			add(change(connectors.OpUpdate, ordersSchema, 14, nil, vals(int64(7), int64(70), "sent", "x", nil))) // the same key again
			add(change(connectors.OpUpdate, ordersSchema, 15, vals(int64(3), nil, nil, nil, nil),
				vals(int64(30), int64(30), "moved", connectors.Unchanged, "3.00"))) // moved, keeping the note
			add(change(connectors.OpUpdate, ordersSchema, 16, nil, vals(int64(4), int64(40), "part", connectors.Unchanged, nil))) // partial
			add(change(connectors.OpCreate, linesSchema, 17, nil, vals("c", int64(2), int64(5), "m")))
			add(change(connectors.OpDelete, ordersSchema, 18, vals(int64(7), nil, nil, nil, nil), nil)) // and gone again
			add(change(connectors.OpCreate, ordersSchema, 19, nil, vals(int64(8), int64(80), "new", "n", "8.00")))
			mustWrite(t, s, connectors.Batch{Events: evs[first:], Last: evs[len(evs)-1].Position})

			want := fold(evs)
			for k, row := range want {
				if got, w := e.row(t, format, k), expectRow(format, row); !reflect.DeepEqual(got, w) {
					t.Errorf("%s = %v, want %v", k, got, w)
				}
			}
			rows := 0
			for _, k := range e.mustScan(t, "*") {
				k = strings.TrimPrefix(k, e.prefix)
				if !strings.HasPrefix(k, "orders:") && !strings.HasPrefix(k, "lines:") {
					continue
				}
				rows++
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected key %s", k)
				}
			}
			if rows != len(want) {
				t.Errorf("%d rows stored, want %d", rows, len(want))
			}
			if got, w := e.tableList(t, "p"), []string{e.prefix + "lines:*", e.prefix + "orders:*"}; !reflect.DeepEqual(got, w) {
				t.Errorf("table list = %v, want %v", got, w)
			}
		})
	}
}

// A key of another type where the sink writes a hash row or an index set
// (another application's key) rejects the event whose write failed. The
// transaction applied the batch's other writes, Redis having no rollback;
// the sink puts the position and origins back, so that the batch counts
// as not applied, and the batch without the rejected event (what
// on_error: skip writes) then applies.
//
// With an index on the table the sink reads the row first: a row key of
// another type then rejects the event before anything is written.
func TestWrongTypeKeyRejectsTheEvent(t *testing.T) {
	for _, where := range []string{"row", "index set", "indexed row"} {
		t.Run(where, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			s := e.open(t, func(c *Config) {
				if where != "row" {
					c.Indexes = []Index{{Table: "orders", Column: "customer_id"}}
				}
			})
			mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "first", nil, nil))))
			before, _ := s.CommittedPosition(ctx)
			originsBefore := e.rc.HGetAll(ctx, e.cfg.OffsetsPrefix+"p:origins").Val()
			bad := e.prefix + "orders:3"
			if where == "index set" {
				bad = e.prefix + "orders:by:customer_id:7"
			}
			e.rc.Set(ctx, bad, "another application's", 0)

			evs := []connectors.Event{
				change(connectors.OpCreate, ordersSchema, 2, nil, vals(int64(2), nil, "two", nil, nil)),
				change(connectors.OpCreate, ordersSchema, 3, nil, vals(int64(3), int64(7), "three", nil, nil)),
				change(connectors.OpCreate, ordersSchema, 4, nil, vals(int64(4), nil, "four", nil, nil)),
			}
			b := connectors.Batch{Events: evs, Last: evs[2].Position}
			err := s.WriteBatch(ctx, b)
			var rej *connectors.RejectError
			if !errors.As(err, &rej) || len(rej.Events) != 1 || rej.Events[0].Index != 1 {
				t.Fatalf("WriteBatch = %v; want a RejectError of event 1", err)
			}
			if msg := rej.Events[0].Err.Error(); !strings.Contains(msg, bad) || !strings.Contains(msg, "another type") {
				t.Errorf("the rejection says %q; want it to name %s and the type", msg, bad)
			}
			if pos, _ := s.CommittedPosition(ctx); !reflect.DeepEqual(pos, before) {
				t.Errorf("position after the rejected batch = %v, want %v", pos, before)
			}
			if got := e.rc.HGetAll(ctx, e.cfg.OffsetsPrefix+"p:origins").Val(); !reflect.DeepEqual(got, originsBefore) {
				t.Errorf("origins after the rejected batch = %v, want %v", got, originsBefore)
			}
			if got := e.rc.Get(ctx, bad).Val(); got != "another application's" {
				t.Errorf("%s = %q: the sink changed another application's key", bad, got)
			}
			if written := e.hash(t, "orders:2") != nil; written != (where != "indexed row") {
				t.Errorf("orders:2 written: %v; want it written by the transaction's other commands unless the row was read first", written)
			}
			// What on_error: skip does: the batch again, without event 1.
			mustWrite(t, s, connectors.Batch{Events: []connectors.Event{evs[0], evs[2]}, Last: b.Last})
			if pos, _ := s.CommittedPosition(ctx); !reflect.DeepEqual(pos, b.Last) {
				t.Errorf("position after the retry = %v, want %v", pos, b.Last)
			}
			for _, k := range []string{"orders:1", "orders:2", "orders:4"} {
				if e.hash(t, k) == nil {
					t.Errorf("%s is missing", k)
				}
			}
		})
	}
}

// A table list written by an earlier version of the sink (naming a set or
// sorted set of each table's keys) is converted when the sink opens: its
// entries become key patterns, the key lists go, and a truncate still
// deletes the table's rows, old and new.
func TestOldKeyListsAreConverted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	list := e.cfg.OffsetsPrefix + "p:keys:" + e.prefix + "orders:{pk}"
	e.rc.HSet(ctx, e.prefix+"orders:1", "id", "1")
	e.rc.ZAdd(ctx, list, redisZ(0, e.prefix+"orders:1"))
	e.rc.SAdd(ctx, e.cfg.OffsetsPrefix+"p:tables", list)
	s := e.open(t, nil)
	if got, want := e.tableList(t, "p"), []string{e.prefix + "orders:*"}; !reflect.DeepEqual(got, want) {
		t.Errorf("table list after Open = %v, want %v", got, want)
	}
	if n := e.rc.Exists(ctx, list).Val(); n != 0 {
		t.Error("the old key list is left")
	}
	mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(2), nil, "new", nil, nil))))
	mustWrite(t, s, batch(truncate(ordersSchema, 2)))
	if left := e.mustScan(t, "orders*"); len(left) != 0 {
		t.Errorf("after the truncate: %v", left)
	}
}

// A promote over a live view that only an earlier version of the sink
// wrote (its table list naming key lists) still replaces every live row.
func TestPromoteOverAnOldVersionsView(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	list := e.cfg.OffsetsPrefix + "p:keys:" + e.prefix + "orders:{pk}"
	for _, k := range []string{"orders:1", "orders:2"} {
		e.rc.HSet(ctx, e.prefix+k, "id", "old")
		e.rc.SAdd(ctx, list, e.prefix+k)
	}
	e.rc.SAdd(ctx, e.cfg.OffsetsPrefix+"p:tables", list)
	e.rc.Set(ctx, e.cfg.OffsetsPrefix+"p", "old position", 0)
	shadow := e.sink(t, nil)
	shadow.UseShadow()
	if err := shadow.Open(ctx); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, shadow, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(3), nil, "new", nil, nil))))
	if err := shadow.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := e.mustScan(t, "orders*"), []string{e.prefix + "orders:3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after promote: %v, want %v", got, want)
	}
	if got, want := e.tableList(t, "p"), []string{e.prefix + "orders:*"}; !reflect.DeepEqual(got, want) {
		t.Errorf("live table list after promote = %v, want %v", got, want)
	}
}

// A view's format is stored with it: opening it with another format is a
// clear error pointing at rebuild, before anything is written.
func TestFormatChangeIsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.open(t, nil)
	mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "new", nil, nil))))
	s.Close(ctx)
	js := e.sink(t, func(c *Config) { c.Format = FormatJSON })
	err := js.Open(ctx)
	if err == nil || !strings.Contains(err.Error(), "written as hash") || !strings.Contains(err.Error(), "rebuild") {
		t.Fatalf("Open with format json over a hash view = %v; want an error naming both formats and rebuild", err)
	}
	js.Close(ctx)
}

// A table whose keys could be taken for the sink's own (under
// offsets_prefix) is refused, naming the setting to change.
func TestTableKeysClashingWithOwnKeys(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, nil)
	offsets := connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "offsets"}, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Key: 1},
	})
	err := s.WriteBatch(context.Background(), batch(change(connectors.OpCreate, offsets, 1, nil, vals(int64(1)))))
	if err == nil || !strings.Contains(err.Error(), "offsets_prefix") {
		t.Fatalf("WriteBatch of table offsets = %v; want an error naming offsets_prefix", err)
	}
	if left := e.mustScan(t, "offsets:1"); len(left) != 0 {
		t.Error("the row was written")
	}
}

// A hash row of a thousand and more fields is one HSET.
func TestWideRow(t *testing.T) {
	e := newEnv(t)
	cols := []connectors.Column{{Name: "id", Type: connectors.TypeInt64, Key: 1}}
	row := vals(int64(1))
	const n = 1005
	for i := 1; i <= n; i++ {
		cols = append(cols, connectors.Column{Name: fmt.Sprintf("c%d", i), Type: connectors.TypeString})
		row = append(row, fmt.Sprint(i))
	}
	wide := connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "wide"}, 1, cols)
	s := e.open(t, nil)
	mustWrite(t, s, batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "new", nil, nil)),
		change(connectors.OpCreate, wide, 2, nil, row),
	))
	h := e.hash(t, "wide:1")
	if len(h) != len(cols) || h["c1"] != "1" || h[fmt.Sprintf("c%d", n)] != fmt.Sprint(n) {
		t.Errorf("wide:1 has %d fields, want %d", len(h), len(cols))
	}
}

// Promote keeps the shadow rows' TTLs and replaces the live table list.
func TestPromoteKeepsTTL(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	adjust := func(c *Config) { c.TTL = time.Hour }
	live := e.open(t, adjust)
	mustWrite(t, live, batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "old", nil, nil)),
		change(connectors.OpCreate, linesSchema, 2, nil, vals("x", int64(1), int64(1), nil)),
	))
	live.Close(ctx)
	shadow := e.sink(t, adjust)
	shadow.UseShadow()
	if err := shadow.Open(ctx); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, shadow, batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(2), nil, "new", nil, nil)),
		change(connectors.OpCreate, ordersSchema, 2, nil, vals(int64(3), nil, "new", nil, nil)),
	))
	if err := shadow.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if ttl := e.rc.PTTL(ctx, e.prefix+"orders:3").Val(); ttl < 59*time.Minute {
		t.Errorf("PTTL orders:3 after promote = %v", ttl)
	}
	if e.hash(t, "orders:1") != nil || e.hash(t, "lines:x:1") != nil {
		t.Error("a row of the old view is left")
	}
	if got, want := e.tableList(t, "p"), []string{e.prefix + "orders:*"}; !reflect.DeepEqual(got, want) {
		t.Errorf("live table list after promote = %v, want %v", got, want)
	}
}
