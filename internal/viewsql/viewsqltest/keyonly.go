package viewsqltest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

// keyOnly returns the key-only schema the Kafka source makes of a
// tombstone of table tid: version 0, only key columns, typed from the
// key's JSON.
func keyOnly(tid connectors.TableID, cols ...connectors.Column) *connectors.Schema {
	for i := range cols {
		cols[i].Key = i + 1
	}
	return connectors.MustSchema(tid, 0, cols)
}

// Deletes whose schema holds only the key (a tombstone read back from a
// compacted topic) delete by key and leave the table's shape alone: no
// column dropped even with drop_columns, no table created for them.
func testKeyOnlyDeletes(t *testing.T, h Harness) {
	st := h.Setup(t)
	cfg := viewsql.DefaultConfig()
	cfg.DropColumns = true
	s := st.New(t, "keyonly", cfg)
	open(t, s)
	m := NewModel()
	var q seq
	itemKey := keyOnly(Items.Table, connectors.Column{Name: "id", Type: connectors.TypeInt64})
	pairKey := keyOnly(Pairs.Table, connectors.Column{Name: "tenant", Type: connectors.TypeString},
		connectors.Column{Name: "id", Type: connectors.TypeInt64})
	write(t, s, m, batch(
		q.c(Items, item(1, "one", 1, "1.00", "a")...),
		q.c(Items, item(2, "two", 2, "2.00", "b")...),
		q.c(Items, item(3, "three", 3, "3.00", "c")...),
		q.c(Pairs, "a", int64(1), "pa"),
		q.c(Pairs, "b", int64(2), "pb"),
	))
	itemsBefore, pairsBefore := columns(t, st, "items"), columns(t, st, "pairs")
	// A batch of key-only deletes only, one of a table the view never had.
	ghost := keyOnly(connectors.TableID{Schema: "shop", Name: "ghost"}, connectors.Column{Name: "id", Type: connectors.TypeInt64})
	write(t, s, m, batch(
		q.d(itemKey, int64(1)),
		q.d(pairKey, "a", int64(1)),
		q.d(ghost, int64(7)),
	))
	check(t, st, m, "items", itemCols, 1)
	check(t, st, m, "pairs", pairCols, 2)
	if got := columns(t, st, "items"); strings.Join(got, ",") != strings.Join(itemsBefore, ",") {
		t.Fatalf("after key-only deletes items has columns %v, want %v unchanged", got, itemsBefore)
	}
	if got := columns(t, st, "pairs"); strings.Join(got, ",") != strings.Join(pairsBefore, ",") {
		t.Fatalf("after key-only deletes pairs has columns %v, want %v unchanged", got, pairsBefore)
	}
	if _, err := QueryErr(st.DB, "SELECT * FROM "+st.Table("ghost")); err == nil {
		t.Fatal("a key-only delete created table ghost")
	}
	// Mixed with full events of the key in one batch: a delete and its
	// tombstone (two deletes), a tombstone then a new row, a row then a
	// tombstone.
	write(t, s, m, batch(
		q.d(Items, int64(2)),
		q.d(itemKey, int64(2)),
		q.d(itemKey, int64(3)),
		q.c(Items, item(3, "three again", 33, "3.30", "c2")...),
		q.c(Items, item(4, "four", 4, "4.00", "d")...),
		q.d(itemKey, int64(4)),
		q.c(Items, item(5, "five", 5, "5.00", "e")...),
	))
	check(t, st, m, "items", itemCols, 1)
	if got := len(m.Rows("items", itemCols, 1)); got != 2 {
		t.Fatalf("the model holds %d items, want 2 (the test's events are wrong)", got)
	}
	if got := columns(t, st, "items"); strings.Join(got, ",") != strings.Join(itemsBefore, ",") {
		t.Fatalf("after mixed deletes items has columns %v, want %v unchanged", got, itemsBefore)
	}
	// A key-only delete whose key is not the table's is a key change.
	sku := keyOnly(Items.Table, connectors.Column{Name: "sku", Type: connectors.TypeString})
	err := s.WriteBatch(context.Background(), batch(q.d(sku, "x")))
	var kc *viewsql.KeyChangeError
	if !errors.As(err, &kc) {
		t.Fatalf("key-only delete with another key: %v; want a KeyChangeError", err)
	}
}

// In history mode a key-only delete appends a delete row holding the key
// columns only, and the history table keeps its columns.
func testKeyOnlyHistory(t *testing.T, h Harness) {
	st := h.Setup(t)
	cfg := viewsql.DefaultConfig()
	cfg.Mode = viewsql.ModeHistory
	cfg.DropColumns = true
	s := st.New(t, "keyonlyhist", cfg)
	open(t, s)
	var q seq
	itemKey := keyOnly(Items.Table, connectors.Column{Name: "id", Type: connectors.TypeInt64})
	write(t, s, nil, batch(q.c(Items, item(1, "one", 1, "1.00", "n1")...)))
	before := columns(t, st, "items_history")
	write(t, s, nil, batch(q.d(itemKey, int64(1))))
	if got := columns(t, st, "items_history"); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("after a key-only delete the history table has columns %v, want %v unchanged", got, before)
	}
	got := Query(t, st.DB, "SELECT __op, id, name, qty, price, note FROM "+st.Table("items_history")+" ORDER BY __seq")
	want := []string{"c|1|one|1|1.00|n1", "d|1|NULL|NULL|NULL|NULL"}
	if len(got) != len(want) {
		t.Fatalf("history holds %v, want %v", got, want)
	}
	for i := range want {
		if g := strings.Join(got[i], "|"); g != want[i] {
			t.Errorf("history row %d = %s, want %s", i+1, g, want[i])
		}
	}
}
