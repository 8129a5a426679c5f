package mysql

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// TestMain runs the kill test's child process when asked to.
func TestMain(m *testing.M) {
	if os.Getenv("TAPLINE_MYSQL_KILL_CHILD") != "" {
		os.Exit(killChild())
	}
	code := m.Run()
	stopMinimalServer()
	os.Exit(code)
}

// committed reads the child's output file: the events of every batch
// followed by its commit line, and the last committed position. What
// follows the last commit line (a batch cut by kill -9) is not committed.
func committed(path string) (lines []string, last connectors.Position, end int) {
	data, _ := os.ReadFile(path)
	var pending []string
	off := 0
	for {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			break
		}
		line := string(data[off : off+i])
		off += i + 1
		if p, ok := strings.CutPrefix(line, "commit "); ok {
			last, _ = hex.DecodeString(p)
			lines = append(lines, pending...)
			pending = nil
			end = off
			continue
		}
		pending = append(pending, line)
	}
	return lines, last, end
}

// killChild is a pipeline in one process: the source writes each batch to
// a file, then a commit line with the batch's position, and syncs; on
// start it drops what follows the last commit and resumes after it. It
// runs until killed.
func killChild() int {
	out := os.Getenv("TAPLINE_MYSQL_KILL_OUT")
	_, pos, end := committed(out)
	if err := os.Truncate(out, int64(end)); err != nil && !os.IsNotExist(err) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := DefaultConfig()
	cfg.DSN = connectors.Secret(os.Getenv("TAPLINE_MYSQL_KILL_DSN"))
	cfg.Tables = []string{os.Getenv("TAPLINE_MYSQL_KILL_DB") + ".items"}
	cfg.Snapshot = "never"
	cfg.StartPosition = os.Getenv("TAPLINE_MYSQL_KILL_START")
	s, err := New(cfg, connectors.Runtime{Pipeline: os.Getenv("TAPLINE_MYSQL_KILL_DB")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	if len(pos) == 0 {
		pos = nil
	}
	if err := s.Open(ctx, pos); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for {
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 1 + rnd.IntN(700), MaxWait: 20 * time.Millisecond})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if b.Last == nil {
			continue
		}
		var buf bytes.Buffer
		for _, ev := range b.Events {
			fmt.Fprintf(&buf, "%s %x %s\n", ev.Op, []byte(ev.Position), rowString(ev.Row()[:3]))
		}
		fmt.Fprintf(&buf, "commit %x\n", []byte(b.Last))
		if _, err := f.Write(buf.Bytes()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := f.Sync(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		s.Ack(ctx, b.Last)
	}
}

// kill -9 at random points of a 100,000-change stream (while it is being
// written) and a restart from the last committed position lose nothing and
// repeat nothing: the committed events are exactly the changes, in order.
func TestKillNineAtRandomPointsLosesNothing(t *testing.T) {
	const changes = 100_000
	f := newFixture(t)
	start := f.gtidPos()
	out := filepath.Join(t.TempDir(), "out")
	// The workload: transactions of 1 to 2,000 changes, inserts, updates
	// and deletes, while the pipeline is killed again and again.
	var wg sync.WaitGroup
	var written atomic.Int64
	var finished atomic.Bool
	wg.Go(func() {
		defer finished.Store(true)
		rnd := rand.New(rand.NewPCG(5, 6))
		next := int64(1)
		for written.Load() < changes {
			n := min(1+rnd.IntN(2000), changes-int(written.Load()))
			tx, err := f.db.Begin()
			if err != nil {
				t.Error(err)
				return
			}
			done := 0
			for attempt := 0; done < n && attempt < 100; attempt++ {
				k := min(n-done, 1+rnd.IntN(300))
				var q string
				switch {
				case rnd.IntN(3) == 0 && next > int64(k)+10:
					lo := 1 + rnd.Int64N(next-int64(k))
					q = fmt.Sprintf("UPDATE %s.items SET qty = qty + 1 WHERE id BETWEEN %d AND %d", f.name, lo, lo+int64(k)-1)
				case rnd.IntN(5) == 0 && next > int64(k)+10:
					lo := 1 + rnd.Int64N(next-int64(k))
					q = fmt.Sprintf("DELETE FROM %s.items WHERE id BETWEEN %d AND %d", f.name, lo, lo+int64(k)-1)
				default:
					q = fmt.Sprintf("INSERT INTO %s.items (id, name, qty) SELECT seq, CONCAT('n', seq), 0 FROM seq_%d_to_%d", f.name, next, next+int64(k)-1)
					next += int64(k)
				}
				res, err := tx.Exec(q)
				if err != nil {
					t.Error(err)
					tx.Rollback()
					return
				}
				a, _ := res.RowsAffected()
				done += int(a)
			}
			if err := tx.Commit(); err != nil {
				t.Error(err)
				return
			}
			written.Add(int64(done))
		}
	})
	defer wg.Wait()
	run := func(d time.Duration) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "TAPLINE_MYSQL_KILL_CHILD=1", "TAPLINE_MYSQL_KILL_OUT="+out, "TAPLINE_MYSQL_KILL_DSN="+f.dsn,
			"TAPLINE_MYSQL_KILL_DB="+f.name, "TAPLINE_MYSQL_KILL_START="+start)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			t.Fatalf("the child exited by itself: %v: %s", err, stderr.String())
		case <-time.After(d):
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	kills := 0
	deadline := time.Now().Add(2 * time.Minute)
	for {
		run(time.Duration(100+rnd.IntN(500)) * time.Millisecond)
		kills++
		lines, _, _ := committed(out)
		if finished.Load() && int64(len(lines)) >= written.Load() || time.Now().After(deadline) {
			break
		}
		if finished.Load() && kills%4 == 0 {
			run(3 * time.Second) // let it catch up, then kill it once more
		}
	}
	lines, _, _ := committed(out)
	t.Logf("%d changes written, %d committed events across %d kill -9s", written.Load(), len(lines), kills)
	if int64(len(lines)) != written.Load() {
		t.Fatalf("committed %d events for %d changes", len(lines), written.Load())
	}
	got := view{}
	var prev []byte
	for i, l := range lines {
		parts := strings.SplitN(l, " ", 3)
		p, _ := hex.DecodeString(parts[1])
		if bytes.Compare(p, prev) <= 0 {
			t.Fatalf("event %d: position %s is not after the one before: an event was repeated or reordered", i, parts[1])
		}
		prev = p
		vals := strings.Split(parts[2], "|")
		id, _ := strconv.ParseInt(vals[0], 10, 64)
		switch parts[0] {
		case "d":
			delete(got, id)
		default:
			got[id] = parts[2] + "|NULL"
		}
	}
	compareViews(t, got, f.tableState(t))
}
