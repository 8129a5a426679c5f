package viewsql

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/tapline/tapline/connectors"
)

// The plans are reused from batch to batch: a batch after a bigger one,
// with deletes, updates and string keys, holds its own changes only, and
// an insert-only batch goes to Apply as its rows as they are.
func TestPlansReusedAcrossBatches(t *testing.T) {
	f := newFake()
	s := newSink(t, f, DefaultConfig())
	var e evs
	u := connectors.Unchanged
	tags := connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "tags"}, 1, []connectors.Column{
		{Name: "tag", Type: connectors.TypeString, Key: 1},
		{Name: "n", Type: connectors.TypeInt64, Nullable: true},
	})
	tag := func(op connectors.Op, k string, n int64) connectors.Event {
		ev := e.ev(op, nil, row(k, n))
		ev.Schema = tags
		if op == connectors.OpDelete {
			ev.Before, ev.After = ev.After, nil
		}
		return ev
	}
	batches := [][]connectors.Event{
		{
			e.ev(connectors.OpCreate, nil, row(int64(1), "a", "n1")),
			e.ev(connectors.OpCreate, nil, row(int64(2), "b", "n2")),
			e.ev(connectors.OpUpdate, nil, row(int64(3), "c", u)),
			e.ev(connectors.OpDelete, row(int64(4), nil, nil), nil),
			e.ev(connectors.OpCreate, nil, row(int64(5), "e", "n5")),
			tag(connectors.OpCreate, "x", 1),
			tag(connectors.OpDelete, "y", 0),
		},
		{
			e.ev(connectors.OpCreate, nil, row(int64(10), "j", "n10")),
			e.ev(connectors.OpCreate, nil, row(int64(11), "k", "n11")),
		},
		{
			tag(connectors.OpCreate, "x", 2),
			e.ev(connectors.OpUpdate, nil, row(int64(1), "a2", u)),
		},
	}
	for _, b := range batches {
		if err := write(t, s, b...); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"items: deletes [id=4] upserts [id=1 name=a note=n1; id=2 name=b note=n2; id=5 name=e note=n5] updates [id=3 name=c]",
		"tags: deletes [tag=y] upserts [tag=x n=1] updates []",
		"items: deletes [] upserts [id=10 name=j note=n10; id=11 name=k note=n11] updates []",
		"tags: deletes [] upserts [tag=x n=2] updates []",
		"items: deletes [] upserts [] updates [id=1 name=a2]",
	}
	if len(f.applied) != len(want) {
		t.Fatalf("applied %d table batches, want %d", len(f.applied), len(want))
	}
	for i, tb := range f.applied {
		got := fmt.Sprintf("%s: deletes [%s] upserts [%s] updates [%s]", tb.Table, rows(tb, tb.Deletes), rows(tb, tb.Upserts), rows(tb, tb.Updates))
		if got != want[i] {
			t.Errorf("table batch %d: %s\nwant %s", i, got, want[i])
		}
	}
}

// observe keeps, per origin, the position connectors.Origins.Observe
// would, event by event: for orderable positions, unorderable ones
// (snapshot rows), connectors without an order, equal positions and
// origins taking turns.
func TestObserveMatchesObserve(t *testing.T) {
	connectors.RegisterOriginOrder("viewsql-test-ordered", func(a, b string) (int, bool) {
		x, err1 := strconv.Atoi(a)
		y, err2 := strconv.Atoi(b)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	})
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 500; round++ {
		events := make([]connectors.Event, rng.IntN(40))
		for i := range events {
			src := &events[i].Source
			src.Connector = []string{"viewsql-test-ordered", "viewsql-test-unordered", ""}[rng.IntN(3)]
			src.Name = []string{"a", "b"}[rng.IntN(2)]
			switch r := rng.IntN(10); {
			case r == 0:
				src.Position = ""
			case r < 3:
				src.Position = "snapshot-" + strconv.Itoa(rng.IntN(5))
			default:
				src.Position = strconv.Itoa(rng.IntN(20))
			}
		}
		want := connectors.Origins{}
		for i := range events {
			want.Observe(&events[i])
		}
		if got := observe(events); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: observe = %v, want %v, for %+v", round, got, want, events)
		}
	}
}

// A sink that knows the stored position moves it with one statement and
// reads the offsets row only when that statement finds the row elsewhere.
func TestPositionAdvancedWithoutRead(t *testing.T) {
	f := newFake()
	s := newSink(t, f, DefaultConfig())
	var e evs
	for i := int64(1); i <= 3; i++ {
		if err := write(t, s, e.ev(connectors.OpCreate, nil, row(i, "a", "n"))); err != nil {
			t.Fatal(err)
		}
	}
	// The first batch reads and writes the row (it creates the table); the
	// next two only advance it.
	if f.advances != 2 || f.reads != 3 || f.writes != 1 {
		t.Fatalf("%d advances, %d reads (two at Open), %d writes; want 2, 3 and 1", f.advances, f.reads, f.writes)
	}
	// Another writer moves the row: the next batch fails, writing nothing.
	f.offsets["p"].Position = connectors.TxPosition{Commit: 3, Ordinal: 2}.Encode()
	if err := write(t, s, e.ev(connectors.OpCreate, nil, row(int64(4), "a", "n"))); err == nil {
		t.Fatal("a batch was written over another writer's position")
	}
	if f.commits != 3 {
		t.Fatalf("%d commits, want 3", f.commits)
	}

}
