// Package examples_test loads every example pipeline, and runs the ones
// whose services are local.
package examples_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/mattn/go-sqlite3"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/offsets"
	"github.com/tapline/tapline/pipelines"

	_ "github.com/tapline/tapline/sinks/kafka"
	_ "github.com/tapline/tapline/sinks/mysql"
	_ "github.com/tapline/tapline/sinks/nats"
	_ "github.com/tapline/tapline/sinks/postgres"
	_ "github.com/tapline/tapline/sinks/redis"
	_ "github.com/tapline/tapline/sinks/sqlite"
	_ "github.com/tapline/tapline/sources/kafka"
	_ "github.com/tapline/tapline/sources/mysql"
	_ "github.com/tapline/tapline/sources/nats"
	_ "github.com/tapline/tapline/sources/postgres"

	_ "github.com/tapline/tapline/sinks/jsonl"
	_ "github.com/tapline/tapline/sources/generate"
)

// env gives every variable the examples use a value, as a user's shell
// would.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		if v, ok := vars[k]; ok {
			return v, true
		}
		switch k {
		case "PG_DSN", "SHOP_PG_DSN", "REPORTING_DSN", "REPORTING_PG_DSN":
			return "postgres://postgres@127.0.0.1:5432/postgres", true
		case "SHOP_MYSQL_DSN":
			return "root@tcp(127.0.0.1:3306)/shop", true
		}
		return "", false
	}
}

// Every example loads: known connectors, known keys, valid values.
func TestExamplesLoad(t *testing.T) {
	dirs, err := filepath.Glob("*")
	if err != nil {
		t.Fatal(err)
	}
	loaded := 0
	// The strangler's pipelines for NATS, and their Kafka variants.
	dirs = append(dirs, filepath.Join("strangler", "pipelines", "kafka"))
	for _, dir := range dirs {
		path := dir
		if dir == "strangler" {
			path = filepath.Join(dir, "pipelines")
		}
		if st, err := os.Stat(path); err != nil || !st.IsDir() {
			continue
		}
		ps, err := pipelines.Load(path, connectors.Default, env(nil))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if len(ps) == 0 {
			t.Errorf("%s: no pipelines", path)
		}
		if _, err := os.Stat(filepath.Join(strings.SplitN(dir, string(filepath.Separator), 2)[0], "README.md")); err != nil {
			t.Errorf("%s has no README.md", dir)
		}
		loaded += len(ps)
	}
	if loaded < 18 {
		t.Errorf("loaded %d pipelines from the examples; want the 5 small ones, the quickstart, the strangler's 6 and their 6 Kafka variants", loaded)
	}
}

// postgres-to-sqlite runs against the local Postgres: the table's rows and
// a change made while it runs reach the SQLite file.
func TestPostgresToSQLiteRuns(t *testing.T) {
	dsn := servicetest.PostgresDatabase(t, servicetest.Name(t, "ex"))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(10,2), note text);
	    INSERT INTO orders SELECT g, g * 1.5, 'n' || g FROM generate_series(1, 500) g`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	view := filepath.Join(dir, "orders.db")
	ps, err := pipelines.Load("postgres-to-sqlite", connectors.Default, env(map[string]string{"PG_DSN": dsn, "VIEW_PATH": view}))
	if err != nil {
		t.Fatal(err)
	}
	job, err := ps[0].Job(dir, offsets.NewMemory(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pipelines.Run(runCtx, job) }()
	db, err := sql.Open("sqlite3", "file:"+view+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string) int {
		var n int
		if db.QueryRow(q).Scan(&n) != nil {
			return -1
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for count(`SELECT count(*) FROM orders`) != 500 {
		if time.Now().After(deadline) {
			t.Fatalf("the snapshot did not reach the view: %d rows", count(`SELECT count(*) FROM orders`))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, `UPDATE orders SET note = 'changed' WHERE id <= 10; DELETE FROM orders WHERE id > 490`); err != nil {
		t.Fatal(err)
	}
	for count(`SELECT count(*) FROM orders WHERE note = 'changed'`) != 10 || count(`SELECT count(*) FROM orders`) != 490 {
		if time.Now().After(deadline) {
			t.Fatal("the changes did not reach the view")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
}
