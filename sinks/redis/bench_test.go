package redis

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/benchjsonl"
	"github.com/tapline/tapline/internal/servicetest"
)

// BenchmarkUpsert writes TAPLINE_BENCH_ROWS (default 1,000,000) upserts of
// a 5-column row, in batches of 1,000, three ways, with the sink's own
// go-redis client, interleaved batch by batch (batch i of each way, in
// turns, the order rotating) so that the load of a shared machine falls
// on all three alike:
//
//   - pipe: plain HSET per key, 1,000 per pipeline;
//   - multi: the same HSETs in one MULTI/EXEC per batch;
//   - sink: WriteBatch of the same rows as create events.
//
// Each way turns the same row values into strings and keys inside its
// timing; the events themselves are built outside the sink's. It reports
// each rate, the sink's rate over the faster of pipe and multi (the goal
// is 0.8), and how long the truncate of all the sink's rows takes (a SCAN
// of the whole database, which holds the rows of all three ways).
// Run it once:
//
//	go test -run '^$' -bench Upsert -benchtime 1x ./sinks/redis/
func BenchmarkUpsert(b *testing.B) {
	rows := servicetest.Count(b, "TAPLINE_BENCH_ROWS", 1_000_000)
	const batchSize = 1000
	e := newEnv(b)
	ctx := context.Background()
	// TAPLINE_BENCH_INDEX=1 gives the sink an index on customer_id, which
	// the plain ways do not keep: it then reads (and WATCHes) every row
	// before writing it.
	var adjust func(*Config)
	if os.Getenv("TAPLINE_BENCH_INDEX") == "1" {
		adjust = func(c *Config) { c.Indexes = []Index{{Table: "orders", Column: "customer_id"}} }
	}
	s := e.open(b, adjust)

	// The same rows for all: id, customer_id, status, note, amount.
	vals := make([][]connectors.Value, rows)
	for i := range vals {
		vals[i] = []connectors.Value{int64(i), int64(i % 1000), "paid", "a note of some length", strconv.Itoa(i%10000) + ".50"}
	}
	fields := func(r []connectors.Value) []any {
		return []any{"id", strconv.FormatInt(r[0].(int64), 10), "customer_id", strconv.FormatInt(r[1].(int64), 10),
			"status", r[2], "note", r[3], "amount", r[4]}
	}
	ways := []struct {
		name  string
		write func(from, to int) error
	}{
		{"pipe", func(from, to int) error {
			pipe := s.rdb.Pipeline()
			for i := from; i < to; i++ {
				pipe.HSet(ctx, e.prefix+"orders_p:"+strconv.Itoa(i), fields(vals[i])...)
			}
			_, err := pipe.Exec(ctx)
			return err
		}},
		{"multi", func(from, to int) error {
			pipe := s.rdb.TxPipeline()
			for i := from; i < to; i++ {
				pipe.HSet(ctx, e.prefix+"orders_m:"+strconv.Itoa(i), fields(vals[i])...)
			}
			_, err := pipe.Exec(ctx)
			return err
		}},
		{"sink", nil}, // below: it needs its events built first
	}
	evs := make([]connectors.Event, batchSize)
	var took [3]time.Duration
	var truncTime time.Duration
	b.ReportAllocs()
	for b.Loop() {
		for n, from := 0, 0; from < rows; n, from = n+1, from+batchSize {
			to := min(from+batchSize, rows)
			b.StopTimer()
			for j := from; j < to; j++ {
				evs[j-from] = change(connectors.OpCreate, ordersSchema, uint64(j+1), nil, vals[j])
			}
			bt := connectors.Batch{Events: evs[:to-from], Last: evs[to-from-1].Position}
			b.StartTimer()
			for k := range ways {
				w := (k + n) % len(ways)
				start := time.Now()
				var err error
				if ways[w].name == "sink" {
					err = s.WriteBatch(ctx, bt)
				} else {
					err = ways[w].write(from, to)
				}
				took[w] += time.Since(start)
				if err != nil {
					b.Fatalf("%s: %v", ways[w].name, err)
				}
			}
		}
		b.StopTimer()
		for _, k := range []string{"orders:", "orders_p:", "orders_m:"} {
			if got, _ := s.rdb.HGet(ctx, e.prefix+k+strconv.Itoa(rows-1), "amount").Result(); got != vals[rows-1][4] {
				b.Fatalf("the last row of %s reads %q", k, got)
			}
		}
		// How long a truncate of all those rows holds Redis.
		start := time.Now()
		if err := s.WriteBatch(ctx, batch(truncate(ordersSchema, uint64(rows+1)))); err != nil {
			b.Fatal(err)
		}
		truncTime += time.Since(start)
		if left := e.mustScan(b, "orders:*"); len(left) != 0 {
			b.Fatalf("%d rows left after the truncate", len(left))
		}
		e.deleteAll(ctx)
		s.Close(ctx)
		s = e.open(b, adjust)
		b.StartTimer()
	}
	rate := func(d time.Duration) float64 { return float64(b.N*rows) / d.Seconds() }
	for w := range ways {
		b.ReportMetric(rate(took[w]), ways[w].name+"-rows/s")
	}
	plain := max(rate(took[0]), rate(took[1]))
	b.ReportMetric(rate(took[2])/plain, "sink/plain")
	b.ReportMetric(truncTime.Seconds()/float64(b.N), "truncate-s")
}

// BenchmarkJSONL writes TAPLINE_BENCH_ROWS (default 1,000,000) upserts of
// BenchmarkUpsert's rows through a whole pipeline, from a file of JSON
// lines read by the jsonl source, into the sink, next to the same events
// from memory through the engine into another sink and plain pipelined
// HSETs of the same rows (1,000 per pipeline), taking turns in slices
// (see internal/benchjsonl). Run it once:
//
//	go test -run '^$' -bench JSONL -benchtime 1x ./sinks/redis/
func BenchmarkJSONL(b *testing.B) {
	rows := servicetest.Count(b, "TAPLINE_BENCH_ROWS", 1_000_000)
	e := newEnv(b)
	ctx := context.Background()
	row := func(i int) []connectors.Value {
		return []connectors.Value{int64(i), int64(i % 1000), "paid", "a note of some length", strconv.Itoa(i%10000) + ".50"}
	}
	var res benchjsonl.Result
	for b.Loop() {
		res = benchjsonl.Run(b, rows,
			func(i int) connectors.Event {
				return change(connectors.OpCreate, ordersSchema, uint64(i+1), nil, row(i))
			},
			func(mem bool) connectors.Sink {
				if mem {
					return e.sink(b, func(c *Config) { c.KeyPrefix, c.OffsetsPrefix = e.prefix+"mem:", e.prefix+"memoffsets:" })
				}
				return e.sink(b, nil)
			},
			func(from, to int) error {
				for i := from; i < to; {
					pipe := e.rc.Pipeline()
					for end := min(to, i+benchjsonl.Batch); i < end; i++ {
						r := row(i)
						pipe.HSet(ctx, e.prefix+"orders_p:"+strconv.Itoa(i), "id", strconv.FormatInt(r[0].(int64), 10),
							"customer_id", strconv.FormatInt(r[1].(int64), 10), "status", r[2], "note", r[3], "amount", r[4])
					}
					if _, err := pipe.Exec(ctx); err != nil {
						return err
					}
				}
				return nil
			})
		for _, k := range []string{"orders:", "mem:orders:", "orders_p:"} {
			if got, _ := e.rc.HGet(ctx, e.prefix+k+strconv.Itoa(rows-1), "amount").Result(); got != row(rows - 1)[4] {
				b.Fatalf("the last row of %s reads %q", k, got)
			}
		}
		e.deleteAll(ctx)
	}
	res.Report(b, rows)
}
