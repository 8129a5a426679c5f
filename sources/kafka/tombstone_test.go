package kafka_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/sinks/sqlite"
	"github.com/tapline/tapline/sources/kafka"
)

// sinkRecord encodes ev as the Kafka sink does, headers included.
func sinkRecord(t testing.TB, topic string, ev connectors.Event) *kgo.Record {
	t.Helper()
	r := record(t, topic, ev)
	r.Headers = []kgo.RecordHeader{{Key: "op", Value: []byte(ev.Op.String())}, {Key: "table", Value: []byte("shop.items")},
		{Key: "schema_version", Value: []byte("1")}}
	return r
}

// del is the delete of row id.
func del(id int64) connectors.Event {
	return connectors.Event{Op: connectors.OpDelete, Schema: itemSchema, Before: []connectors.Value{id, int64(0)},
		Source: connectors.SourceInfo{Connector: "test", DB: "shop", Schema: "shop", Table: "items"}}
}

// tombstoneOf is the tombstone the Kafka sink writes after rec, a delete.
func tombstoneOf(rec *kgo.Record) *kgo.Record {
	return &kgo.Record{Topic: rec.Topic, Key: rec.Key, Headers: append([]kgo.RecordHeader(nil), rec.Headers...)}
}

// checkKeyDelete checks that ev is the key-only delete of items row id.
func checkKeyDelete(t *testing.T, ev connectors.Event, id int64) {
	t.Helper()
	if ev.Op != connectors.OpDelete || ev.Schema == nil || !ev.Schema.KeyOnly() || ev.Schema.Version != connectors.KeyOnlyVersion {
		t.Fatalf("tombstone event = %+v, want a delete with a key-only schema", ev)
	}
	c := ev.Schema.Columns
	if len(c) != 1 || c[0].Name != "id" || c[0].Type != connectors.TypeInt64 || c[0].Key != 1 || ev.Schema.Table.String() != "shop.items" {
		t.Fatalf("tombstone schema = %+v, want shop.items (id int64 key)", ev.Schema)
	}
	if len(ev.Before) != 1 || ev.Before[0] != id || ev.After != nil {
		t.Fatalf("tombstone images before=%v after=%v, want before [%d]", ev.Before, ev.After, id)
	}
	if ev.Source.Schema != "shop" || ev.Source.Table != "items" || ev.Position == nil {
		t.Fatalf("tombstone source %+v position %v, want shop.items and a position", ev.Source, ev.Position)
	}
}

// view is a SQLite view of items.
type view struct {
	s  *sqlite.Sink
	db *sql.DB
}

func newView(t *testing.T, name string) *view {
	t.Helper()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "view.db")
	cfg.DropColumns = true // a key-only schema must not drop the other columns
	s, err := sqlite.New(cfg, connectors.Runtime{Pipeline: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	db, err := sql.Open("sqlite3", "file:"+cfg.Path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &view{s: s, db: db}
}

func (v *view) write(t *testing.T, evs []connectors.Event) {
	t.Helper()
	if err := v.s.WriteBatch(context.Background(), connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
}

// rows returns the items rows as "id:version", and the table's columns.
func (v *view) rows(t *testing.T) (string, string) {
	t.Helper()
	rs, err := v.db.Query("SELECT id, version FROM items ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rs.Next() {
		var id, ver string
		if err := rs.Scan(&id, &ver); err != nil {
			t.Fatal(err)
		}
		out = append(out, id+":"+ver)
	}
	rs.Close()
	cr, err := v.db.Query("SELECT * FROM items WHERE 1 = 0")
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	cols, err := cr.Columns()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " "), strings.Join(cols, ",")
}

// A tombstone with a table header becomes a delete by key, so that a view
// reading a compacted topic (where only the tombstone is left of a deleted
// row) deletes the row, and its table keeps its columns.
func TestTombstoneDeletes(t *testing.T) {
	c := newCluster(t)
	cl := client(t, c)
	defer cl.Close()

	// Uncompacted: c(1), c(2), d(1) and its tombstone.
	topic := createTopic(t, c, "tomb", 1)
	d1 := sinkRecord(t, topic, del(1))
	produce(t, cl, sinkRecord(t, topic, item(1, 0)), sinkRecord(t, topic, item(2, 0)), d1, tombstoneOf(d1))
	s := newSource(t, c, func(cfg *kafka.Config) { cfg.Topics, cfg.Group = []string{topic}, topic })
	openSource(t, s, nil)
	evs := readN(t, s, 4, 20*time.Second)
	if len(evs) != 4 || evs[2].Op != connectors.OpDelete || evs[2].Schema.Version != 1 {
		t.Fatalf("read %d events, want c, c, d and the tombstone's d", len(evs))
	}
	checkKeyDelete(t, evs[3], 1)
	v := newView(t, "uncompacted")
	v.write(t, evs)
	rows, cols := v.rows(t)
	if rows != "2:0" || cols != "id,version" {
		t.Fatalf("view after c, c, d, tombstone holds %q with columns %s, want 2:0 with id,version", rows, cols)
	}

	// Compacted, read by a view that had read c(1) before compaction:
	// the log goes on with c(2) and the tombstone of 1, its delete gone.
	ctopic := createTopic(t, c, "tombc", 1)
	produce(t, cl, sinkRecord(t, ctopic, item(1, 0)))
	cs := newSource(t, c, func(cfg *kafka.Config) { cfg.Topics, cfg.Group = []string{ctopic}, ctopic })
	openSource(t, cs, nil)
	lag := newView(t, "lagging")
	lag.write(t, readN(t, cs, 1, 20*time.Second))
	if rows, _ := lag.rows(t); rows != "1:0" {
		t.Fatalf("lagging view holds %q, want 1:0", rows)
	}
	produce(t, cl, sinkRecord(t, ctopic, item(2, 0)), tombstoneOf(sinkRecord(t, ctopic, del(1))))
	evs = readN(t, cs, 2, 20*time.Second)
	if len(evs) != 2 || evs[0].Op != connectors.OpCreate {
		t.Fatalf("read %d events from the compacted topic, want c(2) and the tombstone's d", len(evs))
	}
	checkKeyDelete(t, evs[1], 1)
	lag.write(t, evs)
	rows, cols = lag.rows(t)
	if rows != "2:0" || cols != "id,version" {
		t.Fatalf("lagging view after the compacted topic holds %q with columns %s, want 2:0 with id,version", rows, cols)
	}

	// A view built anew from the compacted topic: the tombstone deletes
	// nothing, and creates nothing.
	fresh := newView(t, "fresh")
	fs := newSource(t, c, func(cfg *kafka.Config) { cfg.Topics, cfg.Group = []string{ctopic}, ctopic+"-fresh" })
	openSource(t, fs, nil)
	fresh.write(t, readN(t, fs, 3, 20*time.Second)[1:]) // c(2), tombstone(1)
	if rows, cols := fresh.rows(t); rows != "2:0" || cols != "id,version" {
		t.Fatalf("fresh view holds %q with columns %s, want 2:0 with id,version", rows, cols)
	}
}

// Key columns are typed from the key's JSON; a tombstone without a table
// header (Debezium's) is skipped; one whose key is not a JSON object
// stops the source with an error naming it.
func TestTombstoneKeys(t *testing.T) {
	c := newCluster(t)
	cl := client(t, c)
	defer cl.Close()
	topic := createTopic(t, c, "tombk", 1)
	hdr := []kgo.RecordHeader{{Key: "table", Value: []byte("shop.odd")}, {Key: "connector", Value: []byte("postgres")}, {Key: "db", Value: []byte("shopdb")}}
	produce(t, cl,
		&kgo.Record{Topic: topic, Key: []byte(`{"id":1}`)}, // no table header: skipped
		&kgo.Record{Topic: topic, Key: []byte(`{"k":"x\"y","n":18446744073709551615,"d":1.50,"b":true,"i":-3}`), Headers: hdr},
		&kgo.Record{Topic: topic, Key: []byte(`[1]`), Headers: hdr},
	)
	s := newSource(t, c, func(cfg *kafka.Config) { cfg.Topics, cfg.Group = []string{topic}, topic })
	openSource(t, s, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var evs []connectors.Event
	var err error
	for err == nil {
		var b connectors.Batch
		b, err = s.ReadBatch(ctx, lim)
		evs = append(evs, b.Events...)
	}
	if err == nil || !strings.Contains(err.Error(), "offset 2") || !strings.Contains(err.Error(), "shop.odd") {
		t.Fatalf("ReadBatch error %v, want one about the key at offset 2", err)
	}
	if len(evs) != 1 {
		t.Fatalf("read %d events, want 1 (the headerless tombstone skipped)", len(evs))
	}
	ev := evs[0]
	if !ev.Schema.KeyOnly() || ev.Source.Connector != "postgres" || ev.Source.DB != "shopdb" || ev.Source.Table != "odd" {
		t.Fatalf("event %+v, want a key-only delete of shop.odd from postgres shopdb", ev)
	}
	var got []string
	for i, col := range ev.Schema.Columns {
		got = append(got, fmt.Sprintf("%s %s %T:%v", col.Name, col.Type, ev.Before[i], ev.Before[i]))
		if col.Key != i+1 {
			t.Errorf("column %s has key position %d, want %d", col.Name, col.Key, i+1)
		}
	}
	want := []string{`k string string:x"y`, "n uint64 uint64:18446744073709551615", "d decimal string:1.50", "b bool bool:true", "i int64 int64:-3"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("key columns %q, want %q", got, want)
	}
}
