package offsets

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// The durability and concurrency guarantees rest on these settings; check
// that they are in force on the store's connection (go-sqlite3 lowers
// synchronous to NORMAL when it sets WAL unless told otherwise).
func TestSQLitePragmas(t *testing.T) {
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "offsets.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"busy_timeout", "5000"},
		{"user_version", "1"},
	} {
		var got string
		if err := s.db.QueryRow("PRAGMA " + tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
		}
	}
	var schema string
	if err := s.db.QueryRow("SELECT sql FROM sqlite_schema WHERE name = 'offsets'").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if schema != createTableSQL {
		t.Errorf("schema = %s, want %s", schema, createTableSQL)
	}
}

// A write that waits longer than the busy timeout for another connection's
// write lock fails with a retryable error naming the file; once the lock is
// gone, the same write succeeds.
func TestSQLiteBusyIsRetryable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offsets.db")
	s, err := openSQLite(path, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	other, err := sql.Open("sqlite3", path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(t.Context(), nil) // holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("DELETE FROM offsets"); err != nil {
		t.Fatal(err)
	}

	err = s.Commit(t.Context(), "orders", []byte("x"))
	if err == nil {
		t.Fatal("Commit while another connection holds the write lock succeeded")
	}
	if !connectors.IsRetryable(err) {
		t.Errorf("Commit error %v is not retryable", err)
	}
	if want := `offsets: commit pipeline "orders" to ` + path + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Commit error %q does not start %q", err, want)
	}
	// Reading does not wait for the writer (WAL).
	if _, err := s.Get(t.Context(), "orders"); err != nil {
		t.Errorf("Get while another connection writes: %v", err)
	}

	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(t.Context(), "orders", []byte("x")); err != nil {
		t.Errorf("Commit after the lock is gone: %v", err)
	}
}

// BenchmarkSQLiteCommit measures Commit of a 13-byte transaction position,
// the engine's cost per batch: an upsert and an fsync of the WAL. Each
// iteration commits a new position, as the engine does: SQLite writes
// nothing (and syncs nothing) for an upsert that leaves the row's bytes as
// they were. The "unprepared" case runs the same upsert without the prepared
// statement, for comparison.
func BenchmarkSQLiteCommit(b *testing.B) {
	open := func(b *testing.B) *SQLite {
		s, err := OpenSQLite(filepath.Join(b.TempDir(), "offsets.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	b.Run("prepared", func(b *testing.B) {
		s := open(b)
		ctx := context.Background()
		b.ReportAllocs()
		b.SetBytes(connectors.TxPositionLen)
		for i := uint64(1); b.Loop(); i++ {
			if err := s.Commit(ctx, "orders", connectors.TxPosition{Commit: i}.Encode()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unprepared", func(b *testing.B) {
		s := open(b)
		ctx := context.Background()
		b.ReportAllocs()
		b.SetBytes(connectors.TxPositionLen)
		for i := uint64(1); b.Loop(); i++ {
			pos := connectors.TxPosition{Commit: i}.Encode()
			if _, err := s.db.ExecContext(ctx, commitSQL, "orders", []byte(pos), now().UnixMilli()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMemoryCommit is the in-memory store's Commit, for scale.
func BenchmarkMemoryCommit(b *testing.B) {
	pos := connectors.TxPosition{Commit: 1 << 40, Ordinal: 3}.Encode()
	m := NewMemory()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Commit(ctx, "orders", pos); err != nil {
			b.Fatal(err)
		}
	}
}
