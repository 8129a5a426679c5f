package viewsqltest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/benchjsonl"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/internal/viewsql"
)

// BenchRows is the number of rows Bench writes: TAPLINE_BENCH_ROWS, or
// 1,000,000.
func BenchRows(b *testing.B) int { return servicetest.Count(b, "TAPLINE_BENCH_ROWS", 1_000_000) }

// benchAlternate reports whether Bench alternates which writer goes
// first: TAPLINE_BENCH_ORDER=alternate (the default), or sink-first, the
// order of the harness before 2026-11-23 session 3, to compare with its
// figures.
func benchAlternate(b *testing.B) bool {
	switch s := os.Getenv("TAPLINE_BENCH_ORDER"); s {
	case "", "alternate":
		return true
	case "sink-first":
		return false
	default:
		b.Fatalf("TAPLINE_BENCH_ORDER=%q is not alternate or sink-first", s)
		return false
	}
}

// BenchBatch is the batch size of the benchmark: the engine's default
// max_events.
const BenchBatch = 1000

// BenchRow is row i of the benchmark, a row of Items.
func BenchRow(i int) []connectors.Value {
	return item(int64(i), "item "+strconv.Itoa(i), int64(i%1000), fmt.Sprintf("%d.%02d", i%100000, i%100), "a note for item "+strconv.Itoa(i))
}

// BaselineWriter writes batches of rows the plain way.
type BaselineWriter interface {
	// Write inserts rows (values of the table's columns) in one
	// transaction.
	Write(rows [][]connectors.Value) error
	Close() error
}

// Bench applies BenchRows upserts (inserts of new keys, in batches of
// BenchBatch) through the sink and writes the same rows with the harness's
// Baseline into another table, alternating batch by batch so that both see
// the same conditions on a shared machine, and reports both rates and
// their ratio (sink rows/s over plain rows/s; 1 means as fast as plain
// INSERTs, the goal is 0.8).
//
// Which of the two writes a batch first alternates too (see
// benchAlternate): with a fixed order, whatever the position costs or
// saves (the first follows the making of the batch, the second follows
// the first's commit at once) goes to the same side every time. On the
// shared 2-core machine the two orders gave ratios up to 0.1 apart, in
// either direction depending on the store and the run.
func Bench(b *testing.B, h Harness) {
	st := h.Setup(b)
	n := BenchRows(b)
	alternate := benchAlternate(b)
	ctx := context.Background()
	var sinkTotal, plainTotal time.Duration
	iter := 0
	for b.Loop() {
		iter++
		cfg := viewsql.DefaultConfig()
		sinkTable := fmt.Sprintf("bench_sink_%d", iter)
		cfg.Tables = map[string]viewsql.TableConfig{"shop.items": {Name: sinkTable}}
		s := st.New(b, fmt.Sprintf("bench%d", iter), cfg)
		if err := s.Open(ctx); err != nil {
			b.Fatal(err)
		}
		plainTable := fmt.Sprintf("bench_plain_%d", iter)
		w := h.Baseline(b, st, plainTable, Items.Columns)
		var q seq
		nb := 0
		evs := make([]connectors.Event, 0, BenchBatch)
		rows := make([][]connectors.Value, 0, BenchBatch)
		for i := 1; i <= n; {
			evs, rows = evs[:0], rows[:0]
			for ; i <= n && len(evs) < BenchBatch; i++ {
				r := BenchRow(i)
				evs = append(evs, q.c(Items, r...))
				rows = append(rows, r)
			}
			sink := func() {
				start := time.Now()
				if err := s.WriteBatch(ctx, batch(evs...)); err != nil {
					b.Fatal(err)
				}
				sinkTotal += time.Since(start)
			}
			plain := func() {
				start := time.Now()
				if err := w.Write(rows); err != nil {
					b.Fatal(err)
				}
				plainTotal += time.Since(start)
			}
			if nb++; alternate && nb%2 == 0 {
				plain()
				sink()
			} else {
				sink()
				plain()
			}
		}
		if err := s.Close(ctx); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		for _, table := range []string{sinkTable, plainTable} {
			if got := count(b, st, table); got != n {
				b.Fatalf("%s holds %d rows, want %d", table, got, n)
			}
		}
	}
	rows := float64(n * iter)
	b.ReportMetric(rows/sinkTotal.Seconds(), "sink_rows/s")
	b.ReportMetric(rows/plainTotal.Seconds(), "plain_rows/s")
	b.ReportMetric(plainTotal.Seconds()/sinkTotal.Seconds(), "sink/plain") // a ratio of rates
	b.ReportMetric(float64(n), "rows")
}

// BenchEvent is the create event of BenchRow(i+1), as Bench writes it.
func BenchEvent(i int) connectors.Event {
	n := uint64(i + 1)
	return connectors.Event{Op: connectors.OpCreate, Schema: Items, After: BenchRow(i + 1),
		Position: connectors.TxPosition{Commit: n, Ordinal: 1}.Encode(), TsMs: 1_763_800_000_000 + int64(n),
		Source: connectors.SourceInfo{Connector: originConnector, Name: "suite", Position: strconv.FormatUint(n, 10),
			TsMs: 1_763_800_000_000 + int64(n), Table: Items.Table.Name, Schema: Items.Table.Schema}}
}

// BenchJSONL is Bench from a file: BenchRows events written as JSON lines,
// read by the jsonl source and carried by the engine into the sink (a
// whole pipeline, see benchjsonl), next to the same events carried from
// memory into another table and the harness's Baseline writing the same
// rows, taking turns in slices.
func BenchJSONL(b *testing.B, h Harness) {
	st := h.Setup(b)
	n := BenchRows(b)
	iter := 0
	var res benchjsonl.Result
	for b.Loop() {
		iter++
		cfg := viewsql.DefaultConfig()
		sinkTable := fmt.Sprintf("benchjsonl_sink_%d", iter)
		memTable := fmt.Sprintf("benchjsonl_mem_%d", iter)
		cfg.Tables = map[string]viewsql.TableConfig{"shop.items": {Name: sinkTable}}
		memCfg := viewsql.DefaultConfig()
		memCfg.Tables = map[string]viewsql.TableConfig{"shop.items": {Name: memTable}}
		pipeline := fmt.Sprintf("benchjsonl%d", iter)
		// The store exists once a sink has opened it (SQLite's file).
		if s := st.New(b, pipeline, cfg); s.Open(context.Background()) != nil || s.Close(context.Background()) != nil {
			b.Fatal("could not open and close the sink to make its store")
		}
		plainTable := fmt.Sprintf("benchjsonl_plain_%d", iter)
		w := h.Baseline(b, st, plainTable, Items.Columns)
		rows := make([][]connectors.Value, 0, benchjsonl.Batch)
		res = benchjsonl.Run(b, n, BenchEvent,
			func(mem bool) connectors.Sink {
				if mem {
					return st.New(b, pipeline+"mem", memCfg)
				}
				return st.New(b, pipeline, cfg)
			},
			func(from, to int) error {
				for i := from; i < to; {
					rows = rows[:0]
					for ; i < to && len(rows) < benchjsonl.Batch; i++ {
						rows = append(rows, BenchRow(i+1))
					}
					if err := w.Write(rows); err != nil {
						return err
					}
				}
				return nil
			})
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		for _, table := range []string{sinkTable, memTable, plainTable} {
			if got := count(b, st, table); got != n {
				b.Fatalf("%s holds %d rows, want %d", table, got, n)
			}
		}
	}
	res.Report(b, n)
}
