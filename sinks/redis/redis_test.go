package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
)

func TestConformance(t *testing.T) {
	e := newEnv(t)
	connectortest.RunSink(t, connectortest.SinkHarness{
		New: func(t *testing.T) connectors.Sink { return e.sink(t, nil) },
		State: func(t *testing.T) map[string]string {
			out := map[string]string{}
			for _, k := range e.mustScan(t, "items:*") {
				id, err := strconv.ParseInt(strings.TrimPrefix(k, e.prefix+"items:"), 10, 64)
				if err != nil {
					t.Fatalf("unexpected key %s", k)
				}
				h := e.hash(t, strings.TrimPrefix(k, e.prefix))
				row := make([]connectors.Value, len(connectortest.Schema.Columns))
				for i, c := range connectortest.Schema.Columns {
					if v, ok := h[c.Name]; ok {
						row[i] = v
					}
				}
				out[connectortest.Key(id)] = connectortest.Row(row...)
			}
			return out
		},
	})
}

func TestOpsHash(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, nil)
	mustWrite(t, s, batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), int64(7), "new", "first", "10.00")),
		change(connectors.OpRead, ordersSchema, 2, nil, vals(int64(2), nil, "new", nil, "1.5")),
		change(connectors.OpCreate, ordersSchema, 3, nil, vals(int64(3), int64(8), "new", "x", nil)),
	))
	mustWrite(t, s, batch(
		change(connectors.OpUpdate, ordersSchema, 4, vals(int64(1), nil, nil, nil, nil), vals(int64(1), int64(7), "paid", nil, "10.00")),
		change(connectors.OpDelete, ordersSchema, 5, vals(int64(3), nil, nil, nil, nil), nil),
	))
	want := map[string]map[string]string{
		"orders:1": {"id": "1", "customer_id": "7", "status": "paid", "amount": "10.00"},
		"orders:2": {"id": "2", "status": "new", "amount": "1.5"},
		"orders:3": nil,
	}
	for k, w := range want {
		if got := e.hash(t, k); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %v, want %v", k, got, w)
		}
	}
	pos, err := s.CommittedPosition(context.Background())
	if err != nil || pos.Compare(connectors.TxPosition{Commit: 5, Ordinal: 1}.Encode()) != 0 {
		t.Fatalf("CommittedPosition = %s, %v; want 5:1", pos, err)
	}
}

func TestOpsJSON(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, func(c *Config) { c.Format = FormatJSON })
	mustWrite(t, s, batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), int64(7), "new <&>", "first", "10.00")),
		change(connectors.OpCreate, ordersSchema, 2, nil, vals(int64(2), nil, "new", nil, "1.5")),
		change(connectors.OpUpdate, ordersSchema, 3, nil, vals(int64(2), int64(9), "paid", nil, "1.5")),
		change(connectors.OpCreate, ordersSchema, 4, nil, vals(int64(3), nil, "gone", nil, nil)),
		change(connectors.OpDelete, ordersSchema, 5, vals(int64(3), nil, nil, nil, nil), nil),
	))
	want := map[string]string{
		"orders:1": `{"id":1,"customer_id":7,"status":"new <&>","note":"first","amount":"10.00"}`,
		"orders:2": `{"id":2,"customer_id":9,"status":"paid","note":null,"amount":"1.5"}`,
	}
	for k, w := range want {
		got, err := e.rc.Get(context.Background(), e.prefix+k).Result()
		if err != nil {
			t.Fatalf("GET %s: %v", k, err)
		}
		// Compare the decoded documents, and the key order.
		var g, wv map[string]any
		if err := json.Unmarshal([]byte(got), &g); err != nil {
			t.Fatalf("%s holds %q: %v", k, got, err)
		}
		json.Unmarshal([]byte(w), &wv)
		if !reflect.DeepEqual(g, wv) || columnsOrder(got) != "id,customer_id,status,note,amount" {
			t.Errorf("%s = %s, want %s", k, got, w)
		}
	}
	if n, _ := e.rc.Exists(context.Background(), e.prefix+"orders:3").Result(); n != 0 {
		t.Errorf("the deleted row orders:3 is still there")
	}
}

// columnsOrder lists a JSON object's keys in document order.
func columnsOrder(doc string) string {
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.Token()
	var keys []string
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var v json.RawMessage
		dec.Decode(&v)
	}
	return strings.Join(keys, ",")
}

// A TOASTed column left Unchanged by an update keeps its stored value, in
// both formats; a column that becomes NULL loses its field (hash) or
// becomes null (json).
func TestUnchangedKept(t *testing.T) {
	long := strings.Repeat("toasted ", 1000)
	for _, format := range []string{FormatHash, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			e := newEnv(t)
			s := e.open(t, func(c *Config) { c.Format = format })
			mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), int64(5), "new", long, "3.00"))))
			// Unchanged in its own batch (read from Redis) and twice in one
			// batch (from the batch's own earlier write).
			mustWrite(t, s, batch(change(connectors.OpUpdate, ordersSchema, 2, nil, vals(int64(1), int64(5), "paid", connectors.Unchanged, nil))))
			mustWrite(t, s, batch(
				change(connectors.OpCreate, ordersSchema, 3, nil, vals(int64(2), nil, "new", "short", "1.00")),
				change(connectors.OpUpdate, ordersSchema, 4, nil, vals(int64(2), nil, "sent", connectors.Unchanged, "2.00")),
				change(connectors.OpUpdate, ordersSchema, 5, nil, vals(int64(2), nil, "done", connectors.Unchanged, connectors.Unchanged)),
			))
			want := map[string]map[string]any{
				"orders:1": {"id": "1", "customer_id": "5", "status": "paid", "note": long},
				"orders:2": {"id": "2", "status": "done", "note": "short", "amount": "2.00"},
			}
			if format == FormatJSON {
				want = map[string]map[string]any{
					"orders:1": {"id": json.Number("1"), "customer_id": json.Number("5"), "status": "paid", "note": long, "amount": nil},
					"orders:2": {"id": json.Number("2"), "customer_id": nil, "status": "done", "note": "short", "amount": "2.00"},
				}
			}
			for k, w := range want {
				if got := e.row(t, format, k); !reflect.DeepEqual(got, w) {
					t.Errorf("%s = %.200v, want %.200v", k, got, w)
				}
			}
		})
	}
}

// row reads a row in either format as a map (json numbers as json.Number).
func (e *testEnv) row(t testing.TB, format, key string) map[string]any {
	t.Helper()
	if format == FormatHash {
		h := e.hash(t, key)
		if h == nil {
			return nil
		}
		out := map[string]any{}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	doc, err := e.rc.Get(context.Background(), e.prefix+key).Result()
	if err != nil {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s holds %q: %v", key, doc, err)
	}
	return m
}

func TestTTL(t *testing.T) {
	for _, format := range []string{FormatHash, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			s := e.open(t, func(c *Config) {
				c.Format = format
				c.TTL = time.Hour
				c.Indexes = []Index{{Table: "shop.orders", Column: "customer_id"}}
			})
			mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), int64(5), "new", "n", nil))))
			// Shorten the TTL, then check that a partial update sets it again.
			e.rc.PExpire(ctx, e.prefix+"orders:1", time.Minute)
			mustWrite(t, s, batch(change(connectors.OpUpdate, ordersSchema, 2, nil, vals(int64(1), int64(5), "paid", connectors.Unchanged, nil))))
			ttl, err := e.rc.PTTL(ctx, e.prefix+"orders:1").Result()
			if err != nil || ttl <= 50*time.Minute || ttl > time.Hour {
				t.Errorf("PTTL orders:1 = %v, %v; want just under 1h", ttl, err)
			}
			// Index sets and the sink's own keys never expire.
			for _, k := range []string{e.prefix + "orders:by:customer_id:5", e.cfg.OffsetsPrefix + "p"} {
				if ttl, err := e.rc.PTTL(ctx, k).Result(); err != nil || ttl != -1 {
					t.Errorf("PTTL %s = %v, %v; want -1 (no expiry)", k, ttl, err)
				}
			}
		})
	}
	t.Run("expires", func(t *testing.T) {
		e := newEnv(t)
		s := e.open(t, func(c *Config) { c.TTL = 300 * time.Millisecond })
		mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "new", nil, nil))))
		if e.hash(t, "orders:1") == nil {
			t.Fatal("the row is not there right after the write")
		}
		deadline := time.Now().Add(5 * time.Second)
		for e.hash(t, "orders:1") != nil {
			if time.Now().After(deadline) {
				t.Fatal("the row with a 300ms TTL is still there after 5s")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// Index sets follow the indexed column through updates that change it
// (with or without a Before image), leave it Unchanged, set it NULL, move
// the row to another key, and deletes.
func TestIndexes(t *testing.T) {
	for _, format := range []string{FormatHash, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			e := newEnv(t)
			s := e.open(t, func(c *Config) {
				c.Format = format
				c.Indexes = []Index{{Table: "shop.orders", Column: "customer_id"}, {Table: "lines", Column: "memo"}}
			})
			o := func(id, cust any, status string) []connectors.Value {
				return vals(id, cust, status, "note", "1.00")
			}
			keyOnly := func(id int64) []connectors.Value { return vals(id, nil, nil, nil, nil) }
			mustWrite(t, s, batch(
				change(connectors.OpCreate, ordersSchema, 1, nil, o(int64(1), int64(10), "a")),
				change(connectors.OpCreate, ordersSchema, 2, nil, o(int64(2), int64(10), "a")),
				change(connectors.OpCreate, ordersSchema, 3, nil, o(int64(3), int64(20), "a")),
				change(connectors.OpCreate, ordersSchema, 4, nil, o(int64(4), nil, "a")),
				change(connectors.OpCreate, linesSchema, 5, nil, vals("k:1", int64(1), int64(1), "red")),
			))
			check := func(when string, want map[string][]string) {
				t.Helper()
				got := map[string][]string{}
				for _, k := range e.mustScan(t, "orders:by:*") {
					got[strings.TrimPrefix(k, e.prefix)] = e.members(t, strings.TrimPrefix(k, e.prefix))
				}
				for _, k := range e.mustScan(t, "lines:by:*") {
					got[strings.TrimPrefix(k, e.prefix)] = e.members(t, strings.TrimPrefix(k, e.prefix))
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: index sets = %v, want %v", when, got, want)
				}
			}
			check("after creates", map[string][]string{
				"orders:by:customer_id:10": {"1", "2"}, "orders:by:customer_id:20": {"3"},
				"lines:by:memo:red": {"k%3A1:1"},
			})
			// Changes without a Before image, with a key-only one (whose
			// NULL must not be taken for the old value), with a full one.
			mustWrite(t, s, batch(change(connectors.OpUpdate, ordersSchema, 6, nil, o(int64(1), int64(20), "b"))))
			mustWrite(t, s, batch(
				change(connectors.OpUpdate, ordersSchema, 7, keyOnly(2), o(int64(2), int64(30), "b")),
				change(connectors.OpUpdate, ordersSchema, 8, o(int64(4), nil, "a"), o(int64(4), int64(30), "b")),
				change(connectors.OpUpdate, ordersSchema, 9, nil, vals(int64(3), connectors.Unchanged, "c", connectors.Unchanged, "2.00")),
			))
			check("after changes", map[string][]string{
				"orders:by:customer_id:20": {"1", "3"}, "orders:by:customer_id:30": {"2", "4"},
				"lines:by:memo:red": {"k%3A1:1"},
			})
			// To NULL, a move to another key, a delete, and a change made
			// twice in one batch.
			mustWrite(t, s, batch(
				change(connectors.OpUpdate, ordersSchema, 10, nil, o(int64(1), nil, "d")),
				change(connectors.OpUpdate, ordersSchema, 11, keyOnly(2), o(int64(12), int64(30), "d")),
				change(connectors.OpDelete, ordersSchema, 12, keyOnly(3), nil),
				change(connectors.OpUpdate, ordersSchema, 13, nil, o(int64(4), int64(40), "d")),
				change(connectors.OpUpdate, ordersSchema, 14, nil, o(int64(4), int64(50), "d")),
				change(connectors.OpUpdate, linesSchema, 15, nil, vals("k:1", int64(1), int64(2), "blue")),
			))
			check("after NULL, move, delete", map[string][]string{
				"orders:by:customer_id:30": {"12"}, "orders:by:customer_id:50": {"4"},
				"lines:by:memo:blue": {"k%3A1:1"},
			})
			if e.row(t, format, "orders:2") != nil || e.row(t, format, "orders:12") == nil {
				t.Errorf("the update of orders 2 to key 12 left orders:2=%v orders:12=%v", e.row(t, format, "orders:2"), e.row(t, format, "orders:12"))
			}
		})
	}
}

// A truncate deletes the table's rows and index sets: every key matching
// its pattern, another application's included, and no other.
func TestTruncate(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, func(c *Config) { c.Indexes = []Index{{Table: "orders", Column: "customer_id"}} })
	var evs []connectors.Event
	for i := int64(1); i <= 50; i++ {
		evs = append(evs, change(connectors.OpCreate, ordersSchema, uint64(i), nil, vals(i, i%3, "s", nil, nil)))
		evs = append(evs, change(connectors.OpCreate, linesSchema, uint64(100+i), nil, vals("sku", i, i, nil)))
	}
	mustWrite(t, s, connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position})
	ctx := context.Background()
	e.rc.Set(ctx, e.prefix+"orders:999", "matches the pattern", 0)
	e.rc.Set(ctx, e.prefix+"ordersx:1", "does not", 0)

	mustWrite(t, s, batch(
		change(connectors.OpCreate, ordersSchema, 200, nil, vals(int64(51), int64(1), "s", nil, nil)),
		truncate(ordersSchema, 201),
		change(connectors.OpCreate, ordersSchema, 202, nil, vals(int64(60), int64(4), "after", nil, nil)),
	))
	got := e.mustScan(t, "orders*")
	want := []string{e.prefix + "orders:60", e.prefix + "orders:by:customer_id:4", e.prefix + "ordersx:1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after truncate: keys %v, want %v", got, want)
	}
	if n := len(e.mustScan(t, "lines:*")); n != 50 {
		t.Fatalf("after truncating orders, %d lines are left, want 50", n)
	}
}

// A batch at or before the stored position is skipped whole; an empty
// batch stores its position.
func TestPositionSkipsAppliedBatches(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, nil)
	mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 5, nil, vals(int64(1), nil, "v5", nil, nil))))
	// An older batch, and one ending at the same position: no effect.
	mustWrite(t, s, batch(change(connectors.OpUpdate, ordersSchema, 4, nil, vals(int64(1), nil, "v4", nil, nil))))
	mustWrite(t, s, batch(
		change(connectors.OpCreate, ordersSchema, 3, nil, vals(int64(2), nil, "v3", nil, nil)),
		change(connectors.OpUpdate, ordersSchema, 5, nil, vals(int64(1), nil, "v5bis", nil, nil)),
	))
	if h := e.hash(t, "orders:1"); h["status"] != "v5" {
		t.Errorf("orders:1 status = %q, want v5 (older batches must be skipped)", h["status"])
	}
	if h := e.hash(t, "orders:2"); h != nil {
		t.Errorf("orders:2 = %v, want nothing", h)
	}
	last := connectors.TxPosition{Commit: 9, Ordinal: 0}.Encode()
	if err := s.WriteBatch(context.Background(), connectors.Batch{Last: last}); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.CommittedPosition(context.Background()); p.Compare(last) != 0 {
		t.Errorf("after an empty batch the position is %s, want %s", p, last)
	}
}

func TestAppliedOrigins(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.open(t, nil)
	a := change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "a", nil, nil))
	b := change(connectors.OpCreate, ordersSchema, 2, nil, vals(int64(2), nil, "a", nil, nil))
	b.Source.Connector, b.Source.Name, b.Source.Position = "other", "legacy", "pos-b"
	mustWrite(t, s, batch(a, b))
	want := map[string]string{"test/shopdb": a.Source.Position, "other/legacy": "pos-b"}
	if got, _ := s.AppliedOrigins(ctx); !reflect.DeepEqual(got, want) {
		t.Errorf("AppliedOrigins = %v, want %v", got, want)
	}
	if got, _ := e.rc.HGetAll(ctx, e.cfg.OffsetsPrefix+"p:origins").Result(); !reflect.DeepEqual(got, want) {
		t.Errorf("stored origins = %v, want %v", got, want)
	}
	s.Close(ctx)
	s2 := e.open(t, nil)
	if got, _ := s2.AppliedOrigins(ctx); !reflect.DeepEqual(got, want) {
		t.Errorf("after reopening, AppliedOrigins = %v, want %v", got, want)
	}
}

// Events that cannot be written are rejected by index, and nothing of
// their batch is written.
func TestRejects(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, nil)
	noKey := connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "log"}, 1, []connectors.Column{{Name: "line", Type: connectors.TypeString}})
	type weird struct{}
	err := s.WriteBatch(context.Background(), batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "ok", nil, nil)),
		change(connectors.OpCreate, noKey, 2, nil, vals("x")),
		change(connectors.OpCreate, ordersSchema, 3, nil, vals(nil, nil, "null key", nil, nil)),
		change(connectors.OpCreate, ordersSchema, 4, nil, vals(int64(4), nil, weird{}, nil, nil)),
	))
	var rej *connectors.RejectError
	if !errors.As(err, &rej) {
		t.Fatalf("WriteBatch = %v, want a RejectError", err)
	}
	var idx []int
	for _, ev := range rej.Events {
		idx = append(idx, ev.Index)
	}
	if !reflect.DeepEqual(idx, []int{1, 2, 3}) {
		t.Errorf("rejected %v, want events 1, 2, 3: %v", idx, err)
	}
	if keys := e.mustScan(t, "*"); len(keys) != 0 {
		t.Errorf("a rejected batch wrote %v", keys)
	}
	// A key of the wrong type where a partial update must keep fields: the
	// batch's other writes are applied (see TestWrongTypeKeyRejectsTheEvent),
	// its position is not.
	e.rc.Set(context.Background(), e.prefix+"orders:9", "a string", 0)
	err = s.WriteBatch(context.Background(), batch(
		change(connectors.OpCreate, ordersSchema, 5, nil, vals(int64(5), nil, "ok", nil, nil)),
		change(connectors.OpUpdate, ordersSchema, 6, nil, vals(int64(9), nil, "x", connectors.Unchanged, nil)),
	))
	if !errors.As(err, &rej) || len(rej.Events) != 1 || rej.Events[0].Index != 1 || !strings.Contains(err.Error(), "orders:9") {
		t.Fatalf("WriteBatch over a string key = %v, want event 1 rejected naming the key", err)
	}
	if p, _ := s.CommittedPosition(context.Background()); p != nil {
		t.Errorf("position %s stored by rejected batches", p)
	}
}

// Composite keys are joined with ':' after escaping ':' and '%'.
func TestCompositeKeyEscaping(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, func(c *Config) { c.KeyTemplate = "{prefix}{db}/{schema}.{table}:{pk}" })
	mustWrite(t, s, batch(
		change(connectors.OpCreate, linesSchema, 1, nil, vals("a:b%c", int64(7), int64(1), nil)),
		change(connectors.OpCreate, linesSchema, 2, nil, vals("a", int64(7), int64(2), nil)),
	))
	got := e.mustScan(t, "shopdb/*")
	want := []string{e.prefix + "shopdb/shop.lines:a%3Ab%25c:7", e.prefix + "shopdb/shop.lines:a:7"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("keys %q, want %q", got, want)
	}
}

// Two tables that the template maps to the same keys share them, with a
// warning that names both.
func TestTablesSharingKeys(t *testing.T) {
	e := newEnv(t)
	var logs strings.Builder
	s, err := New(e.cfg, connectors.Runtime{Pipeline: "p", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	other := connectors.MustSchema(connectors.TableID{Schema: "archive", Name: "orders"}, 1, ordersSchema.Columns)
	mustWrite(t, s, batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "a", nil, nil)),
		change(connectors.OpCreate, other, 2, nil, vals(int64(1), nil, "b", nil, nil)),
	))
	if h := e.hash(t, "orders:1"); h["status"] != "b" {
		t.Errorf("orders:1 = %v, want the later row", h)
	}
	if !strings.Contains(logs.String(), "add {schema} or {db}") || !strings.Contains(logs.String(), "archive.orders") {
		t.Errorf("no warning naming the tables; logs:\n%s", logs.String())
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	if err := e.sink(t, nil).Check(context.Background()); err != nil {
		t.Fatalf("Check against the test server: %v", err)
	}
	bad := e.sink(t, func(c *Config) { c.Password = "hunter2-secret"; c.Username = "nobody" })
	err := bad.Check(context.Background())
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("Check with wrong credentials = %v; want an error about credentials, without the password", err)
	}
	down := e.sink(t, func(c *Config) { c.Addr = "127.0.0.1:1" })
	if err := down.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Check of a closed port = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		adjust func(*Config)
		want   string
	}{
		{func(c *Config) { c.KeyTemplate = "{tabel}:{pk}" }, "did you mean {table}"},
		{func(c *Config) { c.KeyTemplate = "{table}" }, "{pk} exactly once"},
		{func(c *Config) { c.KeyTemplate = "{pk}:{pk}" }, "{pk} exactly once"},
		{func(c *Config) { c.KeyTemplate = "{table:{pk}" }, "unknown placeholder"},
		{func(c *Config) { c.Format = "jsno" }, `did you mean "json"`},
		{func(c *Config) { c.Addr = "localhost" }, "addr"},
		{func(c *Config) { c.TTL = -time.Second }, "ttl"},
		{func(c *Config) { c.Indexes = []Index{{Table: "orders"}} }, "indexes[0]"},
	} {
		cfg := DefaultConfig()
		tc.adjust(&cfg)
		_, err := New(cfg, connectors.Runtime{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %+v: error %v, want one containing %q", cfg, err, tc.want)
		}
	}
}

func TestRegistered(t *testing.T) {
	reg, err := connectors.Default.Lookup(connectors.KindSink, "redis")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, f := range reg.Fields() {
		keys = append(keys, f.Key)
		if f.Doc == "" {
			t.Errorf("config key %s has no doc", f.Key)
		}
	}
	if got := fmt.Sprint(keys); got != "[addr username password db tls timeout key_template key_prefix format ttl indexes offsets_prefix shadow_prefix]" {
		t.Errorf("config keys %s", got)
	}
}

// Heartbeat events (op h) write no key but move the origin positions, in a
// batch with changes or alone.
func TestHeartbeatsMoveOrigins(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.open(t, nil)
	hb := func(commit uint64) connectors.Event {
		return connectors.Event{Op: connectors.OpHeartbeat,
			Source:   connectors.SourceInfo{Connector: "test", DB: "shopdb", Position: fmt.Sprintf("%020d", commit)},
			Position: connectors.TxPosition{Commit: commit}.Encode()}
	}
	a := change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "a", nil, nil))
	mustWrite(t, s, batch(a, hb(3)))
	mustWrite(t, s, batch(hb(4)))
	want := map[string]string{"test/shopdb": fmt.Sprintf("%020d", 4)}
	if got, _ := s.AppliedOrigins(ctx); !reflect.DeepEqual(got, want) {
		t.Errorf("AppliedOrigins = %v, want %v (the last heartbeat's)", got, want)
	}
	if p, _ := s.CommittedPosition(ctx); p.Compare(connectors.TxPosition{Commit: 4}.Encode()) != 0 {
		t.Errorf("position %s after a heartbeat-only batch, want the heartbeat's", p)
	}
	if h := e.hash(t, "orders:1"); h["status"] != "a" {
		t.Errorf("orders:1 = %v; want the row written beside the heartbeat", h)
	}
	keys, err := e.rc.Keys(ctx, e.cfg.KeyPrefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if rest := strings.TrimPrefix(k, e.cfg.KeyPrefix); !strings.HasPrefix(rest, "orders:") && !strings.HasPrefix(rest, "offsets:") {
			t.Errorf("key %q is neither the row nor the sink's bookkeeping", k)
		}
	}
}
