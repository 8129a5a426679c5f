package offsets_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
	"github.com/tapline/tapline/offsets/offsetstest"
)

func TestMemory(t *testing.T) {
	offsetstest.Run(t, func(*testing.T) offsets.Store { return offsets.NewMemory() })
}

func TestSQLite(t *testing.T) {
	offsetstest.Run(t, func(t *testing.T) offsets.Store {
		return openSQLite(t, filepath.Join(t.TempDir(), "offsets.db"))
	})
}

// openSQLite opens the store at path and closes it when the test ends.
func openSQLite(t *testing.T, path string) *offsets.SQLite {
	t.Helper()
	s, err := offsets.OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMemoryCommits(t *testing.T) {
	m := offsets.NewMemory()
	ctx := t.Context()
	for i := range 3 {
		if err := m.Commit(ctx, "orders", connectors.Position{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	m.Commit(ctx, "orders", nil) // refused: not counted
	m.Delete(ctx, "orders")
	if got := m.Commits("orders"); got != 3 {
		t.Errorf("Commits(orders) = %d, want 3", got)
	}
	if got := m.Commits("customers"); got != 0 {
		t.Errorf("Commits(customers) = %d, want 0", got)
	}
	m.Close()
	if got := m.Commits("orders"); got != 3 {
		t.Errorf("Commits(orders) after Close = %d, want 3", got)
	}
}

func TestSQLiteDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offsets.db")
	ctx := t.Context()
	s := openSQLite(t, path)
	want := map[string]connectors.Position{
		"orders":    connectors.TxPosition{Commit: 1200, Ordinal: 3}.Encode(),
		"customers": {},
		"zeros":     make([]byte, 32),
	}
	for name, p := range want {
		if err := s.Commit(ctx, name, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "zeros"); err != nil {
		t.Fatal(err)
	}
	delete(want, "zeros")
	before, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSQLite(t, path)
	for name, p := range want {
		got, err := s.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil || !bytes.Equal(got, p) {
			t.Errorf("after reopen: Get(%q) = %#v, want %#v", name, got, p)
		}
	}
	if got, _ := s.Get(ctx, "zeros"); got != nil {
		t.Errorf("after reopen: deleted pipeline has position %s", got)
	}
	after, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("after reopen: List = %v, want %v", after, before)
	}
}

func TestSQLiteCreatesParentDirectories(t *testing.T) {
	// Characters that mean something in a URI must stay part of the path.
	dir := filepath.Join(t.TempDir(), "data dir", "a?b#c%20d")
	path := filepath.Join(dir, "offsets.db")
	s := openSQLite(t, path)
	if err := s.Commit(t.Context(), "orders", []byte("x")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the store is not at %s: %v", path, err)
	}
	s = openSQLite(t, path)
	if p, err := s.Get(t.Context(), "orders"); err != nil || string(p) != "x" {
		t.Errorf("after reopen: Get = %q, %v; want x", p, err)
	}
}

func TestSQLiteRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	s := openSQLite(t, filepath.Join("data", "offsets.db"))
	if err := s.Commit(t.Context(), "orders", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("data", "offsets.db")); err != nil {
		t.Error(err)
	}
}

// Two stores on one file, as the daemon and `tapline offsets` have: each
// sees what the other committed once Commit has returned, and writing at
// the same time makes no errors (they wait for each other).
func TestSQLiteTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offsets.db")
	ctx := t.Context()
	a, b := openSQLite(t, path), openSQLite(t, path)

	check := func(s *offsets.SQLite, who, pipeline string, want connectors.Position) {
		t.Helper()
		got, err := s.Get(ctx, pipeline)
		if err != nil {
			t.Fatalf("%s: Get: %v", who, err)
		}
		if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("%s: Get(%q) = %s, want %s", who, pipeline, got, want)
		}
	}
	if err := a.Commit(ctx, "orders", []byte("from a")); err != nil {
		t.Fatal(err)
	}
	check(b, "b", "orders", []byte("from a"))
	if err := b.Commit(ctx, "orders", []byte("from b")); err != nil {
		t.Fatal(err)
	}
	check(a, "a", "orders", []byte("from b"))
	if err := b.Delete(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	check(a, "a", "orders", nil)

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, s := range []*offsets.SQLite{a, b} {
		wg.Go(func() {
			for n := range 40 {
				if err := s.Commit(ctx, fmt.Sprintf("p%d", i), []byte{byte(n)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("commit while the other store commits: %v", err)
	}
	check(a, "a", "p1", []byte{39})
	check(b, "b", "p0", []byte{39})
}

// Processes starting together on a new file: each open creates or finds the
// schema, none fails.
func TestSQLiteConcurrentOpenOfNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offsets.db")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			s, err := offsets.OpenSQLite(path)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			if err := s.Commit(t.Context(), fmt.Sprint(i), []byte("x")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	es, err := openSQLite(t, path).List(t.Context())
	if err != nil || len(es) != 8 {
		t.Errorf("List = %d entries, %v; want 8", len(es), err)
	}
}

func TestSQLiteErrorsNameTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offsets.db")
	s := openSQLite(t, path)
	err := s.Commit(t.Context(), "orders", nil)
	want := fmt.Sprintf(`offsets: commit pipeline "orders" to %s: `, path)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Commit(nil) error = %v, want it to start %q", err, want)
	}
	s.Close()
	err = s.Commit(t.Context(), "orders", []byte("x"))
	if want := fmt.Sprintf(`offsets: commit pipeline "orders" to %s: store closed`, path); err == nil || err.Error() != want {
		t.Errorf("Commit after Close: %v, want %q", err, want)
	}
	_, err = s.Get(t.Context(), "orders")
	if want := fmt.Sprintf(`offsets: get pipeline "orders" from %s: store closed`, path); err == nil || err.Error() != want {
		t.Errorf("Get after Close: %v, want %q", err, want)
	}
	_, err = s.List(t.Context())
	if want := fmt.Sprintf(`offsets: list %s: store closed`, path); err == nil || err.Error() != want {
		t.Errorf("List after Close: %v, want %q", err, want)
	}
}

func TestSQLiteRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()

	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := offsets.OpenSQLite(garbage); err == nil || !strings.HasPrefix(err.Error(), "offsets: open "+garbage+": ") {
		t.Errorf("OpenSQLite of a file that is not a database: %v", err)
		if s != nil {
			s.Close()
		}
	}

	// A database from a newer tapline, with a schema this one does not know.
	newer := filepath.Join(dir, "newer.db")
	db, err := sql.Open("sqlite3", newer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := offsets.OpenSQLite(newer); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("OpenSQLite of a schema from a newer tapline: %v", err)
		if s != nil {
			s.Close()
		}
	}

	// A database someone else made, with a table of our name.
	foreign := filepath.Join(dir, "foreign.db")
	if db, err = sql.Open("sqlite3", foreign); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE offsets (topic TEXT, partition INTEGER, offset INTEGER)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := offsets.OpenSQLite(foreign); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("OpenSQLite of a database with a foreign offsets table: %v", err)
		if s != nil {
			s.Close()
		}
	}
}

func TestSQLiteUpdatedSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offsets.db")
	s := openSQLite(t, path)
	start := time.Now()
	if err := s.Commit(t.Context(), "orders", []byte("x")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	es, err := openSQLite(t, path).List(t.Context())
	if err != nil || len(es) != 1 {
		t.Fatalf("List = %v, %v", es, err)
	}
	if u := es[0].Updated; u.Before(start.Truncate(time.Millisecond)) || u.After(time.Now()) || u.Location() != time.UTC {
		t.Errorf("Updated = %v, want a UTC time between %v and now", u, start)
	}
}
