package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapline/tapline/connectors"
)

// fold applies events to a map id → "name|qty", as an upserting view would.
type fold struct {
	rows     map[int64]string
	snapIDs  map[int64]bool
	problems []string
}

func newFold() *fold { return &fold{rows: map[int64]string{}, snapIDs: map[int64]bool{}} }

func (f *fold) apply(ev *connectors.Event) {
	id := ev.Key()[0].Value.(int64)
	switch ev.Op {
	case connectors.OpRead:
		if f.snapIDs[id] {
			f.problems = append(f.problems, fmt.Sprintf("row %d read twice by the snapshot", id))
		}
		f.snapIDs[id] = true
		f.rows[id] = fmt.Sprintf("%v|%v", ev.After[1], ev.After[2])
	case connectors.OpCreate, connectors.OpUpdate:
		f.rows[id] = fmt.Sprintf("%v|%v", ev.After[1], ev.After[2])
	case connectors.OpDelete:
		delete(f.rows, id)
	}
}

func tableState(t *testing.T, conn *pgx.Conn, table string) map[int64]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT id, name, qty FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var name string
		var qty int32
		if err := rows.Scan(&id, &name, &qty); err != nil {
			t.Fatal(err)
		}
		out[id] = fmt.Sprintf("%v|%v", name, int64(qty))
	}
	return out
}

func diff(got, want map[int64]string) []string {
	var d []string
	for id, w := range want {
		if g, ok := got[id]; !ok {
			d = append(d, fmt.Sprintf("row %d missing (want %s)", id, w))
		} else if g != w {
			d = append(d, fmt.Sprintf("row %d = %s, want %s", id, g, w))
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			d = append(d, fmt.Sprintf("row %d = %s should not exist", id, g))
		}
	}
	sort.Strings(d)
	return d
}

func (f *fixture) snapSource(t *testing.T, mode string) *Source {
	s := f.source(t)
	s.cfg.Snapshot = mode
	return s
}

// readUntil reads batches into fold until done() or the timeout.
func readUntil(t *testing.T, s *Source, fd *fold, done func() bool) []connectors.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var evs []connectors.Event
	for !done() {
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 500, MaxWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("ReadBatch after %d events: %v", len(evs), err)
		}
		for i := range b.Events {
			fd.apply(&b.Events[i])
		}
		evs = append(evs, b.Events...)
	}
	return evs
}

// The snapshot reads every row at the slot's consistent point and the stream
// goes on from exactly there: with writes running during the snapshot, the
// folded events end equal to the table, no row inserted after the point is
// also in the snapshot, and nothing is missing.
func TestSnapshotWithConcurrentWritesEndsEqualToTheTable(t *testing.T) {
	f := newFixture(t)
	table := f.schema + ".items"
	f.exec(fmt.Sprintf("INSERT INTO %s SELECT g, 'item ' || g, g %% 100 FROM generate_series(1, 12000) g", table))

	// Writers: updates, deletes and inserts of new ids, before, during and
	// after the snapshot.
	wconn, err := pgx.Connect(context.Background(), f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer wconn.Close(context.Background())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	started := make(chan struct{})
	wg.Go(func() {
		defer func() {
			select {
			case <-started:
			default:
				close(started) // the writer failed early; do not hang the test
			}
		}()
		rng := rand.New(rand.NewPCG(1, 2))
		next := int64(100_000)
		for i := 0; i < 3000; i++ {
			if i == 300 {
				close(started) // some changes land before the consistent point
			}
			select {
			case <-stop:
				return
			default:
			}
			var sql string
			switch i % 3 {
			case 0:
				sql = fmt.Sprintf("UPDATE %s SET qty = qty + 1, name = 'upd %d' WHERE id = %d", table, i, 1+rng.IntN(12000))
			case 1:
				sql = fmt.Sprintf("DELETE FROM %s WHERE id = %d", table, 1+rng.IntN(12000))
			default:
				next++
				sql = fmt.Sprintf("INSERT INTO %s VALUES (%d, 'new %d', 7)", table, next, next)
			}
			if _, err := wconn.Exec(context.Background(), sql); err != nil {
				t.Errorf("writer: %v", err)
				return
			}
		}
	})
	<-started
	s := f.snapSource(t, "initial")
	if err := s.Open(context.Background(), nil); err != nil {
		close(stop)
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	fd := newFold()
	var evs []connectors.Event
	writersDone := false
	var want map[int64]string
	evs = readUntil(t, s, fd, func() bool {
		if !writersDone {
			if len(fd.snapIDs) < 1000 {
				return false
			}
			wg.Wait()
			writersDone = true
			want = tableState(t, f.conn, table)
		}
		return len(diff(fd.rows, want)) == 0
	})
	close(stop)
	if len(fd.problems) > 0 {
		t.Fatalf("%d problems, first: %s", len(fd.problems), fd.problems[0])
	}
	// No inserted id may be in the snapshot: an overlap would mean the
	// snapshot and the stream both delivered the change.
	reads, streamed := 0, 0
	for i := range evs {
		ev := &evs[i]
		if ev.Op == connectors.OpRead {
			reads++
			if i > 0 && evs[i-1].Op != connectors.OpRead {
				t.Fatalf("snapshot row after a streamed change at event %d", i)
			}
			continue
		}
		streamed++
		if ev.Op == connectors.OpCreate && fd.snapIDs[ev.After[0].(int64)] {
			t.Errorf("row %v was in the snapshot and inserted by the stream", ev.After[0])
		}
	}
	t.Logf("%d snapshot rows, %d streamed changes, %d rows at the end", reads, streamed, len(want))
	newInSnapshot := 0
	for id := range fd.snapIDs {
		if id > 100_000 {
			newInSnapshot++
		}
	}
	if reads < 10_000 || newInSnapshot == 0 {
		t.Errorf("%d snapshot rows, %d of them inserted before the snapshot: the writes before the consistent point are not in it", reads, newInSnapshot)
	}
}

// An interrupted snapshot goes on from the last row made durable, at a
// newer snapshot, and the stream brings the rows up to date.
func TestInterruptedSnapshotGoesOn(t *testing.T) {
	f := newFixture(t)
	table := f.schema + ".items"
	f.exec(fmt.Sprintf("INSERT INTO %s SELECT g, 'item ' || g, 1 FROM generate_series(1, 12000) g", table))
	s := f.snapSource(t, "initial")
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	fd := newFold()
	evs := readUntil(t, s, fd, func() bool { return len(fd.snapIDs) >= 7000 })
	s.Close(context.Background())
	// The last durable row: the 7000th.
	stored := evs[6999].Position
	for id := range fd.rows {
		if id > 7000 {
			delete(fd.rows, id)
			delete(fd.snapIDs, id)
		}
	}
	// Changes while the pipeline is down: a row already read, one not yet
	// read, a delete of each kind and a new row.
	f.exec(fmt.Sprintf("UPDATE %s SET name = 'changed' WHERE id IN (10, 9000)", table))
	f.exec(fmt.Sprintf("DELETE FROM %s WHERE id IN (20, 9500)", table))
	f.exec(fmt.Sprintf("INSERT INTO %s VALUES (50000, 'late', 2)", table))

	s2 := f.snapSource(t, "initial")
	if err := s2.Open(context.Background(), stored); err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	want := tableState(t, f.conn, table)
	more := readUntil(t, s2, fd, func() bool { return len(diff(fd.rows, want)) == 0 })
	if len(fd.problems) > 0 {
		t.Fatalf("%d problems, first: %s", len(fd.problems), strings.Join(fd.problems[:1], ""))
	}
	if more[0].Op != connectors.OpRead || more[0].After[0].(int64) != 7001 {
		t.Fatalf("the resumed snapshot starts at %s id %v, want a read of id 7001", more[0].Op, more[0].After[0])
	}
}

// initial_only reads the tables and finishes; its progress is exported as
// metrics.
func TestInitialOnlyFinishes(t *testing.T) {
	f := newFixture(t)
	table := f.schema + ".items"
	f.exec(fmt.Sprintf("INSERT INTO %s SELECT g, 'item ' || g, 1 FROM generate_series(1, 100) g; ANALYZE %s", table, table))
	s := f.snapSource(t, "initial_only")
	reg := prometheus.NewRegistry()
	s.rt.Metrics = reg
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	n := 0
	for {
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 30, MaxWait: time.Second})
		n += len(b.Events)
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("ReadBatch: %v", err)
			}
			break
		}
	}
	if n != 100 {
		t.Fatalf("read %d rows, want 100", n)
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "table" && l.GetValue() == table {
					got[mf.GetName()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	if got["tapline_postgres_snapshot_rows"] != 100 || got["tapline_postgres_snapshot_rows_estimated"] != 100 {
		t.Errorf("snapshot progress metrics for %s: %v; want 100 rows of an estimated 100", table, got)
	}
}
