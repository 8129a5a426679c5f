package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
)

// fixture is a fresh database with an items table, dropped when the test
// ends.
type fixture struct {
	t    *testing.T
	dsn  string
	db   *sql.DB
	name string // database name, also the pipeline name
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOn(t, servicetest.MySQLDSN(t))
}

// newFixtureOn is newFixture on the server at dsn.
func newFixtureOn(t *testing.T, dsn string) *fixture {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	f := &fixture{t: t, dsn: dsn, db: db, name: servicetest.Name(t, "tl")}
	f.exec("CREATE DATABASE " + f.name)
	f.exec(fmt.Sprintf("CREATE TABLE %s.items (id bigint PRIMARY KEY, name varchar(100), qty int, price decimal(10,2), doc json)", f.name))
	t.Cleanup(func() {
		db.Exec("DROP DATABASE IF EXISTS " + f.name)
		db.Close()
	})
	return f
}

func (f *fixture) exec(q string, args ...any) {
	f.t.Helper()
	if _, err := f.db.Exec(q, args...); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
}

// tx runs statements in one transaction.
func (f *fixture) tx(stmts ...string) {
	f.t.Helper()
	tx, err := f.db.Begin()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, q := range stmts {
		if _, err := tx.Exec(q); err != nil {
			tx.Rollback()
			f.t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		f.t.Fatal(err)
	}
}

// gtidPos returns the server's current GTID position.
func (f *fixture) gtidPos() string {
	f.t.Helper()
	var p string
	if err := f.db.QueryRow("SELECT @@GLOBAL.gtid_binlog_pos").Scan(&p); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// config is a streaming-only config for the fixture's items table.
func (f *fixture) config() Config {
	cfg := DefaultConfig()
	cfg.DSN = connectors.Secret(f.dsn)
	cfg.Tables = []string{f.name + ".items"}
	cfg.Snapshot = "never"
	cfg.Heartbeat = time.Second
	return cfg
}

func (f *fixture) source(t *testing.T, cfg Config) *Source {
	t.Helper()
	s, err := New(cfg, connectors.Runtime{Pipeline: f.name})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readN reads n events (ignoring position-only batches).
func readN(t *testing.T, s connectors.Source, n int) []connectors.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var evs []connectors.Event
	for len(evs) < n {
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 500, MaxWait: 50 * time.Millisecond})
		evs = append(evs, b.Events...)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d events: %v", len(evs), n, err)
		}
	}
	return evs
}

// named maps an event's after image (or before for deletes) by column name.
func named(ev connectors.Event) map[string]any {
	out := map[string]any{}
	row := ev.Row()
	for i, c := range ev.Schema.Columns {
		v := row[i]
		if j, ok := v.(connectors.JSON); ok {
			v = string(j)
		}
		out[c.Name] = v
	}
	return out
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
func contains(s, sub string) bool         { return strings.Contains(s, sub) }
