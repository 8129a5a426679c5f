package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tapline/tapline/internal/servicetest"
)

// `tapline snapshot` reaches the source of a daemon running in another
// process: every row of the table comes again as op "r", and the view
// folded from the output still equals the table.
func TestSnapshotCommandRereadsATable(t *testing.T) {
	dsn := servicetest.PostgresDSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := servicetest.Name(t, "tli")
	table := name + ".items"
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA %s; CREATE TABLE %s (id bigint PRIMARY KEY, name text NOT NULL, qty bigint NOT NULL);
	    INSERT INTO %s SELECT g, 'item ' || g, 0 FROM generate_series(1, 3000) g`, name, table, table)); err != nil {
		t.Fatal(err)
	}
	servicetest.DropPostgresLater(t, dsn, name, name, name)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), fmt.Sprintf(`
name: pginc
source:
  type: postgres
  dsn: ${PG_DSN}
  tables: [%s]
  slot: %s
  publication: %s
  snapshot: never
  incremental_chunk: 500
sink:
  type: jsonl
  path: out.jsonl
`, table, name, name))
	os.Setenv("PG_DSN", dsn)
	defer os.Unsetenv("PG_DSN")
	d := startDaemon(t, dir, "p.yaml")
	defer func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		<-d.done
	}()
	waitFor(t, "the pipeline to run", func() bool { _, body := d.get("/v1/pipelines"); return strings.Contains(body, `"running"`) })
	if _, stderr, code := tapline(t, dir, "snapshot", "pginc", "--table", table, "--data-dir", filepath.Join(dir, "data")); code != 0 {
		t.Fatalf("tapline snapshot: exit %d: %s", code, stderr)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("UPDATE %s SET qty = 7, name = 'during' WHERE id %% 100 = 0", table)); err != nil {
		t.Fatal(err)
	}
	reads := func() int {
		f, err := os.Open(filepath.Join(dir, "out.jsonl"))
		if err != nil {
			return 0
		}
		defer f.Close()
		n := 0
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev struct{ Op string }
			json.Unmarshal(sc.Bytes(), &ev)
			if ev.Op == "r" {
				n++
			}
		}
		return n
	}
	waitFor(t, "the snapshot rows", func() bool { return reads() >= 3000-30 })
	want := pgState(t, conn, table)
	waitFor(t, "the output to equal the table", func() bool {
		return len(stateDiff(foldJSONL(t, filepath.Join(dir, "out.jsonl")), want)) == 0
	})
	if n := reads(); n > 3000 {
		t.Errorf("%d snapshot rows for a 3,000-row table", n)
	}
}
