package mysql

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// view folds events into the latest row per key, as an upserting sink does.
type view map[int64]string

func (v view) apply(t *testing.T, ev *connectors.Event) {
	t.Helper()
	switch ev.Op {
	case connectors.OpDelete:
		delete(v, ev.Before[0].(int64))
	case connectors.OpCreate, connectors.OpUpdate, connectors.OpRead:
		v[ev.After[0].(int64)] = rowString(ev.After[:4])
	case connectors.OpTruncate:
		clear(v)
	}
}

func rowString(vals []connectors.Value) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		if v == nil {
			parts[i] = "NULL"
		} else {
			parts[i] = fmt.Sprint(v)
		}
	}
	return strings.Join(parts, "|")
}

// tableState reads the items table as rowString renders events.
func (f *fixture) tableState(t *testing.T) view {
	rows, err := f.db.Query(fmt.Sprintf("SELECT id, IFNULL(name, 'NULL'), IFNULL(qty, 'NULL'), IFNULL(price, 'NULL') FROM %s.items", f.name))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := view{}
	for rows.Next() {
		var id int64
		var name, qty, price string
		if err := rows.Scan(&id, &name, &qty, &price); err != nil {
			t.Fatal(err)
		}
		out[id] = fmt.Sprintf("%d|%s|%s|%s", id, name, qty, price)
	}
	return out
}

func compareViews(t *testing.T, got, want view) {
	t.Helper()
	var problems []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			problems = append(problems, fmt.Sprintf("missing %d (want %s)", k, w))
		} else if g != w {
			problems = append(problems, fmt.Sprintf("%d = %s, want %s", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			problems = append(problems, fmt.Sprintf("unexpected %d = %s", k, g))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("... and %d more", len(problems)-10))
		}
		t.Fatalf("the events folded differ from the table (%d rows, want %d):\n  %s", len(got), len(want), strings.Join(problems, "\n  "))
	}
}

// writer changes random rows in small transactions until stopped.
func (f *fixture) writer(t *testing.T, seed uint64, next *atomic.Int64, count *atomic.Int64, stop <-chan struct{}) (done func() int) {
	var wg sync.WaitGroup
	n := 0
	wg.Go(func() {
		rnd := rand.New(rand.NewPCG(seed, 7))
		for {
			select {
			case <-stop:
				return
			default:
			}
			var stmts []string
			for i := 0; i < 1+rnd.IntN(5); i++ {
				id := 1 + rnd.Int64N(next.Load())
				switch rnd.IntN(4) {
				case 0:
					stmts = append(stmts, fmt.Sprintf("INSERT INTO %s.items (id, name, qty, price) VALUES (%d, 'new', 0, 1.50)", f.name, next.Add(1)))
				case 1:
					stmts = append(stmts, fmt.Sprintf("DELETE FROM %s.items WHERE id = %d", f.name, id))
				default:
					stmts = append(stmts, fmt.Sprintf("UPDATE %s.items SET qty = qty + 1, name = 'upd %d' WHERE id = %d", f.name, n, id))
				}
			}
			tx, err := f.db.Begin()
			if err != nil {
				t.Error(err)
				return
			}
			for _, q := range stmts {
				if _, err := tx.Exec(q); err != nil {
					t.Error(err)
					tx.Rollback()
					return
				}
			}
			if err := tx.Commit(); err != nil {
				t.Error(err)
				return
			}
			n++
			count.Add(1)
		}
	})
	return func() int { wg.Wait(); return n }
}

// The snapshot is consistent with the binlog position streaming starts
// from: with writers running before, during and after it, the events folded
// by key end equal to the table, row by row.
func TestSnapshotWithConcurrentWritesEndsEqualToTheTable(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name, qty, price) SELECT seq, CONCAT('item ', seq), seq %% 10, seq / 4 FROM seq_1_to_20000", f.name))
	var next atomic.Int64
	next.Store(20000)
	stop := make(chan struct{})
	var commits atomic.Int64
	done := f.writer(t, 1, &next, &commits, stop)
	time.Sleep(100 * time.Millisecond) // writes before the snapshot starts
	cfg := f.config()
	cfg.Snapshot = "initial"
	cfg.SnapshotChunk = 500
	s := f.source(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	got := view{}
	var snapRows, streamed int
	sentinel := int64(-1)
	stopped := false
	var atFirst, atLast int64 = -1, -1 // writer commits when the snapshot's first and last rows arrived
	for {
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 500, MaxWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("ReadBatch: %v", err)
		}
		found := false
		for i := range b.Events {
			ev := &b.Events[i]
			got.apply(t, ev)
			if ev.Op == connectors.OpRead {
				snapRows++
				if atFirst < 0 {
					atFirst = commits.Load()
				}
				atLast = commits.Load()
			} else {
				streamed++
				if ev.After != nil && ev.After[0] == sentinel {
					found = true
				}
			}
		}
		if !stopped && snapRows >= 10000 && streamed > 200 {
			// Keep writing a while after the snapshot, then stop and mark the end.
			close(stop)
			t.Logf("writer committed %d transactions", done())
			f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name, qty, price) VALUES (%d, 'sentinel', 0, 0)", f.name, sentinel))
			stopped = true
		}
		if found {
			break
		}
		if snapRows > 0 && streamed == 0 {
			time.Sleep(5 * time.Millisecond) // a slow sink: the snapshot takes a while, the writer goes on
		}
	}
	t.Logf("%d snapshot rows, %d streamed changes, %d transactions committed while the snapshot was read", snapRows, streamed, atLast-atFirst)
	if atLast-atFirst < 5 {
		t.Errorf("only %d transactions committed while the snapshot was read; the test needs writes during it", atLast-atFirst)
	}
	if snapRows < 18000 || streamed < 200 {
		t.Errorf("the snapshot read %d rows and the stream %d changes; want about 20000 (less the rows deleted before it) and at least 200", snapRows, streamed)
	}
	compareViews(t, got, f.tableState(t))
}

// An interrupted snapshot goes on after the last row made durable, and the
// stream that follows brings every row up to date.
func TestInterruptedSnapshotGoesOn(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name, qty, price) SELECT seq, CONCAT('item ', seq), seq, 1 FROM seq_1_to_3000", f.name))
	cfg := f.config()
	cfg.Snapshot = "initial"
	cfg.SnapshotChunk = 400
	ctx := context.Background()
	s := f.source(t, cfg)
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	first := readN(t, s, 1234)
	s.Close(ctx)
	got := view{}
	for i := range first[:1234] {
		got.apply(t, &first[i])
	}
	// Changes while the pipeline is down, to rows read and not yet read.
	f.exec(fmt.Sprintf("UPDATE %s.items SET qty = -1 WHERE id IN (5, 2500)", f.name))
	f.exec(fmt.Sprintf("DELETE FROM %s.items WHERE id IN (6, 2501)", f.name))
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name) VALUES (5000, 'late')", f.name))
	s = f.source(t, cfg)
	if err := s.Open(ctx, first[1233].Position); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	reads := 0
	for {
		evs := readN(t, s, 1)
		for i := range evs {
			got.apply(t, &evs[i])
			if evs[i].Op == connectors.OpRead {
				reads++
				if id := evs[i].After[0].(int64); reads == 1 && id != 1235 {
					t.Fatalf("the resumed snapshot starts at id %d, want 1235", id)
				}
			}
		}
		// Row 5000 may come from the resumed snapshot before the stream
		// reaches the delete, so wait for every change made while down.
		_, has5000 := got[5000]
		_, has6 := got[6]
		_, has2501 := got[2501]
		if has5000 && !has6 && !has2501 && strings.Contains(got[5], "|-1|") && strings.Contains(got[2500], "|-1|") {
			break
		}
	}
	compareViews(t, got, f.tableState(t))
}
