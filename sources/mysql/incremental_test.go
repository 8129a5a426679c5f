package mysql

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// syncBuffer is a log destination tests read while the source writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// incrSource is a streaming-only source with a data directory (so it takes
// snapshot requests) and a log the test can read.
func (f *fixture) incrSource(t *testing.T, cfg Config, dataDir string, log *syncBuffer) *Source {
	t.Helper()
	rt := connectors.Runtime{Pipeline: f.name, DataDir: dataDir}
	if log != nil {
		rt.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(cfg, rt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readState reads the source's incremental snapshot progress.
func readState(t *testing.T, s *Source) (incrState, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(connectors.SnapshotDir(s.rt.DataDir, s.rt.Pipeline), "state.json"))
	if err != nil {
		return incrState{}, false
	}
	var st incrState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st, true
}

// snapshotIdle reports whether every request was taken and every table
// taken has been emitted to its final chunk (or refused).
func snapshotIdle(t *testing.T, s *Source) bool {
	entries, _ := os.ReadDir(filepath.Join(connectors.SnapshotDir(s.rt.DataDir, s.rt.Pipeline), "requests"))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			return false
		}
	}
	st, ok := readState(t, s)
	if !ok {
		return false
	}
	for i := range st.Tables {
		if !st.Tables[i].Finished() {
			return false
		}
	}
	return true
}

// eventLog reads batches and checks what every batch of a database source
// must hold: positions strictly growing, Last at or after the events, no
// event of the signal table.
type eventLog struct {
	t      *testing.T
	s      *Source
	last   connectors.Position // the last position read
	events []connectors.Event  // read and not yet taken by a fold
	seen   []connectors.Event  // every event read
}

func (l *eventLog) read(ctx context.Context) connectors.Batch {
	l.t.Helper()
	b, err := l.s.ReadBatch(ctx, connectors.Limits{MaxEvents: 70, MaxWait: 20 * time.Millisecond})
	if err != nil {
		l.t.Fatalf("ReadBatch: %v", err)
	}
	for i := range b.Events {
		ev := &b.Events[i]
		if l.last != nil && bytes.Compare(ev.Position, l.last) <= 0 {
			l.t.Fatalf("event %s %s at %s is not after %s", ev.Op, ev.Table(), pf(ev.Position), pf(l.last))
		}
		l.last = ev.Position
		if l.s.filter.isSignal(ev.Source.DB, ev.Source.Table) {
			l.t.Fatalf("a signal-table row was emitted: %+v", ev.Source)
		}
		if ev.Op == connectors.OpRead && !isSnapPos(ev.Position) && (!ev.Source.Snapshot || ev.Tx.ID == "" || ev.Source.Position == "") {
			l.t.Fatalf("snapshot event without its high watermark's transaction: %+v %+v", ev.Source, ev.Tx)
		}
	}
	if b.Last != nil {
		if bytes.Compare(b.Last, l.last) < 0 {
			l.t.Fatalf("batch Last %s is before its last event %s", pf(b.Last), pf(l.last))
		}
		l.last = b.Last
	}
	l.events = append(l.events, b.Events...)
	l.seen = append(l.seen, b.Events...)
	return b
}

func pf(p connectors.Position) string {
	s, err := formatPosition(p)
	if err != nil {
		return p.String()
	}
	return s
}

// readUntil reads until done holds, for at most 25s.
func (l *eventLog) readUntil(what string, done func() bool) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	for !done() {
		if ctx.Err() != nil {
			l.t.Fatalf("timed out waiting for %s", what)
		}
		l.read(ctx)
	}
}

// The DBLog property on a live table: writers insert, update and delete
// keys the chunks cover while the snapshot runs, and each chunk has a row
// updated and one deleted between its watermarks. Folded from nothing (a
// new view), the events end equal to the table row by row, and no row
// changed inside its chunk's window is emitted by the chunk.
func TestIncrementalSnapshotWithConcurrentWriters(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name, qty, price) SELECT seq, CONCAT('item ', seq), seq %% 10, seq / 4 FROM seq_1_to_3000", f.name))
	cfg := f.config()
	cfg.IncrementalChunk = 200
	s := f.incrSource(t, cfg, t.TempDir(), nil)
	var mu sync.Mutex
	touched := map[int64]bool{} // changed inside their chunk's window
	s.testIncremental = func(in *incremental) {
		in.afterChunk = func(_ connectors.TableID, key [][]byte) {
			id, _ := strconv.ParseInt(string(key[0]), 10, 64)
			if _, err := f.db.Exec(fmt.Sprintf("UPDATE %s.items SET name = 'changed in the window', qty = -1 WHERE id = %d", f.name, id)); err != nil {
				t.Error(err)
			}
			if _, err := f.db.Exec(fmt.Sprintf("DELETE FROM %s.items WHERE id = %d", f.name, id-1)); err != nil {
				t.Error(err)
			}
			mu.Lock()
			touched[id], touched[id-1] = true, true
			mu.Unlock()
		}
	}
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	var next, commits atomic.Int64
	next.Store(3000)
	stop := make(chan struct{})
	done := f.writer(t, 5, &next, &commits, stop)
	if err := connectors.RequestSnapshot(s.rt.DataDir, s.rt.Pipeline, []string{f.name + ".items"}); err != nil {
		t.Fatal(err)
	}
	l := &eventLog{t: t, s: s}
	l.readUntil("the incremental snapshot", func() bool { return snapshotIdle(t, s) })
	close(stop)
	t.Logf("the writer committed %d transactions", done())
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name) VALUES (-1, 'sentinel')", f.name))
	got := view{}
	sentinel := false
	l.readUntil("the sentinel", func() bool {
		for i := range l.events {
			got.apply(t, &l.events[i])
			if l.events[i].Op == connectors.OpCreate && l.events[i].After[0] == int64(-1) {
				sentinel = true
			}
		}
		l.events = l.events[:0]
		return sentinel
	})
	var reads, streamed int
	snapIDs := map[int64]bool{}
	for _, ev := range l.all() {
		if ev.Op == connectors.OpRead {
			reads++
			id := ev.After[0].(int64)
			if snapIDs[id] {
				t.Errorf("row %d was emitted by two chunks", id)
			}
			snapIDs[id] = true
		} else {
			streamed++
		}
	}
	t.Logf("%d snapshot rows, %d streamed changes, %d rows changed inside windows", reads, streamed, len(touched))
	compareViews(t, got, f.tableState(t))
	if len(touched) < 20 || reads < 2000 || streamed < 50 {
		t.Errorf("%d snapshot rows, %d streamed changes, %d rows touched in windows: the test did not exercise the windows", reads, streamed, len(touched))
	}
	for id := range touched {
		if snapIDs[id] {
			t.Errorf("row %d, changed inside its chunk's window, was emitted by the chunk too", id)
		}
	}
}

// all is every event read.
func (l *eventLog) all() []connectors.Event { return l.seen }

// A snapshot row never overwrites a newer change, with composite keys of
// the types whose binlog and SELECT forms differ most: an unsigned bigint
// above 2^63, a varchar in a case-insensitive collation, and a binary(4)
// with zero bytes inside and at its end (the binlog strips trailing
// zeros). Between each chunk's watermarks its last row is updated; the
// chunk must leave that row to the stream, so the keys of both must
// compare equal.
func TestIncrementalSnapshotLeavesRowsChangedInTheWindowToTheStream(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf("CREATE TABLE %s.ck (a bigint unsigned, b varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, c binary(4), v int, PRIMARY KEY (a, b, c))", f.name))
	const n = 120
	for i := 1; i <= n; i++ {
		a := strconv.Itoa(i % 7)
		if i%3 == 0 {
			a = strconv.FormatUint(18446744073709551615-uint64(i), 10)
		}
		c := []byte{byte(i), 0, 0, 0}
		if i%2 == 0 {
			c[2] = 'A'
		}
		f.exec(fmt.Sprintf("INSERT INTO %s.ck VALUES (%s, ?, ?, ?)", f.name, a), fmt.Sprintf("Kéy-%d", i), c, i)
	}
	cfg := f.config()
	cfg.Tables = []string{f.name + ".ck"}
	cfg.IncrementalChunk = 25
	s := f.incrSource(t, cfg, t.TempDir(), nil)
	var mu sync.Mutex
	touched := map[string]bool{}
	s.testIncremental = func(in *incremental) {
		in.afterChunk = func(_ connectors.TableID, key [][]byte) {
			a, err := strconv.ParseUint(string(key[0]), 10, 64)
			if err != nil {
				t.Error(err)
			}
			if _, err := f.db.Exec(fmt.Sprintf("UPDATE %s.ck SET v = -v WHERE a = ? AND b = ? AND c = ?", f.name), a, string(key[1]), key[2]); err != nil {
				t.Error(err)
			}
			mu.Lock()
			touched[string(key[0])+"|"+string(key[1])+"|"+hex.EncodeToString(key[2])] = true
			mu.Unlock()
		}
	}
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := connectors.RequestSnapshot(s.rt.DataDir, s.rt.Pipeline, []string{f.name + ".ck"}); err != nil {
		t.Fatal(err)
	}
	l := &eventLog{t: t, s: s}
	l.readUntil("the incremental snapshot", func() bool { return snapshotIdle(t, s) })
	f.exec(fmt.Sprintf("INSERT INTO %s.ck VALUES (0, 'sentinel', x'00', 0)", f.name))
	l.readUntil("the sentinel", func() bool {
		evs := l.all()
		return len(evs) > 0 && evs[len(evs)-1].Op == connectors.OpCreate && evs[len(evs)-1].After[1] == "sentinel"
	})
	keyOfRow := func(row []connectors.Value) string {
		return fmt.Sprint(row[0]) + "|" + row[1].(string) + "|" + hex.EncodeToString(row[2].([]byte))
	}
	got := map[string]string{}
	reads, updates := 0, 0
	for _, ev := range l.all() {
		switch ev.Op {
		case connectors.OpRead:
			reads++
			if touched[keyOfRow(ev.After)] {
				t.Errorf("row %s was updated inside its chunk's window and emitted by the chunk too", keyOfRow(ev.After))
			}
		case connectors.OpUpdate:
			updates++
			if !touched[keyOfRow(ev.After)] {
				t.Errorf("update of %s, which no window touched", keyOfRow(ev.After))
			}
		}
		got[keyOfRow(ev.After)] = fmt.Sprint(ev.After[3])
	}
	rows, err := f.db.Query(fmt.Sprintf("SELECT a, b, c, v FROM %s.ck", f.name))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := map[string]string{}
	for rows.Next() {
		var a, b, v string
		var c []byte
		if err := rows.Scan(&a, &b, &c, &v); err != nil {
			t.Fatal(err)
		}
		want[a+"|"+b+"|"+hex.EncodeToString(c)] = v
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the events folded by key differ from the table:\n got %v\nwant %v", got, want)
	}
	if len(touched) != (n+24)/25 || reads != n-len(touched) || updates != len(touched) {
		t.Errorf("%d rows touched in %d windows, %d snapshot rows, %d updates; want one per window and the other %d rows read", len(touched), (n+24)/25, reads, updates, n-len(touched))
	}
}

// A restart in the middle of an incremental snapshot goes on after the
// last chunk made durable: no chunk at or before the acknowledged position
// is read again, the chunk in flight is, and the view converges.
func TestIncrementalSnapshotResumesAfterTheLastDurableChunk(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name, qty, price) SELECT seq, CONCAT('item ', seq), seq, 1 FROM seq_1_to_3000", f.name))
	cfg := f.config()
	cfg.IncrementalChunk = 200
	dataDir := t.TempDir()
	logs := &syncBuffer{}
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	s := f.incrSource(t, cfg, dataDir, logs)
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := connectors.RequestSnapshot(dataDir, s.rt.Pipeline, []string{f.name + ".items"}); err != nil {
		t.Fatal(err)
	}
	got := view{}
	l := &eventLog{t: t, s: s}
	reads := 0
	var acked connectors.Position
	l.readUntil("900 snapshot rows", func() bool {
		for i := range l.events {
			got.apply(t, &l.events[i])
			if l.events[i].Op == connectors.OpRead {
				reads++
			}
		}
		l.events = l.events[:0]
		acked = l.last
		return reads >= 900
	})
	if err := s.Ack(ctx, acked); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
	// The chunks known durable at the acknowledged position.
	st, ok := readState(t, s)
	if !ok || len(st.Tables) != 1 {
		t.Fatalf("state after the first run: %+v (found %v)", st, ok)
	}
	ak := keyOf(mustDecode(t, acked))
	var durable int64
	for _, c := range st.Tables[0].Chunks {
		if c.End.atOrBefore(ak) {
			durable, _ = strconv.ParseInt(string(c.Key[0]), 10, 64)
		}
	}
	if durable < 600 {
		t.Fatalf("after %d snapshot rows acknowledged at %s, the state %+v has chunks durable up to key %d", reads, pf(acked), st, durable)
	}
	// Changes while the pipeline is down, to rows read and not yet read.
	f.exec(fmt.Sprintf("UPDATE %s.items SET qty = -1 WHERE id IN (5, 2500)", f.name))
	f.exec(fmt.Sprintf("DELETE FROM %s.items WHERE id IN (6, 2501)", f.name))

	s2 := f.incrSource(t, cfg, dataDir, nil)
	var in2 *incremental
	s2.testIncremental = func(in *incremental) { in2 = in }
	if err := s2.Open(ctx, acked); err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	l2 := &eventLog{t: t, s: s2, last: acked}
	l2.readUntil("the rest of the snapshot", func() bool { return snapshotIdle(t, s2) })
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name) VALUES (5000, 'sentinel')", f.name))
	l2.readUntil("the sentinel", func() bool {
		evs := l2.all()
		return len(evs) > 0 && evs[len(evs)-1].Op == connectors.OpCreate && evs[len(evs)-1].After[0] == int64(5000)
	})
	var first int64 = -1
	reads2 := 0
	for i, ev := range l2.all() {
		got.apply(t, &l2.all()[i])
		if ev.Op != connectors.OpRead {
			continue
		}
		reads2++
		id := ev.After[0].(int64)
		if first < 0 {
			first = id
		}
		if id <= durable {
			t.Errorf("row %d, in a chunk durable before the restart (up to key %d), was read again", id, durable)
		}
	}
	compareViews(t, got, f.tableState(t))
	wantChunks := (3000 - int(durable) + 199) / 200
	t.Logf("first run: %d snapshot rows, durable up to key %d; second run: %d rows from key %d in %d chunks", reads, durable, reads2, first, in2.chunksRead)
	if first != durable+1 || reads2 > 3000-int(durable) || in2.chunksRead < wantChunks || in2.chunksRead > wantChunks+1 {
		t.Errorf("after the restart the snapshot read %d rows in %d chunks from key %d; want %d chunks from key %d", reads2, in2.chunksRead, first, wantChunks, durable+1)
	}
}

// The signal table is never emitted, also when a db.* entry covers it and
// when it is named by signal_table; the initial snapshot leaves it out;
// watermarks of other pipelines in it are ignored.
func TestIncrementalSnapshotSignalTableIsNeverEmitted(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name, qty, price) SELECT seq, 'x', 1, 1 FROM seq_1_to_300", f.name))
	sig := connectors.TableID{Schema: f.name, Name: "my_signal"}
	f.exec(signalDDL(sig))
	f.exec(fmt.Sprintf("INSERT INTO %s VALUES ('another pipeline', 'w1', 'low', NOW())", quoteTable(sig)))
	cfg := f.config()
	cfg.Tables = []string{f.name + ".*"}
	cfg.Snapshot = "initial"
	cfg.SignalTable = "my_signal"
	cfg.IncrementalChunk = 100
	logs := &syncBuffer{}
	defer func() { t.Log(logs.String()) }()
	s := f.incrSource(t, cfg, t.TempDir(), logs)
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := connectors.RequestSnapshot(s.rt.DataDir, s.rt.Pipeline, []string{f.name + ".items"}); err != nil {
		t.Fatal(err)
	}
	f.exec(fmt.Sprintf("UPDATE %s SET window_id = 'w2', kind = 'high' WHERE pipeline = 'another pipeline'", quoteTable(sig)))
	l := &eventLog{t: t, s: s}
	l.readUntil("the incremental snapshot", func() bool { return snapshotIdle(t, s) })
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id) VALUES (5000)", f.name))
	l.readUntil("the sentinel", func() bool {
		evs := l.all()
		return len(evs) > 0 && evs[len(evs)-1].After[0] == int64(5000)
	})
	initial, incremental := 0, 0
	for _, ev := range l.all() {
		if ev.Source.Table != "items" {
			t.Errorf("event of table %s", ev.Source.Table)
		}
		if ev.Op == connectors.OpRead && isSnapPos(ev.Position) {
			initial++
		} else if ev.Op == connectors.OpRead {
			incremental++
		}
	}
	var marks int
	if err := f.db.QueryRow(fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE pipeline = ? AND kind = 'high'", quoteTable(sig)), f.name).Scan(&marks); err != nil || marks != 1 {
		t.Errorf("the signal table holds %d high watermarks of this pipeline (%v); want its one row", marks, err)
	}
	if initial != 300 || incremental != 300 {
		t.Errorf("%d rows from the initial snapshot and %d from the incremental one; want 300 each", initial, incremental)
	}
}

// Requests that cannot be served are refused with an error in the log,
// and the pipeline streams on: a table that does not exist, one not
// captured, one without a primary key, the signal table, a name without
// its database, and tables dropped or renamed while they are read (the
// statement inside the window makes the chunk stale; reading it again
// finds no table).
func TestIncrementalSnapshotRefusals(t *testing.T) {
	f := newFixture(t)
	for _, q := range []string{
		"CREATE TABLE %s.other (id int PRIMARY KEY)",
		"CREATE TABLE %s.nokey (id int, v int)",
		"CREATE TABLE %s.t2 (id int PRIMARY KEY, v int)",
		"CREATE TABLE %s.t3 (id int PRIMARY KEY, v int)",
		"INSERT INTO %[1]s.t2 SELECT seq, seq FROM seq_1_to_300",
		"INSERT INTO %[1]s.t3 SELECT seq, seq FROM seq_1_to_300",
	} {
		f.exec(fmt.Sprintf(q, f.name))
	}
	cfg := f.config()
	cfg.Tables = []string{f.name + ".items", f.name + ".nokey", f.name + ".t2", f.name + ".t3"}
	cfg.IncrementalChunk = 100
	logs := &syncBuffer{}
	s := f.incrSource(t, cfg, t.TempDir(), logs)
	s.testIncremental = func(in *incremental) {
		in.afterChunk = func(id connectors.TableID, _ [][]byte) {
			var q string
			switch id.Name {
			case "t2":
				q = fmt.Sprintf("DROP TABLE %s.t2", f.name)
			case "t3":
				q = fmt.Sprintf("RENAME TABLE %s.t3 TO %s.t3_old", f.name, f.name)
			default:
				return
			}
			if _, err := f.db.Exec(q); err != nil {
				t.Error(err)
			}
		}
	}
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	bad := map[string]string{
		f.name + ".nope":           "does not exist",
		f.name + ".other":          "not among the tables this pipeline captures",
		f.name + ".nokey":          "no primary key",
		f.name + ".tapline_signal": "is the signal table",
		"items":                    "name one table as db.table",
		f.name + ".t2":             "dropped or renamed",
		f.name + ".t3":             "dropped or renamed",
	}
	var names []string
	for n := range bad {
		names = append(names, n)
	}
	sort.Strings(names)
	if err := connectors.RequestSnapshot(s.rt.DataDir, s.rt.Pipeline, names); err != nil {
		t.Fatal(err)
	}
	l := &eventLog{t: t, s: s}
	l.readUntil("the requests to be refused", func() bool {
		st, ok := readState(t, s)
		return ok && len(st.Tables) == 0 && snapshotIdle(t, s)
	})
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id) VALUES (1)", f.name))
	l.readUntil("a change after the refusals", func() bool {
		evs := l.all()
		return len(evs) > 0 && evs[len(evs)-1].Table().Name == "items"
	})
	out := logs.String()
	for _, name := range names {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "level=ERROR") && strings.Contains(line, "table="+name+" ") && strings.Contains(line, bad[name]) {
				found = true
			}
		}
		if !found {
			t.Errorf("no error in the log for %s saying %q; log:\n%s", name, bad[name], out)
		}
	}
	for _, ev := range l.all() {
		if ev.Op == connectors.OpRead {
			t.Errorf("a snapshot row of %s was emitted, from a chunk whose table was dropped or renamed in its window", ev.Table())
		}
	}
}

// Keys compare by their values' text, length-prefixed, whatever Go type
// carries an integer; composite keys cannot run into each other.
func TestKeyString(t *testing.T) {
	k := func(vals ...connectors.Value) string {
		idx := make([]int, len(vals))
		for i := range idx {
			idx[i] = i
		}
		return keyString(vals, idx)
	}
	if k(int64(5), "a") != k(uint64(5), "a") {
		t.Error("int64 5 and uint64 5 differ")
	}
	if k(uint64(18446744073709551615)) == k(int64(-1)) {
		t.Error("2^64-1 and -1 are the same key")
	}
	if k("a\x00b", "c") == k("a", "\x00bc") || k("ab", "") == k("a", "b") || k(nil) == k("") {
		t.Error("composite keys run into each other")
	}
	if k([]byte{0xff, 0}) != k([]byte{0xff, 0}) || k([]byte("x")) == k([]byte("x\x00")) {
		t.Error("binary keys")
	}
	// Binary keys survive the state file (they are not UTF-8).
	b, _ := json.Marshal(incrChunk{Key: [][]byte{{0xff, 0, 'A'}}})
	var c incrChunk
	if err := json.Unmarshal(b, &c); err != nil || !bytes.Equal(c.Key[0], []byte{0xff, 0, 'A'}) {
		t.Errorf("key through JSON: %q %v", c.Key, err)
	}
}

func TestMentions(t *testing.T) {
	for q, want := range map[string]bool{
		"DROP TABLE `shop`.`items` /* generated by server */": true,
		"RENAME TABLE shop.Items TO shop.items_old":           true,
		"ALTER TABLE items ADD COLUMN x int":                  true,
		"TRUNCATE items":                                      true,
		"ALTER TABLE items_archive ADD COLUMN x int":          false,
		"CREATE TABLE my_items (id int)":                      false,
		"GRANT SELECT ON shop.* TO app":                       false,
	} {
		if got := mentions(q, "items"); got != want {
			t.Errorf("mentions(%q, items) = %v", q, got)
		}
	}
}

func TestPosKeyOrderAndSignalTableName(t *testing.T) {
	a := posKey{Kind: kindMaria, Commit: 10, Ev: 1, Row: 3}
	for _, tc := range []struct {
		b    posKey
		want bool
	}{
		{posKey{Kind: kindMaria, Commit: 10, Ev: 1, Row: 3}, true},
		{posKey{Kind: kindMaria, Commit: 10, Ev: boundary, Row: boundary}, true},
		{posKey{Kind: kindMaria, Commit: 11}, true},
		{posKey{Kind: kindMaria, Commit: 10, Ev: 1, Row: 2}, false},
		{posKey{Kind: kindMaria, Commit: 9, Ev: 5, Row: 5}, false},
		{posKey{Kind: kindFile, Commit: 11}, false},
	} {
		if got := a.atOrBefore(tc.b); got != tc.want {
			t.Errorf("%+v at or before %+v = %v", a, tc.b, got)
		}
	}
	cfg := DefaultConfig()
	cfg.Tables = []string{"shop.orders", "crm.*"}
	if got := cfg.signalTable().String(); got != "shop.tapline_signal" {
		t.Errorf("default signal table %s", got)
	}
	cfg.SignalTable = "ops.signals"
	if got := cfg.signalTable().String(); got != "ops.signals" {
		t.Errorf("signal table %s", got)
	}
	f := newTableFilter(cfg.Tables)
	f.signal = "crm\x00signals"
	if f.match("crm", "signals") || !f.decodes("crm", "signals") || !f.match("crm", "signal") || f.isSignal("crm", "signals2") {
		t.Error("the signal table filter")
	}
	for _, bad := range []string{"a.*", ".x", "a.", "a.b.c"} {
		cfg.SignalTable = bad
		if cfg.Validate() == nil {
			t.Errorf("signal_table %q accepted", bad)
		}
	}
}
