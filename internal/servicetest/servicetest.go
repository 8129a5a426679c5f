// Package servicetest gives integration tests the real services they need
// (PostgreSQL, MariaDB/MySQL, NATS JetStream, Redis on 127.0.0.1), each
// checked for the settings tapline relies on. A missing or misconfigured
// service fails the test with the reason and the fix; it never skips.
//
// Addresses come from the environment, with the defaults that
// scripts/services.sh sets up:
//
//	TAPLINE_TEST_PG_DSN     postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
//	TAPLINE_TEST_MYSQL_DSN  root@tcp(127.0.0.1:3306)/test
//	TAPLINE_TEST_NATS_URL   nats://127.0.0.1:4222
//	TAPLINE_TEST_REDIS_ADDR 127.0.0.1:6379
package servicetest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

const fix = "run `make services` (as root) or set %s to a reachable server"

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Count returns the positive number in the environment variable name (a
// test's or benchmark's size, TAPLINE_BENCH_ROWS say), or def when it is
// unset. Any other value fails the test, naming the variable.
func Count(t testing.TB, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q is not a positive number", name, s)
	}
	return n
}

// PostgresDSN returns the DSN of the test Postgres after checking that it
// answers and has wal_level=logical.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := env("TAPLINE_TEST_PG_DSN", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("postgres is not reachable: %v; "+fix, err, "TAPLINE_TEST_PG_DSN")
	}
	defer conn.Close(ctx)
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		t.Fatalf("postgres: SHOW wal_level: %v", err)
	}
	if level != "logical" {
		t.Fatalf("postgres: wal_level is %q; logical replication needs wal_level=logical (run `make services`, or ALTER SYSTEM SET wal_level = logical; then restart)", level)
	}
	return dsn
}

// MySQLDSN returns the go-sql-driver DSN of the test MariaDB/MySQL after
// checking that it answers and writes a full row-based binlog.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	dsn := env("TAPLINE_TEST_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test")
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("mysql DSN %q: %v", dsn, err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := map[string]string{"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL"}
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin','binlog_format','binlog_row_image')")
	if err != nil {
		t.Fatalf("mysql is not reachable: %v; "+fix, err, "TAPLINE_TEST_MYSQL_DSN")
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		got[k] = strings.ToUpper(v)
	}
	for k, w := range want {
		if got[k] != w {
			t.Fatalf("mysql: %s is %q; tapline needs %s=%s (run `make services`)", k, got[k], k, w)
		}
	}
	return dsn
}

// NATS returns a connection to the test NATS server after checking that
// JetStream is enabled. The connection is closed when the test ends.
func NATS(t testing.TB) *nats.Conn {
	t.Helper()
	url := env("TAPLINE_TEST_NATS_URL", nats.DefaultURL)
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("nats is not reachable at %s: %v; "+fix, url, err, "TAPLINE_TEST_NATS_URL")
	}
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	if _, err := js.AccountInfo(); err != nil {
		t.Fatalf("nats at %s has no JetStream (%v); start nats-server with -js (run `make services`)", url, err)
	}
	return nc
}

// Redis returns a client of the test Redis after checking that it answers.
// The client is closed when the test ends.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	addr := env("TAPLINE_TEST_REDIS_ADDR", "127.0.0.1:6379")
	rc := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis is not reachable at %s: %v; "+fix, addr, err, "TAPLINE_TEST_REDIS_ADDR")
	}
	return rc
}

// Name returns a name unique to this test run, for databases, slots,
// streams and keys: prefix_<test>_<time>, lower case, at most 63 bytes.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	n := strings.ToLower(fmt.Sprintf("%s_%s_%d", prefix, t.Name(), time.Now().UnixNano()%1_000_000_000))
	n = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			return r
		}
		return '_'
	}, n)
	if len(n) > 63 {
		n = n[:40] + n[len(n)-23:]
	}
	return n
}

// DropPostgresLater registers a cleanup that drops a replication slot, a
// publication and a schema (each if not empty) when the test ends. It waits
// up to 5s for the slot to be released first: the walsender of a reader
// that was just closed or killed takes a moment to exit, and a forgotten
// slot keeps WAL forever.
func DropPostgresLater(t testing.TB, dsn, slot, publication, schema string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("cleanup: connect to postgres: %v", err)
			return
		}
		defer conn.Close(ctx)
		if slot != "" {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < 50; i++ {
				var active bool
				if conn.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active) != nil || !active {
					break
				}
				<-tick.C
			}
			if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot); err != nil {
				t.Errorf("cleanup: drop replication slot %s: %v", slot, err)
			}
		}
		if publication != "" {
			conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{publication}.Sanitize())
		}
		if schema != "" {
			conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		}
	})
}

// PostgresDatabase creates a fresh database named name on the test Postgres
// and returns its DSN. When the test ends, the replication slots of that
// database are dropped (once their readers have let go) and then the
// database itself.
func PostgresDatabase(t testing.TB, name string) string {
	t.Helper()
	dsn := PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("postgres: create database %s: %v", name, err)
	}
	PostgresDatabaseCleanup(t, dsn, name)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("postgres DSN: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// PostgresDatabaseCleanup drops database name (after its replication slots)
// when the test ends, if it exists then.
func PostgresDatabaseCleanup(t testing.TB, dsn, name string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("cleanup: connect to postgres: %v", err)
			return
		}
		defer conn.Close(ctx)
		for i := 0; i < 100; i++ {
			var active int
			if conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE database = $1 AND active", name).Scan(&active) != nil || active == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", name); err != nil {
			t.Errorf("cleanup: drop the replication slots of %s: %v", name, err)
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("cleanup: drop database %s: %v", name, err)
		}
	})
}
