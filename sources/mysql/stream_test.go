package mysql

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tapline/tapline/connectors"
)

func TestEventsCarryValuesKeysAndTransactions(t *testing.T) {
	f := newFixture(t)
	s := f.source(t, f.config())
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	f.exec(fmt.Sprintf(`INSERT INTO %s.items VALUES (1, 'one', 5, 19.90, '{"k": "v"}')`, f.name))
	f.exec(fmt.Sprintf(`UPDATE %s.items SET name = 'uno' WHERE id = 1`, f.name))
	f.exec(fmt.Sprintf(`DELETE FROM %s.items WHERE id = 1`, f.name))
	f.exec(fmt.Sprintf(`INSERT INTO %s.items (id) VALUES (2)`, f.name))
	f.exec(fmt.Sprintf(`TRUNCATE %s.items`, f.name))
	evs := readN(t, s, 5)
	want := []struct {
		op  connectors.Op
		row string
	}{
		{connectors.OpCreate, `map[doc:{"k": "v"} id:1 name:one price:19.90 qty:5]`},
		{connectors.OpUpdate, `map[doc:{"k": "v"} id:1 name:uno price:19.90 qty:5]`},
		{connectors.OpDelete, `map[doc:{"k": "v"} id:1 name:uno price:19.90 qty:5]`},
		{connectors.OpCreate, `map[doc:<nil> id:2 name:<nil> price:<nil> qty:<nil>]`},
		{connectors.OpTruncate, ``},
	}
	for i, w := range want {
		ev := evs[i]
		got := ""
		if ev.Op != connectors.OpTruncate {
			got = fmt.Sprint(named(ev))
		}
		if ev.Op != w.op || got != w.row {
			t.Errorf("event %d: %s %s; want %s %s", i, ev.Op, got, w.op, w.row)
		}
		if ev.Source.Table != "items" || ev.Source.DB != f.name || ev.Source.TxID == 0 || ev.Tx.TotalOrder != 1 || ev.Tx.ID == "" {
			t.Errorf("event %d source %+v tx %+v", i, ev.Source, ev.Tx)
		}
		pf, err := formatPosition(ev.Position)
		if err != nil {
			t.Errorf("event %d: position: %v", i, err)
		}
		t.Logf("event %d: %s position %s source %s", i, ev.Op, pf, ev.Source.Position)
	}
	if k := fmt.Sprint(evs[2].Key()); k != "[{id 1}]" {
		t.Errorf("delete key = %s, want id 1", k)
	}
	if evs[1].Before == nil || evs[1].Before[1] != "one" {
		t.Errorf("update before image = %v", evs[1].Before)
	}
	sch := evs[0].Schema
	if sch.Columns[0].Key != 1 || sch.Table.String() != f.name+".items" || sch.Columns[4].Type != connectors.TypeJSON || sch.Columns[3].Native != "decimal(10,2)" {
		t.Errorf("schema %+v", sch)
	}
}

// Changes to tables that are not captured advance the position (batches
// with no events and a later Last), so a pipeline whose tables are idle
// still stores a recent position; an idle server keeps the connection up
// with heartbeats, and the lag metric is 0 once caught up.
func TestIdleTablesAndIdleServer(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf("CREATE TABLE %s.busy (id int PRIMARY KEY)", f.name))
	cfg := f.config()
	cfg.Heartbeat = 200 * time.Millisecond
	s := f.source(t, cfg)
	reg := prometheus.NewRegistry()
	s.rt.Metrics = reg
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	first, err := s.ReadBatch(rctx, connectors.Limits{MaxEvents: 10, MaxWait: 50 * time.Millisecond})
	if err != nil || first.Last == nil || len(first.Events) != 0 {
		t.Fatalf("first batch: %d events, last %v, %v; want the start position alone", len(first.Events), first.Last, err)
	}
	for i := 0; i < 5; i++ {
		f.exec(fmt.Sprintf("INSERT INTO %s.busy VALUES (%d)", f.name, i))
	}
	last := first.Last
	for want := first.Last; ; {
		b, err := s.ReadBatch(rctx, connectors.Limits{MaxEvents: 10, MaxWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("ReadBatch: %v (the position stayed at %s)", err, want)
		}
		if len(b.Events) > 0 {
			t.Fatalf("got %d events from a table that is not captured", len(b.Events))
		}
		if b.Last != nil {
			last = b.Last
		}
		if p, _ := decodeStreamPos(last); p.commit >= mustDecode(t, first.Last).commit+5 {
			break
		}
	}
	t.Logf("the position moved from %s to %s on changes to other tables", mustDecode(t, first.Last).String(), mustDecode(t, last).String())
	// Idle for more than three heartbeat periods: no reconnect, and the
	// next change arrives.
	time.Sleep(8 * cfg.Heartbeat)
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id) VALUES (1)", f.name))
	if evs := readN(t, s, 1); evs[0].After[0] != int64(1) {
		t.Fatalf("after idling: %v", evs[0].After)
	}
	var m dto.Metric
	if err := reconnectVec.WithLabelValues(f.name).Write(&m); err != nil || m.GetCounter().GetValue() != 0 {
		t.Errorf("the source reconnected %v times while the server was idle and sent heartbeats", m.GetCounter().GetValue())
	}
	time.Sleep(3 * cfg.Heartbeat)
	if err := lagVec.WithLabelValues(f.name).Write(&m); err != nil || m.GetGauge().GetValue() != 0 {
		t.Errorf("tapline_mysql_replication_lag_seconds = %v when caught up and idle", m.GetGauge().GetValue())
	}
}

func mustDecode(t *testing.T, p connectors.Position) streamPos {
	t.Helper()
	sp, err := decodeStreamPos(p)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// Transactions that end without an XID: changes to a non-transactional
// (MyISAM) table, and CREATE TABLE ... SELECT, whose rows come in the
// DDL's transaction; db.* captures tables created after the start.
func TestNonTransactionalTablesAndCreateSelect(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.Tables = []string{f.name + ".*"}
	s := f.source(t, cfg)
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	f.exec(fmt.Sprintf("CREATE TABLE %s.m (id int PRIMARY KEY, v text) ENGINE=MyISAM", f.name))
	f.exec(fmt.Sprintf("INSERT INTO %s.m VALUES (1, 'a'), (2, 'b')", f.name))
	f.exec(fmt.Sprintf("UPDATE %s.m SET v = 'c' WHERE id = 2", f.name))
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name) VALUES (7, 'x'), (8, 'y')", f.name))
	f.exec(fmt.Sprintf("CREATE TABLE %s.cs (PRIMARY KEY (id)) SELECT id, name FROM %s.items", f.name, f.name))
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name) VALUES (9, 'z')", f.name))
	evs := readN(t, s, 8)
	var got []string
	for _, ev := range evs {
		got = append(got, fmt.Sprintf("%s %s %v", ev.Op, ev.Table().Name, ev.Row()[:2]))
	}
	want := "[c m [1 a] c m [2 b] u m [2 c] c items [7 x] c items [8 y] c cs [7 x] c cs [8 y] c items [9 z]]"
	if fmt.Sprint(got) != want {
		t.Fatalf("events %v\nwant   %s", got, want)
	}
	for i := 1; i < len(evs); i++ {
		if string(evs[i].Position) <= string(evs[i-1].Position) {
			t.Errorf("event %d is not after event %d", i, i-1)
		}
	}
}
