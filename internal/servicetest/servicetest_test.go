package servicetest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
)

// These tests check that the machine's services are set up the way the
// connectors' integration tests need, and fail with the fix if not.

func TestPostgresLogicalReplicationWorks(t *testing.T) {
	dsn := PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	slot := Name(t, "tapline_check")
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", slot).Scan(&lsn); err != nil {
		t.Fatalf("create a logical slot: %v", err)
	}
	DropPostgresLater(t, dsn, slot, "", "")
	if lsn == "" {
		t.Fatal("the slot has no consistent point")
	}
	var free int
	if err := conn.QueryRow(ctx, "SELECT current_setting('max_replication_slots')::int - count(*) FROM pg_replication_slots").Scan(&free); err != nil {
		t.Fatal(err)
	}
	if free < 5 {
		t.Fatalf("only %d replication slots free; tests need several (max_replication_slots)", free)
	}
}

func TestMySQLBinlogIsOn(t *testing.T) {
	db, err := sql.Open("mysql", MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var file, pos string
	var rest []any
	rows, err := db.Query("SHOW MASTER STATUS")
	if err != nil {
		t.Fatalf("SHOW MASTER STATUS: %v", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		t.Fatal("SHOW MASTER STATUS returned nothing: the binlog is off")
	}
	rest = make([]any, len(cols)-2)
	for i := range rest {
		rest[i] = new(sql.RawBytes)
	}
	if err := rows.Scan(append([]any{&file, &pos}, rest...)...); err != nil {
		t.Fatal(err)
	}
	if file == "" || pos == "" {
		t.Fatalf("binlog position %q:%q", file, pos)
	}
}

func TestNATSJetStream(t *testing.T) {
	nc := NATS(t)
	js, _ := nc.JetStream()
	stream := Name(t, "TAPLINE_CHECK")
	if _, err := js.AddStream(&nats.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}}); err != nil {
		t.Fatalf("create a stream: %v", err)
	}
	t.Cleanup(func() { js.DeleteStream(stream) })
	if _, err := js.Publish(stream+".x", []byte("hello")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	info, err := js.StreamInfo(stream)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream holds %v messages (%v), want 1", info, err)
	}
}

func TestRedisAnswers(t *testing.T) {
	rc := Redis(t)
	key := Name(t, "tapline_check")
	ctx := context.Background()
	if err := rc.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Del(context.Background(), key) })
	if v, err := rc.Get(ctx, key).Result(); err != nil || v != "v" {
		t.Fatalf("GET %s = %q, %v", key, v, err)
	}
}
