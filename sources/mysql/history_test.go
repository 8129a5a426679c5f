package mysql

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
)

// historySource is a source that takes names, enum values and keys from the
// schema history. On the shared server, which writes FULL metadata, it is
// told to (as with binlog_row_metadata=MINIMAL): the TABLE_MAP names are
// then only checked against the history's, so every event also
// cross-checks them. On the MINIMAL server (onMinimal) it finds out for
// itself, from the server's settings, and only the history has the names,
// enum and set values and keys.
func historySource(t *testing.T, f *fixture, cfg Config, dir string, onMinimal ...bool) *Source {
	t.Helper()
	s, err := New(cfg, connectors.Runtime{Pipeline: f.name, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.testHistory = len(onMinimal) == 0 || !onMinimal[0]
	return s
}

// historyFixture is a fixture on the shared server, or on the MINIMAL one.
func historyFixture(t *testing.T, onMinimal bool) *fixture {
	if onMinimal {
		return newMinimalFixture(t)
	}
	return newFixture(t)
}

// historyServers runs test against the shared server (FULL metadata, the
// history forced) and against a real binlog_row_metadata=MINIMAL server.
func historyServers(t *testing.T, test func(t *testing.T, onMinimal bool)) {
	for _, server := range []string{"full", "minimal"} {
		t.Run("server="+server, func(t *testing.T) { test(t, server == "minimal") })
	}
}

func TestSchemaHistoryFollowsDDLAndRestarts(t *testing.T) {
	historyServers(t, testSchemaHistoryFollowsDDLAndRestarts)
}

func testSchemaHistoryFollowsDDLAndRestarts(t *testing.T, minimal bool) {
	f := historyFixture(t, minimal)
	tbl := f.name + ".items"
	dir := t.TempDir()
	cfg := f.config()
	cfg.StartPosition = f.gtidPos()
	ctx := context.Background()
	// Open first: the history is seeded from information_schema at the
	// start position, before the DDL below.
	s := historySource(t, f, cfg, dir, minimal)
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name, qty) VALUES (1, 'a', 10)", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN color enum('red','blue') AFTER name", tbl))
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name, qty, color) VALUES (2, 'b', 20, 'red')", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s DROP COLUMN qty", tbl))
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name, color) VALUES (3, 'c', 'blue')", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s MODIFY COLUMN name varchar(20) NOT NULL", tbl))
	f.exec(fmt.Sprintf("UPDATE %s SET name = 'cc' WHERE id = 3", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s CHANGE COLUMN name title varchar(30) FIRST, RENAME COLUMN price TO cost", tbl))
	f.exec(fmt.Sprintf("INSERT INTO %s (id, title, color, cost) VALUES (4, 'd', 'red', 1.50)", tbl))
	want := []string{
		"map[doc:<nil> id:1 name:a price:<nil> qty:10]",
		"map[color:red doc:<nil> id:2 name:b price:<nil> qty:20]",
		"map[color:blue doc:<nil> id:3 name:c price:<nil>]",
		"map[color:blue doc:<nil> id:3 name:cc price:<nil>]",
		"map[color:red cost:1.50 doc:<nil> id:4 title:d]",
	}
	evs := readN(t, s, len(want))
	s.Close(ctx)
	for i, w := range want {
		if got := fmt.Sprint(named(evs[i])); got != w {
			t.Errorf("event %d = %s; want %s", i, got, w)
		}
	}
	if got := evs[4].Schema.Columns[0].Name; got != "title" {
		t.Errorf("after CHANGE ... FIRST the first column is %s", got)
	}
	if k := evs[4].Schema.Columns[evs[4].Schema.Index("id")]; k.Key != 1 {
		t.Errorf("id lost its primary key flag in the history: %+v", k)
	}
	if _, err := os.Stat(historyFile(dir, f.name)); err != nil {
		t.Fatalf("no history file: %v", err)
	}
	// Restart between the DDL statements: each restart must map the rows
	// after it with the columns in force there.
	for _, at := range []int{0, 1, 2, 3} {
		s2 := historySource(t, f, cfg, dir, minimal)
		if err := s2.Open(ctx, evs[at].Position); err != nil {
			t.Fatal(err)
		}
		rest := readN(t, s2, len(want)-1-at)
		s2.Close(ctx)
		for i, ev := range rest {
			if got := fmt.Sprint(named(ev)); got != want[at+1+i] {
				t.Errorf("after a restart at event %d: event %d = %s; want %s", at, at+1+i, got, want[at+1+i])
			}
		}
	}
}

func TestSchemaHistoryRefusesDDLItCannotFollow(t *testing.T) {
	historyServers(t, testSchemaHistoryRefusesDDLItCannotFollow)
}

func testSchemaHistoryRefusesDDLItCannotFollow(t *testing.T, minimal bool) {
	f := historyFixture(t, minimal)
	tbl := f.name + ".items"
	cfg := f.config()
	cfg.StartPosition = f.gtidPos()
	ctx := context.Background()
	s := historySource(t, f, cfg, t.TempDir(), minimal)
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name) VALUES (1, 'a')", tbl))
	// MariaDB's system versioning adds (invisible) columns; the parser does
	// not know the statement.
	f.exec(fmt.Sprintf("ALTER TABLE %s ADD SYSTEM VERSIONING", tbl))
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name) VALUES (2, 'b')", tbl))
	rctx, cancel := context.WithTimeout(ctx, 45e9)
	defer cancel()
	var n int
	var err error
	for err == nil {
		var b connectors.Batch
		b, err = s.ReadBatch(rctx, connectors.Limits{MaxEvents: 100, MaxWait: 50e6})
		n += len(b.Events)
	}
	var de *DDLError
	if !errors.As(err, &de) {
		t.Fatalf("got %v; want a *DDLError", err)
	}
	if !strings.Contains(err.Error(), "SYSTEM VERSIONING") || de.Position == "" {
		t.Errorf("the error does not name the statement and position: %v", err)
	}
	t.Logf("error: %v", err)
	if n != 1 {
		t.Errorf("%d events before the error; want the 1 before the DDL", n)
	}
}

// TestSchemaHistoryIsWhereNamesComeFrom tampers with the stored history:
// a restart must then refuse the TABLE_MAP (whose names disagree, or whose
// column count differs) rather than emit rows under the history's names.
func TestSchemaHistoryIsWhereNamesComeFrom(t *testing.T) {
	f := newFixture(t)
	tbl := f.name + ".items"
	dir := t.TempDir()
	cfg := f.config()
	cfg.StartPosition = f.gtidPos()
	ctx := context.Background()
	s := historySource(t, f, cfg, dir)
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name) VALUES (1, 'a')", tbl))
	evs := readN(t, s, 1)
	s.Close(ctx)
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name) VALUES (2, 'b')", tbl))
	path := historyFile(dir, f.name)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, want string }{
		{`"name":"qty"`, `"name":"quantity"`, `"qty" in the TABLE_MAP event, "quantity" in the schema history`},
		{`{"name":"qty"},`, ``, `the TABLE_MAP event has 5 columns, the schema history 4`},
	} {
		if !strings.Contains(string(orig), tc.from) {
			t.Fatalf("history file without %s: %s", tc.from, orig)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(orig), tc.from, tc.to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		s2 := historySource(t, f, cfg, dir)
		if err := s2.Open(ctx, evs[0].Position); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 45e9)
		var n int
		for err == nil {
			var b connectors.Batch
			b, err = s2.ReadBatch(rctx, connectors.Limits{MaxEvents: 100, MaxWait: 50e6})
			n += len(b.Events)
		}
		cancel()
		s2.Close(ctx)
		var de *DDLError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) || n != 0 {
			t.Errorf("tampered history (%s): %d events, error %v; want none and a *DDLError with %q", tc.to, n, err, tc.want)
		}
		err = nil
	}
}

// TestSchemaHistoryNewTablesAndSnapshot starts with an initial snapshot of
// db.*, then creates, alters and renames tables mid-stream.
func TestSchemaHistoryNewTablesAndSnapshot(t *testing.T) {
	historyServers(t, testSchemaHistoryNewTablesAndSnapshot)
}

func testSchemaHistoryNewTablesAndSnapshot(t *testing.T, minimal bool) {
	f := historyFixture(t, minimal)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name) VALUES (1, 'a')", f.name))
	cfg := f.config()
	cfg.Tables = []string{f.name + ".*"}
	cfg.Snapshot = "initial"
	ctx := context.Background()
	s := historySource(t, f, cfg, t.TempDir(), minimal)
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	f.exec(fmt.Sprintf("CREATE TABLE %s.fresh (k int PRIMARY KEY, e enum('lo','hi'), s set('x','y','z'), j json, u uuid)", f.name))
	f.exec(fmt.Sprintf(`INSERT INTO %s.fresh VALUES (1, 'hi', 'x,z', '{"a": 1}', '123e4567-e89b-12d3-a456-426655440000')`, f.name))
	f.exec(fmt.Sprintf("ALTER TABLE %s.fresh ADD COLUMN note varchar(5) AFTER k, MODIFY e enum('lo','mid','hi')", f.name))
	f.exec(fmt.Sprintf("INSERT INTO %s.fresh (k, note, e, s) VALUES (2, 'n', 'mid', 'y')", f.name))
	f.exec(fmt.Sprintf("RENAME TABLE %s.fresh TO %s.renamed", f.name, f.name))
	f.exec(fmt.Sprintf("INSERT INTO %s.renamed (k, note, e, s) VALUES (3, 'm', 'lo', '')", f.name))
	want := []string{
		"items map[doc:<nil> id:1 name:a price:<nil> qty:<nil>]",
		`fresh map[e:hi j:{"a": 1} k:1 s:x,z u:123e4567-e89b-12d3-a456-426655440000]`,
		"fresh map[e:mid j:<nil> k:2 note:n s:y u:<nil>]",
		"renamed map[e:lo j:<nil> k:3 note:m s: u:<nil>]",
	}
	evs := readN(t, s, len(want))
	for i, w := range want {
		if got := evs[i].Schema.Table.Name + " " + fmt.Sprint(named(evs[i])); got != w {
			t.Errorf("event %d = %s; want %s", i, got, w)
		}
	}
}
