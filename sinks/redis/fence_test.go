package redis

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// A writer that has fallen behind (another process moved the stored
// position) neither applies a batch twice nor loses the part of it that is
// new.
func TestStaleWriterIsFenced(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	logKey := e.cfg.OffsetsPrefix + "applied"
	open := func() *Sink {
		s := e.sink(t, nil)
		s.applyLog = logKey
		if err := s.Open(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(ctx) })
		return s
	}
	var evs []connectors.Event
	for i := int64(1); i <= 6; i++ {
		evs = append(evs, change(connectors.OpCreate, ordersSchema, uint64(i), nil, vals(i, nil, "s", nil, nil)))
	}
	a := open()
	mustWrite(t, a, batch(evs[0]))
	b := open()                            // b saw position 1
	mustWrite(t, a, batch(evs[1], evs[2])) // a moves to 3
	mustWrite(t, b, batch(evs[1:5]...))    // b: only 4 and 5 are new
	mustWrite(t, a, batch(evs[3], evs[4])) // a: already there, skipped
	mustWrite(t, a, batch(evs[4], evs[5])) // a: only 6 is new
	applied, err := e.rc.LRange(ctx, logKey, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, ev := range evs {
		want = append(want, string(ev.Position))
	}
	if !reflect.DeepEqual(applied, want) {
		t.Fatalf("applied %q, want each event once, in order: %q", applied, want)
	}
}

// A stored position that went back (Redis lost writes) stops the sink.
func TestPositionWentBack(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.open(t, nil)
	mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), nil, "s", nil, nil))))
	e.rc.Del(ctx, e.cfg.OffsetsPrefix+"p")
	err := s.WriteBatch(ctx, batch(change(connectors.OpCreate, ordersSchema, 2, nil, vals(int64(2), nil, "s", nil, nil))))
	if err == nil || connectors.IsRetryable(err) || !strings.Contains(err.Error(), "went back") {
		t.Fatalf("WriteBatch after the position vanished = %v; want a permanent error saying it went back", err)
	}
	if e.hash(t, "orders:2") != nil {
		t.Error("the batch was applied over a lost position")
	}
}

// With a TTL the rows a batch reads are WATCHed: one that changes between
// the sink reading it and EXEC (an expiry; here another writer, which is
// easier to time) makes EXEC write nothing, and the sink reads again and
// applies the batch on what is there now.
func TestRowChangedAfterReadIsReread(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	in := &injector{}
	s := e.sink(t, func(c *Config) {
		c.Indexes = []Index{{Table: "orders", Column: "customer_id"}}
		c.TTL = time.Hour
	})
	s.dial = in.dial
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), int64(10), "s", nil, nil))))
	scripts := 0
	in.mu.Lock()
	in.onBatch = func() {
		scripts++
		e.rc.HSet(ctx, e.prefix+"orders:1", "customer_id", "99")
	}
	in.mu.Unlock()
	mustWrite(t, s, batch(change(connectors.OpUpdate, ordersSchema, 2, nil, vals(int64(1), int64(20), "t", nil, nil))))
	if scripts != 1 {
		t.Fatalf("the hook ran %d times", scripts)
	}
	// Had the sink used what it first read (10), it would have removed the
	// row from the set of 10. It read 99 again instead; the set of 10 keeps
	// what the other writer left.
	for k, want := range map[string][]string{"orders:by:customer_id:10": {"1"}, "orders:by:customer_id:20": {"1"}} {
		if got := e.members(t, k); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if h := e.hash(t, "orders:1"); h["customer_id"] != "20" || h["status"] != "t" {
		t.Errorf("orders:1 = %v", h)
	}
}
