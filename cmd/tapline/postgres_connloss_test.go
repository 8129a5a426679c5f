package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tapline/tapline/internal/servicetest"
)

// The replication connection is cut three times while the legacy
// application writes (pg_terminate_backend of the walsender): the daemon
// restarts the pipeline with backoff from the committed position and the
// output, folded, equals the table. Then a captured table is dropped: the
// stream goes on for the others, and at the next restart the pipeline
// stops with an error that names the table and the fix.
func TestPostgresConnectionLossAndDroppedTable(t *testing.T) {
	dsn := servicetest.PostgresDSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := servicetest.Name(t, "tlc")
	table, other := name+".items", name+".other"
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(fmt.Sprintf("CREATE SCHEMA %s; CREATE TABLE %s (id bigint PRIMARY KEY, name text NOT NULL, qty bigint NOT NULL); CREATE TABLE %s (id int PRIMARY KEY)", name, table, other))
	servicetest.DropPostgresLater(t, dsn, name, name, name)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), fmt.Sprintf(`
name: pgcut
source:
  type: postgres
  dsn: ${PG_DSN}
  tables: [%s, %s]
  slot: %s
  publication: %s
  status_interval: 200ms
sink:
  type: jsonl
  path: out.jsonl
batch:
  max_events: 200
  max_wait: 20ms
`, table, other, name, name))
	os.Setenv("PG_DSN", dsn)
	defer os.Unsetenv("PG_DSN")
	d := startDaemon(t, dir, "p.yaml")
	defer func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		<-d.done
	}()

	cut := func() bool {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots WHERE slot_name = $1 AND active", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	cuts := 0
	for tx := 0; tx < 30; tx++ {
		exec(fmt.Sprintf(`INSERT INTO %s SELECT g, 'n', %d FROM generate_series(%d, %d) g;
		    UPDATE %s SET qty = qty + 1, name = 'u' WHERE id %% 7 = %d;
		    DELETE FROM %s WHERE id %% 11 = %d`, table, tx, tx*100+1, tx*100+100, table, tx%7, table, tx%11))
		if tx%10 == 5 && cut() {
			cuts++
		}
		time.Sleep(50 * time.Millisecond)
	}
	if cuts == 0 {
		t.Fatal("the walsender was never found to cut; the test proves nothing")
	}
	want := pgState(t, conn, table)
	waitFor(t, "the output to equal the table after the cuts", func() bool {
		return len(stateDiff(foldJSONL(t, filepath.Join(dir, "out.jsonl")), want)) == 0
	})
	if _, body := d.get("/v1/pipelines"); !strings.Contains(body, `"restarts"`) {
		t.Errorf("status: %s", body)
	} else {
		var st []struct{ Restarts int }
		json.Unmarshal([]byte(body), &st)
		if len(st) != 1 || st[0].Restarts < 1 {
			t.Errorf("after %d cuts the pipeline restarted %+v times", cuts, st)
		}
	}

	// A captured table is dropped: the others still stream.
	exec("DROP TABLE " + other)
	exec(fmt.Sprintf("INSERT INTO %s VALUES (999999, 'after drop', 1)", table))
	waitFor(t, "a change after the drop", func() bool {
		return foldJSONL(t, filepath.Join(dir, "out.jsonl"))[999999] == "after drop|1"
	})
	// At the next (re)start, the missing table is a clear error.
	cut()
	waitFor(t, "the error naming the dropped table", func() bool {
		_, body := d.get("/v1/pipelines")
		return strings.Contains(body, "table "+other+" does not exist in this database (dropped, or misspelt?)")
	})
}
