package sqlite_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/internal/viewsql"
	"github.com/tapline/tapline/internal/viewsql/viewsqltest"
	"github.com/tapline/tapline/sinks/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSink(t testing.TB, path, pipeline string, mod func(*sqlite.Config)) *sqlite.Sink {
	t.Helper()
	cfg := sqlite.DefaultConfig()
	cfg.Path = path
	if mod != nil {
		mod(&cfg)
	}
	s, err := sqlite.New(cfg, connectors.Runtime{Pipeline: pipeline})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// reader opens a second connection pool on the file, as another process
// reading the view would.
func reader(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func harness() viewsqltest.Harness {
	return viewsqltest.Harness{
		Setup: func(t testing.TB) *viewsqltest.Store {
			path := filepath.Join(t.TempDir(), "view.db")
			return &viewsqltest.Store{
				New: func(t testing.TB, pipeline string, view viewsql.Config) viewsqltest.Sink {
					return newSink(t, path, pipeline, func(c *sqlite.Config) { c.Config = view })
				},
				DB:    reader(t, path),
				Table: func(name string) string { return `"` + name + `"` },
			}
		},
		SetHooks:        func(s viewsqltest.Sink, h viewsql.Hooks) { s.(*sqlite.Sink).SetHooks(h) },
		Unholdable:      connectors.Column{Name: "f", Type: connectors.TypeFloat64, Native: "double precision", Nullable: true},
		UnholdableValue: math.NaN(),
		Baseline:        baseline,
	}
}

func TestConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "views", "view.db")
	connectortest.RunSink(t, connectortest.SinkHarness{
		New: func(t *testing.T) connectors.Sink { return newSink(t, path, "conf", nil) },
		State: func(t *testing.T) map[string]string {
			rows := viewsqltest.Query(t, reader(t, path), `SELECT id, name, qty, price FROM items`)
			state := map[string]string{}
			for _, r := range rows {
				vals := make([]connectors.Value, len(r))
				for i, v := range r {
					if v != "NULL" {
						vals[i] = v
					}
				}
				state["id="+r[0]] = connectortest.Row(vals...)
			}
			return state
		},
	})
}

func TestSuite(t *testing.T) { viewsqltest.Run(t, harness()) }

// A reader on another connection sees whole batches only: every batch moves
// quantities between rows and replaces a row, keeping the count and the sum.
func TestReaderSeesWholeBatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	s := newSink(t, path, "readers", nil)
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	var n uint64
	ev := func(op connectors.Op, id, qty int64) connectors.Event {
		n++
		e := connectors.Event{Op: op, Schema: viewsqltest.Items, Position: connectors.TxPosition{Commit: n, Ordinal: 1}.Encode()}
		row := []connectors.Value{id, fmt.Sprint("item ", id), qty, "1.00", nil}
		if op == connectors.OpDelete {
			e.Before = row
		} else {
			e.After = row
		}
		return e
	}
	const rows, each = 100, 100
	qty := make([]int64, rows+1)
	var evs []connectors.Event
	for id := int64(1); id <= rows; id++ {
		qty[id] = each
		evs = append(evs, ev(connectors.OpCreate, id, each))
	}
	if err := s.WriteBatch(ctx, connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}); err != nil {
		t.Fatal(err)
	}
	db := reader(t, path)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads int
	var bad []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var c, sum int64
			if err := db.QueryRow(`SELECT COUNT(*), SUM(qty) FROM items`).Scan(&c, &sum); err != nil {
				bad = append(bad, err.Error())
				continue
			}
			reads++
			if c != rows || sum != rows*each {
				bad = append(bad, fmt.Sprintf("count %d sum %d", c, sum))
			}
		}
	}()
	for b := 0; b < 300; b++ {
		evs = evs[:0]
		for k := 0; k < 20; k++ {
			from, to := int64(1+(b*7+k)%rows), int64(1+(b*13+k*3)%rows)
			if from == to {
				continue
			}
			x := qty[from] / 2
			qty[from] -= x
			qty[to] += x
			evs = append(evs, ev(connectors.OpUpdate, from, qty[from]), ev(connectors.OpUpdate, to, qty[to]))
		}
		id := int64(1 + b%rows)
		evs = append(evs, ev(connectors.OpDelete, id, 0), ev(connectors.OpCreate, id, qty[id]))
		if err := s.WriteBatch(ctx, connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("the reader saw %d inconsistent states, e.g. %v", len(bad), bad[0])
	}
	if reads < 10 {
		t.Fatalf("the reader read only %d times", reads)
	}
	t.Logf("%d consistent reads during 300 batches", reads)
}

// Values of every portable type land in columns of the declared types and
// read back as written.
func TestTypes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	s := newSink(t, path, "types", nil)
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	type tc struct {
		typ      connectors.Type
		val      connectors.Value
		declared string
		want     string // typeof(v) || ':' || v as text (hex for blobs)
	}
	cases := []tc{
		{connectors.TypeBool, true, "BOOLEAN", "integer:1"},
		{connectors.TypeInt16, int64(-32768), "INTEGER", "integer:-32768"},
		{connectors.TypeInt64, int64(math.MinInt64), "INTEGER", "integer:-9223372036854775808"},
		{connectors.TypeUint64, uint64(math.MaxInt64), "INTEGER", "integer:9223372036854775807"},
		{connectors.TypeFloat32, 0.1, "REAL", "real:0.1"},
		{connectors.TypeFloat64, math.Inf(-1), "REAL", "real:-Inf"},
		{connectors.TypeDecimal, "123456789012345678901234567890.120", "TEXT", "text:123456789012345678901234567890.120"},
		{connectors.TypeDecimal, "NaN", "TEXT", "text:NaN"},
		{connectors.TypeString, "héllo wörld", "TEXT", "text:héllo wörld"},
		{connectors.TypeBytes, []byte{0, 1, 0xff}, "BLOB", "blob:0001FF"},
		{connectors.TypeJSON, connectors.JSON(`{"a": [1, 2]}`), "TEXT", `text:{"a": [1, 2]}`},
		{connectors.TypeUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "TEXT", "text:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{connectors.TypeDate, "-0043-03-15", "TEXT", "text:-0043-03-15"},
		{connectors.TypeTimestampTZ, "2025-11-22T04:26:12.5Z", "TEXT", "text:2025-11-22T04:26:12.5Z"},
		{connectors.TypeInterval, "P1Y2M3DT4H5M6.5S", "TEXT", "text:P1Y2M3DT4H5M6.5S"},
		{connectors.TypeArray, []connectors.Value{int64(1), nil, "x", []byte{1}}, "TEXT", `text:[1,null,"x","AQ=="]`},
	}
	cols := []connectors.Column{{Name: "id", Type: connectors.TypeInt64, Key: 1}}
	row := []connectors.Value{int64(1)}
	for i, c := range cases {
		col := connectors.Column{Name: fmt.Sprintf("c%02d", i), Type: c.typ, Nullable: true}
		if c.typ == connectors.TypeArray {
			col.Elem = connectors.TypeText
		}
		cols = append(cols, col)
		row = append(row, c.val)
	}
	sch := connectors.MustSchema(connectors.TableID{Name: "typed"}, 1, cols)
	ev := connectors.Event{Op: connectors.OpCreate, Schema: sch, After: row, Position: connectors.TxPosition{Commit: 1, Ordinal: 1}.Encode()}
	if err := s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{ev}, Last: ev.Position}); err != nil {
		t.Fatal(err)
	}
	db := reader(t, path)
	decl := map[string]string{}
	for _, r := range viewsqltest.Query(t, db, `SELECT name, type FROM pragma_table_info('typed')`) {
		decl[r[0]] = r[1]
	}
	for i, c := range cases {
		name := fmt.Sprintf("c%02d", i)
		if decl[name] != c.declared {
			t.Errorf("%s (%s): declared %s, want %s", name, c.typ, decl[name], c.declared)
		}
		q := fmt.Sprintf(`SELECT typeof(%[1]s) || ':' || CASE typeof(%[1]s) WHEN 'blob' THEN hex(%[1]s) WHEN 'real' THEN
			CASE WHEN %[1]s = -9e999 THEN '-Inf' ELSE %[1]s END ELSE %[1]s END FROM typed`, name)
		got := viewsqltest.Query(t, db, q)[0][0]
		if got != c.want {
			t.Errorf("%s (%s) %#v: stored %q, want %q", name, c.typ, c.val, got, c.want)
		}
	}
	// Values SQLite cannot hold are rejected.
	for _, bad := range []struct {
		typ connectors.Type
		val connectors.Value
	}{
		{connectors.TypeUint64, uint64(math.MaxUint64)},
		{connectors.TypeFloat64, math.NaN()},
		{connectors.TypeDecimal, "12,5"},
		{connectors.TypeInt64, "12"},
	} {
		sch := connectors.MustSchema(connectors.TableID{Name: "bad"}, 1, []connectors.Column{{Name: "id", Type: connectors.TypeInt64, Key: 1}, {Name: "v", Type: bad.typ, Nullable: true}})
		ev := connectors.Event{Op: connectors.OpCreate, Schema: sch, After: []connectors.Value{int64(1), bad.val}, Position: connectors.TxPosition{Commit: 9, Ordinal: 1}.Encode()}
		err := s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{ev}, Last: ev.Position})
		var rej *connectors.RejectError
		if !errors.As(err, &rej) || rej.Events[0].Index != 0 || !strings.Contains(err.Error(), "column v") {
			t.Errorf("%s %#v: %v; want a RejectError naming column v", bad.typ, bad.val, err)
		}
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*sqlite.Config)
		want string
	}{
		{func(c *sqlite.Config) { c.Path = "" }, "path"},
		{func(c *sqlite.Config) { c.Synchronous = "off" }, "synchronous"},
		{func(c *sqlite.Config) { c.Mode = "append" }, "mode"},
		{func(c *sqlite.Config) { c.TableName = "{table" }, "table_name"},
		{func(c *sqlite.Config) { c.TableName = "fixed" }, "{table}"},
		{func(c *sqlite.Config) {
			c.Tables = map[string]viewsql.TableConfig{"a.b": {Rename: map[string]string{"x": "z", "y": "z"}}}
		}, "both renamed"},
	} {
		cfg := sqlite.DefaultConfig()
		cfg.Path = "x.db"
		tc.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error about %s", err, tc.want)
		}
	}
	fields := connectors.ConfigFields(sqlite.DefaultConfig())
	var keys []string
	for _, f := range fields {
		keys = append(keys, f.Key)
	}
	if got := strings.Join(keys, ","); got != "path,synchronous,busy_timeout,mode,table_name,history_table,tables,drop_columns" {
		t.Fatalf("config keys %s", got)
	}
}

// synchronous=normal is applied, and Check works without writing.
func TestSynchronousNormalAndCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "view.db")
	s := newSink(t, path, "sync", func(c *sqlite.Config) { c.Synchronous = "normal" })
	ctx := context.Background()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := newSink(t, filepath.Join(dir, "nodir", "x"), "x", nil).Check(ctx); err != nil {
		t.Fatalf("Check of a new file in a new directory: %v", err)
	}
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := newSink(t, filepath.Join(blocker, "x.db"), "x", nil).Check(ctx); err == nil {
		t.Fatal("Check of a path under a regular file passed")
	}
}

// A writer holding the file past busy_timeout makes a retryable error.
func TestBusyIsRetryable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	s := newSink(t, path, "busy", func(c *sqlite.Config) { c.BusyTimeout = 50 * time.Millisecond })
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	other, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	ev := connectors.Event{Op: connectors.OpCreate, Schema: viewsqltest.Items, After: viewsqltest.BenchRow(1), Position: connectors.TxPosition{Commit: 1, Ordinal: 1}.Encode()}
	err = s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{ev}, Last: ev.Position})
	if !connectors.IsRetryable(err) {
		t.Fatalf("WriteBatch while another writer holds the lock: %v; want a retryable error", err)
	}
	tx.Rollback()
	if err := s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{ev}, Last: ev.Position}); err != nil {
		t.Fatalf("WriteBatch after the lock was released: %v", err)
	}
}

// plainWriter inserts rows with prepared multi-row INSERTs (256 rows per
// statement, the same statement sizes as the sink) in one transaction per
// batch, on a go-sqlite3 connection opened with the sink's settings.
type plainWriter struct {
	conn  *sqlite3.SQLiteConn
	table string
	ncols int
	stmts map[int]driver.Stmt
	args  []driver.NamedValue
}

func baseline(b *testing.B, st *viewsqltest.Store, table string, cols []connectors.Column) viewsqltest.BaselineWriter {
	var path string
	if err := st.DB.QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&path); err != nil {
		b.Fatal(err)
	}
	c, err := (&sqlite3.SQLiteDriver{}).Open("file:" + path + "?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=5000&_txlock=immediate")
	if err != nil {
		b.Fatal(err)
	}
	w := &plainWriter{conn: c.(*sqlite3.SQLiteConn), table: table, ncols: len(cols), stmts: map[int]driver.Stmt{}}
	var ddl []string
	for _, col := range cols {
		typ := "TEXT"
		if col.Type == connectors.TypeInt64 {
			typ = "INTEGER"
		}
		ddl = append(ddl, col.Name+" "+typ)
	}
	if _, err := w.conn.Exec("CREATE TABLE "+table+" ("+strings.Join(ddl, ", ")+", PRIMARY KEY ("+cols[0].Name+"))", nil); err != nil {
		b.Fatal(err)
	}
	return w
}

func (w *plainWriter) stmt(rows int) (driver.Stmt, error) {
	if st, ok := w.stmts[rows]; ok {
		return st, nil
	}
	q := "INSERT INTO " + w.table + " VALUES " + strings.TrimSuffix(strings.Repeat("("+strings.TrimSuffix(strings.Repeat("?,", w.ncols), ",")+"),", rows), ",")
	st, err := w.conn.Prepare(q)
	if err == nil {
		w.stmts[rows] = st
	}
	return st, err
}

func (w *plainWriter) Write(rows [][]connectors.Value) error {
	tx, err := w.conn.Begin()
	if err != nil {
		return err
	}
	for len(rows) > 0 {
		k := 1
		switch {
		case len(rows) >= 256:
			k = 256
		case len(rows) >= 16:
			k = 16
		}
		st, err := w.stmt(k)
		if err != nil {
			tx.Rollback()
			return err
		}
		w.args = w.args[:0]
		for _, r := range rows[:k] {
			for _, v := range r {
				w.args = append(w.args, driver.NamedValue{Ordinal: len(w.args) + 1, Value: v})
			}
		}
		if _, err := st.(driver.StmtExecContext).ExecContext(context.Background(), w.args); err != nil {
			tx.Rollback()
			return err
		}
		rows = rows[k:]
	}
	return tx.Commit()
}

func (w *plainWriter) Close() error {
	for _, st := range w.stmts {
		st.Close()
	}
	return w.conn.Close()
}

// BenchmarkApply writes TAPLINE_BENCH_ROWS (default 1,000,000) upserts
// through the sink and the same rows with plain multi-row INSERTs; run it
// with -benchtime=1x.
func BenchmarkApply(b *testing.B) { viewsqltest.Bench(b, harness()) }

func BenchmarkJSONL(b *testing.B) { viewsqltest.BenchJSONL(b, harness()) }

// A view the user defined on a live table reads the promoted table.
func TestPromoteKeepsUserViews(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	ctx := context.Background()
	write := func(s *sqlite.Sink, id int64, qty int64) {
		t.Helper()
		ev := connectors.Event{Op: connectors.OpCreate, Schema: viewsqltest.Items, After: []connectors.Value{id, "x", qty, "1.00", nil},
			Position: connectors.TxPosition{Commit: uint64(id), Ordinal: 1}.Encode()}
		if err := s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{ev}, Last: ev.Position}); err != nil {
			t.Fatal(err)
		}
	}
	live := newSink(t, path, "p", nil)
	if err := live.Open(ctx); err != nil {
		t.Fatal(err)
	}
	write(live, 1, 5)
	live.Close(ctx)
	user, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	if _, err := user.Exec(`CREATE VIEW big_items AS SELECT id, qty FROM items WHERE qty > 3`); err != nil {
		t.Fatal(err)
	}
	shadow := newSink(t, path, "p", nil)
	shadow.UseShadow()
	if err := shadow.Open(ctx); err != nil {
		t.Fatal(err)
	}
	write(shadow, 1, 7)
	write(shadow, 2, 9)
	if err := shadow.Promote(ctx); err != nil {
		t.Fatalf("Promote with a user view on the table: %v", err)
	}
	got := viewsqltest.Query(t, user, `SELECT id || ':' || qty FROM big_items ORDER BY id`)
	if fmt.Sprint(got) != "[[1:7] [2:9]]" {
		t.Fatalf("the user's view reads %v after the promote, want [[1:7] [2:9]]", got)
	}
}
