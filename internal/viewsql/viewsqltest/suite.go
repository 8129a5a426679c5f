// Package viewsqltest is the test suite every SQL view sink (sinks/sqlite,
// sinks/postgres, sinks/mysql) runs against its real store: every op,
// TOAST-unchanged columns, schema evolution, composite keys, tables without
// a key, history mode, type-change errors, rejected values, replays,
// read-your-writes origins, crash injection over 100,000 events, and
// shadow tables promoted under a concurrent reader. Expected states come
// from Model, which folds the events one by one, independently of the
// sink's coalescing.
package viewsqltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

func init() {
	connectors.RegisterOriginOrder(originConnector, func(a, b string) (int, bool) {
		x, err1 := strconv.ParseInt(a, 10, 64)
		y, err2 := strconv.ParseInt(b, 10, 64)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	})
}

// originConnector is the source connector the suite's events claim to come
// from; its origin positions are decimal numbers.
const originConnector = "viewsqltest"

// Sink is what the suite drives: a view sink with all its capabilities.
type Sink interface {
	connectors.AtomicSink
	connectors.ShadowSink
	connectors.OriginTracker
	connectors.Checker
}

// Harness describes a store under test.
type Harness struct {
	// Setup prepares an empty store for one test (a new file, schema or
	// database) and removes it when the test ends.
	Setup func(t testing.TB) *Store
	// SetHooks sets a sink's fault-injection hooks.
	SetHooks func(s Sink, h viewsql.Hooks)
	// Unholdable is a column and a value of it that the store cannot hold:
	// the sink must reject the event.
	Unholdable      connectors.Column
	UnholdableValue connectors.Value
	// Baseline creates a table named table with columns cols (the types
	// the sink would create, key first) and returns a writer that inserts
	// rows into it with plain prepared multi-row INSERTs, one transaction
	// per Write, with the same driver as the sink: the benchmark's
	// yardstick.
	Baseline func(b *testing.B, st *Store, table string, cols []connectors.Column) BaselineWriter
}

// Store is one test's store.
type Store struct {
	// New builds an unopened sink writing this store, with its positions
	// under pipeline, and view as its shared config.
	New func(t testing.TB, pipeline string, view viewsql.Config) Sink
	// DB reads the store as another client would.
	DB *sql.DB
	// Table returns how a query names a table of the view.
	Table func(name string) string
}

// Run runs the suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Run("Ops", func(t *testing.T) { testOps(t, h) })
	t.Run("TruncateInBatch", func(t *testing.T) { testTruncate(t, h) })
	t.Run("UnchangedColumnsKept", func(t *testing.T) { testUnchanged(t, h) })
	t.Run("SchemaEvolution", func(t *testing.T) { testEvolution(t, h, false) })
	t.Run("SchemaEvolutionDropColumns", func(t *testing.T) { testEvolution(t, h, true) })
	t.Run("CompositeKey", func(t *testing.T) { testCompositeKey(t, h) })
	t.Run("KeyUpdateMovesRow", func(t *testing.T) { testKeyUpdate(t, h) })
	t.Run("NoKeyNeedsHistory", func(t *testing.T) { testNoKey(t, h) })
	t.Run("History", func(t *testing.T) { testHistory(t, h) })
	t.Run("TypeChangeError", func(t *testing.T) { testTypeChange(t, h) })
	t.Run("RejectWritesNothing", func(t *testing.T) { testReject(t, h) })
	t.Run("ReplayIsSkipped", func(t *testing.T) { testReplay(t, h) })
	t.Run("Origins", func(t *testing.T) { testOrigins(t, h) })
	t.Run("HeartbeatsMoveOrigins", func(t *testing.T) { testHeartbeats(t, h) })
	t.Run("Projection", func(t *testing.T) { testProjection(t, h) })
	t.Run("CrashInjection", func(t *testing.T) { testCrash(t, h, 100_000) })
	t.Run("ShadowPromote", func(t *testing.T) { testShadow(t, h) })
	t.Run("ShadowLeftoversDropped", func(t *testing.T) { testShadowLeftovers(t, h) })
	t.Run("ColumnOrderAcrossBatches", func(t *testing.T) { testColumnOrder(t, h) })
	t.Run("StaleWriterFenced", func(t *testing.T) { testStaleWriter(t, h) })
	t.Run("KeyOnlyDeletes", func(t *testing.T) { testKeyOnlyDeletes(t, h) })
	t.Run("KeyOnlyHistory", func(t *testing.T) { testKeyOnlyHistory(t, h) })
}

// Items is the main table of the suite, version 1.
var Items = connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "items"}, 1, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Native: "bigint", Key: 1},
	{Name: "name", Type: connectors.TypeString, Native: "text", Nullable: true},
	{Name: "qty", Type: connectors.TypeInt64, Native: "bigint", Nullable: true},
	{Name: "price", Type: connectors.TypeDecimal, Native: "numeric(10,2)", Nullable: true},
	{Name: "note", Type: connectors.TypeString, Native: "text", Nullable: true},
})

var itemCols = []string{"id", "name", "qty", "price", "note"}

// Pairs has a composite key.
var Pairs = connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "pairs"}, 1, []connectors.Column{
	{Name: "tenant", Type: connectors.TypeString, Native: "character varying(40)", Key: 1},
	{Name: "id", Type: connectors.TypeInt64, Native: "bigint", Key: 2},
	{Name: "val", Type: connectors.TypeString, Native: "text", Nullable: true},
})

var pairCols = []string{"tenant", "id", "val"}

// seq makes events with increasing positions.
type seq struct{ n uint64 }

func (s *seq) ev(op connectors.Op, sch *connectors.Schema, before, after []connectors.Value) connectors.Event {
	s.n++
	ev := connectors.Event{Op: op, Schema: sch, Before: before, After: after,
		Position: connectors.TxPosition{Commit: s.n, Ordinal: 1}.Encode(), TsMs: 1_763_800_000_000 + int64(s.n),
		Source: connectors.SourceInfo{Connector: originConnector, Name: "suite", Position: strconv.FormatUint(s.n, 10),
			TsMs: 1_763_800_000_000 + int64(s.n), Table: sch.Table.Name, Schema: sch.Table.Schema}}
	return ev
}

func (s *seq) c(sch *connectors.Schema, after ...connectors.Value) connectors.Event {
	return s.ev(connectors.OpCreate, sch, nil, after)
}

func (s *seq) r(sch *connectors.Schema, after ...connectors.Value) connectors.Event {
	return s.ev(connectors.OpRead, sch, nil, after)
}

func (s *seq) u(sch *connectors.Schema, after ...connectors.Value) connectors.Event {
	return s.ev(connectors.OpUpdate, sch, nil, after)
}

// d deletes by key: the key values, the rest NULL.
func (s *seq) d(sch *connectors.Schema, key ...connectors.Value) connectors.Event {
	before := make([]connectors.Value, len(sch.Columns))
	for i, ki := range sch.KeyColumns() {
		before[ki] = key[i]
	}
	return s.ev(connectors.OpDelete, sch, before, nil)
}

func (s *seq) t(sch *connectors.Schema) connectors.Event {
	return s.ev(connectors.OpTruncate, sch, nil, nil)
}

func batch(evs ...connectors.Event) connectors.Batch {
	return connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}
}

func open(t testing.TB, s Sink) {
	t.Helper()
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
}

func write(t testing.TB, s Sink, m *Model, b connectors.Batch) {
	t.Helper()
	if err := s.WriteBatch(context.Background(), b); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if m != nil {
		for i := range b.Events {
			m.Apply(&b.Events[i])
		}
	}
}

// Query reads rows as text ("NULL" for NULL).
func Query(t testing.TB, db *sql.DB, q string) [][]string {
	t.Helper()
	out, err := QueryErr(db, q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// QueryErr is Query returning its error.
func QueryErr(db *sql.DB, q string) ([][]string, error) {
	rows, err := db.Query(q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		r := make([]string, len(cols))
		for i, v := range vals {
			if v.Valid {
				r[i] = v.String
			} else {
				r[i] = "NULL"
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// check compares a table of the store with the model, row by row, and
// reports every difference. Column names of the suite need no quoting in
// any store.
func check(t testing.TB, st *Store, m *Model, table string, cols []string, keyCols int) {
	t.Helper()
	checkAs(t, st, m, table, table, cols, keyCols)
}

// checkAs compares the store's table with the model's rows of the source
// table modelTable.
func checkAs(t testing.TB, st *Store, m *Model, table, modelTable string, cols []string, keyCols int) {
	t.Helper()
	got := Query(t, st.DB, fmt.Sprintf("SELECT %s FROM %s", strings.Join(cols, ", "), st.Table(table)))
	SortRows(got, keyCols)
	want := m.Rows(modelTable, cols, keyCols)
	compare(t, table, got, want)
}

func compare(t testing.TB, table string, got, want [][]string) {
	t.Helper()
	var problems []string
	i, j := 0, 0
	for i < len(got) || j < len(want) {
		switch {
		case i < len(got) && j < len(want) && strings.Join(got[i], "|") == strings.Join(want[j], "|"):
			i++
			j++
		case j < len(want) && (i >= len(got) || keyLess(want[j], got[i])):
			problems = append(problems, "missing "+strings.Join(want[j], "|"))
			j++
		case i < len(got) && (j >= len(want) || keyLess(got[i], want[j])):
			problems = append(problems, "unexpected "+strings.Join(got[i], "|"))
			i++
		default:
			problems = append(problems, fmt.Sprintf("got %s, want %s", strings.Join(got[i], "|"), strings.Join(want[j], "|")))
			i++
			j++
		}
	}
	if len(problems) > 0 {
		n := len(problems)
		if n > 12 {
			problems = append(problems[:12], fmt.Sprintf("... and %d more", n-12))
		}
		t.Fatalf("table %s differs from the events (%d rows, want %d), %d problems:\n  %s", table, len(got), len(want), n, strings.Join(problems, "\n  "))
	}
}

// keyLess orders rows by their first column, numerically when possible
// (rows of one key compare equal, so that a changed row is one problem).
func keyLess(a, b []string) bool {
	x, err1 := strconv.ParseInt(a[0], 10, 64)
	y, err2 := strconv.ParseInt(b[0], 10, 64)
	if err1 == nil && err2 == nil {
		if x != y {
			return x < y
		}
	} else if a[0] != b[0] {
		return a[0] < b[0]
	}
	if len(a) > 1 && a[1] != b[1] {
		x, err1 := strconv.ParseInt(a[1], 10, 64)
		y, err2 := strconv.ParseInt(b[1], 10, 64)
		if err1 == nil && err2 == nil {
			return x < y
		}
		return a[1] < b[1]
	}
	return false
}

func committed(t testing.TB, s Sink) connectors.Position {
	t.Helper()
	p, err := s.CommittedPosition(context.Background())
	if err != nil {
		t.Fatalf("CommittedPosition: %v", err)
	}
	return p
}

func count(t testing.TB, st *Store, table string) int {
	t.Helper()
	r := Query(t, st.DB, "SELECT COUNT(*) FROM "+st.Table(table))
	n, err := strconv.Atoi(r[0][0])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func item(id int64, name string, qty int64, price, note string) []connectors.Value {
	return []connectors.Value{id, name, qty, price, note}
}

func testOps(t *testing.T, h Harness) {
	st := h.Setup(t)
	s := st.New(t, "ops", viewsql.DefaultConfig())
	open(t, s)
	m := NewModel()
	var q seq
	write(t, s, m, batch(
		q.c(Items, item(1, "one", 1, "1.10", "a")...),
		q.c(Items, item(2, "two", 2, "2.20", "b")...),
		q.c(Items, item(3, "three", 3, "3.30", "c")...),
		q.r(Items, item(4, "four", 4, "4.40", "d")...),
	))
	check(t, st, m, "items", itemCols, 1)
	// Within one batch: update, delete, delete-then-create, create-then-delete,
	// several updates of one key, and a snapshot read of an existing row.
	write(t, s, m, batch(
		q.u(Items, item(1, "one v2", 10, "10.00", "a2")...),
		q.d(Items, int64(2)),
		q.d(Items, int64(3)),
		q.c(Items, item(3, "three again", 33, "3.33", "c2")...),
		q.c(Items, item(5, "five", 5, "5.50", "e")...),
		q.d(Items, int64(5)),
		q.u(Items, item(4, "four v2", 44, "4.44", "d2")...),
		q.u(Items, int64(4), "four v3", int64(444), "4.45", nil),
		q.r(Items, item(1, "one v3", 11, "11.00", "a3")...),
		q.c(Items, item(6, "six", 6, "6.60", "f")...),
	))
	check(t, st, m, "items", itemCols, 1)
	// Across batches.
	write(t, s, m, batch(q.d(Items, int64(6))))
	write(t, s, m, batch(q.u(Items, item(3, "three v3", 0, "0.00", "")...)))
	check(t, st, m, "items", itemCols, 1)
	if got := len(m.Rows("items", itemCols, 1)); got != 3 {
		t.Fatalf("the model holds %d rows, want 3 (the test's events are wrong)", got)
	}
}

func testTruncate(t *testing.T, h Harness) {
	st := h.Setup(t)
	s := st.New(t, "trunc", viewsql.DefaultConfig())
	open(t, s)
	m := NewModel()
	var q seq
	write(t, s, m, batch(
		q.c(Items, item(1, "one", 1, "1.00", "x")...),
		q.c(Items, item(2, "two", 2, "2.00", "x")...),
		q.c(Pairs, "a", int64(1), "pa"),
	))
	// A truncate in the middle of a batch voids what came before it for
	// that table only.
	write(t, s, m, batch(
		q.u(Items, item(1, "one v2", 1, "1.00", "x")...),
		q.c(Items, item(3, "three", 3, "3.00", "x")...),
		q.c(Pairs, "b", int64(2), "pb"),
		q.t(Items),
		q.c(Items, item(4, "four", 4, "4.00", "x")...),
		q.c(Pairs, "c", int64(3), "pc"),
	))
	check(t, st, m, "items", itemCols, 1)
	check(t, st, m, "pairs", pairCols, 2)
	// A truncate with no schema, and one of a table never written.
	write(t, s, m, batch(
		q.c(Items, item(5, "five", 5, "5.00", "x")...),
		connectors.Event{Op: connectors.OpTruncate, Source: connectors.SourceInfo{Schema: "shop", Table: "items"},
			Position: connectors.TxPosition{Commit: 1000, Ordinal: 1}.Encode()},
	))
	m.Tables["items"] = nil
	check(t, st, m, "items", itemCols, 1)
	other := connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "never"}, 1, Items.Columns)
	q.n = 2000
	write(t, s, nil, batch(q.t(other)))
	if n := count(t, st, "pairs"); n != 3 {
		t.Fatalf("pairs holds %d rows, want 3", n)
	}
}

func testUnchanged(t *testing.T, h Harness) {
	st := h.Setup(t)
	s := st.New(t, "toast", viewsql.DefaultConfig())
	open(t, s)
	m := NewModel()
	var q seq
	big := strings.Repeat("toasted ", 4000)
	u := connectors.Unchanged
	write(t, s, m, batch(
		q.c(Items, item(1, "one", 1, "1.00", big+"1")...),
		q.c(Items, item(2, "two", 2, "2.00", big+"2")...),
		q.c(Items, item(3, "three", 3, "3.00", big+"3")...),
	))
	// The unchanged note keeps its stored value.
	write(t, s, m, batch(q.u(Items, int64(1), "one v2", int64(10), "1.50", u)))
	// Unchanged merged with an earlier change in the same batch, and two
	// unchanged columns.
	write(t, s, m, batch(
		q.u(Items, int64(2), "two v2", int64(20), "2.50", "new note"),
		q.u(Items, int64(2), "two v3", int64(21), u, u),
		q.u(Items, int64(3), u, int64(30), u, u),
	))
	check(t, st, m, "items", itemCols, 1)
	got := Query(t, st.DB, "SELECT note FROM "+st.Table("items")+" WHERE id = 1")
	if len(got) != 1 || got[0][0] != big+"1" {
		t.Fatalf("the unchanged note of row 1 was not kept")
	}
	before := committed(t, s)
	// An update with an unchanged column of a row the view never had is an
	// error that names it, and writes nothing.
	err := s.WriteBatch(context.Background(), batch(
		q.u(Items, item(1, "one v3", 1, "1.00", "x")...),
		q.u(Items, int64(99), "ninety-nine", int64(99), "9.90", u),
	))
	var mr *viewsql.MissingRowError
	if !errors.As(err, &mr) || !strings.Contains(err.Error(), "id=99") || !strings.Contains(err.Error(), "rebuild") {
		t.Fatalf("update of a missing row with an unchanged column: %v; want a MissingRowError naming id=99", err)
	}
	if p := committed(t, s); p.Compare(before) != 0 {
		t.Fatalf("the position moved to %s after a failed batch", p)
	}
	check(t, st, m, "items", itemCols, 1)
	// An insert with an unchanged column cannot happen; it is an error.
	err = s.WriteBatch(context.Background(), batch(q.c(Items, int64(7), "seven", int64(7), "7.00", u)))
	if err == nil || !strings.Contains(err.Error(), "unchanged") {
		t.Fatalf("insert with an unchanged column: %v; want an error", err)
	}
	// So is an unchanged column after a delete in the same batch.
	err = s.WriteBatch(context.Background(), batch(q.d(Items, int64(1)), q.u(Items, int64(1), "one", int64(1), "1.00", u)))
	if err == nil || !strings.Contains(err.Error(), "unchanged") {
		t.Fatalf("unchanged column after a delete: %v; want an error", err)
	}
	check(t, st, m, "items", itemCols, 1)
}

func testEvolution(t *testing.T, h Harness, drop bool) {
	st := h.Setup(t)
	cfg := viewsql.DefaultConfig()
	cfg.DropColumns = drop
	s := st.New(t, "evolve", cfg)
	open(t, s)
	m := NewModel()
	var q seq
	tid := connectors.TableID{Schema: "shop", Name: "evo"}
	v1 := connectors.MustSchema(tid, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Native: "bigint", Key: 1},
		{Name: "name", Type: connectors.TypeString, Native: "text", Nullable: true},
	})
	v2 := connectors.MustSchema(tid, 2, append(append([]connectors.Column(nil), v1.Columns...),
		connectors.Column{Name: "extra", Type: connectors.TypeInt64, Native: "bigint", Nullable: true}))
	v3 := connectors.MustSchema(tid, 3, []connectors.Column{v2.Columns[0], v2.Columns[2]}) // name dropped
	write(t, s, m, batch(q.c(v1, int64(1), "one"), q.c(v1, int64(2), "two")))
	// The new column arrives mid-batch.
	write(t, s, m, batch(
		q.u(v1, int64(1), "one v2"),
		q.c(v2, int64(3), "three", int64(30)),
		q.u(v2, int64(2), "two v2", int64(20)),
	))
	check(t, st, m, "evo", []string{"id", "name", "extra"}, 1)
	write(t, s, m, batch(q.c(v3, int64(4), int64(40)), q.u(v3, int64(3), int64(31))))
	cols := columns(t, st, "evo")
	if drop {
		if strings.Join(cols, ",") != "id,extra" {
			t.Fatalf("with drop_columns the table has columns %v, want id, extra", cols)
		}
		for _, r := range m.Tables["evo"] {
			delete(r, "name")
		}
		check(t, st, m, "evo", []string{"id", "extra"}, 1)
		return
	}
	if strings.Join(cols, ",") != "id,name,extra" {
		t.Fatalf("the table has columns %v, want id, name, extra (a dropped column is kept)", cols)
	}
	// The kept column holds its last value for old rows and NULL for new ones.
	check(t, st, m, "evo", []string{"id", "name", "extra"}, 1)
	// Reopening with the old table in place and an older schema version
	// still works (a replay from before the change).
	s.Close(context.Background())
	s = st.New(t, "evolve2", cfg)
	open(t, s)
	write(t, s, m, batch(q.u(v1, int64(1), "one v3")))
	check(t, st, m, "evo", []string{"id", "name", "extra"}, 1)
}

// columns lists a table's columns in order.
func columns(t testing.TB, st *Store, table string) []string {
	t.Helper()
	rows, err := st.DB.Query("SELECT * FROM " + st.Table(table) + " WHERE 1 = 0")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

func testCompositeKey(t *testing.T, h Harness) {
	st := h.Setup(t)
	s := st.New(t, "pairs", viewsql.DefaultConfig())
	open(t, s)
	m := NewModel()
	var q seq
	write(t, s, m, batch(
		q.c(Pairs, "a", int64(1), "a1"),
		q.c(Pairs, "b", int64(1), "b1"),
		q.c(Pairs, "a", int64(2), "a2"),
		q.c(Pairs, "A", int64(1), "upper A1"),
	))
	write(t, s, m, batch(
		q.u(Pairs, "a", int64(1), "a1 v2"),
		q.d(Pairs, "b", int64(1)),
		q.d(Pairs, "a", int64(2)),
		q.c(Pairs, "a", int64(2), "a2 again"),
		q.c(Pairs, "c", int64(9), nil),
	))
	check(t, st, m, "pairs", pairCols, 2)
	if n := count(t, st, "pairs"); n != 4 {
		t.Fatalf("pairs holds %d rows, want 4", n)
	}
}

func testKeyUpdate(t *testing.T, h Harness) {
	st := h.Setup(t)
	s := st.New(t, "keyupd", viewsql.DefaultConfig())
	open(t, s)
	m := NewModel()
	var q seq
	write(t, s, m, batch(q.c(Items, item(1, "one", 1, "1.00", "n")...), q.c(Items, item(2, "two", 2, "2.00", "n")...)))
	// An update whose before image holds another key moves the row.
	mv := q.ev(connectors.OpUpdate, Items, item(1, "one", 1, "1.00", "n"), item(10, "ten", 1, "1.00", "n"))
	write(t, s, m, batch(mv))
	check(t, st, m, "items", itemCols, 1)
}

func testNoKey(t *testing.T, h Harness) {
	st := h.Setup(t)
	logs := connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "logs"}, 1, []connectors.Column{
		{Name: "at", Type: connectors.TypeInt64, Native: "bigint", Nullable: true},
		{Name: "msg", Type: connectors.TypeString, Native: "text", Nullable: true},
	})
	s := st.New(t, "nokey", viewsql.DefaultConfig())
	open(t, s)
	var q seq
	err := s.WriteBatch(context.Background(), batch(q.c(logs, int64(1), "hello")))
	var nk *viewsql.NoKeyError
	if !errors.As(err, &nk) || !strings.Contains(err.Error(), "shop.logs") || !strings.Contains(err.Error(), "mode: history") {
		t.Fatalf("upsert of a table without a key: %v; want an error naming shop.logs and mode: history", err)
	}
	s.Close(context.Background())

	cfg := viewsql.DefaultConfig()
	cfg.Tables = map[string]viewsql.TableConfig{"shop.logs": {Mode: viewsql.ModeHistory}}
	s = st.New(t, "nokey", cfg)
	open(t, s)
	write(t, s, nil, batch(q.c(logs, int64(1), "hello"), q.c(logs, int64(1), "hello"), q.c(logs, int64(2), nil)))
	got := Query(t, st.DB, "SELECT __op, at, msg FROM "+st.Table("logs_history")+" ORDER BY __seq")
	compare(t, "logs_history", got, [][]string{{"c", "1", "hello"}, {"c", "1", "hello"}, {"c", "2", "NULL"}})
}

func testHistory(t *testing.T, h Harness) {
	st := h.Setup(t)
	cfg := viewsql.DefaultConfig()
	cfg.Mode = viewsql.ModeHistory
	s := st.New(t, "hist", cfg)
	open(t, s)
	var q seq
	u := connectors.Unchanged
	evs := []connectors.Event{
		q.c(Items, item(1, "one", 1, "1.00", "n1")...),
		q.u(Items, int64(1), "one v2", int64(2), "2.00", u),
		q.d(Items, int64(1)),
		q.t(Items),
		q.r(Items, item(2, "two", 2, "2.00", "n2")...),
	}
	write(t, s, nil, batch(evs[:2]...))
	write(t, s, nil, batch(evs[2:]...))
	got := Query(t, st.DB, "SELECT __op, __position, __source_position, __source_ts_ms, id, name, note, __unchanged FROM "+
		st.Table("items_history")+" ORDER BY __seq")
	var want [][]string
	for i, ev := range evs {
		id, name, note, unch := "NULL", "NULL", "NULL", "NULL"
		switch ev.Op {
		case connectors.OpDelete:
			id = "1"
		case connectors.OpTruncate:
		default:
			id, name = Text(ev.After[0]), Text(ev.After[1])
			if connectors.IsUnchanged(ev.After[4]) {
				unch = `["note"]`
			} else {
				note = Text(ev.After[4])
			}
		}
		want = append(want, []string{ev.Op.String(), ev.Position.String(), strconv.Itoa(i + 1), strconv.FormatInt(ev.Source.TsMs, 10), id, name, note, unch})
	}
	if len(got) != len(want) {
		t.Fatalf("history holds %d rows, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if strings.Join(got[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("history row %d = %v, want %v", i+1, got[i], want[i])
		}
	}
}

func testTypeChange(t *testing.T, h Harness) {
	st := h.Setup(t)
	s := st.New(t, "typechg", viewsql.DefaultConfig())
	open(t, s)
	var q seq
	write(t, s, nil, batch(q.c(Items, item(1, "one", 1, "1.00", "n")...)))
	cols := append([]connectors.Column(nil), Items.Columns...)
	cols[2] = connectors.Column{Name: "qty", Type: connectors.TypeBytes, Native: "bytea", Nullable: true}
	v2 := connectors.MustSchema(Items.Table, 2, cols)
	err := s.WriteBatch(context.Background(), batch(q.c(v2, int64(2), "two", []byte("x"), "2.00", "n")))
	var tc *viewsql.TypeChangeError
	if !errors.As(err, &tc) {
		t.Fatalf("type change: %v; want a TypeChangeError", err)
	}
	for _, want := range []string{"items", "qty", tc.Old, tc.New, "tapline rebuild", "schema version 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if tc.Old == tc.New {
		t.Errorf("old and new types are both %q", tc.Old)
	}
	if n := count(t, st, "items"); n != 1 {
		t.Fatalf("items holds %d rows after the failed batch, want 1", n)
	}
}

func testReject(t *testing.T, h Harness) {
	st := h.Setup(t)
	s := st.New(t, "reject", viewsql.DefaultConfig())
	open(t, s)
	var q seq
	odd := connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "odd"}, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Native: "bigint", Key: 1},
		h.Unholdable,
	})
	b := batch(
		q.c(Items, item(1, "one", 1, "1.00", "n")...),
		q.c(odd, int64(1), h.UnholdableValue),
		q.c(Items, item(2, "two", 2, "2.00", "n")...),
		q.c(odd, int64(2), h.UnholdableValue),
	)
	err := s.WriteBatch(context.Background(), b)
	var rej *connectors.RejectError
	if !errors.As(err, &rej) {
		t.Fatalf("a value the store cannot hold: %v; want a RejectError", err)
	}
	if len(rej.Events) != 2 || rej.Events[0].Index != 1 || rej.Events[1].Index != 3 {
		t.Fatalf("rejected %v, want events 1 and 3", rej.Events)
	}
	if p := committed(t, s); p != nil {
		t.Fatalf("the position is %s after a rejected batch", p)
	}
	if r, err := QueryErr(st.DB, "SELECT COUNT(*) FROM "+st.Table("items")); err == nil && r[0][0] != "0" {
		t.Fatalf("items holds %s rows after a rejected batch", r[0][0])
	}
	// The engine writes the rest again.
	b.Events = []connectors.Event{b.Events[0], b.Events[2]}
	m := NewModel()
	write(t, s, m, b)
	check(t, st, m, "items", itemCols, 1)
}

func testReplay(t *testing.T, h Harness) {
	st := h.Setup(t)
	cfg := viewsql.DefaultConfig()
	cfg.Mode = viewsql.ModeHistory
	s := st.New(t, "replay", cfg)
	open(t, s)
	var q seq
	b1 := batch(q.c(Items, item(1, "one", 1, "1.00", "n")...), q.c(Items, item(2, "two", 2, "2.00", "n")...))
	b2 := batch(q.u(Items, item(1, "one v2", 1, "1.00", "n")...))
	write(t, s, nil, b1)
	write(t, s, nil, b2)
	write(t, s, nil, b2) // replayed
	write(t, s, nil, b1) // older
	if n := count(t, st, "items_history"); n != 3 {
		t.Fatalf("history holds %d rows after replays, want 3", n)
	}
	// A new sink (a restart) skips them too.
	s.Close(context.Background())
	s = st.New(t, "replay", cfg)
	open(t, s)
	write(t, s, nil, b2)
	if n := count(t, st, "items_history"); n != 3 {
		t.Fatalf("history holds %d rows after a replay on reopen, want 3", n)
	}
	// An empty batch moves the position.
	last := connectors.TxPosition{Commit: 500, Ordinal: 1}.Encode()
	if err := s.WriteBatch(context.Background(), connectors.Batch{Last: last}); err != nil {
		t.Fatal(err)
	}
	if p := committed(t, s); p.Compare(last) != 0 {
		t.Fatalf("position %s after an empty batch, want %s", p, last)
	}
}

func testOrigins(t *testing.T, h Harness) {
	st := h.Setup(t)
	s := st.New(t, "origins", viewsql.DefaultConfig())
	open(t, s)
	ctx := context.Background()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			o, err := s.AppliedOrigins(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			o["scribble"] = "x" // a copy: harmless
		}
	}()
	var q seq
	b := batch(q.c(Items, item(1, "one", 1, "1.00", "n")...), q.c(Items, item(2, "two", 2, "2.00", "n")...))
	b.Events[1].Source.Name = "other"
	write(t, s, nil, b)
	write(t, s, nil, batch(q.u(Items, item(1, "one", 2, "1.00", "n")...)))
	close(stop)
	<-done
	want := map[string]string{originConnector + "/suite": "3", originConnector + "/other": "2"}
	check := func(s Sink) {
		t.Helper()
		got, err := s.AppliedOrigins(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("AppliedOrigins = %v, want %v", got, want)
		}
	}
	check(s)
	// A failed batch changes nothing.
	if err := s.WriteBatch(ctx, batch(q.u(Items, int64(77), "x", int64(1), "1.00", connectors.Unchanged))); err == nil {
		t.Fatal("the update of a missing row with an unchanged column succeeded")
	}
	check(s)
	s.Close(ctx)
	s = st.New(t, "origins", viewsql.DefaultConfig())
	open(t, s)
	check(s)
}

// hb is a heartbeat event: no table or rows, the next position.
func (s *seq) hb() connectors.Event {
	s.n++
	return connectors.Event{Op: connectors.OpHeartbeat,
		Position: connectors.TxPosition{Commit: s.n}.Encode(), TsMs: 1_763_800_000_000 + int64(s.n),
		Source: connectors.SourceInfo{Connector: originConnector, Name: "suite", Position: strconv.FormatUint(s.n, 10)}}
}

// Heartbeat events (op h) apply nothing but move the origin position, in a
// batch with changes or alone, so a read-your-writes wait ends on an idle
// origin.
func testHeartbeats(t *testing.T, h Harness) {
	st := h.Setup(t)
	s := st.New(t, "heartbeats", viewsql.DefaultConfig())
	open(t, s)
	ctx := context.Background()
	var q seq
	m := NewModel()
	write(t, s, m, batch(q.c(Items, item(1, "one", 1, "1.00", "n")...), q.hb()))
	b := batch(q.hb())
	write(t, s, m, b)
	got, err := s.AppliedOrigins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{originConnector + "/suite": "3"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("AppliedOrigins = %v, want %v (the last heartbeat's)", got, want)
	}
	if p := committed(t, s); p.Compare(b.Last) != 0 {
		t.Fatalf("position %s after a heartbeat-only batch, want %s", p, b.Last)
	}
	check(t, st, m, "items", itemCols, 1)
}

func testProjection(t *testing.T, h Harness) {
	st := h.Setup(t)
	cfg := viewsql.DefaultConfig()
	cfg.TableName = "{schema}_{table}"
	cfg.Tables = map[string]viewsql.TableConfig{
		"shop.items": {Name: "products", Columns: []string{"id", "name", "price"}, Rename: map[string]string{"price": "cost"}},
	}
	s := st.New(t, "proj", cfg)
	open(t, s)
	var q seq
	m := NewModel()
	write(t, s, m, batch(q.c(Items, item(1, "one", 1, "1.00", "n")...), q.c(Pairs, "a", int64(1), "x")))
	got := Query(t, st.DB, "SELECT id, name, cost FROM "+st.Table("products"))
	compare(t, "products", got, [][]string{{"1", "one", "1.00"}})
	if cols := columns(t, st, "products"); len(cols) != 3 {
		t.Fatalf("products has columns %v, want id, name, cost", cols)
	}
	checkAs(t, st, m, "shop_pairs", "pairs", pairCols, 2)
}

// The columns of a batch are numbered in order of first use, so the same
// column can have another number in the next batch: a statement a store
// keeps from batch to batch must still name the right columns. Each
// pattern comes twice, so that statements kept (or prepared on the
// second use) run too.
func testColumnOrder(t *testing.T, h Harness) {
	st := h.Setup(t)
	s := st.New(t, "order", viewsql.DefaultConfig())
	open(t, s)
	m := NewModel()
	var q seq
	tid := connectors.TableID{Schema: "shop", Name: "ord"}
	v1 := connectors.MustSchema(tid, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Native: "bigint", Key: 1},
		{Name: "a", Type: connectors.TypeString, Native: "text", Nullable: true},
		{Name: "b", Type: connectors.TypeInt64, Native: "bigint", Nullable: true},
	})
	v2 := connectors.MustSchema(tid, 2, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Native: "bigint", Key: 1},
		{Name: "b", Type: connectors.TypeInt64, Native: "bigint", Nullable: true},
		{Name: "a", Type: connectors.TypeString, Native: "text", Nullable: true},
		{Name: "c", Type: connectors.TypeString, Native: "text", Nullable: true},
	})
	id := int64(0)
	next := func(v *connectors.Schema) connectors.Event {
		id++
		if v == v1 {
			return q.c(v1, id, fmt.Sprint("a", id), id*10)
		}
		return q.c(v2, id, id*10, fmt.Sprint("a", id), fmt.Sprint("c", id))
	}
	for range 2 {
		write(t, s, m, batch(next(v1), next(v1), next(v2), next(v2)))
		write(t, s, m, batch(next(v2), next(v1), next(v1), next(v2)))
		// Updates of rows written by the other version.
		write(t, s, m, batch(q.u(v1, int64(3), "a3 v1", int64(31)), q.u(v2, int64(1), int64(11), "a1 v2", "c1")))
	}
	check(t, st, m, "ord", []string{"id", "a", "b", "c"}, 1)
}

// A second sink writing the view under the same pipeline name moves the
// stored position under the first: the first's next batch fails, writing
// nothing; a batch the other already stored is skipped as a replay, after
// which the first writes on from there.
func testStaleWriter(t *testing.T, h Harness) {
	st := h.Setup(t)
	ctx := context.Background()
	a := st.New(t, "fence", viewsql.DefaultConfig())
	open(t, a)
	m := NewModel()
	var q seq
	write(t, a, m, batch(q.c(Items, item(1, "one", 1, "1.00", "n")...)))
	write(t, a, m, batch(q.c(Items, item(2, "two", 2, "2.00", "n")...)))
	other := st.New(t, "fence", viewsql.DefaultConfig())
	open(t, other)
	b3 := batch(q.c(Items, item(3, "three", 3, "3.00", "n")...))
	write(t, other, m, b3)

	stale := batch(q.c(Items, item(4, "four", 4, "4.00", "n")...))
	err := a.WriteBatch(ctx, stale)
	if err == nil || !strings.Contains(err.Error(), "moved") {
		t.Fatalf("WriteBatch of a sink whose position another sink moved: %v; want an error saying the position moved", err)
	}
	check(t, st, m, "items", itemCols, 1)
	if p := committed(t, other); p.Compare(b3.Last) != 0 {
		t.Fatalf("the stored position is %s after the refused batch, want %s", p, b3.Last)
	}

	// The other sink's batch, replayed to the first: skipped.
	if err := a.WriteBatch(ctx, b3); err != nil {
		t.Fatalf("a replay of a stored batch: %v", err)
	}
	got, err := a.AppliedOrigins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{originConnector + "/suite": "3"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("AppliedOrigins after the skipped replay = %v, want %v (the stored ones)", got, want)
	}
	write(t, a, m, stale)
	write(t, a, m, batch(q.u(Items, item(3, "three v2", 3, "3.00", "n")...)))
	check(t, st, m, "items", itemCols, 1)
	if p := committed(t, a); p.Compare(connectors.TxPosition{Commit: q.n, Ordinal: 1}.Encode()) != 0 {
		t.Fatalf("the stored position is %s, want the last batch's", p)
	}
}
