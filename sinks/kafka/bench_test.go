package kafka_test

import (
	"context"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/sinks/kafka"
)

var benchSchema = connectors.MustSchema(connectors.TableID{Schema: "s", Name: "orders"}, 1, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Key: 1},
	{Name: "st", Type: connectors.TypeString},
})

// benchEvents returns n creates whose event JSON is about 300 bytes.
func benchEvents(n int) []connectors.Event {
	evs := make([]connectors.Event, n)
	src := connectors.SourceInfo{Connector: "pg", DB: "shop", Schema: "s", Table: "orders", TsMs: 1763800000000}
	for i := range evs {
		evs[i] = connectors.Event{Op: connectors.OpCreate, Schema: benchSchema, Source: src, TsMs: 1763800000123,
			After:    []connectors.Value{int64(i), "paid"},
			Position: connectors.TxPosition{Commit: uint64(i/1000 + 1), Ordinal: uint32(i%1000 + 1)}.Encode()}
	}
	return evs
}

// BenchmarkSink writes TAPLINE_BENCH_EVENTS (default 1,000,000) events of
// about 300 bytes through the sink into kfake in batches of 1000, the
// engine's default, and in the same run produces the same records (same
// topic layout, same bytes, same client options) with a plain franz-go
// loop: Produce every record, then one Flush. It reports both rates and
// their ratio (sink/franz-go). A second franz-go loop that flushes after
// every 1000 records, as the sink must to return only acknowledged
// batches, tells the cost of that wait apart from the sink's own
// (sink/franz-go-batched). The plain loop runs twice, and the ratio of
// the two (franz-go_A/A) shows the run-to-run noise the other ratios
// carry. Run it with -benchtime=1x; -count=5 for medians with benchstat.
func BenchmarkSink(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("TAPLINE_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("TAPLINE_BENCH_EVENTS=%q: want a positive count", v)
		}
	}
	evs := benchEvents(n)
	probe, _ := eventjson.Marshal(&evs[n/2])
	b.Logf("%d events, event JSON of %d bytes", n, len(probe))
	// Warm up (heap, connections, code paths) so that the first measured
	// run pays nothing the others do not.
	benchRawRun(b, evs[:min(n, 100_000)], 0)
	benchSinkRun(b, evs[:min(n, 100_000)])
	var sinkRates, rawRates, rawAgain, batchedRates []float64
	for b.Loop() {
		runtime.GC()
		rawRates = append(rawRates, benchRawRun(b, evs, 0))
		runtime.GC()
		sinkRates = append(sinkRates, benchSinkRun(b, evs))
		runtime.GC()
		batchedRates = append(batchedRates, benchRawRun(b, evs, 1000))
		runtime.GC()
		rawAgain = append(rawAgain, benchRawRun(b, evs, 0))
	}
	sr, rr, br, ra := median(sinkRates), median(rawRates), median(batchedRates), median(rawAgain)
	b.ReportMetric(sr, "sink_events/s")
	b.ReportMetric(rr, "franz-go_events/s")
	b.ReportMetric(br, "franz-go-batched_events/s")
	b.ReportMetric(sr/rr, "sink/franz-go")
	b.ReportMetric(sr/br, "sink/franz-go-batched")
	b.ReportMetric(ra/rr, "franz-go_A/A")
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

const benchPartitions = 6

func benchConfig(b *testing.B, c *kfake.Cluster) kafka.Config {
	cfg := kafka.DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.TopicPrefix = "bench"
	cfg.Partitions = benchPartitions
	return cfg
}

func benchSinkRun(b *testing.B, evs []connectors.Event) float64 {
	c := newCluster(b)
	defer c.Close()
	s := newSink(b, benchConfig(b, c), "bench")
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	start := time.Now()
	for i := 0; i < len(evs); i += 1000 {
		part := evs[i:min(i+1000, len(evs))]
		if err := s.WriteBatch(ctx, connectors.Batch{Events: part, Last: part[len(part)-1].Position}); err != nil {
			b.Fatal(err)
		}
	}
	return float64(len(evs)) / time.Since(start).Seconds()
}

// benchRawRun produces the sink's records with franz-go alone, flushing
// after every flushEvery records (0: once at the end).
func benchRawRun(b *testing.B, evs []connectors.Event, flushEvery int) float64 {
	c := newCluster(b)
	defer c.Close()
	cfg := benchConfig(b, c)
	// The sink's own options, so that the producers differ only in what
	// the sink does around them.
	s := newSink(b, cfg, "bench")
	opts := kafka.ProducerOptions(s)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	topic := "bench.s.orders"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, benchPartitions, -1, map[string]*string{"cleanup.policy": new("delete")}, topic); err != nil {
		b.Fatal(err)
	}
	// The same bytes the sink writes: key, value and headers.
	recs := make([]kgo.Record, len(evs))
	var enc eventjson.Encoder
	for i := range evs {
		key, _ := eventjson.MarshalKey(&evs[i])
		val, err := enc.AppendEvent(nil, &evs[i])
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = kgo.Record{Topic: topic, Key: key, Value: val, Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderOp, Value: []byte("c")}, {Key: kafka.HeaderTable, Value: []byte("s.orders")},
			{Key: kafka.HeaderSchemaVersion, Value: []byte("1")}, {Key: kafka.HeaderPosition, Value: []byte(evs[i].Position.String())},
		}}
	}
	var (
		mu    sync.Mutex
		first error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			first = err
			mu.Unlock()
		}
	}
	start := time.Now()
	for i := range recs {
		cl.Produce(ctx, &recs[i], promise)
		if flushEvery > 0 && (i+1)%flushEvery == 0 {
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	if first != nil {
		b.Fatal(first)
	}
	return float64(len(evs)) / elapsed.Seconds()
}
