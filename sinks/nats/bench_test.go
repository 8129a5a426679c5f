package nats_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/offsets"
	"github.com/tapline/tapline/pipelines"
	"github.com/tapline/tapline/sinks/nats"
)

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

// BenchmarkSinkVsPlainPublish publishes the same events through tapline
// (the engine's pipelines.Run, batches of 1000, with the sink encoding,
// setting headers, publishing asynchronously and committing each batch once
// JetStream acknowledged it) and through a plain nats.go async-publish loop
// sending the sink's bytes (payload and headers, the same max_pending),
// each into its own stream on the test NATS server, and reports both rates
// and their ratio. The two alternate in ten slices, so both see the same
// conditions on a shared machine. A third series runs the sink with its
// pipelining hidden from the engine (each batch's acks awaited before the
// next is published), to show what pipelining brings. Each side publishes
// TAPLINE_BENCH_EVENTS events (default 100,000; 1000000 for the full
// figure). Run it with -benchtime=1x.
func BenchmarkSinkVsPlainPublish(b *testing.B) {
	n := servicetest.Count(b, "TAPLINE_BENCH_EVENTS", 100_000)
	tg := realTarget(b)
	note := strings.Repeat("x", 16)
	var sample connectors.Event
	benchEvent(&sample, 1, note)
	payload, _ := eventjson.Marshal(&sample)
	b.ReportAllocs()
	var sinkRate, syncRate, plainRate float64
	for b.Loop() {
		cfg := tg.config()
		plain := newPlainPublisher(b, tg.url, tg.stream+"_PLAIN", tg.prefix+"_plain", payload, cfg.MaxPending, tg.pipeline)
		var sinkTime, syncTime, plainTime time.Duration
		run := func(sink connectors.Sink, from, to int) time.Duration {
			start := time.Now()
			err := pipelines.Run(context.Background(), pipelines.Job{
				Name: tg.pipeline, Source: &benchSource{next: from, end: to, note: note},
				Sink: sink, Offsets: offsets.NewMemory(),
				Limits: connectors.Limits{MaxEvents: 1000, MaxBytes: 4 << 20, MaxWait: time.Second},
			})
			if err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		}
		syncCfg := cfg
		syncCfg.Stream, syncCfg.SubjectPrefix = tg.stream+"_SYNC", tg.prefix+"_sync"
		slice := max(1000, n/10)
		for from := 0; from < n; from += slice {
			to := min(n, from+slice)
			sinkTime += run(tg.newSink(b, cfg), from, to)
			// The same sink with pipelining hidden from the engine: it
			// waits for every batch's acks before starting the next.
			syncTime += run(syncOnly{tg.newSink(b, syncCfg)}, from, to)
			plainTime += plain.publish(b, from, to)
		}
		plain.close(b, n)
		tg.js.DeleteStream(context.Background(), syncCfg.Stream)
		sinkRate = float64(n) / sinkTime.Seconds()
		plainRate = float64(n) / plainTime.Seconds()
		syncRate = float64(n) / syncTime.Seconds()
		if info, err := tg.js.Stream(context.Background(), tg.stream); err != nil || info.CachedInfo().State.Msgs != uint64(n) {
			b.Fatalf("sink stream holds %v messages, want %d (%v)", info, n, err)
		}
	}
	b.ReportMetric(sinkRate, "sink_events/s")
	b.ReportMetric(plainRate, "plain_events/s")
	b.ReportMetric(sinkRate/plainRate, "sink/plain")
	b.ReportMetric(syncRate, "sync_sink_events/s")
	b.ReportMetric(syncRate/plainRate, "sync_sink/plain")
	b.ReportMetric(float64(len(payload)), "event_bytes")
}

// syncOnly hides StartBatch, so the engine writes batch by batch.
type syncOnly struct{ connectors.Sink }

// benchSource returns events next..end-1 (benchEvent) in batches.
type benchSource struct {
	next, end int
	note      string
}

func (s *benchSource) Open(context.Context, connectors.Position) error { return nil }
func (s *benchSource) Ack(context.Context, connectors.Position) error  { return nil }
func (s *benchSource) Close(context.Context) error                     { return nil }

func (s *benchSource) ReadBatch(_ context.Context, lim connectors.Limits) (connectors.Batch, error) {
	if s.next >= s.end {
		return connectors.Batch{}, io.EOF
	}
	evs := make([]connectors.Event, min(lim.MaxEvents, s.end-s.next))
	for i := range evs {
		benchEvent(&evs[i], s.next+i, s.note)
	}
	s.next += len(evs)
	return connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}, nil
}

// plainPublisher is the baseline: a plain nats.go async-publish loop.
type plainPublisher struct {
	nc              *gonats.Conn
	js              jetstream.JetStream
	stream, subject string
	payload         []byte
	pipeline        string
}

func newPlainPublisher(b *testing.B, url, stream, prefix string, payload []byte, maxPending int, pipeline string) *plainPublisher {
	nc, err := gonats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxPending))
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
		b.Fatal(err)
	}
	return &plainPublisher{nc: nc, js: js, stream: stream, subject: prefix + ".bench.orders", payload: payload, pipeline: pipeline}
}

// publish sends messages from..to-1 and waits for their acks.
func (p *plainPublisher) publish(b *testing.B, from, to int) time.Duration {
	start := time.Now()
	for i := from; i < to; i++ {
		pos := connectors.TxPosition{Commit: uint64(i/10 + 1), Ordinal: uint32(i%10 + 1)}.Encode()
		m := &gonats.Msg{Subject: p.subject, Data: p.payload, Header: gonats.Header{
			jetstream.MsgIDHeader: {p.pipeline + "/" + base64.RawURLEncoding.EncodeToString(pos)},
			nats.HeaderOp:         {"c"}, nats.HeaderTable: {"bench.orders"}, nats.HeaderSchemaVersion: {"1"},
			nats.HeaderKey: {fmt.Sprintf(`{"id":%d}`, i)},
		}}
		if _, err := p.js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-p.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("plain publish: acks did not arrive within a minute")
	}
	return time.Since(start)
}

// close checks the plain stream holds n messages and deletes it.
func (p *plainPublisher) close(b *testing.B, n int) {
	ctx := context.Background()
	defer p.nc.Close()
	defer p.js.DeleteStream(ctx, p.stream)
	if st, err := p.js.Stream(ctx, p.stream); err != nil || st.CachedInfo().State.Msgs != uint64(n) {
		b.Fatalf("plain stream holds %v messages, want %d (%v)", st, n, err)
	}
}
