package redis

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/tapline/tapline/connectors"
)

// keyOnlyDelete is the delete the Kafka source makes of a tombstone: a
// schema of the key columns only, version 0, no origin database.
func keyOnlyDelete(table connectors.TableID, commit uint64, cols []connectors.Column, key ...connectors.Value) connectors.Event {
	for i := range cols {
		cols[i].Key = i + 1
	}
	ev := change(connectors.OpDelete, connectors.MustSchema(table, 0, cols), commit, key, nil)
	ev.Source.DB, ev.Source.Position, ev.Source.Connector = "", "", ""
	return ev
}

// A key-only delete removes the row and its index entries by key, for
// single and composite keys.
func TestKeyOnlyDelete(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, func(c *Config) { c.Indexes = []Index{{Table: "orders", Column: "customer_id"}} })
	mustWrite(t, s, batch(
		change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), int64(7), "new", nil, "1.00")),
		change(connectors.OpCreate, ordersSchema, 2, nil, vals(int64(2), int64(7), "new", nil, "2.00")),
		change(connectors.OpCreate, linesSchema, 3, nil, vals("a:b", int64(1), int64(5), nil)),
	))
	mustWrite(t, s, batch(
		keyOnlyDelete(ordersSchema.Table, 4, []connectors.Column{{Name: "id", Type: connectors.TypeInt64}}, int64(1)),
		keyOnlyDelete(linesSchema.Table, 5, []connectors.Column{{Name: "sku", Type: connectors.TypeString}, {Name: "n", Type: connectors.TypeInt64}}, "a:b", int64(1)),
	))
	if h := e.hash(t, "orders:1"); h != nil {
		t.Errorf("orders:1 = %v after its key-only delete, want gone", h)
	}
	if h := e.hash(t, "lines:a%3Ab:1"); h != nil {
		t.Errorf("lines:a%%3Ab:1 = %v after its key-only delete, want gone", h)
	}
	if h := e.hash(t, "orders:2"); h["status"] != "new" {
		t.Errorf("orders:2 = %v, want it kept", h)
	}
	if got := e.members(t, "orders:by:customer_id:7"); !reflect.DeepEqual(got, []string{"2"}) {
		t.Errorf("index set of customer 7 = %v, want [2]", got)
	}
}

// With {db} in the key template a key-only delete, which has no origin
// database, is rejected rather than deleting a key that does not exist.
func TestKeyOnlyDeleteNeedsDB(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, func(c *Config) { c.KeyTemplate = "{db}:{table}:{pk}" })
	mustWrite(t, s, batch(change(connectors.OpCreate, ordersSchema, 1, nil, vals(int64(1), int64(7), "new", nil, "1.00"))))
	err := s.WriteBatch(context.Background(), batch(
		keyOnlyDelete(ordersSchema.Table, 2, []connectors.Column{{Name: "id", Type: connectors.TypeInt64}}, int64(1))))
	var re *connectors.RejectError
	if !errors.As(err, &re) || len(re.Events) != 1 {
		t.Fatalf("key-only delete with {db} in the template: %v; want a RejectError", err)
	}
	if h := e.hash(t, "shopdb:orders:1"); h["status"] != "new" {
		t.Errorf("shopdb:orders:1 = %v, want it kept", h)
	}
}
