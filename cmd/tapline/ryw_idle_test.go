package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tapline/tapline/internal/servicetest"
)

// Read-your-writes on an idle database, end to end: Postgres, the embedded
// NATS log, a SQLite view. A write followed by the caller's heartbeat
// message is waited for and then visible; waiting on pg_current_wal_lsn()
// instead, with nothing else written, times out (the limit the heartbeat
// removes), so the test would fail if heartbeats stopped reaching the view.
func TestReadYourWritesOnAnIdleDatabase(t *testing.T) {
	dsn := servicetest.PostgresDSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := servicetest.Name(t, "tlr")
	table := name + ".items"
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA %s; CREATE TABLE %s (id bigint PRIMARY KEY, name text NOT NULL)`, name, table)); err != nil {
		t.Fatal(err)
	}
	servicetest.DropPostgresLater(t, dsn, name, name, name)
	dir := t.TempDir()
	_, natsPort, _ := strings.Cut(freePort(t), ":")
	writeFile(t, filepath.Join(dir, "p.yaml"), fmt.Sprintf(`
name: capture
source:
  type: postgres
  dsn: ${PG_DSN}
  tables: [%[1]s]
  slot: %[2]s
  publication: %[2]s
  snapshot: never
  heartbeat: 1h # only the caller's heartbeats
sink: {type: nats, embedded_port: %[3]s, subject_prefix: %[2]s}
---
name: view
source: {type: nats, embedded_port: %[3]s, subjects: [%[2]s.%[2]s.items, %[2]s._heartbeat]}
sink: {type: sqlite, path: view.db}
`, table, name, natsPort))
	os.Setenv("PG_DSN", dsn)
	defer os.Unsetenv("PG_DSN")
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
	has := func(id int) bool {
		var n int
		return db.QueryRow(`SELECT count(*) FROM items WHERE id = ?`, id).Scan(&n) == nil && n == 1
	}
	exec := func(q string) {
		t.Helper()
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	lsnOf := func(q string) string {
		t.Helper()
		var lsn string
		if err := conn.QueryRow(ctx, q).Scan(&lsn); err != nil {
			t.Fatal(err)
		}
		return lsn
	}
	waitFor(t, "the capture's slot", func() bool {
		var n int
		return conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&n) == nil && n == 1
	})
	exec(fmt.Sprintf("INSERT INTO %s VALUES (1, 'warm-up')", table))
	waitFor(t, "the view to hold the first row", func() bool { return has(1) })

	// The caller's heartbeat: the wait ends and the row is there.
	for id := 2; id <= 4; id++ {
		exec(fmt.Sprintf("INSERT INTO %s VALUES (%d, 'mine')", table, id))
		lsn := lsnOf("SELECT pg_logical_emit_message(false, 'tapline_heartbeat', '')::text")
		stdout, stderr, code := tapline(t, dir, "wait", "view", "--http", d.addr, "--position", lsn, "--timeout", "10s")
		if code != 0 {
			t.Fatalf("wait for the heartbeat at %s: exit %d\n%s\n%s\n%s", lsn, code, stdout, stderr, d.logs)
		}
		if !has(id) {
			t.Fatalf("the wait for %s ended, but row %d is not in the view", lsn, id)
		}
	}

	// pg_current_wal_lsn() on the idle database: the view never gets
	// past it until something else is written.
	exec(fmt.Sprintf("INSERT INTO %s VALUES (5, 'no heartbeat')", table))
	lsn := lsnOf("SELECT pg_current_wal_lsn()::text")
	if _, _, code := tapline(t, dir, "wait", "view", "--http", d.addr, "--position", lsn, "--timeout", "2s"); code != 3 {
		t.Fatalf("wait for pg_current_wal_lsn() %s on an idle database: exit %d, want 3 (timeout): did something else write?", lsn, code)
	}
}
