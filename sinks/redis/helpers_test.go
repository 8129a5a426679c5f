package redis

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
)

// testEnv is one test's corner of the test Redis: every key it makes
// starts with prefix, and is deleted when the test ends.
type testEnv struct {
	rc     *redis.Client
	prefix string
	cfg    Config
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	rc := servicetest.Redis(t)
	name := servicetest.Name(t, "tl")
	cfg := DefaultConfig()
	cfg.Addr = rc.Options().Addr
	cfg.KeyPrefix = name + ":"
	cfg.OffsetsPrefix = name + ":offsets:"
	cfg.ShadowPrefix = name + ":shadow:"
	e := &testEnv{rc: rc, prefix: name + ":", cfg: cfg}
	t.Cleanup(func() {
		if n := e.deleteAll(context.Background()); n < 0 {
			t.Errorf("cleanup: could not delete the test's keys %s*", e.prefix)
		}
	})
	return e
}

// deleteAll deletes every key of the test; it returns -1 on error.
func (e *testEnv) deleteAll(ctx context.Context) int {
	keys, err := e.scan(ctx, "*")
	if err != nil {
		return -1
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		if err := e.rc.Unlink(ctx, keys[:n]...).Err(); err != nil {
			return -1
		}
		keys = keys[n:]
	}
	return 0
}

// scan returns the sorted keys matching prefix+pattern.
func (e *testEnv) scan(ctx context.Context, pattern string) ([]string, error) {
	var out []string
	it := e.rc.Scan(ctx, 0, e.prefix+pattern, 1000).Iterator()
	for it.Next(ctx) {
		out = append(out, it.Val())
	}
	sort.Strings(out)
	return out, it.Err()
}

func (e *testEnv) mustScan(t testing.TB, pattern string) []string {
	t.Helper()
	keys, err := e.scan(context.Background(), pattern)
	if err != nil {
		t.Fatalf("SCAN %s%s: %v", e.prefix, pattern, err)
	}
	return keys
}

// sink builds a sink of pipeline "p" with the env's config, changed by
// adjust.
func (e *testEnv) sink(t testing.TB, adjust func(*Config)) *Sink {
	t.Helper()
	cfg := e.cfg
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := New(cfg, connectors.Runtime{Pipeline: "p"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func (e *testEnv) open(t testing.TB, adjust func(*Config)) *Sink {
	t.Helper()
	s := e.sink(t, adjust)
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// hash returns HGETALL key, nil when the key does not exist.
func (e *testEnv) hash(t testing.TB, key string) map[string]string {
	t.Helper()
	m, err := e.rc.HGetAll(context.Background(), e.prefix+key).Result()
	if err != nil {
		t.Fatalf("HGETALL %s: %v", key, err)
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// members returns the sorted members of a set.
func (e *testEnv) members(t testing.TB, key string) []string {
	t.Helper()
	m, err := e.rc.SMembers(context.Background(), e.prefix+key).Result()
	if err != nil {
		t.Fatalf("SMEMBERS %s: %v", key, err)
	}
	sort.Strings(m)
	return m
}

// keyList returns the sorted members of a key list, a set or a zset
// (full key name, not prefixed), and its type.
func (e *testEnv) keyList(t testing.TB, key string) ([]string, string) {
	t.Helper()
	ctx := context.Background()
	typ, err := e.rc.Type(ctx, key).Result()
	if err != nil {
		t.Fatalf("TYPE %s: %v", key, err)
	}
	var m []string
	switch typ {
	case "set":
		m, err = e.rc.SMembers(ctx, key).Result()
	case "zset":
		m, err = e.rc.ZRange(ctx, key, 0, -1).Result()
	case "none":
	default:
		t.Fatalf("key list %s is a %s", key, typ)
	}
	if err != nil {
		t.Fatalf("members of %s: %v", key, err)
	}
	sort.Strings(m)
	return m, typ
}

// Test tables.
var (
	ordersSchema = connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "orders"}, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Native: "int8", Key: 1},
		{Name: "customer_id", Type: connectors.TypeInt64, Native: "int8", Nullable: true},
		{Name: "status", Type: connectors.TypeString, Native: "text"},
		{Name: "note", Type: connectors.TypeString, Native: "text", Nullable: true},
		{Name: "amount", Type: connectors.TypeDecimal, Native: "numeric(10,2)", Nullable: true},
	})
	linesSchema = connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "lines"}, 1, []connectors.Column{
		{Name: "sku", Type: connectors.TypeString, Native: "text", Key: 1},
		{Name: "n", Type: connectors.TypeInt64, Native: "int4", Key: 2},
		{Name: "qty", Type: connectors.TypeInt64, Native: "int4"},
		{Name: "memo", Type: connectors.TypeString, Native: "text", Nullable: true},
	})
)

// change makes an event at position (commit, 1).
func change(op connectors.Op, sch *connectors.Schema, commit uint64, before, after []connectors.Value) connectors.Event {
	ev := connectors.Event{
		Op: op, Schema: sch, Before: before, After: after,
		Source: connectors.SourceInfo{Connector: "test", DB: "shopdb", Schema: sch.Table.Schema, Table: sch.Table.Name,
			Position: fmt.Sprintf("%020d", commit)},
		Position: connectors.TxPosition{Commit: commit, Ordinal: 1}.Encode(),
		TsMs:     time.Now().UnixMilli(),
	}
	return ev
}

func truncate(sch *connectors.Schema, commit uint64) connectors.Event {
	ev := change(connectors.OpTruncate, sch, commit, nil, nil)
	return ev
}

func vals(v ...connectors.Value) []connectors.Value { return v }

func batch(evs ...connectors.Event) connectors.Batch {
	return connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}
}

func mustWrite(t testing.TB, s *Sink, b connectors.Batch) {
	t.Helper()
	if err := s.WriteBatch(context.Background(), b); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }
