package pipelines

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
)

func testJob(name string, src connectors.Source, sink connectors.Sink, store offsets.Store) Job {
	return Job{
		Name:    name,
		Source:  src,
		Sink:    sink,
		Offsets: store,
		Limits:  connectors.Limits{MaxEvents: 100, MaxBytes: 1 << 20, MaxWait: time.Second},
		Retry:   Retry{Initial: time.Millisecond, Max: 5 * time.Millisecond},
	}
}

func committed(t *testing.T, store offsets.Store, name string) connectors.Position {
	t.Helper()
	p, err := store.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("offsets get: %v", err)
	}
	return p
}

func TestRunDeliversEverythingInOrderAndAcksLast(t *testing.T) {
	defer goleak.VerifyNone(t)
	store := offsets.NewMemory()
	sink := &recSink{}
	src := &seqSource{Count: 10_000, PerTx: 7}
	src.AckCheck = func(p connectors.Position) error {
		// Nothing is acknowledged before it is durable in the sink and
		// committed in the offset store.
		if p.Compare(sink.durablePos()) > 0 {
			return fmt.Errorf("acked %s but the sink has only made %s durable", p, sink.durablePos())
		}
		if c, _ := store.Get(context.Background(), "p"); p.Compare(c) > 0 {
			return fmt.Errorf("acked %s but only %s is committed", p, c)
		}
		return nil
	}
	if err := Run(context.Background(), testJob("p", src, sink, store)); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactly(t, sink.written(), 10_000)
	_, acked, ackErr := src.stats()
	if ackErr != nil {
		t.Fatal(ackErr)
	}
	last := seqEvent(10_000, 7, "").Position
	if acked.Compare(last) != 0 {
		t.Errorf("last ack %s, want %s", acked, last)
	}
	if c := committed(t, store, "p"); c.Compare(last) != 0 {
		t.Errorf("committed %s, want %s", c, last)
	}
	if src.closed != 1 || sink.closed != 1 || sink.opened != 1 {
		t.Errorf("source closed %d times, sink opened %d and closed %d times; want 1 each", src.closed, sink.opened, sink.closed)
	}
}

func TestRunResumesAfterCommittedPosition(t *testing.T) {
	store := offsets.NewMemory()
	first := &recSink{}
	if err := Run(context.Background(), testJob("p", &seqSource{Count: 550, PerTx: 3}, first, store)); err != nil {
		t.Fatal(err)
	}
	second := &recSink{}
	if err := Run(context.Background(), testJob("p", &seqSource{Count: 1000, PerTx: 3}, second, store)); err != nil {
		t.Fatal(err)
	}
	got := second.written()
	if len(got) != 450 || got[0] != 551 || got[len(got)-1] != 1000 {
		t.Fatalf("second run wrote %d events from %v to %v; want 551..1000", len(got), first3(got), last3(got))
	}
}

func first3(ids []int64) []int64 { return ids[:min(3, len(ids))] }
func last3(ids []int64) []int64  { return ids[max(0, len(ids)-3):] }

func TestTransientSinkErrorsAreRetried(t *testing.T) {
	store := offsets.NewMemory()
	m := NewMetrics(nil)
	sink := &recSink{Fail: func(call int, b connectors.Batch) error {
		if call%3 != 0 { // two failures before every success
			return connectors.Retryable(errors.New("connection reset"))
		}
		return nil
	}}
	job := testJob("p", &seqSource{Count: 1000}, sink, store)
	job.Metrics = m
	if err := Run(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	checkExactly(t, sink.written(), 1000)
	if got := counterValue(t, m.errors.WithLabelValues("p", "retry")); got != 20 {
		t.Errorf("retry errors metric = %v, want 20 (2 per batch of 10 batches)", got)
	}
}

func TestRetryGivesUpAfterMaxAttempts(t *testing.T) {
	sink := &recSink{Fail: func(int, connectors.Batch) error { return connectors.Retryable(errors.New("broker down")) }}
	job := testJob("p", &seqSource{Count: 10}, sink, offsets.NewMemory())
	job.Retry.MaxAttempts = 4
	err := Run(context.Background(), job)
	if err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Fatalf("Run = %v, want the sink's error", err)
	}
	if sink.calls != 4 {
		t.Errorf("sink called %d times, want 4", sink.calls)
	}
}

func TestFatalSinkErrorStopsWithoutCommitting(t *testing.T) {
	store := offsets.NewMemory()
	sink := &recSink{Fail: func(call int, b connectors.Batch) error {
		if call == 3 {
			return errors.New("permission denied for table seq")
		}
		return nil
	}}
	src := &seqSource{Count: 1000}
	err := Run(context.Background(), testJob("p", src, sink, store))
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Run = %v, want the sink's error", err)
	}
	// Two batches of 100 were durable; the third was not.
	want := seqEvent(200, 1, "").Position
	if c := committed(t, store, "p"); c.Compare(want) != 0 {
		t.Errorf("committed %s, want %s (end of the last durable batch)", c, want)
	}
	if _, acked, _ := src.stats(); acked.Compare(want) != 0 {
		t.Errorf("acked %s, want %s", acked, want)
	}
}

// rejectTens rejects every event whose id is a multiple of ten, writing
// nothing of the batch, as the contract asks.
func rejectTens(call int, b connectors.Batch) error {
	var rej connectors.RejectError
	for i, ev := range b.Events {
		if ev.After[0].(int64)%10 == 0 {
			rej.Events = append(rej.Events, connectors.EventError{Index: i, Err: fmt.Errorf("value too long for column body")})
		}
	}
	if len(rej.Events) > 0 {
		return &rej
	}
	return nil
}

func TestRejectPolicies(t *testing.T) {
	t.Run("fail", func(t *testing.T) {
		sink := &recSink{Fail: rejectTens}
		err := Run(context.Background(), testJob("p", &seqSource{Count: 100}, sink, offsets.NewMemory()))
		if err == nil || !strings.Contains(err.Error(), "on_error: fail") || !strings.Contains(err.Error(), "value too long") {
			t.Fatalf("Run = %v, want a rejection error naming the policy", err)
		}
		if n := len(sink.written()); n != 0 {
			t.Errorf("sink wrote %d events, want 0", n)
		}
	})
	t.Run("skip", func(t *testing.T) {
		m := NewMetrics(nil)
		sink := &recSink{Fail: rejectTens}
		job := testJob("p", &seqSource{Count: 1000}, sink, offsets.NewMemory())
		job.OnError, job.Metrics = PolicySkip, m
		if err := Run(context.Background(), job); err != nil {
			t.Fatal(err)
		}
		got := sink.written()
		if len(got) != 900 {
			t.Errorf("wrote %d events, want 900", len(got))
		}
		for _, id := range got {
			if id%10 == 0 {
				t.Fatalf("rejected event %d was written", id)
			}
		}
		if v := counterValue(t, m.rejected.WithLabelValues("p")); v != 100 {
			t.Errorf("rejected metric = %v, want 100", v)
		}
	})
	t.Run("dlq", func(t *testing.T) {
		sink, dlq := &recSink{Fail: rejectTens}, &dlqSink{}
		job := testJob("p", &seqSource{Count: 1000}, sink, offsets.NewMemory())
		job.OnError, job.DLQ = PolicyDLQ, dlq
		if err := Run(context.Background(), job); err != nil {
			t.Fatal(err)
		}
		if len(sink.written()) != 900 || len(dlq.events) != 100 {
			t.Fatalf("sink has %d, dead letters %d; want 900 and 100", len(sink.written()), len(dlq.events))
		}
		ev := dlq.events[0]
		if ev.After[0].(int64) != 10 {
			t.Errorf("first dead letter is id %v, want 10", ev.After[0])
		}
		var reason string
		for _, f := range ev.Source.Extra {
			if f.Name == "dlq_error" {
				reason, _ = f.Value.(string)
			}
		}
		if !strings.Contains(reason, "value too long") {
			t.Errorf("dead letter carries error %q, want the sink's reason", reason)
		}
		if dlq.opened != 1 || dlq.closed != 1 {
			t.Errorf("dlq opened %d, closed %d times; want 1 each", dlq.opened, dlq.closed)
		}
	})
}

type dlqSink struct {
	events         []connectors.Event
	opened, closed int
}

func (d *dlqSink) Open(context.Context) error { d.opened++; return nil }
func (d *dlqSink) WriteBatch(_ context.Context, b connectors.Batch) error {
	d.events = append(d.events, b.Events...)
	return nil
}
func (d *dlqSink) Close(context.Context) error { d.closed++; return nil }

func TestSourceErrorStopsPipelineAfterDrainingWhatWasRead(t *testing.T) {
	store := offsets.NewMemory()
	sink := &recSink{}
	src := &seqSource{Count: 1000, ReadErr: func(next uint64) error {
		if next == 351 {
			return errors.New("replication slot dropped")
		}
		return nil
	}}
	err := Run(context.Background(), testJob("p", src, sink, store))
	if err == nil || !strings.Contains(err.Error(), "replication slot dropped") {
		t.Fatalf("Run = %v, want the source's error", err)
	}
	// The batches read before the failure (1..300, and 301..350, which the
	// source returned with its error) are durable and committed.
	got := sink.written()
	if len(got) < 300 || len(got) > 350 {
		t.Fatalf("wrote %d events; want the 300 to 350 read before the error", len(got))
	}
	if c := committed(t, store, "p"); seqN(t, c, 1) != uint64(len(got)) {
		t.Errorf("committed event %d, but %d are durable", seqN(t, c, 1), len(got))
	}
}

// A sink that blocks makes the source stop reading: memory is bounded by
// the queue, whatever the source could produce.
func TestBlockedSinkStopsTheSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const body = 64 << 10 // 64 KiB per event
		src := &seqSource{Body: strings.Repeat("x", body)}
		sink := &recSink{Block: make(chan struct{})}
		job := testJob("p", src, sink, offsets.NewMemory())
		job.Limits = connectors.Limits{MaxEvents: 10, MaxBytes: 1 << 30, MaxWait: time.Second}
		job.Queue = 2
		job.ShutdownTimeout = time.Minute
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)

		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		go func() { done <- Run(ctx, job) }()
		synctest.Wait() // everyone is blocked: the sink on Block, the reader on the full queue

		reads, _, _ := src.stats()
		// One batch in the sink, Queue in the channel, one in the reader's hand.
		if reads > job.Queue+2 {
			t.Errorf("source read %d batches while the sink was blocked; want at most %d", reads, job.Queue+2)
		}
		src.mu.Lock()
		inflight := src.inflight
		src.mu.Unlock()
		if max := (job.Queue + 2) * job.Limits.MaxEvents; inflight > max {
			t.Errorf("%d events in memory, want at most %d", inflight, max)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		grown := int64(after.HeapInuse) - int64(before.HeapInuse)
		bound := int64((job.Queue+2)*job.Limits.MaxEvents*body) + 8<<20
		t.Logf("blocked sink: %d batches read, %d events in flight, heap grew %d KiB (bound %d KiB)", reads, inflight, grown>>10, bound>>10)
		if grown > bound {
			t.Errorf("heap grew by %d bytes while the sink was blocked; want under %d", grown, bound)
		}

		// Shutdown with the sink still blocked: after ShutdownTimeout the
		// in-flight batch is abandoned, nothing is committed, Run returns nil.
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil after a shutdown timeout", err)
		}
		if c := committed(t, job.Offsets, "p"); c != nil {
			t.Errorf("committed %s although nothing was durable", c)
		}
		if _, acked, _ := src.stats(); acked != nil {
			t.Errorf("acked %s although nothing was durable", acked)
		}
	})
}

// On shutdown the writer drains the queue, commits and acknowledges, so the
// committed position, the ack and the sink agree.
func TestShutdownDrainsCommitsAndAcks(t *testing.T) {
	defer goleak.VerifyNone(t)
	store := offsets.NewMemory()
	sink := &recSink{writing: make(chan struct{})}
	src := &seqSource{PerTx: 4} // endless
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, testJob("p", src, sink, store)) }()
	<-sink.writing
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil on shutdown", err)
	}
	got := sink.written()
	if len(got) == 0 {
		t.Fatal("nothing written")
	}
	checkExactly(t, got, len(got))
	c := committed(t, store, "p")
	_, acked, ackErr := src.stats()
	if ackErr != nil {
		t.Fatal(ackErr)
	}
	if n := seqN(t, c, 4); n != uint64(len(got)) {
		t.Errorf("committed event %d, but the sink holds %d", n, len(got))
	}
	if acked.Compare(c) != 0 {
		t.Errorf("acked %s, committed %s; want equal", acked, c)
	}
}

// With an AtomicSink the engine resumes from the sink's own position, not
// the offset store's.
func TestAtomicSinkPositionWins(t *testing.T) {
	store := offsets.NewMemory()
	// The offset store is behind (a crash after the sink committed).
	if err := store.Commit(context.Background(), "p", seqEvent(100, 1, "").Position); err != nil {
		t.Fatal(err)
	}
	sink := &memAtomicSink{pos: seqEvent(250, 1, "").Position}
	if err := Run(context.Background(), testJob("p", &seqSource{Count: 400}, sink, store)); err != nil {
		t.Fatal(err)
	}
	if len(sink.ids) != 150 || sink.ids[0] != 251 {
		t.Fatalf("atomic sink got %d events starting at %v; want 251..400", len(sink.ids), first3(sink.ids))
	}
	if c := committed(t, store, "p"); seqN(t, c, 1) != 400 {
		t.Errorf("offset store at %d, want 400", seqN(t, c, 1))
	}
}

type memAtomicSink struct {
	recSinkBase
	pos connectors.Position
	ids []int64
}

type recSinkBase struct{}

func (recSinkBase) Open(context.Context) error  { return nil }
func (recSinkBase) Close(context.Context) error { return nil }

func (s *memAtomicSink) WriteBatch(_ context.Context, b connectors.Batch) error {
	for _, ev := range b.Events {
		s.ids = append(s.ids, ev.After[0].(int64))
	}
	s.pos = b.Last
	return nil
}

func (s *memAtomicSink) CommittedPosition(context.Context) (connectors.Position, error) {
	return s.pos, nil
}

func TestTransformsFilterAndKeepPosition(t *testing.T) {
	store := offsets.NewMemory()
	sink := &recSink{}
	job := testJob("p", &seqSource{Count: 1000}, sink, store)
	job.Transforms = append(job.Transforms, dropIf(func(id int64) bool { return id%2 == 0 }), dropIf(func(id int64) bool { return id > 990 }))
	if err := Run(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	got := sink.written()
	if len(got) != 495 || got[0] != 1 || got[len(got)-1] != 989 {
		t.Fatalf("wrote %d events %v..%v; want the 495 odd ids up to 989", len(got), first3(got), last3(got))
	}
	// The filtered tail still advanced the committed position.
	if c := committed(t, store, "p"); seqN(t, c, 1) != 1000 {
		t.Errorf("committed %d, want 1000", seqN(t, c, 1))
	}
}
