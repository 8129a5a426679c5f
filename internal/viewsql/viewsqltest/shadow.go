package viewsqltest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

// fill writes items 1..nItems with qty and pairs with nPairs rows of val,
// in batches, and returns the model.
func fill(t *testing.T, s Sink, q *seq, nItems, qty, nPairs int, val string) *Model {
	t.Helper()
	m := NewModel()
	var evs []connectors.Event
	for i := 1; i <= nItems; i++ {
		evs = append(evs, q.c(Items, item(int64(i), fmt.Sprintf("item %d %s", i, val), int64(qty), "1.00", val)...))
	}
	for i := 0; i < nPairs; i++ {
		evs = append(evs, q.c(Pairs, fmt.Sprintf("t%d", i%7), int64(i), val))
	}
	for len(evs) > 0 {
		n := min(97, len(evs))
		write(t, s, m, batch(evs[:n]...))
		evs = evs[n:]
	}
	return m
}

// snapshot is what the reader sees of the view in one statement.
type snapshot struct{ items, qty, pairs string }

func testShadow(t *testing.T, h Harness) {
	st := h.Setup(t)
	ctx := context.Background()
	cfg := viewsql.DefaultConfig()
	live := st.New(t, "rebuild", cfg)
	open(t, live)
	var q seq
	liveModel := fill(t, live, &q, 300, 1, 100, "live")
	liveSnap := snapshot{"300", "300", "100"}

	// The rebuild replays the log from the start into shadow tables, up to
	// beyond where the live view is.
	shadow := st.New(t, "rebuild", cfg)
	shadow.UseShadow()
	open(t, shadow)
	if p := committed(t, shadow); p != nil {
		t.Fatalf("a new shadow sink starts at %s, want no position", p)
	}
	var q2 seq
	shadowModel := fill(t, shadow, &q2, 500, 2, 150, "rebuilt")
	q2.n = max(q2.n, q.n) + 10
	last := q2.c(Items, item(501, "item 501 rebuilt", 2, "1.00", "rebuilt")...)
	write(t, shadow, shadowModel, batch(last))
	shadowSnap := snapshot{"501", "1002", "150"}
	shadowOrigins, err := shadow.AppliedOrigins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The live view is untouched so far.
	checkAs(t, st, shadowModel, "items"+viewsql.ShadowSuffix, "items", itemCols, 1)
	check(t, st, liveModel, "items", itemCols, 1)
	if p := committed(t, live); p.Compare(q.evPos()) != 0 {
		t.Fatalf("the live position moved to %s while the shadow was written", p)
	}

	// A reader reads counts and sums of both tables in one statement, over
	// and over, while the shadow is promoted.
	query := fmt.Sprintf("SELECT (SELECT COUNT(*) FROM %s), (SELECT SUM(qty) FROM %s), (SELECT COUNT(*) FROM %s)",
		st.Table("items"), st.Table("items"), st.Table("pairs"))
	var (
		mu       sync.Mutex
		reads    int
		seen     = map[snapshot]int{}
		bad      []string
		stop     = make(chan struct{})
		finished = make(chan struct{})
	)
	go func() {
		defer close(finished)
		for {
			select {
			case <-stop:
				return
			default:
			}
			rows, err := QueryErr(st.DB, query)
			mu.Lock()
			reads++
			switch {
			case err != nil:
				bad = append(bad, "error: "+err.Error())
			case len(rows) != 1:
				bad = append(bad, fmt.Sprintf("%d rows", len(rows)))
			default:
				sn := snapshot{rows[0][0], rows[0][1], rows[0][2]}
				seen[sn]++
				if sn != liveSnap && sn != shadowSnap {
					bad = append(bad, fmt.Sprintf("saw %+v", sn))
				}
			}
			mu.Unlock()
		}
	}()
	waitReads := func(n int) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			r := reads
			mu.Unlock()
			if r >= n || time.Now().After(deadline) {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitReads(20)
	if err := shadow.Promote(ctx); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	mu.Lock()
	atPromote := reads
	mu.Unlock()
	waitReads(atPromote + 20)
	close(stop)
	<-finished
	t.Logf("the reader read %d times: %v", reads, seen)
	if len(bad) > 0 {
		if len(bad) > 10 {
			bad = bad[:10]
		}
		t.Fatalf("the reader saw neither the old view %+v nor the new %+v (empty, partial or failed):\n  %s", liveSnap, shadowSnap, strings.Join(bad, "\n  "))
	}
	if seen[shadowSnap] == 0 {
		t.Fatalf("the reader never saw the promoted view")
	}

	// The live tables hold the shadow's content, the shadow tables are
	// gone, and the live position and origins are the shadow's.
	check(t, st, shadowModel, "items", itemCols, 1)
	check(t, st, shadowModel, "pairs", pairCols, 2)
	if _, err := QueryErr(st.DB, "SELECT COUNT(*) FROM "+st.Table("items"+viewsql.ShadowSuffix)); err == nil {
		t.Fatal("the shadow table is still there after Promote")
	}
	fresh := st.New(t, "rebuild", cfg)
	open(t, fresh)
	if p := committed(t, fresh); p.Compare(last.Position) != 0 {
		t.Fatalf("the live position after Promote is %s, want the shadow's %s", p, last.Position)
	}
	if o, _ := fresh.AppliedOrigins(ctx); fmt.Sprint(o) != fmt.Sprint(shadowOrigins) {
		t.Fatalf("live origins after Promote %v, want the shadow's %v", o, shadowOrigins)
	}
	// A live sink that kept running through the promote refuses to write
	// past a position it did not store.
	q.n = q2.n + 100
	err = live.WriteBatch(ctx, batch(q.c(Items, item(900, "late", 1, "1.00", "late")...)))
	if err == nil || !strings.Contains(err.Error(), "moved") {
		t.Fatalf("a stale live sink wrote after the promote: %v", err)
	}
	// The promoted view goes on from its position.
	write(t, fresh, shadowModel, batch(q.c(Items, item(901, "next", 2, "1.00", "next")...)))
	check(t, st, shadowModel, "items", itemCols, 1)
}

func (s *seq) evPos() connectors.Position {
	return connectors.TxPosition{Commit: s.n, Ordinal: 1}.Encode()
}

func testShadowLeftovers(t *testing.T, h Harness) {
	st := h.Setup(t)
	ctx := context.Background()
	cfg := viewsql.DefaultConfig()
	live := st.New(t, "leftover", cfg)
	open(t, live)
	var q seq
	liveModel := fill(t, live, &q, 10, 1, 0, "live")
	live.Close(ctx)

	// An abandoned rebuild leaves shadow tables and a shadow position.
	shadow := st.New(t, "leftover", cfg)
	shadow.UseShadow()
	open(t, shadow)
	fill(t, shadow, &seq{}, 20, 1, 5, "abandoned")
	shadow.Close(ctx)

	again := st.New(t, "leftover", cfg)
	again.UseShadow()
	open(t, again)
	if p := committed(t, again); p != nil {
		t.Fatalf("a new rebuild starts at %s, want no position", p)
	}
	for _, table := range []string{"items", "pairs"} {
		if _, err := QueryErr(st.DB, "SELECT COUNT(*) FROM "+st.Table(table+viewsql.ShadowSuffix)); err == nil {
			t.Fatalf("the abandoned shadow table %s%s is still there", table, viewsql.ShadowSuffix)
		}
	}
	rebuilt := fill(t, again, &seq{}, 15, 3, 0, "rebuilt")
	checkAs(t, st, rebuilt, "items"+viewsql.ShadowSuffix, "items", itemCols, 1)
	check(t, st, liveModel, "items", itemCols, 1)
	if err := again.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	check(t, st, rebuilt, "items", itemCols, 1)
	// pairs was written only by the abandoned rebuild: it never reached the
	// live view.
	if _, err := QueryErr(st.DB, "SELECT COUNT(*) FROM "+st.Table("pairs")); err == nil {
		t.Fatal("the abandoned rebuild's pairs table reached the live view")
	}
}
