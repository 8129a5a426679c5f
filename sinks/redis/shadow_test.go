package redis

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tapline/tapline/connectors"
)

// A rebuild writes a shadow copy while the live view serves, then promotes
// it. A reader that reads the whole view in one transaction, all along,
// sees the old view or the new one, never a mix, never an empty view.
func TestShadowPromote(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	adjust := func(c *Config) { c.Indexes = []Index{{Table: "orders", Column: "customer_id"}} }
	const oldRows, newFrom, newTo = 300, 51, 400

	// The live view: rows 1..300, status "old".
	live := e.open(t, adjust)
	var evs []connectors.Event
	for i := int64(1); i <= oldRows; i++ {
		evs = append(evs, change(connectors.OpCreate, ordersSchema, uint64(i), nil, vals(i, i%7, "old", nil, nil)))
	}
	mustWrite(t, live, connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position})
	live.Close(ctx)

	// An abandoned rebuild leaves a shadow copy behind.
	abandoned := e.sink(t, adjust)
	abandoned.UseShadow()
	if err := abandoned.Open(ctx); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, abandoned, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(999), int64(1), "abandoned", nil, nil))))
	abandoned.Close(ctx)

	// The reader.
	keys := make([]string, 0, newTo)
	for i := 1; i <= newTo; i++ {
		keys = append(keys, fmt.Sprintf("%sorders:%d", e.prefix, i))
	}
	keys = append(keys, e.prefix+"orders:999")
	classify := func(statuses []string) string {
		isOld, isNew := true, true
		for i, st := range statuses {
			id := i + 1
			if id > newTo { // orders:999 must never show
				if st != "" {
					return "shows the abandoned row"
				}
				continue
			}
			wantOld, wantNew := "", ""
			if id <= oldRows {
				wantOld = "old"
			}
			if id >= newFrom {
				wantNew = "new"
			}
			isOld = isOld && st == wantOld
			isNew = isNew && st == wantNew
		}
		switch {
		case isOld:
			return "old"
		case isNew:
			return "new"
		}
		return "mixed"
	}
	var (
		seen      sync.Map // "old", "new", other → count
		stop      = make(chan struct{})
		done      = make(chan struct{})
		snapshots atomic.Int64
		readErr   atomic.Value
	)
	read := func() (string, error) {
		cmds, err := e.rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.HGet(ctx, k, "status")
			}
			return nil
		})
		if err != nil && err != redis.Nil {
			return "", err
		}
		statuses := make([]string, len(cmds))
		for i, c := range cmds {
			statuses[i] = c.(*redis.StringCmd).Val()
		}
		return classify(statuses), nil
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			what, err := read()
			if err != nil {
				readErr.Store(err)
				return
			}
			n, _ := seen.LoadOrStore(what, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			snapshots.Add(1)
		}
	}()
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if n, ok := seen.Load(what); ok && n.(*atomic.Int64).Load() > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the reader never saw the %s view", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("old")

	// The rebuild: rows 51..400, status "new", in batches, with the
	// reader going on.
	shadow := e.sink(t, adjust)
	shadow.UseShadow()
	if err := shadow.Open(ctx); err != nil {
		t.Fatal(err)
	}
	var last connectors.Position
	for from := int64(newFrom); from <= newTo; from += 50 {
		var evs []connectors.Event
		for i := from; i < from+50 && i <= newTo; i++ {
			evs = append(evs, change(connectors.OpCreate, ordersSchema, uint64(1000+i), nil, vals(i, i%5, "new", nil, nil)))
		}
		b := connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}
		mustWrite(t, shadow, b)
		last = b.Last
		time.Sleep(2 * time.Millisecond)
	}
	if got, _ := shadow.CommittedPosition(ctx); got.Compare(last) != 0 {
		t.Fatalf("shadow position %s, want %s", got, last)
	}
	if what, _ := read(); what != "old" {
		t.Fatalf("before the promotion the reader sees the %s view", what)
	}
	before := snapshots.Load()
	if err := shadow.Promote(ctx); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	waitFor("new")
	for snapshots.Load() < before+20 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-done
	if err, _ := readErr.Load().(error); err != nil {
		t.Fatalf("reader: %v", err)
	}
	seen.Range(func(k, v any) bool {
		if k != "old" && k != "new" {
			t.Errorf("the reader saw a %s view %d times", k, v.(*atomic.Int64).Load())
		}
		return true
	})
	t.Logf("%d snapshots read", snapshots.Load())

	// The live view is the rebuilt one: its position, its index sets, and
	// nothing of the shadow left.
	after := e.open(t, adjust)
	if got, _ := after.CommittedPosition(ctx); got.Compare(last) != 0 {
		t.Errorf("live position after promote %s, want %s", got, last)
	}
	if left := e.mustScan(t, "shadow:*"); len(left) != 0 {
		t.Errorf("shadow keys left after promote: %v", left[:min(5, len(left))])
	}
	if left, _ := e.rc.Exists(ctx, e.cfg.OffsetsPrefix+"p#shadow", e.cfg.OffsetsPrefix+"p#shadow:tables").Result(); left != 0 {
		t.Errorf("the shadow position or key lists are left after promote")
	}
	wantIdx := map[string][]string{}
	for i := newFrom; i <= newTo; i++ {
		k := fmt.Sprintf("orders:by:customer_id:%d", i%5)
		wantIdx[k] = append(wantIdx[k], fmt.Sprint(i))
	}
	gotIdx := map[string][]string{}
	for _, k := range e.mustScan(t, "orders:by:*") {
		k = k[len(e.prefix):]
		gotIdx[k] = e.members(t, k)
	}
	for k := range wantIdx {
		sort.Strings(wantIdx[k])
	}
	if !reflect.DeepEqual(gotIdx, wantIdx) {
		t.Errorf("index sets after promote: %v, want %v", gotIdx, wantIdx)
	}
	// The promoted view goes on like any other: a truncate clears it all.
	mustWrite(t, after, batch(truncate(ordersSchema, 5000)))
	if left := e.mustScan(t, "orders*"); len(left) != 0 {
		t.Errorf("after a truncate of the promoted view, keys left: %v", left[:min(5, len(left))])
	}
}
