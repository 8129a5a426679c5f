package viewsql

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/tapline/tapline/connectors"
)

// discard is a fake whose Apply keeps nothing, so that a benchmark
// measures the shared half of WriteBatch (planning, positions) alone.
type discard struct{ *fake }

func (discard) Apply(context.Context, *TableBatch) error { return nil }

var benchItems = connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "items"}, 1, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Key: 1},
	{Name: "name", Type: connectors.TypeString, Nullable: true},
	{Name: "qty", Type: connectors.TypeInt64, Nullable: true},
	{Name: "price", Type: connectors.TypeDecimal, Nullable: true},
	{Name: "note", Type: connectors.TypeString, Nullable: true},
})

// BenchmarkWriteBatch measures the Go side of WriteBatch for batches of
// 1,000 inserts of new keys (the view sinks' benchmark workload) against
// a backend that does no I/O: planning, coalescing, origins and positions.
func BenchmarkWriteBatch(b *testing.B) {
	const size = 1000
	f := discard{newFake()}
	s, err := New("fake", DefaultConfig(), f, connectors.Runtime{Pipeline: "p"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		b.Fatal(err)
	}
	batches := make([]connectors.Batch, 64)
	n := uint64(0)
	for i := range batches {
		evs := make([]connectors.Event, size)
		for j := range evs {
			n++
			id := int64(n)
			evs[j] = connectors.Event{Op: connectors.OpCreate, Schema: benchItems,
				After: []connectors.Value{id, "item " + strconv.FormatInt(id, 10), id % 1000,
					fmt.Sprintf("%d.%02d", id%100000, id%100), "a note for item " + strconv.FormatInt(id, 10)},
				Position: connectors.TxPosition{Commit: n, Ordinal: 1}.Encode(),
				Source: connectors.SourceInfo{Connector: "bench", Name: "src", Position: strconv.FormatUint(n, 10),
					Table: "items", Schema: "shop"}}
		}
		batches[i] = connectors.Batch{Events: evs, Last: evs[size-1].Position}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bt := batches[i%len(batches)]
		if i > 0 && i%len(batches) == 0 {
			// Start over: a replayed batch would be skipped.
			clear(f.offsets)
			s.committed = nil
		}
		if err := s.WriteBatch(ctx, bt); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*size), "ns/event")
}
