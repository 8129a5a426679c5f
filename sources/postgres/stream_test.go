package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapline/tapline/connectors"
)

func readN(t *testing.T, s *Source, n int) []connectors.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var evs []connectors.Event
	for len(evs) < n {
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 100, MaxWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("ReadBatch after %d events: %v", len(evs), err)
		}
		evs = append(evs, b.Events...)
	}
	return evs
}

func named(ev connectors.Event) map[string]any {
	out := map[string]any{}
	for i, c := range ev.Schema.Columns {
		v := ev.After[i]
		if j, ok := v.(connectors.JSON); ok {
			v = string(j)
		}
		out[c.Name] = v
	}
	return out
}

// ALTER TABLE mid-stream yields events with the new schema version, and
// values stay under their own column names.
func TestSchemaChangeMidStream(t *testing.T) {
	f := newFixture(t)
	s := f.source(t)
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	tbl := f.schema + ".items"
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name, qty) VALUES (1, 'a', 10)", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s ADD COLUMN color text", tbl))
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name, qty, color) VALUES (2, 'b', 20, 'red')", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s DROP COLUMN qty", tbl))
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name, color) VALUES (3, 'c', 'blue')", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s ALTER COLUMN name TYPE varchar(20)", tbl))
	f.exec(fmt.Sprintf("UPDATE %s SET name = 'cc' WHERE id = 3", tbl))
	evs := readN(t, s, 4)
	checks := []struct {
		version int
		want    string
	}{
		{1, "map[doc:<nil> id:1 name:a price:<nil> qty:10]"},
		{2, "map[color:red doc:<nil> id:2 name:b price:<nil> qty:20]"},
		{3, "map[color:blue doc:<nil> id:3 name:c price:<nil>]"},
		{3, "map[color:blue doc:<nil> id:3 name:cc price:<nil>]"}, // 4 once varchar(20) is told from text
	}
	for i, c := range checks {
		got := fmt.Sprint(named(evs[i]))
		if evs[i].Schema.Version < c.version || (i < 3 && evs[i].Schema.Version != c.version) || got != c.want {
			t.Errorf("event %d: version %d %s; want version %d %s", i, evs[i].Schema.Version, got, c.version, c.want)
		}
	}
}

// An update that leaves a TOASTed column alone marks it Unchanged (never
// null or a placeholder); under REPLICA IDENTITY FULL the value comes from
// the old row.
func TestUnchangedToastedColumn(t *testing.T) {
	f := newFixture(t)
	tbl := f.schema + ".items"
	f.exec(fmt.Sprintf("ALTER TABLE %s ALTER COLUMN name SET STORAGE EXTERNAL", tbl))
	s := f.source(t)
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	// 10 kB of text that does not compress much, stored out of line.
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name, qty) SELECT 1, string_agg(md5(g::text), ''), 1 FROM generate_series(1, 320) g", tbl))
	f.exec(fmt.Sprintf("UPDATE %s SET qty = 2 WHERE id = 1", tbl))
	f.exec(fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL", tbl))
	f.exec(fmt.Sprintf("UPDATE %s SET qty = 3 WHERE id = 1", tbl))
	evs := readN(t, s, 3)
	inserted, _ := evs[0].After[1].(string)
	if len(inserted) != 320*32 {
		t.Fatalf("inserted name has %d bytes, want %d", len(inserted), 320*32)
	}
	if !connectors.IsUnchanged(evs[1].After[1]) || evs[1].After[2] != int64(2) {
		t.Errorf("update under the default identity: name=%T qty=%v; want Unchanged and 2", evs[1].After[1], evs[1].After[2])
	}
	if got, _ := evs[2].After[1].(string); got != inserted || evs[2].After[2] != int64(3) {
		t.Errorf("update under REPLICA IDENTITY FULL: name has %d bytes (want the full value from the old row), qty=%v", len(got), evs[2].After[2])
	}
	if evs[2].Before == nil || evs[2].Before[2] != int64(2) {
		t.Errorf("REPLICA IDENTITY FULL before image = %v, want the old row", evs[2].Before)
	}
}

// With the captured table idle and another table busy, heartbeats let the
// slot's confirmed position advance, so WAL does not pile up.
func TestHeartbeatAdvancesIdleSlot(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf("CREATE TABLE %s.busy (id serial PRIMARY KEY, v text)", f.schema))
	s := f.source(t)
	s.cfg.Heartbeat = 100 * time.Millisecond
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	confirmed := func() pglogrepl.LSN {
		var l string
		if err := f.conn.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", f.name).Scan(&l); err != nil {
			t.Fatal(err)
		}
		lsn, _ := pglogrepl.ParseLSN(l)
		return lsn
	}
	start := confirmed()
	var end pglogrepl.LSN
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for end <= start {
		f.exec(fmt.Sprintf("INSERT INTO %s.busy (v) SELECT md5(g::text) FROM generate_series(1, 100) g", f.schema))
		b, err := s.ReadBatch(rctx, connectors.Limits{MaxEvents: 100, MaxWait: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("ReadBatch: %v (confirmed_flush_lsn stayed at %s)", err, start)
		}
		for _, ev := range b.Events {
			if ev.Op != connectors.OpHeartbeat {
				t.Fatalf("got a %s event from the idle table", ev.Op)
			}
		}
		if b.Last != nil {
			if err := s.Ack(ctx, b.Last); err != nil {
				t.Fatal(err)
			}
		}
		end = confirmed()
	}
	t.Logf("confirmed_flush_lsn moved from %s to %s on heartbeats alone", start, end)
}

// The slot's lag is exported as a metric: with changes not acknowledged it
// grows above zero.
func TestSlotLagMetric(t *testing.T) {
	f := newFixture(t)
	s := f.source(t)
	reg := prometheus.NewRegistry()
	s.rt.Metrics = reg
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name) SELECT g, md5(g::text) FROM generate_series(1, 2000) g", f.schema))
	deadline := time.Now().Add(15 * time.Second)
	for {
		lag := -1.0
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "tapline_postgres_slot_lag_bytes" {
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "pipeline" && l.GetValue() == f.name {
							lag = m.GetGauge().GetValue()
						}
					}
				}
			}
		}
		if lag > 0 {
			t.Logf("slot lag %v bytes", lag)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tapline_postgres_slot_lag_bytes = %v after 15s of unacknowledged changes", lag)
		}
		time.Sleep(50 * time.Millisecond) // the metric is sampled every status_interval
	}
}

// A partitioned table is captured through its root: changes to any
// partition come as events of the root table. A table added to the config
// later is added to the publication.
func TestPartitionedTableThroughRootAndTablesAddedLater(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf(`CREATE TABLE %[1]s.m (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE %[1]s.m_eu PARTITION OF %[1]s.m FOR VALUES IN ('eu');
		CREATE TABLE %[1]s.m_us PARTITION OF %[1]s.m FOR VALUES IN ('us')`, f.schema))
	s := f.source(t)
	s.cfg.Tables = []string{f.schema + ".m"}
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	f.exec(fmt.Sprintf("INSERT INTO %s.m VALUES (1, 'eu'), (2, 'us')", f.schema))
	evs := readN(t, s, 2)
	for _, ev := range evs {
		if ev.Table().String() != f.schema+".m" || len(ev.Schema.KeyColumns()) != 2 {
			t.Errorf("event of %s with key %v; want the root table %s.m with the composite key", ev.Table(), ev.Key(), f.schema)
		}
	}
	s.Close(ctx)

	// Add items to the config: the publication gains it.
	s2 := f.source(t)
	s2.cfg.Tables = []string{f.schema + ".m", f.schema + ".items"}
	if err := s2.Open(ctx, evs[1].Position); err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name) VALUES (7, 'seven')", f.schema))
	got := readN(t, s2, 1)
	if got[0].Table().Name != "items" || got[0].After[0] != int64(7) {
		t.Fatalf("after adding items: %s %v", got[0].Table(), got[0].After)
	}
}

// Transactions larger than logical_decoding_work_mem are streamed before
// they commit (pgoutput v2) and kept on disk: a committed one arrives whole
// at its commit position, an aborted one and a rolled-back savepoint emit
// nothing.
func TestStreamedTransactions(t *testing.T) {
	f := newFixture(t)
	s := f.source(t)
	s.cfg.DecodingWorkMem = "64kB"
	s.rt.DataDir = t.TempDir()
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	tbl := f.schema + ".items"
	// Aborted: 5,000 rows, streamed, then rolled back.
	tx, err := f.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (id, name) SELECT g, md5(g::text) FROM generate_series(1, 5000) g", tbl)); err != nil {
		t.Fatal(err)
	}
	tx.Rollback(ctx)
	// Committed, with a rolled-back savepoint in the middle.
	tx, err = f.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		fmt.Sprintf("INSERT INTO %s (id, name) SELECT g, md5(g::text) FROM generate_series(10001, 14000) g", tbl),
		"SAVEPOINT sp",
		fmt.Sprintf("INSERT INTO %s (id, name) SELECT g, md5(g::text) FROM generate_series(20001, 24000) g", tbl),
		"ROLLBACK TO SAVEPOINT sp",
		fmt.Sprintf("INSERT INTO %s (id, name) SELECT g, md5(g::text) FROM generate_series(30001, 31000) g", tbl),
	} {
		if _, err := tx.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	f.exec(fmt.Sprintf("INSERT INTO %s (id, name) VALUES (99999, 'after')", tbl))
	evs := readN(t, s, 5001)
	if len(evs) != 5001 {
		t.Fatalf("read %d events, want 5001", len(evs))
	}
	for i, ev := range evs[:5000] {
		id := ev.After[0].(int64)
		want := int64(10001 + i)
		if i >= 4000 {
			want = int64(30001 + i - 4000)
		}
		if id != want {
			t.Fatalf("event %d has id %d, want %d (aborted rows must not appear; order must hold)", i, id, want)
		}
		tp, _ := connectors.DecodeTxPosition(ev.Position)
		if tp.Ordinal != uint32(i+1) || ev.Tx.TotalOrder != int64(i+1) {
			t.Fatalf("event %d at ordinal %d, want %d", i, tp.Ordinal, i+1)
		}
	}
	if evs[5000].After[0] != int64(99999) {
		t.Fatalf("last event %v, want the row inserted after the big transaction", evs[5000].After)
	}
	if s.streamed.Load() != 1 || s.streamAborted.Load() != 1 {
		t.Errorf("%d streamed transactions committed and %d aborted; want 1 and 1 (were they streamed at all?)", s.streamed.Load(), s.streamAborted.Load())
	}
	left, _ := filepathGlob(s.spillDir() + "/*")
	if len(left) != 0 {
		t.Errorf("spill files left behind: %v", left)
	}
}

// The stream and the snapshot decode values with the full type mapping
// (internal/pgconv), non-built-in types included, and agree.
func TestTypedValuesInSnapshotAndStream(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf(`CREATE TYPE %[1]s.mood AS ENUM ('sad', 'happy');
		CREATE TABLE %[1]s.typed (id int PRIMARY KEY, at timestamptz, tags int[], m %[1]s.mood, b bytea, u uuid, big numeric, f real)`, f.schema))
	insert := func(id int) {
		f.exec(fmt.Sprintf(`INSERT INTO %s.typed VALUES (%d, '2025-11-22 10:11:12.5+05:30', '{1,NULL,3}', 'happy', '\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 123456789012345678901234567890.5, 0.1)`, f.schema, id))
	}
	insert(1)
	s := f.snapSource(t, "initial")
	s.cfg.Tables = []string{f.schema + ".typed"}
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	insert(2)
	evs := readN(t, s, 2)
	for i, ev := range evs {
		got := fmt.Sprintf("%v|%v|%v|%x|%v|%v|%v", ev.After[1], ev.After[2], ev.After[3], ev.After[4], ev.After[5], ev.After[6], ev.After[7])
		want := "2025-11-22T04:41:12.5Z|[1 <nil> 3]|happy|00ff|a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|123456789012345678901234567890.5|0.1"
		if got != want {
			t.Errorf("event %d (%s): %s\n want %s", i, ev.Op, got, want)
		}
		if c := ev.Schema.Columns[2]; c.Type != connectors.TypeArray || c.Elem != connectors.TypeInt32 {
			t.Errorf("event %d: tags column %+v", i, c)
		}
		if c := ev.Schema.Columns[1]; c.Type != connectors.TypeTimestampTZ {
			t.Errorf("event %d: at column %+v", i, c)
		}
	}
	if evs[0].Op != connectors.OpRead || evs[1].Op != connectors.OpCreate {
		t.Errorf("ops %s %s, want r then c", evs[0].Op, evs[1].Op)
	}
	if !evs[0].Schema.SameShape(evs[1].Schema) {
		t.Errorf("snapshot schema %+v differs from the stream's %+v", evs[0].Schema.Columns, evs[1].Schema.Columns)
	}
}

// drop_slot_on_close drops the slot when the source closes, and only then.
func TestDropSlotOnClose(t *testing.T) {
	f := newFixture(t)
	slots := func() int {
		var n int
		f.conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", f.name).Scan(&n)
		return n
	}
	ctx := context.Background()
	s := f.source(t)
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
	if slots() != 1 {
		t.Fatal("the slot is gone after a plain close")
	}
	s = f.source(t)
	s.cfg.DropSlotOnClose = true
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if slots() != 0 {
		t.Fatal("drop_slot_on_close left the slot")
	}
}

// A heartbeat message in the WAL, tapline's own or a caller's, becomes a
// heartbeat event whose origin position is the LSN pg_logical_emit_message
// returned, so that a read-your-writes wait on that LSN ends once the
// view has applied the heartbeat; with heartbeat_events off it only moves
// the position.
func TestHeartbeatEventCarriesTheCallersLSN(t *testing.T) {
	f := newFixture(t)
	s := f.source(t)
	s.cfg.Heartbeat = 0 // only the caller's message
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name) VALUES (1, 'one')", f.schema))
	var want string
	if err := f.conn.QueryRow(ctx, "SELECT pg_logical_emit_message(false, 'tapline_heartbeat', '')::text").Scan(&want); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var hb *connectors.Event
	sawInsert := false
	for hb == nil {
		b, err := s.ReadBatch(rctx, connectors.Limits{MaxEvents: 100, MaxWait: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("ReadBatch: %v (no heartbeat event for the message at %s)", err, want)
		}
		for i := range b.Events {
			switch ev := &b.Events[i]; ev.Op {
			case connectors.OpHeartbeat:
				if !sawInsert {
					t.Fatal("the heartbeat came before the insert committed before it")
				}
				hb = ev
			case connectors.OpCreate:
				sawInsert = true
			}
		}
	}
	if hb.Schema != nil || hb.Before != nil || hb.After != nil || hb.Source.Connector != "postgres" || hb.Source.DB == "" {
		t.Fatalf("heartbeat event %+v; want no table or rows, the origin's connector and database", hb)
	}
	if hb.Source.Position != want+":0" {
		t.Fatalf("heartbeat origin position %q; want %q, the LSN pg_logical_emit_message returned", hb.Source.Position, want+":0")
	}
	if c, ok := connectors.CompareOrigin("postgres", hb.Source.Position, want); !ok || c < 0 {
		t.Fatalf("origin %s compares %d (ok %v) with the caller's LSN %s; want at or after it", hb.Source.Position, c, ok, want)
	}

	// heartbeat_events off: the same message moves the position only.
	s2 := f.source(t)
	s2.cfg.Heartbeat = 0
	s2.cfg.HeartbeatEvents = false
	s.Close(ctx)
	if err := s2.Open(ctx, hb.Position); err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	if err := f.conn.QueryRow(ctx, "SELECT pg_logical_emit_message(false, 'tapline_heartbeat', '')::text").Scan(&want); err != nil {
		t.Fatal(err)
	}
	for moved := false; !moved; {
		b, err := s2.ReadBatch(rctx, connectors.Limits{MaxEvents: 100, MaxWait: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("ReadBatch: %v", err)
		}
		if len(b.Events) > 0 {
			t.Fatalf("heartbeat_events off: got a %s event", b.Events[0].Op)
		}
		moved = b.Last != nil && b.Last.Compare(hb.Position) > 0
	}
}
