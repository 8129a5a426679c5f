package redis

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// listKey is the name of the key list of the test tables (default
// template) in pipeline "p".
func (e *testEnv) listKey(table string) string {
	return e.cfg.OffsetsPrefix + "p:keys:" + e.prefix + table + ":{pk}"
}

// checkList fails unless the key list of table is of type typ and holds
// exactly the keys (unprefixed) given.
func (e *testEnv) checkList(t *testing.T, table, typ string, keys ...string) {
	t.Helper()
	var want []string
	for _, k := range keys {
		want = append(want, e.prefix+k)
	}
	got, gotType := e.keyList(t, e.listKey(table))
	if gotType != typ || !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
		t.Errorf("key list of %s: a %s of %v, want a %s of %v", table, gotType, got, typ, want)
	}
}

// Whole-row writes travel in groups (one DEL, one SADD per batch): rows of
// one shape, of varying shapes, of two tables, deletes, a key written
// twice in a batch, a row moved to another key and a partial update
// among them all end as the events say, in both formats, and the key
// lists hold exactly the keys that exist.
func TestRowGroups(t *testing.T) {
	for _, format := range []string{FormatHash, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			e := newEnv(t)
			s := e.open(t, func(c *Config) { c.Format = format })
			var evs []connectors.Event
			add := func(ev connectors.Event) { evs = append(evs, ev) }
			// One shape, one table.
			for i := int64(1); i <= 6; i++ {
				add(change(connectors.OpCreate, ordersSchema, uint64(i), nil, vals(i, i*10, "new", "n", "1.00")))
			}
			mustWrite(t, s, connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position})
			e.checkList(t, "orders", "set", "orders:1", "orders:2", "orders:3", "orders:4", "orders:5", "orders:6")
			first := len(evs)
			// Everything else, in one batch.
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
			var orders, lines []string
			for _, k := range e.mustScan(t, "*") {
				k = strings.TrimPrefix(k, e.prefix)
				switch {
				case strings.HasPrefix(k, "orders:"):
					orders = append(orders, k)
				case strings.HasPrefix(k, "lines:"):
					lines = append(lines, k)
				default:
					continue
				}
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected key %s", k)
				}
			}
			if len(orders)+len(lines) != len(want) {
				t.Errorf("%d rows stored, want %d: %v %v", len(orders)+len(lines), len(want), orders, lines)
			}
			e.checkList(t, "orders", "set", orders...)
			e.checkList(t, "lines", "set", lines...)
		})
	}
}

// A key list made before (a sorted set, by an earlier version or with a
// TTL) stays a sorted set; a truncate still deletes every key it lists.
func TestKeyListKeepsItsType(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	list := e.listKey("orders")
	e.rc.HSet(ctx, e.prefix+"orders:1", "id", "1")
	e.rc.ZAdd(ctx, list, redisZ(0, e.prefix+"orders:1"))
	e.rc.SAdd(ctx, e.cfg.OffsetsPrefix+"p:tables", list)
	s := e.open(t, nil)
	mustWrite(t, s, batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(2), nil, "new", nil, nil)),
		change(connectors.OpCreate, ordersSchema, 2, nil, vals(int64(3), nil, "new", nil, nil)),
	))
	e.checkList(t, "orders", "zset", "orders:1", "orders:2", "orders:3")
	mustWrite(t, s, batch(change(connectors.OpDelete, ordersSchema, 3, vals(int64(3), nil, nil, nil, nil), nil)))
	e.checkList(t, "orders", "zset", "orders:1", "orders:2")
	mustWrite(t, s, batch(truncate(ordersSchema, 4)))
	if left := e.mustScan(t, "orders*"); len(left) != 0 {
		t.Errorf("after the truncate: %v", left)
	}
	// The next write makes a new list, of today's type.
	mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 5, nil, vals(int64(4), nil, "new", nil, nil))))
	e.checkList(t, "orders", "set", "orders:4")
}

// With a TTL the key list is a sorted set scored by each key's expiry,
// and entries of keys expired for over trackSlack are dropped.
func TestKeyListTTL(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.open(t, func(c *Config) { c.TTL = time.Hour })
	before := time.Now()
	mustWrite(t, s, batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "new", nil, nil)),
		change(connectors.OpCreate, ordersSchema, 2, nil, vals(int64(2), nil, "new", nil, nil)),
	))
	e.checkList(t, "orders", "zset", "orders:1", "orders:2")
	score, err := e.rc.ZScore(ctx, e.listKey("orders"), e.prefix+"orders:1").Result()
	if lo, hi := before.Add(time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli(); err != nil || score < float64(lo) || score > float64(hi) {
		t.Errorf("score of orders:1 = %v, %v; want its expiry, in [%d, %d]", score, err, lo, hi)
	}
	if ttl := e.rc.PTTL(ctx, e.prefix+"orders:2").Val(); ttl < 59*time.Minute {
		t.Errorf("PTTL orders:2 = %v", ttl)
	}
	// A key that expired long ago.
	e.rc.ZAdd(ctx, e.listKey("orders"), redisZ(float64(time.Now().Add(-2*trackSlack).UnixMilli()), e.prefix+"orders:old"))
	mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 3, nil, vals(int64(3), nil, "new", nil, nil))))
	e.checkList(t, "orders", "zset", "orders:1", "orders:2", "orders:3")
}

// A key list of another type (another application's key) stops the batch
// before anything is written.
func TestKeyListWrongType(t *testing.T) {
	e := newEnv(t)
	e.rc.Set(context.Background(), e.listKey("orders"), "not a list", 0)
	s := e.open(t, nil)
	err := s.WriteBatch(context.Background(), batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "new", nil, nil))))
	if err == nil || !strings.Contains(err.Error(), "set or zset") {
		t.Fatalf("WriteBatch over a string key list = %v; want an error naming the types", err)
	}
	if e.hash(t, "orders:1") != nil {
		t.Error("the batch was written")
	}
}

// A hash row with more fields than one HSET takes is written in several,
// outside the group, next to grouped rows.
func TestWideRow(t *testing.T) {
	e := newEnv(t)
	cols := []connectors.Column{{Name: "id", Type: connectors.TypeInt64, Key: 1}}
	row := vals(int64(1))
	for i := 1; i <= maxPairs+5; i++ {
		cols = append(cols, connectors.Column{Name: fmt.Sprintf("c%d", i), Type: connectors.TypeString})
		row = append(row, fmt.Sprint(i))
	}
	wide := connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "wide"}, 1, cols)
	s := e.open(t, nil)
	mustWrite(t, s, batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "new", nil, nil)),
		change(connectors.OpCreate, wide, 2, nil, row),
		change(connectors.OpCreate, ordersSchema, 3, nil, vals(int64(2), nil, "new", nil, nil)),
	))
	h := e.hash(t, "wide:1")
	if len(h) != len(cols) || h["c1"] != "1" || h[fmt.Sprintf("c%d", maxPairs+5)] != fmt.Sprint(maxPairs+5) {
		t.Errorf("wide:1 has %d fields, want %d", len(h), len(cols))
	}
	e.checkList(t, "wide", "set", "wide:1")
	e.checkList(t, "orders", "set", "orders:1", "orders:2")
}

// Promote moves a shadow key list to the live one keeping its type: with
// a TTL a sorted set, with each key's expiry as its score.
func TestPromoteKeepsListType(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	adjust := func(c *Config) { c.TTL = time.Hour }
	live := e.open(t, adjust)
	mustWrite(t, live, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "old", nil, nil))))
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
	shadowList := e.cfg.OffsetsPrefix + "p#shadow:keys:" + e.prefix + "orders:{pk}"
	want, err := e.rc.ZScore(ctx, shadowList, e.cfg.ShadowPrefix+"p:"+e.prefix+"orders:2").Result()
	if err != nil {
		t.Fatalf("the shadow key list has no score for orders:2: %v", err)
	}
	if err := shadow.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	e.checkList(t, "orders", "zset", "orders:2", "orders:3")
	if got := e.rc.ZScore(ctx, e.listKey("orders"), e.prefix+"orders:2").Val(); got != want {
		t.Errorf("score of orders:2 after promote = %v, want the shadow's %v", got, want)
	}
	if ttl := e.rc.PTTL(ctx, e.prefix+"orders:3").Val(); ttl < 59*time.Minute {
		t.Errorf("PTTL orders:3 after promote = %v", ttl)
	}
	if e.hash(t, "orders:1") != nil {
		t.Error("the old view's row is left")
	}
}
