package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/internal/viewsql"
	"github.com/tapline/tapline/internal/viewsql/viewsqltest"
	"github.com/tapline/tapline/sinks/postgres"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// schema makes a schema for one test and drops it when the test ends.
func schema(t testing.TB) (dsn, name string) {
	t.Helper()
	dsn = servicetest.PostgresDSN(t)
	name = servicetest.Name(t, "tv")
	servicetest.DropPostgresLater(t, dsn, "", "", name)
	return dsn, name
}

func newSink(t testing.TB, dsn, schema, pipeline string, mod func(*postgres.Config)) *postgres.Sink {
	t.Helper()
	cfg := postgres.DefaultConfig()
	cfg.DSN = connectors.Secret(dsn)
	cfg.Schema = schema
	if mod != nil {
		mod(&cfg)
	}
	s, err := postgres.New(cfg, connectors.Runtime{Pipeline: pipeline})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func harness() viewsqltest.Harness {
	return viewsqltest.Harness{
		Setup: func(t testing.TB) *viewsqltest.Store {
			dsn, sch := schema(t)
			return &viewsqltest.Store{
				New: func(t testing.TB, pipeline string, view viewsql.Config) viewsqltest.Sink {
					return newSink(t, dsn, sch, pipeline, func(c *postgres.Config) { c.Config = view })
				},
				DB:    openDB(t, dsn),
				Table: func(name string) string { return pgx.Identifier{sch, name}.Sanitize() },
			}
		},
		SetHooks:        func(s viewsqltest.Sink, h viewsql.Hooks) { s.(*postgres.Sink).SetHooks(h) },
		Unholdable:      connectors.Column{Name: "s", Type: connectors.TypeString, Native: "text", Nullable: true},
		UnholdableValue: "nul \x00 byte",
		Baseline:        baseline,
	}
}

func TestConformance(t *testing.T) {
	dsn, sch := schema(t)
	db := openDB(t, dsn)
	connectortest.RunSink(t, connectortest.SinkHarness{
		New: func(t *testing.T) connectors.Sink { return newSink(t, dsn, sch, "conf", nil) },
		State: func(t *testing.T) map[string]string {
			state := map[string]string{}
			rows, err := viewsqltest.QueryErr(db, "SELECT id, name, qty, price FROM "+pgx.Identifier{sch, "items"}.Sanitize())
			if err != nil {
				if strings.Contains(err.Error(), "does not exist") {
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

// plainWriter inserts rows with one prepared multi-row INSERT per batch
// (pgx caches the prepared statement), in one transaction per batch.
type plainWriter struct {
	conn  *pgx.Conn
	table string
	ncols int
	sqls  map[int]string
	args  []any
}

func baseline(b *testing.B, st *viewsqltest.Store, table string, cols []connectors.Column) viewsqltest.BaselineWriter {
	ctx := context.Background()
	dsn := servicetest.PostgresDSN(b)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	name := st.Table(table)
	var ddl []string
	for _, c := range cols {
		ddl = append(ddl, c.Name+" "+map[connectors.Type]string{connectors.TypeInt64: "bigint", connectors.TypeDecimal: "numeric", connectors.TypeString: "text"}[c.Type])
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE "+name+" ("+strings.Join(ddl, ", ")+", PRIMARY KEY ("+cols[0].Name+"))"); err != nil {
		b.Fatal(err)
	}
	return &plainWriter{conn: conn, table: name, ncols: len(cols), sqls: map[int]string{}}
}

func (w *plainWriter) Write(rows [][]connectors.Value) error {
	ctx := context.Background()
	sql, ok := w.sqls[len(rows)]
	if !ok {
		var s strings.Builder
		s.WriteString("INSERT INTO " + w.table + " VALUES ")
		for i := range rows {
			if i > 0 {
				s.WriteString(", ")
			}
			s.WriteString("(")
			for j := 0; j < w.ncols; j++ {
				if j > 0 {
					s.WriteString(", ")
				}
				s.WriteString("$" + strconv.Itoa(i*w.ncols+j+1))
			}
			s.WriteString(")")
		}
		sql = s.String()
		w.sqls[len(rows)] = sql
	}
	w.args = w.args[:0]
	for _, r := range rows {
		w.args = append(w.args, r...)
	}
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sql, w.args...); err != nil {
		tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}

func (w *plainWriter) Close() error { return w.conn.Close(context.Background()) }

// BenchmarkApply writes TAPLINE_BENCH_ROWS (default 1,000,000) upserts
// through the sink and the same rows with plain multi-row INSERTs; run it
// with -benchtime=1x.
func BenchmarkApply(b *testing.B) { viewsqltest.Bench(b, harness()) }

func BenchmarkJSONL(b *testing.B) { viewsqltest.BenchJSONL(b, harness()) }

// Values of every portable type land in columns of the source's exact
// types (for events from Postgres) and compare equal to the source's
// literals; values Postgres cannot hold are rejected.
func TestTypes(t *testing.T) {
	dsn, sch := schema(t)
	s := newSink(t, dsn, sch, "types", nil)
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	type tc struct {
		col     connectors.Column
		val     connectors.Value
		typ     string // format_type of the created column
		literal string // what it must equal
	}
	V := func(v ...connectors.Value) []connectors.Value { return v }
	cases := []tc{
		{connectors.Column{Type: connectors.TypeBool, Native: "boolean"}, true, "boolean", "true"},
		{connectors.Column{Type: connectors.TypeInt16, Native: "smallint"}, int64(-32768), "smallint", "-32768"},
		{connectors.Column{Type: connectors.TypeInt32, Native: "integer"}, int64(2147483647), "integer", "2147483647"},
		{connectors.Column{Type: connectors.TypeUint64, Native: "bigint unsigned"}, uint64(18446744073709551615), "numeric(20,0)", "18446744073709551615"},
		{connectors.Column{Type: connectors.TypeFloat32, Native: "real"}, 0.1, "real", "0.1"},
		{connectors.Column{Type: connectors.TypeFloat64, Native: "double precision"}, math.NaN(), "double precision", "NaN"},
		{connectors.Column{Type: connectors.TypeFloat64, Native: "double precision"}, math.Inf(-1), "double precision", "-Infinity"},
		{connectors.Column{Type: connectors.TypeDecimal, Native: "numeric(10,2)"}, "12.30", "numeric(10,2)", "12.30"},
		{connectors.Column{Type: connectors.TypeDecimal, Native: "numeric"}, "-123456789012345678901234567890.000000000000000000001", "numeric", "-123456789012345678901234567890.000000000000000000001"},
		{connectors.Column{Type: connectors.TypeString, Native: "character varying(40)"}, "héllo 'quoted' \\ wörld", "character varying(40)", "héllo ''quoted'' \\ wörld"},
		{connectors.Column{Type: connectors.TypeBytes, Native: "bytea"}, []byte{0, 1, 0xff}, "bytea", `\x0001ff`},
		{connectors.Column{Type: connectors.TypeJSON, Native: "jsonb"}, connectors.JSON(`{"a": [1, 2.50], "b": null}`), "jsonb", `{"a": [1, 2.50], "b": null}`},
		{connectors.Column{Type: connectors.TypeJSON, Native: "json"}, connectors.JSON(`{"b":1,  "a":2}`), "json", `{"b":1,  "a":2}`},
		{connectors.Column{Type: connectors.TypeUUID, Native: "uuid"}, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{connectors.Column{Type: connectors.TypeDate, Native: "date"}, "-0043-03-15", "date", "0044-03-15 BC"},
		{connectors.Column{Type: connectors.TypeDate, Native: "date"}, "infinity", "date", "infinity"},
		{connectors.Column{Type: connectors.TypeTimestampTZ, Native: "timestamp with time zone"}, "2025-11-22T04:26:12.5Z", "timestamp with time zone", "2025-11-22 10:11:12.5+05:45"},
		{connectors.Column{Type: connectors.TypeTimestamp, Native: "timestamp(3) without time zone"}, "2025-11-22T10:11:12.123", "timestamp(3) without time zone", "2025-11-22 10:11:12.123"},
		{connectors.Column{Type: connectors.TypeTime, Native: "time with time zone"}, "10:11:12.5+05:45", "time with time zone", "10:11:12.5+05:45"},
		{connectors.Column{Type: connectors.TypeInterval, Native: "interval"}, "P1Y2M3DT4H5M6.5S", "interval", "1 year 2 months 3 days 4 hours 5 minutes 6.5 seconds"},
		{connectors.Column{Type: connectors.TypeArray, Elem: connectors.TypeString, Native: "text[]"}, V(`a"b`, nil, "c,d", "NULL", `back\slash`), "text[]", `{"a\"b",NULL,"c,d","NULL","back\\slash"}`},
		{connectors.Column{Type: connectors.TypeArray, Elem: connectors.TypeInt32, Native: "integer[]"}, V(V(int64(1), int64(2)), V(int64(3), nil)), "integer[]", "{{1,2},{3,NULL}}"},
		{connectors.Column{Type: connectors.TypeArray, Elem: connectors.TypeBytes, Native: "bytea[]"}, V([]byte{1}, []byte{}), "bytea[]", `{"\\x01","\\x"}`},
		{connectors.Column{Type: connectors.TypeArray, Elem: connectors.TypeDate, Native: "date[]"}, V("-0001-01-01", "2025-01-01"), "date[]", "{0002-01-01 BC,2025-01-01}"},
	}
	cols := []connectors.Column{{Name: "id", Type: connectors.TypeInt64, Native: "bigint", Key: 1}}
	row := []connectors.Value{int64(1)}
	for i, c := range cases {
		c.col.Name = fmt.Sprintf("c%02d", i)
		c.col.Nullable = true
		cols = append(cols, c.col)
		row = append(row, c.val)
	}
	sch1 := connectors.MustSchema(connectors.TableID{Schema: "src", Name: "typed"}, 1, cols)
	ev := connectors.Event{Op: connectors.OpCreate, Schema: sch1, After: row, Source: connectors.SourceInfo{Connector: "postgres"},
		Position: connectors.TxPosition{Commit: 1, Ordinal: 1}.Encode()}
	if err := s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{ev}, Last: ev.Position}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, "SET TIME ZONE 'UTC'")
	table := pgx.Identifier{sch, "typed"}.Sanitize()
	for i, c := range cases {
		name := fmt.Sprintf("c%02d", i)
		var typ string
		if err := conn.QueryRow(ctx, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2", table, name).Scan(&typ); err != nil {
			t.Fatal(err)
		}
		if typ != c.typ {
			t.Errorf("%s (%s %s): created as %s, want %s", name, c.col.Type, c.col.Native, typ, c.typ)
		}
		var same bool
		var text string
		q := fmt.Sprintf("SELECT %[1]s IS NOT DISTINCT FROM '%[2]s'::%[3]s, %[1]s::text FROM %[4]s", name, strings.ReplaceAll(c.literal, "'", "''"), typ, table)
		if strings.Contains(c.literal, "''") {
			q = fmt.Sprintf("SELECT %[1]s IS NOT DISTINCT FROM '%[2]s'::%[3]s, %[1]s::text FROM %[4]s", name, c.literal, typ, table)
		}
		if c.typ == "json" {
			q = fmt.Sprintf("SELECT %[1]s::text = '%[2]s', %[1]s::text FROM %[3]s", name, c.literal, table)
		}
		if err := conn.QueryRow(ctx, q).Scan(&same, &text); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if !same {
			t.Errorf("%s (%s) %#v: stored %s, want %s", name, c.typ, c.val, text, c.literal)
		}
	}
	// Another source's Native types are not Postgres's: the portable type
	// decides.
	other := connectors.MustSchema(connectors.TableID{Schema: "src", Name: "fromMySQL"}, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Native: "bigint", Key: 1},
		{Name: "s", Type: connectors.TypeString, Native: "varchar(4)", Nullable: true},
	})
	ev = connectors.Event{Op: connectors.OpCreate, Schema: other, After: []connectors.Value{int64(1), "longer than four"}, Source: connectors.SourceInfo{Connector: "mysql"},
		Position: connectors.TxPosition{Commit: 2, Ordinal: 1}.Encode()}
	if err := s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{ev}, Last: ev.Position}); err != nil {
		t.Fatal(err)
	}
	var typ string
	conn.QueryRow(ctx, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 's'", pgx.Identifier{sch, "fromMySQL"}.Sanitize()).Scan(&typ)
	if typ != "text" {
		t.Errorf("a MySQL varchar(4) became %s, want text", typ)
	}
	// Values Postgres cannot hold are rejected.
	for i, bad := range []struct {
		col connectors.Column
		val connectors.Value
	}{
		{connectors.Column{Type: connectors.TypeString}, "nul \x00 byte"},
		{connectors.Column{Type: connectors.TypeString}, "bad utf-8 \xff"},
		{connectors.Column{Type: connectors.TypeJSON, Native: "jsonb"}, connectors.JSON(`{"a": "\u0000"}`)},
		{connectors.Column{Type: connectors.TypeJSON}, connectors.JSON(`{"a": `)},
		{connectors.Column{Type: connectors.TypeInt64}, uint64(math.MaxUint64)},
		{connectors.Column{Type: connectors.TypeDecimal}, "1,5"},
	} {
		bad.col.Name, bad.col.Nullable = "v", true
		sch := connectors.MustSchema(connectors.TableID{Name: fmt.Sprintf("bad%d", i)}, 1, []connectors.Column{{Name: "id", Type: connectors.TypeInt64, Key: 1}, bad.col})
		ev := connectors.Event{Op: connectors.OpCreate, Schema: sch, After: []connectors.Value{int64(1), bad.val}, Source: connectors.SourceInfo{Connector: "postgres"},
			Position: connectors.TxPosition{Commit: 9, Ordinal: 1}.Encode()}
		err := s.WriteBatch(ctx, connectors.Batch{Events: []connectors.Event{ev}, Last: ev.Position})
		var rej *connectors.RejectError
		if !errors.As(err, &rej) || rej.Events[0].Index != 0 || !strings.Contains(err.Error(), "column v") {
			t.Errorf("%s %#v: %v; want a RejectError naming column v", bad.col.Type, bad.val, err)
		}
	}
}

// Check passes against the test server and fails, without the password,
// against a closed port.
func TestCheckAndSecrets(t *testing.T) {
	dsn, sch := schema(t)
	ctx := context.Background()
	if err := newSink(t, dsn, sch, "check", nil).Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	bad := "postgres://postgres:sekret-pw@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2"
	s := newSink(t, bad, sch, "check", nil)
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
	cfg := postgres.DefaultConfig()
	cfg.DSN = connectors.Secret(bad)
	if got := fmt.Sprintf("%v %+v", cfg, cfg); strings.Contains(got, "sekret-pw") {
		t.Fatalf("the config prints the DSN: %s", got)
	}
}
