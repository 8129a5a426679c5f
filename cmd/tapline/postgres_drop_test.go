package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tapline/tapline/internal/servicetest"
)

// `tapline source postgres --drop-slot` removes the slot and the managed
// publication, and refuses a slot that a reader holds.
func TestSourcePostgresDropSlot(t *testing.T) {
	dsn := servicetest.PostgresDSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	slot, pub, schema := servicetest.Name(t, "slot"), servicetest.Name(t, "pub"), servicetest.Name(t, "s")
	servicetest.DropPostgresLater(t, dsn, slot, pub, schema)
	for _, q := range []string{
		"CREATE SCHEMA " + schema,
		"CREATE TABLE " + schema + ".t (id int PRIMARY KEY)",
		"CREATE PUBLICATION " + pub + " FOR TABLE " + schema + ".t",
		"SELECT pg_create_logical_replication_slot('" + slot + "', 'pgoutput')",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	args := []string{"source", "postgres", "--dsn", dsn, "--tables", schema + ".t", "--slot", slot, "--publication", pub, "--drop-slot"}

	// Held by a reader: refused, and the slot stays.
	hold, err := pgconn.Connect(ctx, dsn+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	if err := pglogrepl.StartReplication(ctx, hold, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + pub + "'"}}); err != nil {
		t.Fatalf("hold the slot: %v", err)
	}
	_, stderr, code := tapline(t, t.TempDir(), args...)
	hold.Close(ctx)
	if code == 0 || !strings.Contains(stderr, "in use by the process with PID") {
		t.Errorf("drop of a held slot: exit %d, stderr %q; want a refusal naming the PID", code, stderr)
	}

	_, stderr, code = tapline(t, t.TempDir(), args...)
	if code != 0 {
		t.Fatalf("drop: exit %d: %s", code, stderr)
	}
	var slots, pubs int
	conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&slots)
	conn.QueryRow(ctx, "SELECT count(*) FROM pg_publication WHERE pubname = $1", pub).Scan(&pubs)
	if slots != 0 || pubs != 0 {
		t.Errorf("after --drop-slot: %d slots and %d publications left", slots, pubs)
	}
	// Dropping again is harmless.
	if _, stderr, code = tapline(t, t.TempDir(), args...); code != 0 {
		t.Errorf("second drop: exit %d: %s", code, stderr)
	}
}
