package nats_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/sinks/nats"
)

// benchEvents is how many events each side of BenchmarkSinkVsPlainPublish
// publishes: TAPLINE_BENCH_EVENTS, default 100,000 (run with
// TAPLINE_BENCH_EVENTS=1000000 -benchtime=1x for the full figure).
func benchEvents(b *testing.B) int {
	if s := os.Getenv("TAPLINE_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("TAPLINE_BENCH_EVENTS=%q is not a count", s)
		}
		return n
	}
	return 100_000
}

var benchSchema = connectors.MustSchema(connectors.TableID{Schema: "bench", Name: "orders"}, 1, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Key: 1},
	{Name: "note", Type: connectors.TypeString, Nullable: true},
})

// benchEvent fills ev as the i-th event: about 300 bytes of event JSON with
// its schema block.
func benchEvent(ev *connectors.Event, i int, note string) {
	*ev = connectors.Event{
		Op: connectors.OpCreate, Schema: benchSchema,
		After:    []connectors.Value{int64(i), note},
		Source:   connectors.SourceInfo{Connector: "bench", Schema: "bench", Table: "orders", TsMs: 1763800000000},
		Position: connectors.TxPosition{Commit: uint64(i/10 + 1), Ordinal: uint32(i%10 + 1)}.Encode(),
		TsMs:     1763800000123,
	}
}

// BenchmarkSinkVsPlainPublish publishes the same events through the sink
// (encoding, headers, bounded async publish, waiting for every ack per
// batch of 1000) and through a plain nats.go async-publish loop sending the
// sink's bytes (payload and headers, the same max_pending), each into a
// fresh stream on the test NATS server, and reports both rates and their
// ratio. Run it with -benchtime=1x.
func BenchmarkSinkVsPlainPublish(b *testing.B) {
	n := benchEvents(b)
	tg := realTarget(b)
	note := strings.Repeat("x", 16)
	var sample connectors.Event
	benchEvent(&sample, 1, note)
	payload, _ := eventjson.Marshal(&sample)
	b.ReportAllocs()
	var sinkRate, plainRate float64
	for b.Loop() {
		// The sink.
		cfg := tg.config()
		s := tg.newSink(b, cfg)
		if err := s.Open(context.Background()); err != nil {
			b.Fatal(err)
		}
		evs := make([]connectors.Event, 1000)
		start := time.Now()
		for i := 0; i < n; i += len(evs) {
			batch := evs[:min(len(evs), n-i)]
			for j := range batch {
				benchEvent(&batch[j], i+j, note)
			}
			if err := s.WriteBatch(context.Background(), connectors.Batch{Events: batch, Last: batch[len(batch)-1].Position}); err != nil {
				b.Fatal(err)
			}
		}
		sinkRate = float64(n) / time.Since(start).Seconds()
		s.Close(context.Background())

		// The baseline, into a second stream.
		plainRate = plainPublish(b, tg.url, tg.stream+"_PLAIN", tg.prefix+"_plain", n, payload, cfg.MaxPending, tg.pipeline)
	}
	b.ReportMetric(sinkRate, "sink_events/s")
	b.ReportMetric(plainRate, "plain_events/s")
	b.ReportMetric(sinkRate/plainRate, "sink/plain")
	b.ReportMetric(float64(len(payload)), "event_bytes")
}

func plainPublish(b *testing.B, url, stream, prefix string, n int, payload []byte, maxPending int, pipeline string) float64 {
	nc, err := gonats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxPending))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
		b.Fatal(err)
	}
	defer js.DeleteStream(context.Background(), stream)
	subject := prefix + ".bench.orders"
	start := time.Now()
	for i := 0; i < n; i++ {
		pos := connectors.TxPosition{Commit: uint64(i/10 + 1), Ordinal: uint32(i%10 + 1)}.Encode()
		m := &gonats.Msg{Subject: subject, Data: payload, Header: gonats.Header{
			jetstream.MsgIDHeader: {pipeline + "/" + base64.RawURLEncoding.EncodeToString(pos)},
			nats.HeaderOp:         {"c"}, nats.HeaderTable: {"bench.orders"}, nats.HeaderSchemaVersion: {"1"},
			nats.HeaderKey: {fmt.Sprintf(`{"id":%d}`, i)},
		}}
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("plain publish: acks did not arrive within a minute")
	}
	rate := float64(n) / time.Since(start).Seconds()
	if st, err := js.Stream(ctx, stream); err != nil || st.CachedInfo().State.Msgs != uint64(n) {
		b.Fatalf("plain stream holds %v messages, want %d (%v)", st, n, err)
	}
	return rate
}
