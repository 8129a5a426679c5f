package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/internal/viewsql"
	"github.com/tapline/tapline/internal/viewsql/viewsqltest"
	"github.com/tapline/tapline/sinks/mysql"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// database makes a database for one test, drops it when the test ends and
// returns its DSN.
func database(t testing.TB) string {
	t.Helper()
	base := servicetest.MySQLDSN(t)
	mc, err := gomysql.ParseDSN(base)
	if err != nil {
		t.Fatal(err)
	}
	name := servicetest.Name(t, "tv")
	admin, err := sql.Open("mysql", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE `" + name + "`"); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("mysql", base)
		if err != nil {
			t.Error(err)
			return
		}
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS `" + name + "`"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	mc.DBName = name
	return mc.FormatDSN()
}

func newSink(t testing.TB, dsn, pipeline string, mod func(*mysql.Config)) *mysql.Sink {
	t.Helper()
	cfg := mysql.DefaultConfig()
	cfg.DSN = connectors.Secret(dsn)
	if mod != nil {
		mod(&cfg)
	}
	s, err := mysql.New(cfg, connectors.Runtime{Pipeline: pipeline})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func harness() viewsqltest.Harness {
	return viewsqltest.Harness{
		Setup: func(t testing.TB) *viewsqltest.Store {
			dsn := database(t)
			return &viewsqltest.Store{
				New: func(t testing.TB, pipeline string, view viewsql.Config) viewsqltest.Sink {
					return newSink(t, dsn, pipeline, func(c *mysql.Config) { c.Config = view })
				},
				DB:    openDB(t, dsn),
				Table: func(name string) string { return "`" + name + "`" },
			}
		},
		SetHooks:        func(s viewsqltest.Sink, h viewsql.Hooks) { s.(*mysql.Sink).SetHooks(h) },
		Unholdable:      connectors.Column{Name: "f", Type: connectors.TypeFloat64, Native: "double", Nullable: true},
		UnholdableValue: math.NaN(),
		Baseline:        baseline,
	}
}

func TestConformance(t *testing.T) {
	dsn := database(t)
	connectortest.RunSink(t, connectortest.SinkHarness{
		New: func(t *testing.T) connectors.Sink { return newSink(t, dsn, "conf", nil) },
		State: func(t *testing.T) map[string]string {
			state := map[string]string{}
			// A reader of its own, closed before the suite looks for
			// leaked goroutines.
			db, err := sql.Open("mysql", dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			rows, err := viewsqltest.QueryErr(db, "SELECT id, name, qty, price FROM items")
			if err != nil {
				if strings.Contains(err.Error(), "doesn't exist") {
					return state
				}
				t.Fatal(err)
			}
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

// plainWriter inserts rows with a server-side prepared multi-row INSERT
// (one per batch size, prepared once), in one transaction per batch.
type plainWriter struct {
	db    *sql.DB
	table string
	ncols int
	stmts map[int]*sql.Stmt
	args  []any
}

func baseline(b *testing.B, st *viewsqltest.Store, table string, cols []connectors.Column) viewsqltest.BaselineWriter {
	var ddl []string
	for _, c := range cols {
		ddl = append(ddl, c.Name+" "+map[connectors.Type]string{connectors.TypeInt64: "bigint", connectors.TypeDecimal: "decimal(10,2)", connectors.TypeString: "longtext"}[c.Type])
	}
	if _, err := st.DB.Exec("CREATE TABLE " + table + " (" + strings.Join(ddl, ", ") + ", PRIMARY KEY (" + cols[0].Name + ")) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"); err != nil {
		b.Fatal(err)
	}
	return &plainWriter{db: st.DB, table: table, ncols: len(cols), stmts: map[int]*sql.Stmt{}}
}

func (w *plainWriter) Write(rows [][]connectors.Value) error {
	st, ok := w.stmts[len(rows)]
	if !ok {
		row := "(" + strings.TrimSuffix(strings.Repeat("?, ", w.ncols), ", ") + ")"
		var err error
		st, err = w.db.Prepare("INSERT INTO " + w.table + " VALUES " + strings.TrimSuffix(strings.Repeat(row+", ", len(rows)), ", "))
		if err != nil {
			return err
		}
		w.stmts[len(rows)] = st
	}
	w.args = w.args[:0]
	for _, r := range rows {
		w.args = append(w.args, r...)
	}
	tx, err := w.db.Begin()
	if err != nil {
		return err
	}
	if _, err := tx.Stmt(st).Exec(w.args...); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (w *plainWriter) Close() error {
	for _, st := range w.stmts {
		st.Close()
	}
	return nil
}

// BenchmarkApply writes TAPLINE_BENCH_ROWS (default 1,000,000) upserts
// through the sink and the same rows with plain prepared multi-row INSERTs;
// run it with -benchtime=1x.
func BenchmarkApply(b *testing.B) { viewsqltest.Bench(b, harness()) }

func BenchmarkJSONL(b *testing.B) { viewsqltest.BenchJSONL(b, harness()) }

// Values of every portable type land in columns of the mapped types and
// compare equal to their literals; values MySQL cannot hold are rejected.
func TestTypes(t *testing.T) {
	dsn := database(t)
	s := newSink(t, dsn, "types", nil)
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	type tc struct {
		col     connectors.Column
		val     connectors.Value
		typ     string // COLUMN_TYPE, without integer display widths
		literal string // SQL it must equal (<=>)
	}
	V := func(v ...connectors.Value) []connectors.Value { return v }
	cases := []tc{
		{connectors.Column{Type: connectors.TypeBool}, true, "tinyint(1)", "1"},
		{connectors.Column{Type: connectors.TypeInt16}, int64(-32768), "smallint", "-32768"},
		{connectors.Column{Type: connectors.TypeInt64}, int64(math.MinInt64), "bigint", "-9223372036854775808"},
		{connectors.Column{Type: connectors.TypeUint64}, uint64(math.MaxUint64), "bigint unsigned", "18446744073709551615"},
		{connectors.Column{Type: connectors.TypeFloat32, Native: "real"}, 0.1, "float", "CAST(0.1 AS FLOAT)"},
		{connectors.Column{Type: connectors.TypeFloat64}, 5e-324, "double", "5e-324"},
		{connectors.Column{Type: connectors.TypeDecimal, Native: "numeric(10,2)"}, "-12.30", "decimal(10,2)", "-12.30"},
		{connectors.Column{Type: connectors.TypeDecimal}, "12345678901234567890123456789012345.123456789012345678901234567891", "decimal(65,30)", "12345678901234567890123456789012345.123456789012345678901234567891"},
		{connectors.Column{Type: connectors.TypeString}, "héllo 'quoted' \\ wörld 🎉", "longtext", "'héllo \\'quoted\\' \\\\ wörld 🎉'"},
		{connectors.Column{Type: connectors.TypeBytes}, []byte{0, 1, 0xff, '\'', '\\'}, "longblob", "X'0001FF275C'"},
		{connectors.Column{Type: connectors.TypeJSON}, connectors.JSON(`{"a": [1, 2.5], "b": null}`), "", `'{"a": [1, 2.5], "b": null}'`},
		{connectors.Column{Type: connectors.TypeUUID}, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "char(36)", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"},
		{connectors.Column{Type: connectors.TypeDate}, "0001-01-01", "date", "'0001-01-01'"},
		{connectors.Column{Type: connectors.TypeTimestampTZ}, "2025-11-22T04:26:12.123456Z", "datetime(6)", "'2025-11-22 04:26:12.123456'"},
		{connectors.Column{Type: connectors.TypeTimestamp}, "9999-12-31T23:59:59.5", "datetime(6)", "'9999-12-31 23:59:59.5'"},
		{connectors.Column{Type: connectors.TypeTime}, "24:00:00", "time(6)", "'24:00:00'"},
		{connectors.Column{Type: connectors.TypeTime, Native: "time with time zone"}, "10:11:12+05:45", "varchar(40)", "'10:11:12+05:45'"},
		{connectors.Column{Type: connectors.TypeInterval}, "P1Y2M3DT4H5M6.5S", "varchar(100)", "'P1Y2M3DT4H5M6.5S'"},
		{connectors.Column{Type: connectors.TypeArray, Elem: connectors.TypeString}, V("a\"b", nil, int64(3)), "", `'["a\\"b",null,3]'`},
	}
	cols := []connectors.Column{{Name: "id", Type: connectors.TypeInt64, Key: 1}}
	row := []connectors.Value{int64(1)}
	for i, c := range cases {
		c.col.Name = fmt.Sprintf("c%02d", i)
		c.col.Nullable = true
		cols = append(cols, c.col)
		row = append(row, c.val)
	}
	sch := connectors.MustSchema(connectors.TableID{Name: "typed"}, 1, cols)
	// First a row of NULLs, then the values: the second statement has the
	// same text, so it runs prepared (values sent in binary), while the
	// first had its values interpolated.
	nulls := make([]connectors.Value, len(row))
	nulls[0] = row[0]
	first := connectors.Event{Op: connectors.OpCreate, Schema: sch, After: nulls, Position: connectors.TxPosition{Commit: 1, Ordinal: 1}.Encode()}
	ev := connectors.Event{Op: connectors.OpUpdate, Schema: sch, After: row, Position: connectors.TxPosition{Commit: 2, Ordinal: 1}.Encode()}
	for _, e := range []connectors.Event{first, ev} {
		if err := s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{e}, Last: e.Position}); err != nil {
			t.Fatal(err)
		}
	}
	db := openDB(t, dsn)
	for i, c := range cases {
		name := fmt.Sprintf("c%02d", i)
		var typ, text string
		var same bool
		if err := db.QueryRow("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'typed' AND COLUMN_NAME = ?", name).Scan(&typ); err != nil {
			t.Fatal(err)
		}
		typ = strings.NewReplacer("bigint(20)", "bigint", "smallint(6)", "smallint").Replace(typ)
		if c.typ != "" && typ != c.typ {
			t.Errorf("%s (%s): created as %s, want %s", name, c.col.Type, typ, c.typ)
		}
		q := fmt.Sprintf("SELECT %[1]s <=> %[2]s, COALESCE(HEX(%[1]s), 'NULL') FROM typed", name, c.literal)
		if c.col.Type == connectors.TypeJSON || c.col.Type == connectors.TypeArray {
			q = fmt.Sprintf("SELECT JSON_EQUALS(%[1]s, %[2]s), %[1]s FROM typed", name, c.literal)
		}
		if err := db.QueryRow(q).Scan(&same, &text); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if !same {
			t.Errorf("%s (%s) %#v: stored %s, want %s", name, typ, c.val, text, c.literal)
		}
	}
	// Values MySQL cannot hold are rejected.
	for i, bad := range []struct {
		col connectors.Column
		val connectors.Value
	}{
		{connectors.Column{Type: connectors.TypeFloat64}, math.Inf(1)},
		{connectors.Column{Type: connectors.TypeDecimal, Native: "numeric(5,2)"}, "1234.5"},
		{connectors.Column{Type: connectors.TypeDecimal, Native: "numeric(5,2)"}, "1.234"},
		{connectors.Column{Type: connectors.TypeDecimal}, "NaN"},
		{connectors.Column{Type: connectors.TypeDate}, "-0043-03-15"},
		{connectors.Column{Type: connectors.TypeDate}, "infinity"},
		{connectors.Column{Type: connectors.TypeTimestampTZ}, "2025-11-22T04:26:12.1234567Z"},
		{connectors.Column{Type: connectors.TypeUint64}, int64(-1)},
		{connectors.Column{Type: connectors.TypeInt16}, int64(40000)},
		{connectors.Column{Type: connectors.TypeString}, "bad utf-8 \xff"},
		{connectors.Column{Type: connectors.TypeString, Key: 2, Native: "character varying(3)"}, "four"},
	} {
		bad.col.Name = "v"
		bad.col.Nullable = bad.col.Key == 0
		sch := connectors.MustSchema(connectors.TableID{Name: fmt.Sprintf("bad%d", i)}, 1, []connectors.Column{{Name: "id", Type: connectors.TypeInt64, Key: 1}, bad.col})
		ev := connectors.Event{Op: connectors.OpCreate, Schema: sch, After: []connectors.Value{int64(1), bad.val}, Position: connectors.TxPosition{Commit: 9, Ordinal: 1}.Encode()}
		err := s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{ev}, Last: ev.Position})
		var rej *connectors.RejectError
		if !errors.As(err, &rej) || rej.Events[0].Index != 0 || !strings.Contains(err.Error(), "column v") {
			t.Errorf("%s %#v: %v; want a RejectError naming column v", bad.col.Type, bad.val, err)
		}
	}
}

// Rows bigger than max_allowed_packet allows in one statement are split
// over several.
func TestRespectsMaxAllowedPacket(t *testing.T) {
	dsn := database(t)
	db := openDB(t, dsn)
	var packet int
	if err := db.QueryRow("SELECT @@max_allowed_packet").Scan(&packet); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, dsn, "big", nil)
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	big := strings.Repeat("x", packet/5)
	sch := connectors.MustSchema(connectors.TableID{Name: "big"}, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Key: 1}, {Name: "v", Type: connectors.TypeString, Nullable: true}})
	var evs []connectors.Event
	for i := 1; i <= 12; i++ { // 2.4 packets
		evs = append(evs, connectors.Event{Op: connectors.OpCreate, Schema: sch, After: []connectors.Value{int64(i), big},
			Position: connectors.TxPosition{Commit: uint64(i), Ordinal: 1}.Encode()})
	}
	if err := s.WriteBatch(ctx, connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}); err != nil {
		t.Fatalf("WriteBatch of %d rows of %d bytes (max_allowed_packet %d): %v", len(evs), len(big), packet, err)
	}
	var n, total int
	if err := db.QueryRow("SELECT COUNT(*), SUM(LENGTH(v)) FROM big").Scan(&n, &total); err != nil {
		t.Fatal(err)
	}
	if n != 12 || total != 12*len(big) {
		t.Fatalf("%d rows of %d bytes in all, want 12 of %d", n, total, 12*len(big))
	}
}

// A promote interrupted by a crash is undone (before its RENAME) or
// finished (after it) by the next open.
func TestInterruptedPromote(t *testing.T) {
	for _, renamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("renamed=%v", renamed), func(t *testing.T) {
			dsn := database(t)
			db := openDB(t, dsn)
			ctx := context.Background()
			sch := connectors.MustSchema(connectors.TableID{Name: "items"}, 1, []connectors.Column{
				{Name: "id", Type: connectors.TypeInt64, Key: 1}, {Name: "v", Type: connectors.TypeString, Nullable: true}})
			write := func(s *mysql.Sink, commit uint64, v string) {
				t.Helper()
				ev := connectors.Event{Op: connectors.OpCreate, Schema: sch, After: []connectors.Value{int64(commit), v},
					Position: connectors.TxPosition{Commit: commit, Ordinal: 1}.Encode()}
				if err := s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{ev}, Last: ev.Position}); err != nil {
					t.Fatal(err)
				}
			}
			live := newSink(t, dsn, "p", nil)
			if err := live.Open(ctx); err != nil {
				t.Fatal(err)
			}
			write(live, 1, "live")
			live.Close(ctx)
			shadow := newSink(t, dsn, "p", nil)
			shadow.UseShadow()
			if err := shadow.Open(ctx); err != nil {
				t.Fatal(err)
			}
			write(shadow, 1, "rebuilt")
			write(shadow, 2, "rebuilt")
			shadow.Close(ctx)
			// The crash: the row is marked, and the RENAME ran or did not.
			if _, err := db.Exec("UPDATE tapline_offsets SET promoting = TRUE WHERE pipeline = 'p#shadow'"); err != nil {
				t.Fatal(err)
			}
			if renamed {
				if _, err := db.Exec("RENAME TABLE items TO items__old, items__shadow TO items"); err != nil {
					t.Fatal(err)
				}
			}
			live = newSink(t, dsn, "p", nil)
			if err := live.Open(ctx); err != nil {
				t.Fatalf("Open after an interrupted promote: %v", err)
			}
			defer live.Close(ctx)
			pos, err := live.CommittedPosition(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var n int
			db.QueryRow("SELECT COUNT(*) FROM items").Scan(&n)
			tables := viewsqltest.Query(t, db, "SELECT GROUP_CONCAT(TABLE_NAME ORDER BY TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")[0][0]
			rows := viewsqltest.Query(t, db, "SELECT pipeline, promoting FROM tapline_offsets ORDER BY pipeline")
			if renamed {
				want := connectors.TxPosition{Commit: 2, Ordinal: 1}.Encode()
				if pos.Compare(want) != 0 || n != 2 || tables != "items,tapline_offsets" || len(rows) != 1 {
					t.Fatalf("not finished: position %s, %d rows, tables %s, offsets %v", pos, n, tables, rows)
				}
				return
			}
			want := connectors.TxPosition{Commit: 1, Ordinal: 1}.Encode()
			if pos.Compare(want) != 0 || n != 1 || tables != "items,items__shadow,tapline_offsets" || len(rows) != 2 || rows[1][1] != "0" {
				t.Fatalf("not undone: position %s, %d rows, tables %s, offsets %v", pos, n, tables, rows)
			}
		})
	}
}

// Check passes against the test server; errors never show the password.
func TestCheckAndSecrets(t *testing.T) {
	dsn := database(t)
	ctx := context.Background()
	if err := newSink(t, dsn, "check", nil).Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	bad := "root:sekret-pw@tcp(127.0.0.1:1)/x?timeout=2s"
	s := newSink(t, bad, "check", nil)
	for name, err := range map[string]error{"Check": s.Check(ctx), "Open": s.Open(ctx)} {
		if err == nil {
			t.Fatalf("%s against a closed port succeeded", name)
		}
		if strings.Contains(err.Error(), "sekret-pw") {
			t.Fatalf("%s: the error shows the password: %v", name, err)
		}
	}
	if err := s.Open(ctx); !connectors.IsRetryable(err) {
		t.Fatalf("Open against a closed port: %v; want a retryable error", err)
	}
	s.Close(ctx)
	if _, err := mysql.New(mysql.Config{DSN: "root:sekret-pw@tcp(127.0.0.1:3306)", Config: viewsql.DefaultConfig()}, connectors.Runtime{}); err == nil ||
		!strings.Contains(err.Error(), "database") || strings.Contains(err.Error(), "sekret-pw") {
		t.Fatalf("a DSN without a database: %v", err)
	}
}
