// Package benchjsonl measures a sink the way users feed it from a file:
// events written as JSON lines, read by the jsonl source and carried by the
// engine (pipelines.Run) into the sink, next to a plain writer of the same
// rows. To tell the cost of decoding from that of the engine, a second
// pipeline carries the same events, built in memory, into a second sink.
// The three take turns in slices, so that all see the same conditions on a
// shared machine.
//
// The sink's time includes everything from the file to the store: reading
// and decoding the lines (on the engine's reader goroutine, overlapping the
// writes as in a real pipeline), batching, writing and committing. The
// plain writer's includes only its writes of rows it already holds.
package benchjsonl

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/offsets"
	"github.com/tapline/tapline/pipelines"
	"github.com/tapline/tapline/sources/jsonl"
)

// Slices is how many turns the sink and the plain writer take, unless
// TAPLINE_BENCH_SLICES says otherwise. Each turn starts a pipeline with a
// new sink, whose opening (a connection, prepared statements, a temporary
// table) is part of its time.
const Slices = 10

// Batch is the pipeline's max_events (the engine's default), and the
// plain writer's batch size.
const Batch = 1000

// Plain writes rows [from, to) the plain way, in batches of Batch.
type Plain func(from, to int) error

// Result is what Run measured.
type Result struct {
	SinkRate  float64 // rows per second, from the file through the engine into the sink
	MemRate   float64 // rows per second, from memory through the engine into the sink
	PlainRate float64 // rows per second, plain writes
	FileBytes int64   // the JSON lines' size
}

// Ratio is the sink's rate over the plain writer's.
func (r Result) Ratio() float64 { return r.SinkRate / r.PlainRate }

// Report reports r's rates, ratio and line size as benchmark metrics.
func (r Result) Report(b *testing.B, n int) {
	b.ReportMetric(r.SinkRate, "sink_rows/s")
	b.ReportMetric(r.PlainRate, "plain_rows/s")
	b.ReportMetric(r.Ratio(), "sink/plain")
	b.ReportMetric(r.MemRate, "mem_sink_rows/s")
	b.ReportMetric(r.MemRate/r.PlainRate, "mem_sink/plain")
	b.ReportMetric(float64(r.FileBytes)/float64(n), "line_bytes")
}

// Run writes events 0..n-1 (event(i); its position is replaced by its line
// number, as the jsonl source does) as JSON lines, then in each of Slices
// turns runs a pipeline from them into a sink made by newSink(false), a
// pipeline from the same events built in memory into a sink made by
// newSink(true), and has plain write the same slice of rows, the order
// rotating turn by turn. newSink makes a new sink each turn, which must
// resume from the position its predecessor committed; the two kinds must
// write to different places.
func Run(b *testing.B, n int, event func(i int) connectors.Event, newSink func(mem bool) connectors.Sink, plain Plain) Result {
	b.Helper()
	dir := b.TempDir()
	slice := max(Batch, (n/servicetest.Count(b, "TAPLINE_BENCH_SLICES", Slices)+Batch-1)/Batch*Batch)
	var files []string
	var size int64
	for from := 0; from < n; from += slice {
		path := filepath.Join(dir, fmt.Sprintf("slice%02d.jsonl", len(files)))
		sz, err := writeSlice(path, from, min(n, from+slice), event)
		if err != nil {
			b.Fatalf("write %s: %v", path, err)
		}
		files = append(files, path)
		size += sz
	}
	var sinkTime, memTime, plainTime time.Duration
	for k, path := range files {
		from, to := k*slice, min(n, (k+1)*slice)
		pipeline := func(src connectors.Source, sink connectors.Sink, took *time.Duration) {
			start := time.Now()
			err := pipelines.Run(context.Background(), pipelines.Job{
				Name: "bench", Source: src, Sink: sink, Offsets: offsets.NewMemory(),
				Limits: pipelines.DefaultLimits, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			*took += time.Since(start)
			if err != nil {
				b.Fatalf("pipeline over rows [%d, %d): %v", from, to, err)
			}
		}
		ways := []func(){
			func() {
				src, err := jsonl.New(jsonl.Config{Path: path, MaxLineBytes: 16 << 20}, connectors.Runtime{})
				if err != nil {
					b.Fatal(err)
				}
				pipeline(src, newSink(false), &sinkTime)
			},
			func() { pipeline(&memSource{next: from, end: to, event: event}, newSink(true), &memTime) },
			func() {
				start := time.Now()
				if err := plain(from, to); err != nil {
					b.Fatalf("plain writes of rows [%d, %d): %v", from, to, err)
				}
				plainTime += time.Since(start)
			},
		}
		for w := range ways {
			ways[(w+k)%len(ways)]()
		}
	}
	return Result{SinkRate: float64(n) / sinkTime.Seconds(), MemRate: float64(n) / memTime.Seconds(),
		PlainRate: float64(n) / plainTime.Seconds(), FileBytes: size}
}

// memSource returns events next..end-1, built by event as they are read,
// at the positions the jsonl source gives them (line numbers). It starts
// after the position it is opened at.
type memSource struct {
	next, end int
	event     func(i int) connectors.Event
}

func (s *memSource) Open(_ context.Context, pos connectors.Position) error {
	if pos != nil {
		tp, err := connectors.DecodeTxPosition(pos)
		if err != nil {
			return err
		}
		s.next = max(s.next, int(tp.Commit)) // line tp.Commit is event tp.Commit-1
	}
	return nil
}

func (s *memSource) ReadBatch(_ context.Context, lim connectors.Limits) (connectors.Batch, error) {
	if s.next >= s.end {
		return connectors.Batch{}, io.EOF
	}
	evs := make([]connectors.Event, min(lim.MaxEvents, s.end-s.next))
	for i := range evs {
		evs[i] = s.event(s.next + i)
		evs[i].Position = connectors.TxPosition{Commit: uint64(s.next + i + 1), Ordinal: 1}.Encode()
	}
	s.next += len(evs)
	return connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}, nil
}

func (s *memSource) Ack(context.Context, connectors.Position) error { return nil }
func (s *memSource) Close(context.Context) error                    { return nil }

// writeSlice writes the file of events [from, to): a blank line for each
// event before it (the source skips blank lines but counts them, so line
// numbers, which are the positions, run on from slice to slice), then the
// events' lines. It returns the size of the events' lines.
func writeSlice(path string, from, to int, event func(i int) connectors.Event) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for range from {
		w.WriteByte('\n')
	}
	var size int64
	var buf []byte
	for i := from; i < to; i++ {
		ev := event(i)
		ev.Position = connectors.TxPosition{Commit: uint64(i + 1), Ordinal: 1}.Encode()
		if buf, err = eventjson.AppendEvent(buf[:0], &ev, eventjson.Options{}); err != nil {
			f.Close()
			return 0, fmt.Errorf("event %d: %w", i, err)
		}
		buf = append(buf, '\n')
		size += int64(len(buf))
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	return size, f.Close()
}
