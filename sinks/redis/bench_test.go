package redis

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

// BenchmarkUpsert writes TAPLINE_BENCH_ROWS (default 1,000,000) upserts of
// a 5-column row through the sink, in batches of 1,000, and the same rows
// with a plain go-redis pipelined HSET loop (1,000 per pipeline), in the
// same run; it reports both rates and their ratio, and how long the
// truncate of all the rows takes. Run it once:
//
//	go test -run '^$' -bench Upsert -benchtime 1x ./sinks/redis/
func BenchmarkUpsert(b *testing.B) {
	rows := envInt("TAPLINE_BENCH_ROWS", 1_000_000)
	const batchSize = 1000
	e := newEnv(b)
	ctx := context.Background()
	s := e.open(b, nil)

	// The same rows for both: id, customer_id, status, note, amount.
	row := func(i int) []connectors.Value {
		return []connectors.Value{int64(i), int64(i % 1000), "paid", "a note of some length", strconv.Itoa(i%10000) + ".50"}
	}
	evs := make([]connectors.Event, batchSize)
	var sinkTime, hsetTime, truncTime time.Duration
	b.ReportAllocs()
	for b.Loop() {
		// Baseline: HSET key field value ..., pipelined.
		start := time.Now()
		for from := 0; from < rows; from += batchSize {
			pipe := e.rc.Pipeline()
			for i := from; i < min(from+batchSize, rows); i++ {
				r := row(i)
				pipe.HSet(ctx, fmt.Sprintf("%sbase:%d", e.prefix, i),
					"id", strconv.FormatInt(r[0].(int64), 10), "customer_id", strconv.FormatInt(r[1].(int64), 10),
					"status", r[2], "note", r[3], "amount", r[4])
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
		hsetTime += time.Since(start)
		b.StopTimer()
		e.deleteAll(ctx)
		b.StartTimer()

		// The sink: the same rows as create events.
		start = time.Now()
		for from := 0; from < rows; from += batchSize {
			n := min(batchSize, rows-from)
			for j := 0; j < n; j++ {
				i := from + j
				evs[j] = change(connectors.OpCreate, ordersSchema, uint64(i+1), nil, row(i))
			}
			if err := s.WriteBatch(ctx, connectors.Batch{Events: evs[:n], Last: evs[n-1].Position}); err != nil {
				b.Fatal(err)
			}
		}
		sinkTime += time.Since(start)
		b.StopTimer()
		if got, _ := e.rc.HGet(ctx, fmt.Sprintf("%sorders:%d", e.prefix, rows-1), "amount").Result(); got != row(rows - 1)[4] {
			b.Fatalf("the last row reads %q", got)
		}
		// How long a truncate of all those rows holds Redis.
		start = time.Now()
		if err := s.WriteBatch(ctx, batch(truncate(ordersSchema, uint64(rows+1)))); err != nil {
			b.Fatal(err)
		}
		truncTime += time.Since(start)
		if left := e.mustScan(b, "orders:*"); len(left) != 0 {
			b.Fatalf("%d rows left after the truncate", len(left))
		}
		e.deleteAll(ctx)
		s.Close(ctx)
		s = e.open(b, nil)
		b.StartTimer()
	}
	n := float64(b.N * rows)
	b.ReportMetric(n/sinkTime.Seconds(), "sink-rows/s")
	b.ReportMetric(n/hsetTime.Seconds(), "hset-rows/s")
	b.ReportMetric(sinkTime.Seconds()/hsetTime.Seconds(), "sink/hset")
	b.ReportMetric(truncTime.Seconds()/float64(b.N), "truncate-s")
}
