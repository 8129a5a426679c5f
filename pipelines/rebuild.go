package pipelines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
)

// RebuildSuffix is appended to a pipeline's name to name the source of its
// rebuild (so a log source reads under its own consumer or group).
const RebuildSuffix = "-rebuild"

// RebuildOptions configures Rebuild.
type RebuildOptions struct {
	Pipeline *Pipeline
	DataDir  string
	Logger   *slog.Logger
	Metrics  *Metrics
	// Pause stops the live pipeline and keeps it stopped until resume is
	// called. Rebuild calls it once the shadow has caught up with the log,
	// and resumes whatever happens.
	Pause func(ctx context.Context) (resume func(), err error)
	// Progress, when set, is called with the rebuild's status as it goes.
	Progress func(RebuildStatus)
	// Poll is how often the catch-up is checked; default 200ms.
	Poll time.Duration
}

// RebuildStatus is how far a rebuild has come.
type RebuildStatus struct {
	Pipeline string `json:"pipeline"`
	// Phase is "replaying" (filling the shadow while the live view serves),
	// "handing-over" (the live pipeline paused, the shadow catching up
	// with the last events) or "promoted".
	Phase   string `json:"phase"`
	Events  int64  `json:"events"`  // events applied to the shadow
	Backlog int64  `json:"backlog"` // events left in the log
}

// Rebuild re-materializes a view by replaying its log into shadow tables
// while the live view keeps serving, then swaps them in:
//
//  1. a second instance of the pipeline's sink, told to use shadow tables,
//     is filled from the start of the log by a second instance of its
//     source, reading under the name <pipeline>-rebuild;
//  2. once the shadow has applied everything in the log, the live pipeline
//     is paused (its last batch made durable), and the shadow catches up
//     with whatever the live pipeline had read;
//  3. the sink promotes the shadow in one transaction, its stored position
//     becoming the live one, and the live pipeline resumes from it.
//
// Readers see the old view until the promotion and the new one after it.
// An interrupted rebuild leaves the live view untouched; running it again
// starts the shadow over. The pipeline's sink must be a
// connectors.ShadowSink and an AtomicSink, and its source must read a log
// (a connectors.Backlogger).
func Rebuild(ctx context.Context, o RebuildOptions) (st RebuildStatus, err error) {
	p := o.Pipeline
	st = RebuildStatus{Pipeline: p.Name, Phase: "replaying"}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("pipeline", p.Name, "rebuild", true)
	if o.Poll <= 0 {
		o.Poll = 200 * time.Millisecond
	}
	job, err := p.job(o.DataDir, offsets.NewMemory(), log, o.Metrics, p.Name+RebuildSuffix)
	if err != nil {
		return st, err
	}
	job.Name = p.Name + RebuildSuffix
	shadow, okShadow := job.Sink.(connectors.ShadowSink)
	_, okAtomic := job.Sink.(connectors.AtomicSink)
	backlogger, okLog := job.Source.(connectors.Backlogger)
	if !okShadow || !okAtomic || !okLog {
		closeJob(job)
		switch {
		case !okShadow || !okAtomic:
			return st, fmt.Errorf("rebuild %s: its %s sink cannot build a shadow view (the view sinks sqlite, postgres, mysql and redis can)", p.Name, p.Sink.Type)
		default:
			return st, fmt.Errorf("rebuild %s: its %s source is not a log that can be replayed from the start (nats and kafka are); re-snapshot a database source instead", p.Name, p.Source.Type)
		}
	}
	if job.OnError == PolicyDLQ {
		// The live pipeline has sent these events to its dead-letter sink
		// already.
		job.OnError, job.DLQ = PolicySkip, nil
	}
	shadow.UseShadow()
	src := &trackedSource{Source: job.Source}
	sink := &heldSink{ShadowSink: shadow}
	job.Source, job.Sink = src, sink
	defer func() {
		if !sink.promoted {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			sink.ShadowSink.Close(cctx)
		}
	}()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, job) }()

	caughtUp := func() (bool, error) {
		if !src.isOpen() {
			return false, nil
		}
		n, err := backlogger.Backlog(ctx)
		if err != nil {
			return false, err
		}
		st.Backlog, st.Events = n, sink.applied()
		if o.Progress != nil {
			o.Progress(st)
		}
		return n == 0 && bytes.Equal(src.last(), sink.written()), nil
	}
	waitCaughtUp := func() error {
		t := time.NewTicker(o.Poll)
		defer t.Stop()
		for {
			select {
			case err := <-done:
				if err == nil {
					err = errors.New("the shadow pipeline stopped early")
				}
				return fmt.Errorf("rebuild %s: %w", p.Name, err)
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
			ok, err := caughtUp()
			if err != nil {
				log.Warn("rebuild: backlog", "error", err)
				continue
			}
			if ok {
				return nil
			}
		}
	}
	if err := waitCaughtUp(); err != nil {
		return st, err
	}
	log.Info("rebuild: the shadow has caught up; pausing the live pipeline for the hand-over", "events", st.Events)
	st.Phase = "handing-over"
	resume, err := o.Pause(ctx)
	if err != nil {
		return st, fmt.Errorf("rebuild %s: pause the live pipeline: %w", p.Name, err)
	}
	defer resume()
	if err := waitCaughtUp(); err != nil {
		return st, err
	}
	stop()
	if err := <-done; err != nil {
		return st, fmt.Errorf("rebuild %s: stop the shadow pipeline: %w", p.Name, err)
	}
	if !bytes.Equal(src.last(), sink.written()) {
		return st, fmt.Errorf("rebuild %s: the shadow did not make its last batch durable in time; run the rebuild again", p.Name)
	}
	if err := sink.promote(ctx); err != nil {
		return st, fmt.Errorf("rebuild %s: promote the shadow view: %w", p.Name, err)
	}
	st.Phase, st.Events = "promoted", sink.applied()
	if o.Progress != nil {
		o.Progress(st)
	}
	log.Info("rebuild: the shadow view is live", "events", st.Events)
	// The rebuild's consumer is of no further use.
	if d, ok := rebuildDropper(p, o, log); ok {
		if err := d.Drop(ctx); err != nil {
			log.Warn("rebuild: could not remove the rebuild's consumer", "error", err)
		}
	}
	return st, nil
}

func rebuildDropper(p *Pipeline, o RebuildOptions, log *slog.Logger) (connectors.Dropper, bool) {
	src, err := p.Source.Reg.NewSource(p.Source.Config, connectors.Runtime{Pipeline: p.Name + RebuildSuffix, DataDir: o.DataDir, Logger: log, Rebuild: true})
	if err != nil {
		return nil, false
	}
	d, ok := src.(connectors.Dropper)
	return d, ok
}

func closeJob(j Job) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j.Source.Close(ctx)
	j.Sink.Close(ctx)
	if j.DLQ != nil {
		j.DLQ.Close(ctx)
	}
}

// trackedSource remembers whether it opened and the last position it
// returned.
type trackedSource struct {
	connectors.Source
	mu     sync.Mutex
	pos    connectors.Position
	opened bool
}

func (s *trackedSource) Open(ctx context.Context, pos connectors.Position) error {
	if err := s.Source.Open(ctx, pos); err != nil {
		return err
	}
	s.mu.Lock()
	s.pos, s.opened = pos, true
	s.mu.Unlock()
	return nil
}

func (s *trackedSource) isOpen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

func (s *trackedSource) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	b, err := s.Source.ReadBatch(ctx, lim)
	if b.Last != nil {
		s.mu.Lock()
		s.pos = b.Last
		s.mu.Unlock()
	}
	return b, err
}

func (s *trackedSource) last() connectors.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos
}

// heldSink is the shadow sink under the engine: it counts what is written
// and stays open when the engine closes it, until it is promoted.
type heldSink struct {
	connectors.ShadowSink
	mu       sync.Mutex
	pos      connectors.Position
	n        int64
	promoted bool
}

func (s *heldSink) CommittedPosition(ctx context.Context) (connectors.Position, error) {
	pos, err := s.ShadowSink.(connectors.AtomicSink).CommittedPosition(ctx)
	if err == nil {
		s.mu.Lock()
		s.pos = pos
		s.mu.Unlock()
	}
	return pos, err
}

func (s *heldSink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	if err := s.ShadowSink.WriteBatch(ctx, b); err != nil {
		return err
	}
	s.mu.Lock()
	if b.Last != nil {
		s.pos = b.Last
	}
	s.n += int64(len(b.Events))
	s.mu.Unlock()
	return nil
}

// Close leaves the sink open: Rebuild promotes or closes it.
func (s *heldSink) Close(context.Context) error { return nil }

func (s *heldSink) written() connectors.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos
}

func (s *heldSink) applied() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *heldSink) promote(ctx context.Context) error {
	s.promoted = true
	return s.ShadowSink.Promote(ctx)
}

// Rebuild rebuilds the view of the named pipeline (see the function
// Rebuild), pausing the daemon's live run of it for the hand-over.
func (d *Daemon) Rebuild(ctx context.Context, name string, progress func(RebuildStatus)) (RebuildStatus, error) {
	p := d.pipeline(name)
	if p == nil {
		return RebuildStatus{Pipeline: name}, fmt.Errorf("%w: %q", ErrUnknownPipeline, name)
	}
	return Rebuild(ctx, RebuildOptions{
		Pipeline: p, DataDir: d.DataDir, Logger: d.Logger, Metrics: d.Metrics, Progress: progress,
		Pause: func(ctx context.Context) (func(), error) { return d.Pause(ctx, name) },
	})
}

// PauseByLock is a RebuildOptions.Pause for a pipeline that no daemon runs:
// it takes the pipeline's lock in dataDir (failing if a process holds it)
// and releases it on resume.
func PauseByLock(dataDir, name string) func(context.Context) (func(), error) {
	return func(context.Context) (func(), error) {
		l, err := offsets.Lock(dataDir, name)
		if err != nil {
			return nil, err
		}
		return func() { l.Unlock() }, nil
	}
}
