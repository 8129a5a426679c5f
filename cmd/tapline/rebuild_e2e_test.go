package main

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// `tapline rebuild` against a running daemon, with the real embedded NATS
// log and the SQLite view sink: while a reader queries the view all along,
// the view is rebuilt from the log and swapped in; the reader never sees it
// empty or partial, and afterwards the view holds every row and the shadow
// table is gone.
func TestRebuildThroughTheDaemon(t *testing.T) {
	dir := t.TempDir()
	_, natsPort, _ := strings.Cut(freePort(t), ":")
	writeFile(t, filepath.Join(dir, "p.yaml"), fmt.Sprintf(`
name: feed
source: {type: generate, tables: [shop.orders], count: 3000, ops: c}
sink: {type: nats, embedded_port: %[1]s, subject_prefix: feed}
---
name: view
source: {type: nats, embedded_port: %[1]s, subjects: [feed.shop.orders]}
sink: {type: sqlite, path: view.db}
`, natsPort))
	d := startDaemon(t, dir, "p.yaml")
	defer func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		<-d.done
	}()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "view.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func() int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM orders`).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	waitFor(t, "the view to hold the 3,000 rows", func() bool { return count() == 3000 })

	var reads, bad atomic.Int64
	var badSeen atomic.Value
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := count()
			reads.Add(1)
			if n != 3000 {
				bad.Add(1)
				badSeen.Store(n)
			}
		}
	}()
	stdout, stderr, code := tapline(t, dir, "rebuild", "view", "--http", d.addr)
	close(stop)
	<-readerDone
	if code != 0 {
		t.Fatalf("rebuild: exit %d\n%s\n%s\n%s", code, stdout, stderr, d.logs)
	}
	if !strings.Contains(stdout, `"phase":"promoted"`) {
		t.Errorf("rebuild output %q has no promoted phase", stdout)
	}
	if bad.Load() > 0 {
		t.Errorf("a reader saw %v rows (of 3,000) %d times in %d reads during the rebuild", badSeen.Load(), bad.Load(), reads.Load())
	}
	if reads.Load() < 10 {
		t.Errorf("only %d reads during the rebuild; the test proves little", reads.Load())
	}
	var shadows int
	db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name LIKE '%shadow%'`).Scan(&shadows)
	if shadows != 0 || count() != 3000 {
		t.Errorf("after the rebuild: %d rows, %d shadow tables left", count(), shadows)
	}
	if _, body := d.get("/v1/pipelines"); !strings.Contains(body, `"running"`) {
		t.Errorf("after the rebuild the view pipeline is not running: %s", body)
	}
}
