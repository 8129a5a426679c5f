// Package pipelines loads pipeline definitions from YAML and runs them: one
// source, an ordered list of transforms and one sink, moving bounded batches
// and acknowledging upstream only what the sink has made durable.
package pipelines

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sync/errgroup"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
	"github.com/tapline/tapline/pipelines/transforms"
)

// Policy says what the engine does with events a sink rejects
// (connectors.RejectError).
type Policy string

// The error policies.
const (
	PolicyFail Policy = "fail" // stop the pipeline (the default)
	PolicySkip Policy = "skip" // log and count the events, then go on without them
	PolicyDLQ  Policy = "dlq"  // write them, with the error, to the dead-letter sink
)

// Retry bounds the retries of transient (connectors.IsRetryable) sink and
// offset-store errors: capped exponential backoff with jitter.
type Retry struct {
	Initial     time.Duration // first wait; default 100ms
	Max         time.Duration // longest wait; default 30s
	MaxAttempts int           // attempts in all; 0 retries until shutdown
}

// Job is everything one run of a pipeline needs. The engine owns Source,
// Sink and DLQ for the run: it opens and closes them.
type Job struct {
	Name       string
	Source     connectors.Source
	Transforms []transforms.Transform
	Sink       connectors.Sink
	// DLQ receives rejected events when OnError is PolicyDLQ.
	DLQ     connectors.Sink
	Offsets offsets.Store
	Limits  connectors.Limits
	OnError Policy
	Retry   Retry
	// Queue is how many batches may wait between reading and writing; it
	// is the backpressure bound: at most Queue+2 batches are in memory
	// (Queue+3 with a connectors.PipelinedSink, which has one more batch
	// in flight). Default 2.
	Queue int
	// ShutdownTimeout bounds how long, after ctx is cancelled, the engine
	// keeps writing, committing and acknowledging batches already read.
	// What is not durable by then is abandoned and read again next time.
	// Default 10s.
	ShutdownTimeout time.Duration
	// FormatPosition renders positions in logs; default hex.
	FormatPosition func(connectors.Position) string
	Logger         *slog.Logger
	Metrics        *Metrics // may be nil
}

// DefaultLimits are the batch bounds when a pipeline sets none.
var DefaultLimits = connectors.Limits{MaxEvents: 1000, MaxBytes: 4 << 20, MaxWait: 100 * time.Millisecond}

func (j *Job) defaults() {
	if j.Limits.MaxEvents <= 0 {
		j.Limits.MaxEvents = DefaultLimits.MaxEvents
	}
	if j.Limits.MaxBytes <= 0 {
		j.Limits.MaxBytes = DefaultLimits.MaxBytes
	}
	if j.Limits.MaxWait <= 0 {
		j.Limits.MaxWait = DefaultLimits.MaxWait
	}
	if j.OnError == "" {
		j.OnError = PolicyFail
	}
	if j.Retry.Initial <= 0 {
		j.Retry.Initial = 100 * time.Millisecond
	}
	if j.Retry.Max <= 0 {
		j.Retry.Max = 30 * time.Second
	}
	if j.Queue <= 0 {
		j.Queue = 2
	}
	if j.ShutdownTimeout <= 0 {
		j.ShutdownTimeout = 10 * time.Second
	}
	if j.FormatPosition == nil {
		j.FormatPosition = connectors.Position.String
	}
	if j.Logger == nil {
		j.Logger = slog.New(slog.DiscardHandler)
	}
}

// Run runs the job until its source is exhausted (io.EOF), ctx is cancelled,
// or an error stops it. It returns nil on a clean finish or shutdown.
//
// The order of things per batch is the pipeline's guarantee: the sink writes
// the batch and returns; the engine commits the batch's last position to the
// offset store; only then does it acknowledge that position to the source.
// A crash at any point therefore replays from the last committed position
// and loses nothing. With an AtomicSink the sink's own position wins, and a
// replayed batch is never applied twice.
func Run(ctx context.Context, j Job) (err error) {
	j.defaults()
	log := j.Logger
	m := j.Metrics.pipeline(j.Name)
	m.up.Set(1)
	defer m.up.Set(0)

	closeCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), j.ShutdownTimeout)
	}
	defer func() {
		cctx, cancel := closeCtx()
		defer cancel()
		if cerr := j.Source.Close(cctx); cerr != nil {
			log.Warn("close source", "error", cerr)
		}
		if cerr := j.Sink.Close(cctx); cerr != nil && err == nil {
			err = fmt.Errorf("close sink: %w", cerr)
		}
		if j.DLQ != nil {
			if cerr := j.DLQ.Close(cctx); cerr != nil && err == nil {
				err = fmt.Errorf("close dead-letter sink: %w", cerr)
			}
		}
	}()

	if err := j.retry(ctx, "open sink", func() error { return j.Sink.Open(ctx) }); err != nil {
		return fmt.Errorf("open sink: %w", err)
	}
	if j.DLQ != nil {
		if err := j.retry(ctx, "open dead-letter sink", func() error { return j.DLQ.Open(ctx) }); err != nil {
			return fmt.Errorf("open dead-letter sink: %w", err)
		}
	}
	start, err := j.startPosition(ctx)
	if err != nil {
		return err
	}
	log.Info("pipeline starting", "position", j.FormatPosition(start))
	if err := j.Source.Open(ctx, start); err != nil {
		return fmt.Errorf("open source: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	queue := make(chan connectors.Batch, j.Queue)

	// The writer keeps going after ctx is cancelled, to make durable and
	// acknowledge what was read, until ShutdownTimeout has passed.
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(j.ShutdownTimeout, wcancel)
		context.AfterFunc(wctx, func() { t.Stop() })
	})
	defer stop()

	writerDone := make(chan struct{})
	g.Go(func() error {
		defer close(queue)
		return j.read(gctx, queue, writerDone, m)
	})
	g.Go(func() error {
		defer close(writerDone)
		err := j.write(wctx, queue, m)
		if err != nil && ctx.Err() != nil && wctx.Err() != nil {
			log.Warn("shutdown timeout: abandoned the batch in flight; it will be read again", "timeout", j.ShutdownTimeout)
			return nil
		}
		return err
	})
	err = g.Wait()
	if err != nil {
		m.errors.WithLabelValues("fatal").Inc()
		return err
	}
	if ctx.Err() != nil {
		log.Info("pipeline stopped")
	} else {
		log.Info("pipeline finished: source exhausted")
	}
	return nil
}

// startPosition is the sink's own position for an AtomicSink, else the
// offset store's.
func (j *Job) startPosition(ctx context.Context) (connectors.Position, error) {
	var stored connectors.Position
	err := j.retry(ctx, "read offset", func() (err error) {
		stored, err = j.Offsets.Get(ctx, j.Name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read offset of pipeline %q: %w", j.Name, err)
	}
	as, ok := j.Sink.(connectors.AtomicSink)
	if !ok {
		return stored, nil
	}
	var own connectors.Position
	err = j.retry(ctx, "read sink position", func() (err error) {
		own, err = as.CommittedPosition(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the sink's committed position: %w", err)
	}
	if own.Compare(stored) != 0 {
		j.Logger.Info("the sink stores its own position; resuming from it", "sink_position", j.FormatPosition(own), "offset_store", j.FormatPosition(stored))
	}
	return own, nil
}

// read pulls batches, applies transforms and queues them. It returns nil at
// io.EOF or when ctx is done. What the source returns after ctx is done (its
// buffer) is still queued, for the writer to make durable, unless the writer
// has stopped.
func (j *Job) read(ctx context.Context, queue chan<- connectors.Batch, writerDone <-chan struct{}, m *pipelineMetrics) error {
	for {
		b, err := j.Source.ReadBatch(ctx, j.Limits)
		if len(b.Events) > 0 || b.Last != nil {
			m.read.Add(float64(len(b.Events)))
			if terr := j.transform(&b); terr != nil {
				return terr
			}
			select {
			case queue <- b:
			case <-writerDone:
				return nil
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return nil
		case ctx.Err() != nil:
			return nil
		default:
			return fmt.Errorf("read source: %w", err)
		}
	}
}

// transform applies the transforms in order, dropping filtered events in
// place. b.Last is kept: filtered events are done with. Heartbeat events
// pass untouched.
func (j *Job) transform(b *connectors.Batch) error {
	if len(j.Transforms) == 0 {
		return nil
	}
	kept := b.Events[:0]
events:
	for i := range b.Events {
		ev := b.Events[i]
		if ev.Op == connectors.OpHeartbeat {
			// No table or row to filter, mask, rename or route.
			kept = append(kept, ev)
			continue
		}
		for _, t := range j.Transforms {
			keep, err := t.Apply(&ev)
			if err != nil {
				return fmt.Errorf("transform: %w", err)
			}
			if !keep {
				continue events
			}
		}
		kept = append(kept, ev)
	}
	clear(b.Events[len(kept):])
	b.Events = kept
	return nil
}

// write makes each batch durable, commits its position, then acks it. With
// a PipelinedSink it starts the next batch before the one in flight is
// durable (one in flight at most), so the sink's pipe does not drain
// between batches; commits and acks still follow durability, in order.
func (j *Job) write(ctx context.Context, queue <-chan connectors.Batch, m *pipelineMetrics) error {
	_, atomic := j.Sink.(connectors.AtomicSink)
	ps, _ := j.Sink.(connectors.PipelinedSink)
	var fly *inFlight // started, not yet known durable
	for {
		var (
			b  connectors.Batch
			ok bool
		)
		if fly == nil {
			b, ok = <-queue
		} else {
			select {
			case b, ok = <-queue:
			case <-fly.p.Done():
				// Durable (or failed) before the next batch came: commit
				// it now rather than when the next one arrives.
				if err := j.finish(ctx, fly, m); err != nil {
					return err
				}
				fly = nil
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !ok {
			break
		}
		started := time.Now()
		if ps != nil && len(b.Events) > 0 {
			p, err := ps.StartBatch(ctx, b)
			if err == nil {
				if fly != nil {
					if err := j.finish(ctx, fly, m); err != nil {
						return err
					}
				}
				fly = &inFlight{b: b, p: p, started: started}
				continue
			}
			// Not started (rejected events, a failure): b goes the
			// synchronous way below, with retries and the error policy.
			j.Logger.Debug("pipelined start failed; writing the batch synchronously", "error", err)
		}
		if fly != nil {
			if err := j.finish(ctx, fly, m); err != nil {
				return err
			}
			fly = nil
		}
		if len(b.Events) > 0 || atomic {
			if err := j.writeBatch(ctx, &b, m); err != nil {
				return err
			}
		}
		if err := j.commit(ctx, &b, started, m); err != nil {
			return err
		}
	}
	if fly != nil {
		return j.finish(ctx, fly, m)
	}
	return nil
}

// inFlight is a batch a PipelinedSink has started.
type inFlight struct {
	b       connectors.Batch
	p       connectors.Pending
	started time.Time
}

// finish waits until f's batch is durable, writing it again (synchronously,
// with retries) if it failed, then commits and acknowledges it.
func (j *Job) finish(ctx context.Context, f *inFlight, m *pipelineMetrics) error {
	select {
	case <-f.p.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := f.p.Err(); err != nil {
		if !connectors.IsRetryable(err) {
			return fmt.Errorf("write batch ending at %s: %w", j.FormatPosition(f.b.Last), err)
		}
		j.Logger.Warn("retrying", "op", "write batch", "error", err)
		m.errors.WithLabelValues("retry").Inc()
		if err := j.writeBatch(ctx, &f.b, m); err != nil {
			return err
		}
	}
	return j.commit(ctx, &f.b, f.started, m)
}

// commit stores b's position in the offset store, then acknowledges it to
// the source.
func (j *Job) commit(ctx context.Context, b *connectors.Batch, started time.Time, m *pipelineMetrics) error {
	n := len(b.Events) // rejected events are gone by now
	if b.Last == nil {
		return nil
	}
	if err := j.retry(ctx, "commit offset", func() error { return j.Offsets.Commit(ctx, j.Name, b.Last) }); err != nil {
		return fmt.Errorf("commit offset %s: %w", j.FormatPosition(b.Last), err)
	}
	if err := j.Source.Ack(ctx, b.Last); err != nil {
		// The position is durable; a failed ack only delays the
		// upstream's cleanup, and the next ack covers it.
		j.Logger.Warn("acknowledge to source failed; the next ack covers it", "position", j.FormatPosition(b.Last), "error", err)
		m.errors.WithLabelValues("ack").Inc()
	}
	m.observeBatch(b, n, time.Since(started))
	j.Logger.Debug("batch durable", "batch_events", n, "position", j.FormatPosition(b.Last), "duration", time.Since(started))
	return nil
}

// writeBatch writes b with retries, applying the error policy to rejected
// events (which it removes from b).
func (j *Job) writeBatch(ctx context.Context, b *connectors.Batch, m *pipelineMetrics) error {
	for {
		err := j.retry(ctx, "write batch", func() error { return j.Sink.WriteBatch(ctx, *b) })
		if err == nil {
			return nil
		}
		var rej *connectors.RejectError
		if !errors.As(err, &rej) || len(rej.Events) == 0 {
			return fmt.Errorf("write batch ending at %s: %w", j.FormatPosition(b.Last), err)
		}
		if err := j.reject(ctx, b, rej, m); err != nil {
			return err
		}
		// Write the rest of the batch (possibly no events, to store the
		// position in an atomic sink).
	}
}

func (j *Job) reject(ctx context.Context, b *connectors.Batch, rej *connectors.RejectError, m *pipelineMetrics) error {
	bad := make(map[int]error, len(rej.Events))
	for _, e := range rej.Events {
		if e.Index < 0 || e.Index >= len(b.Events) {
			return fmt.Errorf("sink rejected event %d of a batch of %d: %w", e.Index, len(b.Events), rej)
		}
		bad[e.Index] = e.Err
	}
	switch j.OnError {
	case PolicySkip, PolicyDLQ:
	default:
		return fmt.Errorf("%w (on_error: fail; set on_error: skip or dlq to go on without them)", rej)
	}
	var dead []connectors.Event
	kept := make([]connectors.Event, 0, len(b.Events)-len(bad))
	for i, ev := range b.Events {
		berr, isBad := bad[i]
		if !isBad {
			kept = append(kept, ev)
			continue
		}
		m.rejected.Inc()
		j.Logger.Warn("sink rejected an event", "policy", string(j.OnError), "table", ev.Table().String(),
			"position", j.FormatPosition(ev.Position), "error", berr)
		if j.OnError == PolicyDLQ {
			ev.Source.Extra = append(append([]connectors.Field(nil), ev.Source.Extra...),
				connectors.Field{Name: "dlq_pipeline", Value: j.Name},
				connectors.Field{Name: "dlq_error", Value: berr.Error()})
			dead = append(dead, ev)
		}
	}
	if len(dead) > 0 {
		if j.DLQ == nil {
			return fmt.Errorf("on_error: dlq but no dead-letter sink: %w", rej)
		}
		dl := connectors.Batch{Events: dead, Last: b.Last}
		if err := j.retry(ctx, "write dead letters", func() error { return j.DLQ.WriteBatch(ctx, dl) }); err != nil {
			return fmt.Errorf("write %d rejected event(s) to the dead-letter sink: %w", len(dead), err)
		}
	}
	b.Events = kept
	return nil
}

// retry runs op until it succeeds, fails with an error that is not
// retryable, runs out of attempts, or ctx is done.
func (j *Job) retry(ctx context.Context, what string, op func() error) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = j.Retry.Initial
	bo.MaxInterval = j.Retry.Max
	bo.Multiplier = 2
	bo.RandomizationFactor = 0.3
	opts := []backoff.RetryOption{
		backoff.WithBackOff(bo),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, wait time.Duration) {
			j.Logger.Warn("retrying", "op", what, "error", err, "wait", wait)
			j.Metrics.pipeline(j.Name).errors.WithLabelValues("retry").Inc()
		}),
	}
	if j.Retry.MaxAttempts > 0 {
		opts = append(opts, backoff.WithMaxTries(uint(j.Retry.MaxAttempts)))
	}
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := op()
		if err != nil && !connectors.IsRetryable(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, opts...)
	return err
}
