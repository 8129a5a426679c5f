package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/internal/servicetest"
)

// fixture is a fresh schema with a table, and a slot and publication for
// it, all dropped when the test ends (a forgotten slot keeps WAL forever).
type fixture struct {
	t      *testing.T
	dsn    string
	conn   *pgx.Conn
	schema string
	name   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dsn := servicetest.PostgresDSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dsn: dsn, conn: conn, name: servicetest.Name(t, "tl")}
	f.schema = f.name
	f.exec(fmt.Sprintf(`CREATE SCHEMA %s; CREATE TABLE %s.items (id bigint PRIMARY KEY, name text, qty integer, price numeric(10,2), doc jsonb)`, f.schema, f.schema))
	servicetest.DropPostgresLater(t, dsn, f.name, f.name, f.schema)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return f
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.conn.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

func (f *fixture) source(t *testing.T) *Source {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DSN = connectors.Secret(f.dsn)
	cfg.Tables = []string{f.schema + ".items"}
	cfg.Slot, cfg.Publication = f.name, f.name
	cfg.StatusInterval = 200 * time.Millisecond
	cfg.Heartbeat = 0
	cfg.Snapshot = "never"
	s, err := New(cfg, connectors.Runtime{Pipeline: f.name})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The source passes the conformance suite against a real slot: exact resume
// after a partial acknowledgement inside a transaction, batch bounds, order.
func TestConformance(t *testing.T) {
	f := newFixture(t)
	// Create the slot before the changes, as a running pipeline would have.
	s := f.source(t)
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())
	// 30 transactions of 10 changes: inserts, then updates and deletes.
	for tx := 0; tx < 30; tx++ {
		batch := &pgx.Batch{}
		for i := 0; i < 10; i++ {
			id := tx*10 + i
			switch {
			case tx >= 20 && i%2 == 0:
				batch.Queue(fmt.Sprintf("UPDATE %s.items SET qty = qty + 1, doc = '{\"v\": %d}' WHERE id = %d", f.schema, tx, id-100))
			case tx >= 20:
				batch.Queue(fmt.Sprintf("DELETE FROM %s.items WHERE id = %d", f.schema, id-150))
			default:
				batch.Queue(fmt.Sprintf("INSERT INTO %s.items VALUES (%d, 'item %d', %d, %d.25, '{\"a\": [1, 2]}')", f.schema, id, id, i, id))
			}
		}
		tx, err := f.conn.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.SendBatch(context.Background(), batch).Close(); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	connectortest.RunSource(t, connectortest.SourceHarness{
		New:    func(t *testing.T) connectors.Source { return f.source(t) },
		Events: 300,
		Limits: connectors.Limits{MaxEvents: 7, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond},
	})
}

func TestEventsCarryValuesKeysAndTransactions(t *testing.T) {
	f := newFixture(t)
	s := f.source(t)
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	f.exec(fmt.Sprintf(`INSERT INTO %s.items VALUES (1, 'one', 5, 19.90, '{"k": "v"}')`, f.schema))
	f.exec(fmt.Sprintf(`UPDATE %s.items SET name = 'uno' WHERE id = 1`, f.schema))
	f.exec(fmt.Sprintf(`DELETE FROM %s.items WHERE id = 1`, f.schema))
	f.exec(fmt.Sprintf(`TRUNCATE %s.items`, f.schema))
	var evs []connectors.Event
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for len(evs) < 4 {
		b, err := s.ReadBatch(rctx, connectors.Limits{MaxEvents: 10, MaxWait: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("ReadBatch: %v", err)
		}
		evs = append(evs, b.Events...)
	}
	want := []struct {
		op    connectors.Op
		after string
	}{
		{connectors.OpCreate, `[1 one 5 19.90 {"k": "v"}]`},
		{connectors.OpUpdate, `[1 uno 5 19.90 {"k": "v"}]`},
		{connectors.OpDelete, `[]`},
		{connectors.OpTruncate, `[]`},
	}
	for i, w := range want {
		ev := evs[i]
		after := fmt.Sprint(ev.After)
		if ev.After != nil {
			after = fmt.Sprintf("%v", []any{ev.After[0], ev.After[1], ev.After[2], ev.After[3], string(ev.After[4].(connectors.JSON))})
		}
		if ev.Op != w.op || after != w.after {
			t.Errorf("event %d: %s after=%s; want %s after=%s", i, ev.Op, after, w.op, w.after)
		}
		if ev.Source.Table != "items" || ev.Source.Schema != f.schema || ev.Source.TxID == 0 || ev.Tx.TotalOrder != 1 {
			t.Errorf("event %d source %+v tx %+v", i, ev.Source, ev.Tx)
		}
	}
	if k := fmt.Sprint(evs[2].Key()); k != "[{id 1}]" {
		t.Errorf("delete key = %s, want id 1", k)
	}
	if evs[0].Schema.Columns[0].Key != 1 || evs[0].Schema.Table.String() != f.schema+".items" {
		t.Errorf("schema %+v", evs[0].Schema)
	}
}

func TestStoredPositionWithoutSlotIsAnError(t *testing.T) {
	f := newFixture(t)
	s := f.source(t)
	defer s.Close(context.Background())
	err := s.Open(context.Background(), connectors.TxPosition{Commit: 12345, Ordinal: 2}.Encode())
	var missing *SlotMissingError
	if err == nil || !errorsAs(err, &missing) {
		t.Fatalf("Open with a stored position and no slot = %v; want *SlotMissingError", err)
	}
	var n int
	f.conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", f.name).Scan(&n)
	if n != 0 {
		t.Fatal("the source created a fresh slot, silently skipping the changes since the stored position")
	}
}

func TestTableWithoutKeyIsAClearError(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf("CREATE TABLE %s.nokey (a int, b text)", f.schema))
	s := f.source(t)
	s.cfg.Tables = []string{f.schema + ".nokey"}
	defer s.Close(context.Background())
	err := s.Open(context.Background(), nil)
	if err == nil || !contains(err.Error(), "nokey has no primary key") || !contains(err.Error(), "REPLICA IDENTITY FULL") {
		t.Fatalf("Open = %v; want an error naming the table and the fix", err)
	}
}

func TestCheckReportsProblemsWithoutChangingAnything(t *testing.T) {
	f := newFixture(t)
	s := f.source(t)
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check on a good setup: %v", err)
	}
	var slots, pubs int
	f.conn.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1), (SELECT count(*) FROM pg_publication WHERE pubname = $1)", f.name).Scan(&slots, &pubs)
	if slots != 0 || pubs != 0 {
		t.Fatalf("Check created %d slots and %d publications; it must change nothing", slots, pubs)
	}
	s.cfg.Tables = []string{f.schema + ".missing"}
	if err := s.Check(context.Background()); err == nil || !contains(err.Error(), "does not exist in this database") {
		t.Fatalf("Check with a missing table = %v", err)
	}
}
