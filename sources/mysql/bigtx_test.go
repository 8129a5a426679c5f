package mysql

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// A 200,000-row transaction streams in bounded memory: the heap stays far
// below what the transaction's events would take if they were held.
func TestLargeTransactionInBoundedMemory(t *testing.T) {
	const rows = 200_000
	f := newFixture(t)
	cfg := f.config()
	cfg.StartPosition = f.gtidPos()
	// About 600 bytes per row: 120 MB of events if they were all held.
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name, qty, doc) SELECT seq, REPEAT('x', 100), seq, CONCAT('{\"pad\": \"', REPEAT('y', 400), '\"}') FROM seq_1_to_%d", f.name, rows))
	s := f.source(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	next := int64(1)
	var txID string
	for next <= rows {
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 1000, MaxWait: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("ReadBatch at row %d: %v", next, err)
		}
		for _, ev := range b.Events {
			if id := ev.After[0].(int64); id != next {
				t.Fatalf("row %d arrived when %d was due", id, next)
			}
			if txID == "" {
				txID = ev.Tx.ID
			}
			if ev.Tx.ID != txID || ev.Tx.TotalOrder != next {
				t.Fatalf("row %d: transaction %s order %d; want %s order %d", next, ev.Tx.ID, ev.Tx.TotalOrder, txID, next)
			}
			next++
		}
		if next%20_000 < 1000 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	growth := int64(peak) - int64(base)
	t.Logf("%d rows in one transaction; heap peak %d MB above the %d MB at the start", rows, growth>>20, base>>20)
	if growth > 80<<20 {
		t.Fatalf("the heap grew by %d MB while reading a %d-row transaction: the source holds the transaction in memory", growth>>20, rows)
	}
}

// A restart in the middle of a transaction resumes exactly after the last
// event acknowledged: nothing lost, nothing repeated.
func TestRestartInsideTransaction(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.StartPosition = f.gtidPos()
	f.exec(fmt.Sprintf("INSERT INTO %s.items (id, name) SELECT seq, CONCAT('n', seq) FROM seq_1_to_1000", f.name))
	f.tx(fmt.Sprintf("UPDATE %s.items SET qty = 1 WHERE id <= 300", f.name),
		fmt.Sprintf("DELETE FROM %s.items WHERE id > 900", f.name),
		fmt.Sprintf("INSERT INTO %s.items (id) SELECT seq FROM seq_2000_to_2099", f.name))
	ctx := context.Background()
	all := func() []connectors.Event {
		s := f.source(t, cfg)
		if err := s.Open(ctx, nil); err != nil {
			t.Fatal(err)
		}
		defer s.Close(ctx)
		return readN(t, s, 1500)
	}()
	for _, cut := range []int{1, 437, 999, 1000, 1150, 1299, 1499} {
		s := f.source(t, cfg)
		if err := s.Open(ctx, all[cut-1].Position); err != nil {
			t.Fatal(err)
		}
		rest := readN(t, s, len(all)-cut)
		s.Close(ctx)
		for i, ev := range rest {
			w := all[cut+i]
			if ev.Op != w.Op || fmt.Sprint(ev.Row()) != fmt.Sprint(w.Row()) || string(ev.Position) != string(w.Position) {
				t.Fatalf("restart after event %d: event %d is %s %v, want %s %v", cut, cut+i+1, ev.Op, ev.Row(), w.Op, w.Row())
			}
		}
	}
}
