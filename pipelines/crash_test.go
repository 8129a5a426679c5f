package pipelines

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
)

// The crash tests run a pipeline in a child process (this test binary,
// re-executed), kill it with SIGKILL at chosen or random points, restart it,
// and check what the sink holds.

const childEnv = "TAPLINE_ENGINE_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := runChild(mode); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild runs one pipeline: seqSource{Count, PerTx 5} into a file sink
// (mode "file") or an atomic SQLite sink (mode "atomic"), with SQLite
// offsets, in the directory CHILD_DIR. CHILD_CRASH_AFTER=K kills the process
// right after the K-th batch is durable in the sink, before its offset is
// committed.
func runChild(mode string) error {
	dir := os.Getenv("CHILD_DIR")
	count, _ := strconv.ParseUint(os.Getenv("CHILD_COUNT"), 10, 64)
	crashAfter, _ := strconv.Atoi(os.Getenv("CHILD_CRASH_AFTER"))
	store, err := offsets.OpenSQLite(filepath.Join(dir, "offsets.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	var sink connectors.Sink
	switch mode {
	case "file":
		sink = &fileSink{path: filepath.Join(dir, "out.txt")}
	case "atomic":
		sink = &sqliteAtomicSink{path: filepath.Join(dir, "view.db")}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	cs := &crashSink{Sink: sink, after: crashAfter}
	sink = cs
	if _, ok := cs.Sink.(connectors.AtomicSink); ok {
		sink = crashAtomicSink{cs}
	}
	job := Job{
		Name: "crash", Source: &seqSource{Count: count, PerTx: 5}, Sink: sink, Offsets: store,
		Limits: connectors.Limits{MaxEvents: 50, MaxBytes: 1 << 20, MaxWait: time.Second},
	}
	return Run(context.Background(), job)
}

// crashSink prints "durable" on stdout after every durable write, so that
// the parent can kill the child at a chosen point of its progress, and kills
// the process itself after its after-th durable write (if after > 0).
type crashSink struct {
	connectors.Sink
	after, n int
}

func (c *crashSink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	if err := c.Sink.WriteBatch(ctx, b); err != nil {
		return err
	}
	fmt.Println("durable")
	c.n++
	if c.n == c.after {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return nil
}

// crashAtomicSink is a crashSink around an AtomicSink.
type crashAtomicSink struct{ *crashSink }

func (c crashAtomicSink) CommittedPosition(ctx context.Context) (connectors.Position, error) {
	return c.Sink.(connectors.AtomicSink).CommittedPosition(ctx)
}

// fileSink appends one id per line and fsyncs before returning.
type fileSink struct {
	recSinkBase
	path string
}

func (f *fileSink) WriteBatch(_ context.Context, b connectors.Batch) error {
	fh, err := os.OpenFile(f.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(fh)
	for _, ev := range b.Events {
		fmt.Fprintln(w, ev.After[0])
	}
	if err := w.Flush(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// sqliteAtomicSink inserts rows (a duplicate id is an error) and stores the
// position in the same transaction.
type sqliteAtomicSink struct {
	path string
	db   *sql.DB
}

func (s *sqliteAtomicSink) Open(ctx context.Context) error {
	db, err := sql.Open("sqlite3", s.path+"?_journal_mode=WAL&_synchronous=FULL")
	if err != nil {
		return err
	}
	s.db = db
	_, err = db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY);
		CREATE TABLE IF NOT EXISTS pos (k INTEGER PRIMARY KEY CHECK (k = 1), p BLOB NOT NULL)`)
	return err
}

func (s *sqliteAtomicSink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, ev := range b.Events {
		if _, err := tx.ExecContext(ctx, `INSERT INTO rows (id) VALUES (?)`, ev.After[0]); err != nil {
			return fmt.Errorf("insert id %v: %w", ev.After[0], err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO pos (k, p) VALUES (1, ?) ON CONFLICT (k) DO UPDATE SET p = excluded.p`, []byte(b.Last)); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *sqliteAtomicSink) CommittedPosition(ctx context.Context) (connectors.Position, error) {
	var p []byte
	err := s.db.QueryRowContext(ctx, `SELECT p FROM pos WHERE k = 1`).Scan(&p)
	if err == sql.ErrNoRows {
		return nil, nil
	}
	return p, err
}

func (s *sqliteAtomicSink) Close(context.Context) error {
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

type child struct {
	t     *testing.T
	mode  string
	dir   string
	count int
}

func (c child) cmd(crashAfter int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+c.mode, "CHILD_DIR="+c.dir,
		"CHILD_COUNT="+strconv.Itoa(c.count), "CHILD_CRASH_AFTER="+strconv.Itoa(crashAfter))
	cmd.Stderr = os.Stderr
	return cmd
}

// run runs the child to the end and reports whether it was killed.
func (c child) run(crashAfter int) (killed bool) {
	c.t.Helper()
	err := c.cmd(crashAfter).Run()
	if err == nil {
		return false
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	c.t.Fatalf("child failed: %v", err)
	return false
}

// killAfter starts the child and SIGKILLs it once it has reported
// `batches` durable writes (unless it finished first). The child keeps
// running while the signal travels, so the kill lands at a random point of
// its write-commit-ack cycle.
func (c child) killAfter(batches int) (killed bool) {
	c.t.Helper()
	cmd := c.cmd(0)
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	seen := 0
	for seen < batches && sc.Scan() {
		seen++
	}
	if seen == batches {
		cmd.Process.Kill()
		killed = true
	}
	io.Copy(io.Discard, out)
	err = cmd.Wait()
	if !killed && err != nil {
		c.t.Fatalf("child failed: %v", err)
	}
	return killed
}

func readIDs(t *testing.T, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, err := strconv.ParseInt(sc.Text(), 10, 64)
		if err != nil {
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
		ids = append(ids, id)
	}
	return ids
}

// Killing the process between the sink's write and the offset commit
// replays exactly that batch on restart: duplicates, no loss.
func TestCrashBetweenWriteAndCommitReplaysTheBatch(t *testing.T) {
	c := child{t: t, mode: "file", dir: t.TempDir(), count: 1000}
	if !c.run(4) {
		t.Fatal("child was not killed after the 4th write")
	}
	if ids := readIDs(t, filepath.Join(c.dir, "out.txt")); len(ids) != 200 {
		t.Fatalf("after the crash the sink holds %d events, want 4 batches of 50", len(ids))
	}
	if c.run(0) {
		t.Fatal("restarted child was killed")
	}
	ids := readIDs(t, filepath.Join(c.dir, "out.txt"))
	// 1..200, then 151..1000: the 4th batch (151..200) is replayed.
	var want []int64
	for i := int64(1); i <= 200; i++ {
		want = append(want, i)
	}
	for i := int64(151); i <= 1000; i++ {
		want = append(want, i)
	}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("sink holds %d ids %v..%v; want 1..200 then 151..1000", len(ids), first3(ids), last3(ids))
	}
}

// Random SIGKILLs of an at-least-once pipeline lose nothing.
func TestRandomKillsLoseNothing(t *testing.T) {
	const n = 20_000
	c := child{t: t, mode: "file", dir: t.TempDir(), count: n}
	kills := 0
	for i := 0; i < 6; i++ {
		if c.killAfter(1 + rand.IntN(40)) {
			kills++
		}
	}
	c.run(0)
	ids := readIDs(t, filepath.Join(c.dir, "out.txt"))
	seen := make(map[int64]int, n)
	for _, id := range ids {
		seen[id]++
	}
	var missing []int64
	for i := int64(1); i <= n; i++ {
		if seen[i] == 0 {
			missing = append(missing, i)
		}
	}
	t.Logf("%d kills, %d events written for %d ids (%d duplicates)", kills, len(ids), n, len(ids)-len(seen))
	if len(missing) > 0 {
		t.Fatalf("%d ids lost, first %v", len(missing), first3(missing))
	}
	if len(seen) != n {
		t.Fatalf("sink holds %d distinct ids, want %d", len(seen), n)
	}
}

// An exactly-once (atomic) sink never sees a batch twice, whether the
// process dies right after the sink's commit or at random points.
func TestAtomicSinkNeverAppliesABatchTwiceAfterCrashes(t *testing.T) {
	const n = 10_000
	c := child{t: t, mode: "atomic", dir: t.TempDir(), count: n}
	if !c.run(3) {
		t.Fatal("child was not killed after the 3rd write")
	}
	for i := 0; i < 5; i++ {
		c.killAfter(1 + rand.IntN(40))
	}
	c.run(0) // a duplicate insert would make it fail
	db, err := sql.Open("sqlite3", filepath.Join(c.dir, "view.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var count, lo, hi int64
	if err := db.QueryRow(`SELECT count(*), min(id), max(id) FROM rows`).Scan(&count, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if count != n || lo != 1 || hi != n {
		t.Fatalf("view holds %d rows %d..%d, want %d rows 1..%d", count, lo, hi, n, n)
	}
}
