package pipelines

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
)

// pipeSink is a PipelinedSink in the manner of JetStream: started batches
// are stored by one goroutine, in the order they were started, after a
// delay; an event whose id is already stored is dropped (the duplicate
// window). FailStart and FailStored inject failures.
type pipeSink struct {
	Delay time.Duration
	// FailStored, when it returns true for a started batch (1-based), makes
	// that batch store only its first half and then fail.
	FailStored func(started int) bool
	// FailStart, when it returns an error, is StartBatch's error.
	FailStart func(started int, b connectors.Batch) error

	mu        sync.Mutex
	started   int
	inFlight  int // started, not done
	peak      int // most batches in flight at once
	stored    map[int64]bool
	order     []int64 // ids in store order
	rewritten int     // WriteBatch calls
	queue     chan func()
	stop      chan struct{}
	done      chan struct{}
}

type pipePending struct {
	done chan struct{}
	err  error
}

func (p *pipePending) Done() <-chan struct{} { return p.done }
func (p *pipePending) Err() error            { return p.err }

func (s *pipeSink) Open(context.Context) error {
	s.stored = map[int64]bool{}
	s.queue = make(chan func(), 16)
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		for {
			select {
			case f := <-s.queue:
				f()
			case <-s.stop:
				return
			}
		}
	}()
	return nil
}

func (s *pipeSink) store(evs []connectors.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		id := ev.After[0].(int64)
		if !s.stored[id] {
			s.stored[id] = true
			s.order = append(s.order, id)
		}
	}
}

func (s *pipeSink) StartBatch(ctx context.Context, b connectors.Batch) (connectors.Pending, error) {
	s.mu.Lock()
	s.started++
	n := s.started
	s.mu.Unlock()
	if s.FailStart != nil {
		if err := s.FailStart(n, b); err != nil {
			return nil, err
		}
	}
	evs := append([]connectors.Event(nil), b.Events...) // the sink's own copy
	p := &pipePending{done: make(chan struct{})}
	s.mu.Lock()
	s.inFlight++
	s.peak = max(s.peak, s.inFlight)
	s.mu.Unlock()
	fail := s.FailStored != nil && s.FailStored(n)
	s.queue <- func() {
		time.Sleep(s.Delay)
		if fail {
			s.store(evs[:len(evs)/2])
			p.err = connectors.Retryable(fmt.Errorf("batch %d: not acknowledged", n))
		} else {
			s.store(evs)
		}
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
		close(p.done)
	}
	return p, nil
}

func (s *pipeSink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	s.mu.Lock()
	s.rewritten++
	s.mu.Unlock()
	s.store(b.Events)
	return nil
}

func (s *pipeSink) Close(context.Context) error {
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
	}
	return nil
}

// durableUpTo is the n such that ids 1..n are all stored.
func (s *pipeSink) durableUpTo() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := uint64(0)
	for s.stored[int64(n+1)] {
		n++
	}
	return n
}

// ackCheck fails an ack beyond what the sink holds or the store committed.
func ackCheck(t *testing.T, sink *pipeSink, store offsets.Store, perTx uint64) func(connectors.Position) error {
	return func(p connectors.Position) error {
		if n, d := seqN(t, p, perTx), sink.durableUpTo(); n > d {
			return fmt.Errorf("acked event %d but the sink holds only 1..%d", n, d)
		}
		if c, _ := store.Get(context.Background(), "p"); p.Compare(c) > 0 {
			return fmt.Errorf("acked %s but only %s is committed", p, c)
		}
		return nil
	}
}

// With a PipelinedSink the engine starts the next batch while the previous
// one is still being stored, yet acknowledges only what is durable, in
// order.
func TestPipelinedSinkOverlapsBatches(t *testing.T) {
	defer goleak.VerifyNone(t)
	store := offsets.NewMemory()
	sink := &pipeSink{Delay: 2 * time.Millisecond}
	src := &seqSource{Count: 5_000, PerTx: 3}
	src.AckCheck = ackCheck(t, sink, store, 3)
	job := testJob("p", src, sink, store)
	job.Limits.MaxEvents = 100
	if err := Run(context.Background(), job); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactly(t, sink.order, 5_000)
	_, acked, ackErr := src.stats()
	if ackErr != nil {
		t.Fatal(ackErr)
	}
	last := seqEvent(5_000, 3, "").Position
	if acked.Compare(last) != 0 {
		t.Errorf("last ack %s, want %s", acked, last)
	}
	if c := committed(t, store, "p"); c.Compare(last) != 0 {
		t.Errorf("committed %s, want %s", c, last)
	}
	if sink.peak < 2 {
		t.Errorf("at most %d batch in flight; the engine did not start the next batch before the previous was durable", sink.peak)
	}
	if sink.peak > 2 {
		t.Errorf("%d batches in flight at once; the engine keeps at most 2 (one waiting, one started)", sink.peak)
	}
	if sink.rewritten != 0 {
		t.Errorf("%d synchronous writes; want none without failures", sink.rewritten)
	}
}

// A started batch that fails is written again (synchronously) before its
// position is committed, and the batch started after it is committed only
// after that; nothing is lost and no ack runs ahead of the sink.
func TestPipelinedSinkFailureIsWrittenAgain(t *testing.T) {
	defer goleak.VerifyNone(t)
	store := offsets.NewMemory()
	m := NewMetrics(nil)
	sink := &pipeSink{Delay: time.Millisecond, FailStored: func(n int) bool { return n%7 == 3 }}
	src := &seqSource{Count: 3_000, PerTx: 1}
	src.AckCheck = ackCheck(t, sink, store, 1)
	job := testJob("p", src, sink, store)
	job.Limits.MaxEvents = 50
	job.Metrics = m
	if err := Run(context.Background(), job); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := sink.durableUpTo(); got != 3_000 || len(sink.order) != 3_000 {
		t.Fatalf("sink holds 1..%d contiguously and %d ids in all; want 3000 and 3000", got, len(sink.order))
	}
	if _, _, ackErr := src.stats(); ackErr != nil {
		t.Fatal(ackErr)
	}
	if sink.rewritten == 0 {
		t.Fatal("no failed batch was written again")
	}
	if got := counterValue(t, m.errors.WithLabelValues("p", "retry")); got != float64(sink.rewritten) {
		t.Errorf("retry errors metric = %v, want %d (one per failed batch)", got, sink.rewritten)
	}
	if c := committed(t, store, "p"); seqN(t, c, 1) != 3_000 {
		t.Errorf("committed event %d, want 3000", seqN(t, c, 1))
	}
}

// A batch StartBatch refuses (rejected events) goes the synchronous way,
// where the error policy applies, after the batch in flight is committed.
func TestPipelinedSinkRejectGoesSynchronous(t *testing.T) {
	defer goleak.VerifyNone(t)
	store := offsets.NewMemory()
	sink := &pipeSink{}
	bad := func(b connectors.Batch) int {
		for i, ev := range b.Events {
			if ev.After[0].(int64) == 777 {
				return i
			}
		}
		return -1
	}
	sink.FailStart = func(_ int, b connectors.Batch) error {
		if i := bad(b); i >= 0 {
			return &connectors.RejectError{Events: []connectors.EventError{{Index: i, Err: errors.New("unencodable")}}}
		}
		return nil
	}
	src := &seqSource{Count: 1_000, PerTx: 1}
	job := testJob("p", src, sink, store)
	job.Limits.MaxEvents = 100
	job.OnError = PolicySkip
	// The synchronous WriteBatch must reject too, as a real sink would.
	wrapped := &rejectingWrite{pipeSink: sink, bad: bad}
	job.Sink = wrapped
	if err := Run(context.Background(), job); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(sink.order) != 999 || sink.stored[777] {
		t.Fatalf("sink holds %d ids (777 stored: %v); want 999 without 777", len(sink.order), sink.stored[777])
	}
	if c := committed(t, store, "p"); seqN(t, c, 1) != 1_000 {
		t.Errorf("committed event %d, want 1000", seqN(t, c, 1))
	}
}

type rejectingWrite struct {
	*pipeSink
	bad func(connectors.Batch) int
}

func (r *rejectingWrite) WriteBatch(ctx context.Context, b connectors.Batch) error {
	if i := r.bad(b); i >= 0 {
		return &connectors.RejectError{Events: []connectors.EventError{{Index: i, Err: errors.New("unencodable")}}}
	}
	return r.pipeSink.WriteBatch(ctx, b)
}
