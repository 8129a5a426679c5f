package viewsqltest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

// Generate makes n random changes to Items (3,000 keys) and Pairs (2,000
// keys): inserts of absent keys, updates (some leaving the note Unchanged),
// deletes and snapshot reads of present ones, and three truncates. Event i
// is at TxPosition{Commit: i+1, Ordinal: 1}. Every change is consistent
// with the ones before it, as a database's log is.
func Generate(n int, seed uint64) []connectors.Event {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var q seq
	items := map[int64]bool{}
	pairs := map[string]bool{}
	tenants := []string{"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne"}
	evs := make([]connectors.Event, 0, n)
	note := func() string {
		return strings.Repeat("note ", 1+rng.IntN(20)) + strconv.Itoa(rng.IntN(1e6))
	}
	for len(evs) < n {
		i := len(evs)
		switch {
		case i == n*3/10 || i == n*7/10:
			evs = append(evs, q.t(Pairs))
			clear(pairs)
			continue
		case i == n*11/20:
			evs = append(evs, q.t(Items))
			clear(items)
			continue
		}
		if rng.IntN(10) < 7 {
			id := 1 + rng.Int64N(3000)
			row := item(id, fmt.Sprintf("item %d/%d", id, i), rng.Int64N(1000)-100, fmt.Sprintf("%d.%02d", rng.IntN(100000), rng.IntN(100)), note())
			if rng.IntN(50) == 0 {
				row[1], row[4] = nil, nil
			}
			if !items[id] {
				op := connectors.OpCreate
				if rng.IntN(10) == 0 {
					op = connectors.OpRead
				}
				items[id] = true
				evs = append(evs, q.ev(op, Items, nil, row))
				continue
			}
			switch r := rng.IntN(100); {
			case r < 25:
				delete(items, id)
				evs = append(evs, q.d(Items, id))
			case r < 35:
				evs = append(evs, q.ev(connectors.OpRead, Items, nil, row))
			case r < 60:
				row[4] = connectors.Unchanged
				if r < 40 {
					row[1] = connectors.Unchanged
				}
				evs = append(evs, q.ev(connectors.OpUpdate, Items, nil, row))
			default:
				evs = append(evs, q.ev(connectors.OpUpdate, Items, nil, row))
			}
			continue
		}
		tenant := tenants[rng.IntN(len(tenants))]
		id := rng.Int64N(200)
		k := tenant + "/" + strconv.FormatInt(id, 10)
		val := fmt.Sprintf("v%d", i)
		switch {
		case !pairs[k]:
			pairs[k] = true
			evs = append(evs, q.c(Pairs, tenant, id, val))
		case rng.IntN(3) == 0:
			delete(pairs, k)
			evs = append(evs, q.d(Pairs, tenant, id))
		default:
			evs = append(evs, q.u(Pairs, tenant, id, val))
		}
	}
	return evs
}

var (
	errCrash = errors.New("injected: the process died before the commit")
	errLost  = errors.New("injected: the commit's reply was lost")
)

// crashStats counts what the injection did.
type crashStats struct {
	batches, crashesBeforeCommit, lostReplies, retriesOnSameSink, reopens, closes int
}

// feedWithCrashes writes events through sinks that fail at random points
// between apply and commit (or lose the commit's reply), reopening or
// retrying as the engine would, and resuming from CommittedPosition.
func feedWithCrashes(t *testing.T, st *Store, h Harness, pipeline string, cfg viewsql.Config, events []connectors.Event, seed uint64) crashStats {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 7))
	var stats crashStats
	// lasts holds the Last of every batch that may have committed.
	lasts := map[string]bool{"": true}
	for next := -1; next < len(events); {
		s := st.New(t, pipeline, cfg)
		var failBefore, failAfter bool
		h.SetHooks(s, viewsql.Hooks{
			BeforeCommit: func() error {
				if failBefore {
					return errCrash
				}
				return nil
			},
			AfterCommit: func() error {
				if failAfter {
					return errLost
				}
				return nil
			},
		})
		if err := s.Open(ctx); err != nil {
			t.Fatalf("Open after %d reopens: %v", stats.reopens, err)
		}
		stats.reopens++
		p, err := s.CommittedPosition(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !lasts[string(p)] {
			t.Fatalf("the stored position %s is not the end of any batch written", p)
		}
		next = 0
		if p != nil {
			tp, err := connectors.DecodeTxPosition(p)
			if err != nil {
				t.Fatal(err)
			}
			next = int(tp.Commit) // event i is at commit i+1
		}
	batches:
		for next < len(events) {
			k := 1 + rng.IntN(800)
			b := batch(events[next:min(next+k, len(events))]...)
			roll := rng.IntN(100)
			failBefore, failAfter = roll < 4, roll >= 4 && roll < 8
			err := s.WriteBatch(ctx, b)
			stats.batches++
			switch {
			case failBefore:
				if !errors.Is(err, errCrash) {
					t.Fatalf("WriteBatch with a failing commit: %v", err)
				}
				stats.crashesBeforeCommit++
				if rng.IntN(2) == 0 {
					break batches // the process dies; a new one opens the sink
				}
				// The engine retries the batch on the same sink.
				failBefore = false
				stats.retriesOnSameSink++
				if err := s.WriteBatch(ctx, b); err != nil {
					t.Fatalf("WriteBatch retried after a failed commit: %v", err)
				}
			case failAfter:
				lasts[string(b.Last)] = true
				if !errors.Is(err, errLost) {
					t.Fatalf("WriteBatch with a lost reply: %v", err)
				}
				stats.lostReplies++
				if rng.IntN(2) == 0 {
					break batches
				}
				failAfter = false
				stats.retriesOnSameSink++
				if err := s.WriteBatch(ctx, b); err != nil {
					t.Fatalf("WriteBatch retried after a lost reply: %v", err)
				}
			case err != nil:
				t.Fatalf("WriteBatch at event %d: %v", next, err)
			}
			lasts[string(b.Last)] = true
			next += len(b.Events)
			if rng.IntN(100) == 0 {
				stats.closes++
				break // a clean restart
			}
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return stats
}

func testCrash(t *testing.T, h Harness, n int) {
	st := h.Setup(t)
	events := Generate(n, 42)
	m := NewModel()
	ops := map[connectors.Op]int{}
	unchanged := 0
	for i := range events {
		m.Apply(&events[i])
		ops[events[i].Op]++
		if events[i].Schema == Items && events[i].After != nil && connectors.IsUnchanged(events[i].After[4]) {
			unchanged++
		}
	}
	t.Logf("%d events: %v, %d with an unchanged note; the model ends with %d items and %d pairs",
		n, ops, unchanged, len(m.Tables["items"]), len(m.Tables["pairs"]))

	started := time.Now()
	stats := feedWithCrashes(t, st, h, "crash", viewsql.DefaultConfig(), events, 1)
	t.Logf("upsert view: %+v in %v", stats, time.Since(started).Round(time.Millisecond))
	if stats.crashesBeforeCommit == 0 || stats.lostReplies == 0 || stats.reopens < 5 {
		t.Fatalf("the injection did too little: %+v", stats)
	}
	check(t, st, m, "items", itemCols, 1)
	check(t, st, m, "pairs", pairCols, 2)

	// The same stream into history tables: one row per event means no batch
	// was applied twice and none was lost.
	cfg := viewsql.DefaultConfig()
	cfg.Mode = viewsql.ModeHistory
	cfg.HistoryTable = "{table}_h"
	started = time.Now()
	stats = feedWithCrashes(t, st, h, "crash_history", cfg, events, 2)
	t.Logf("history view: %+v in %v", stats, time.Since(started).Round(time.Millisecond))
	total, distinct := 0, 0
	for _, table := range []string{"items_h", "pairs_h"} {
		r := Query(t, st.DB, "SELECT COUNT(*), COUNT(DISTINCT __position) FROM "+st.Table(table))
		a, _ := strconv.Atoi(r[0][0])
		b, _ := strconv.Atoi(r[0][1])
		total, distinct = total+a, distinct+b
	}
	if total != n || distinct != n {
		t.Fatalf("the history tables hold %d rows with %d distinct positions, want %d of each (a batch applied twice, or lost)", total, distinct, n)
	}
}
