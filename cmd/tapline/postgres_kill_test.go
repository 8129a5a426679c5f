package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tapline/tapline/internal/servicetest"
)

// foldJSONL folds the events of a JSON-lines file into id → "name|qty", as
// an upserting view would.
func foldJSONL(t *testing.T, path string) map[int64]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return map[int64]string{}
	}
	defer f.Close()
	out := map[int64]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Op     string `json:"op"`
			Before *struct {
				ID int64 `json:"id"`
			} `json:"before"`
			After *struct {
				ID   int64  `json:"id"`
				Name string `json:"name"`
				Qty  int64  `json:"qty"`
			} `json:"after"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%s: bad line %q: %v", path, sc.Text(), err)
		}
		switch ev.Op {
		case "r", "c", "u":
			out[ev.After.ID] = fmt.Sprintf("%s|%d", ev.After.Name, ev.After.Qty)
		case "d":
			delete(out, ev.Before.ID)
		}
	}
	return out
}

func pgState(t *testing.T, conn *pgx.Conn, table string) map[int64]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT id, name, qty FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id, qty int64
		var name string
		if err := rows.Scan(&id, &name, &qty); err != nil {
			t.Fatal(err)
		}
		out[id] = fmt.Sprintf("%s|%d", name, qty)
	}
	return out
}

func stateDiff(got, want map[int64]string) []string {
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
			d = append(d, fmt.Sprintf("row %d = %s was deleted", id, g))
		}
	}
	sort.Strings(d)
	return d
}

// kill -9 of `tapline run` at random points of a Postgres stream (a
// 20,000-row snapshot, then 80,000 insert, update and delete statements in
// 1,000-statement transactions; those that hit a deleted row change
// nothing), restarted each time, loses nothing: the events written, folded
// as a view would, equal the table row by row.
func TestPostgresKill9LosesNothing(t *testing.T) {
	dsn := servicetest.PostgresDSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := servicetest.Name(t, "tlk")
	table := name + ".items"
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(fmt.Sprintf("CREATE SCHEMA %s; CREATE TABLE %s (id bigint PRIMARY KEY, name text NOT NULL, qty bigint NOT NULL)", name, table))
	exec(fmt.Sprintf("INSERT INTO %s SELECT g, 'item ' || g, 0 FROM generate_series(1, 20000) g", table))
	dir := t.TempDir()
	servicetest.DropPostgresLater(t, dsn, name, name, name)
	t.Cleanup(func() { conn.Close(ctx) })
	writeFile(t, filepath.Join(dir, "p.yaml"), fmt.Sprintf(`
name: pgkill
source:
  type: postgres
  dsn: ${PG_DSN}
  tables: [%s]
  slot: %s
  publication: %s
  status_interval: 200ms
  heartbeat: 500ms
sink:
  type: jsonl
  path: out.jsonl
batch:
  max_events: 500
  max_wait: 50ms
`, table, name, name))
	os.Setenv("PG_DSN", dsn)
	defer os.Unsetenv("PG_DSN")

	// The legacy application: 80 transactions of 1,000 changes.
	wconn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer wconn.Close(ctx)
	writerDone := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(7, 7))
		next := int64(1_000_000)
		for tx := 0; tx < 80; tx++ {
			b := &pgx.Batch{}
			for i := 0; i < 1000; i++ {
				switch i % 4 {
				case 0, 1:
					b.Queue(fmt.Sprintf("UPDATE %s SET qty = qty + 1, name = 'u%d' WHERE id = %d", table, tx, 1+rng.IntN(20000)))
				case 2:
					b.Queue(fmt.Sprintf("DELETE FROM %s WHERE id = %d", table, 1+rng.IntN(20000)))
				default:
					next++
					b.Queue(fmt.Sprintf("INSERT INTO %s VALUES (%d, 'new', %d)", table, next, tx))
				}
			}
			t, err := wconn.Begin(ctx)
			if err == nil {
				err = t.SendBatch(ctx, b).Close()
			}
			if err == nil {
				err = t.Commit(ctx)
			}
			if err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- nil
	}()

	kills := 0
	writing := true
	for writing || kills < 4 {
		d := startDaemon(t, dir, "p.yaml")
		select {
		case err := <-writerDone:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			writing = false
		case <-time.After(time.Duration(300+rand.IntN(900)) * time.Millisecond):
		}
		d.cmd.Process.Kill()
		<-d.done
		kills++
		if kills > 40 {
			t.Fatal("the writer did not finish")
		}
	}
	want := pgState(t, conn, table)
	d := startDaemon(t, dir, "p.yaml")
	deadline := time.Now().Add(90 * time.Second)
	var problems []string
	for {
		problems = stateDiff(foldJSONL(t, filepath.Join(dir, "out.jsonl")), want)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling another process's output file
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	lines := countLines(t, filepath.Join(dir, "out.jsonl"))
	t.Logf("%d kills; %d events written for %d rows", kills, lines, len(want))
	if len(problems) > 0 {
		t.Fatalf("the view differs from the table in %d rows after %d kills; first: %v\n%s", len(problems), kills, problems[:min(5, len(problems))], d.logs)
	}
}
