package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// incrementalFixture is a table of 1,000 rows streamed with no initial
// snapshot, and a source whose data directory takes snapshot requests.
func incrementalFixture(t *testing.T) (*fixture, *Source, string) {
	f := newFixture(t)
	f.exec(fmt.Sprintf("INSERT INTO %s.items SELECT g, 'item ' || g, 1 FROM generate_series(1, 1000) g", f.schema))
	s := f.source(t)
	s.rt.DataDir = t.TempDir()
	s.cfg.IncrementalChunk = 100
	return f, s, f.schema + ".items"
}

// hookChunks makes every chunk race with the stream: between its SELECT
// and its high watermark, the chunk's last row is updated and the row
// before it deleted, so the chunk holds stale rows that must not win.
func hookChunks(t *testing.T, f *fixture, s *Source, table string, touched map[int64]bool) {
	s.testIncremental = func(in *incremental) {
		in.afterChunk = func(key []string) {
			if len(key) == 0 {
				return
			}
			id, _ := strconv.ParseInt(key[0], 10, 64)
			f.exec(fmt.Sprintf("UPDATE %s SET name = 'changed in the window', qty = qty + 1 WHERE id = %d; DELETE FROM %s WHERE id = %d", table, id, table, id-1))
			touched[id], touched[id-1] = true, true
		}
	}
}

// snapshotDone reports whether every requested table's final chunk has
// been emitted.
func snapshotDone(t *testing.T, s *Source) bool {
	b, err := os.ReadFile(filepath.Join(connectors.SnapshotDir(s.rt.DataDir, s.rt.Pipeline), "state.json"))
	if err != nil {
		return false
	}
	var st incrState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for i := range st.Tables {
		if !st.Tables[i].Finished() {
			return false
		}
	}
	return true
}

// An incremental snapshot re-reads the table while the stream goes on, and
// a chunk row that the stream changed inside the chunk's window never
// overwrites the change: folded, the events end equal to the table.
func TestIncrementalSnapshotYieldsToTheStream(t *testing.T) {
	f, s, table := incrementalFixture(t)
	touched := map[int64]bool{}
	hookChunks(t, f, s, table, touched)
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	// The fold starts from the table's content, as a view built before.
	fd := newFold()
	for id, row := range tableState(t, f.conn, table) {
		fd.rows[id] = row
	}
	if err := connectors.RequestSnapshot(s.rt.DataDir, s.rt.Pipeline, []string{table}); err != nil {
		t.Fatal(err)
	}
	evs := readUntil(t, s, fd, func() bool { return snapshotDone(t, s) && len(fd.snapIDs) > 0 })
	f.exec(fmt.Sprintf("INSERT INTO %s VALUES (5000, 'last', 1)", table)) // a marker: everything before it is read
	// The state file says the final chunk is done once it is emitted; its
	// rows may still be in the batches after that.
	evs = append(evs, readUntil(t, s, fd, func() bool { _, ok := fd.rows[5000]; return ok })...)
	reads := 0
	for _, ev := range evs {
		if ev.Op == connectors.OpRead {
			reads++
			if !ev.Source.Snapshot || ev.Schema.Table.Name != "items" {
				t.Fatalf("snapshot event %+v", ev.Source)
			}
		}
	}
	if len(fd.problems) > 0 {
		t.Fatalf("problems: %v", fd.problems[:min(5, len(fd.problems))])
	}
	if d := diff(fd.rows, tableState(t, f.conn, table)); len(d) > 0 {
		t.Fatalf("after the incremental snapshot the fold differs from the table in %d rows: %v", len(d), d[:min(5, len(d))])
	}
	if len(touched) < 10 || reads < 1000-len(touched) || reads > 1000 {
		t.Errorf("%d snapshot rows read, %d rows touched in windows; want every untouched row read once", reads, len(touched))
	}
	for id := range touched {
		if fd.snapIDs[id] {
			t.Errorf("row %d, changed inside its chunk's window, was emitted by the snapshot too", id)
		}
	}
}

// An incremental snapshot interrupted by a restart goes on after the last
// chunk made durable, not from the start.
func TestIncrementalSnapshotResumesAfterRestart(t *testing.T) {
	f, s, table := incrementalFixture(t)
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := connectors.RequestSnapshot(s.rt.DataDir, s.rt.Pipeline, []string{table}); err != nil {
		t.Fatal(err)
	}
	fd := newFold()
	for id, row := range tableState(t, f.conn, table) {
		fd.rows[id] = row
	}
	// Read until part of the table is read, and acknowledge what was
	// read: most likely in the middle of a chunk.
	var acked connectors.Position
	ctx2, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for len(fd.snapIDs) < 350 {
		b, err := s.ReadBatch(ctx2, connectors.Limits{MaxEvents: 70, MaxWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		for i := range b.Events {
			fd.apply(&b.Events[i])
		}
		if b.Last != nil {
			acked = b.Last
		}
	}
	firstRun := len(fd.snapIDs)
	if err := s.Ack(ctx, acked); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)

	s2 := f.source(t)
	s2.rt.DataDir, s2.cfg.IncrementalChunk = s.rt.DataDir, s.cfg.IncrementalChunk
	if err := s2.Open(ctx, acked); err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	fd2 := newFold()
	fd2.rows = fd.rows
	readUntil(t, s2, fd2, func() bool { return snapshotDone(t, s2) })
	f.exec(fmt.Sprintf("INSERT INTO %s VALUES (5000, 'last', 1)", table))
	readUntil(t, s2, fd2, func() bool { _, ok := fd2.rows[5000]; return ok })
	if d := diff(fd2.rows, tableState(t, f.conn, table)); len(d) > 0 {
		t.Fatalf("the fold differs from the table in %d rows: %v", len(d), d[:min(5, len(d))])
	}
	if len(fd2.snapIDs) == 0 || len(fd2.snapIDs) > 1000-firstRun+100 {
		t.Errorf("after the restart the snapshot read %d rows; the first run had %d durable: it did not go on where it stopped", len(fd2.snapIDs), firstRun)
	}
	for id := int64(1); id <= 1000; id++ {
		if !fd.snapIDs[id] && !fd2.snapIDs[id] {
			t.Fatalf("row %d was never read by the snapshot", id)
		}
	}
}
