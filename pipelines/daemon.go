package pipelines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
)

// State is where a pipeline is in its life under the daemon.
type State string

// The states of a supervised pipeline.
const (
	StateStarting   State = "starting"
	StateRunning    State = "running"
	StateRestarting State = "restarting" // failed; waiting to start again
	StateWaiting    State = "waiting"    // another process holds the pipeline's lock
	StateFinished   State = "finished"   // the source is exhausted
	StateStopped    State = "stopped"
	StatePaused     State = "paused" // held by a rebuild's hand-over
)

// Status is a pipeline's state as the daemon reports it.
type Status struct {
	Name      string    `json:"name"`
	State     State     `json:"state"`
	Since     time.Time `json:"since"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
}

// Daemon runs pipelines side by side, each isolated: one that fails is
// restarted with backoff and does not stop the others. It holds each
// pipeline's lock in DataDir while running it, so two processes never run
// the same pipeline; the second waits as a standby.
type Daemon struct {
	Pipelines []*Pipeline
	DataDir   string
	Offsets   offsets.Store
	Logger    *slog.Logger
	Metrics   *Metrics
	// Restart bounds the wait between restarts of a failed pipeline;
	// defaults 1s doubling to 1m.
	Restart Retry
	// ShutdownTimeout is each pipeline's Job.ShutdownTimeout.
	ShutdownTimeout time.Duration

	mu     sync.Mutex
	status map[string]*Status
	sinks  map[string]connectors.Sink // the running pipelines' sinks, for Wait
	ctl    map[string]*control
}

// control lets Pause stop a supervised pipeline and hold it.
type control struct {
	cancel context.CancelFunc // the current run's, nil between runs
	idle   chan struct{}      // closed when no run is in progress
	hold   chan struct{}      // non-nil while paused; closed by resume
}

// Run runs every pipeline until ctx is cancelled (or every pipeline has
// finished), then returns nil after they have all stopped.
func (d *Daemon) Run(ctx context.Context) error {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Restart.Initial <= 0 {
		d.Restart.Initial = time.Second
	}
	if d.Restart.Max <= 0 {
		d.Restart.Max = time.Minute
	}
	d.mu.Lock()
	d.status = make(map[string]*Status, len(d.Pipelines))
	d.sinks = make(map[string]connectors.Sink, len(d.Pipelines))
	d.ctl = make(map[string]*control, len(d.Pipelines))
	for _, p := range d.Pipelines {
		idle := make(chan struct{})
		close(idle)
		d.ctl[p.Name] = &control{idle: idle}
	}
	for _, p := range d.Pipelines {
		d.status[p.Name] = &Status{Name: p.Name, State: StateStarting, Since: time.Now()}
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range d.Pipelines {
		wg.Go(func() { d.supervise(ctx, p) })
	}
	wg.Wait()
	return nil
}

// Statuses returns every pipeline's status, sorted by name.
func (d *Daemon) Statuses() []Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Status, 0, len(d.status))
	for _, s := range d.status {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Has reports whether the daemon runs a pipeline of that name.
func (d *Daemon) Has(name string) bool { return d.pipeline(name) != nil }

// pipeline returns the daemon's pipeline of that name, or nil.
func (d *Daemon) pipeline(name string) *Pipeline {
	for _, p := range d.Pipelines {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Ready reports whether every pipeline is running or finished.
func (d *Daemon) Ready() bool {
	st := d.Statuses()
	for _, s := range st {
		if s.State != StateRunning && s.State != StateFinished {
			return false
		}
	}
	return len(st) > 0
}

func (d *Daemon) set(name string, st State, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.status[name]
	if s.State != st {
		s.State, s.Since = st, time.Now()
	}
	if st == StateRestarting {
		s.Restarts++
	}
	if err != nil {
		s.LastError = connectors.RedactDSN(err.Error())
	}
}

func (d *Daemon) supervise(ctx context.Context, p *Pipeline) {
	log := d.Logger.With("pipeline", p.Name)
	wait := d.Restart.Initial
	d.mu.Lock()
	c := d.ctl[p.Name]
	d.mu.Unlock()
	for attempt := 0; ; attempt++ {
		d.mu.Lock()
		hold := c.hold
		d.mu.Unlock()
		if hold != nil {
			d.set(p.Name, StatePaused, nil)
			select {
			case <-hold:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			d.set(p.Name, StateStopped, nil)
			return
		}
		started := time.Now()
		runCtx, cancel := context.WithCancel(ctx)
		idle := make(chan struct{})
		d.mu.Lock()
		c.cancel, c.idle = cancel, idle
		d.mu.Unlock()
		err := d.runOnce(runCtx, p, log)
		cancel()
		d.mu.Lock()
		c.cancel = nil
		paused := c.hold != nil
		close(idle)
		d.mu.Unlock()
		switch {
		case paused && ctx.Err() == nil:
			if err != nil {
				log.Warn("pipeline stopped for a pause with an error", "error", connectors.RedactDSN(err.Error()))
			}
			continue
		case err == nil && ctx.Err() != nil:
			d.set(p.Name, StateStopped, nil)
			return
		case err == nil:
			d.set(p.Name, StateFinished, nil)
			return
		}
		var locked *offsets.LockedError
		if errors.As(err, &locked) {
			d.set(p.Name, StateWaiting, err)
			log.Info("standing by: another process runs this pipeline", "reason", err.Error())
		} else {
			d.set(p.Name, StateRestarting, err)
			d.Metrics.pipeline(p.Name).restarts.Inc()
			log.Error("pipeline failed; restarting", "error", connectors.RedactDSN(err.Error()), "in", wait)
		}
		if time.Since(started) > 5*d.Restart.Max {
			wait = d.Restart.Initial // it ran well for a while: start over
		}
		t := time.NewTimer(wait + time.Duration(rand.Int64N(int64(wait)/5+1)))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, d.Restart.Max)
	}
}

// Pause stops the named pipeline (its run drains, commits and acknowledges
// as on shutdown) and keeps it stopped until resume is called. It returns
// once the run has stopped and released the pipeline's lock.
func (d *Daemon) Pause(ctx context.Context, name string) (resume func(), err error) {
	d.mu.Lock()
	c := d.ctl[name]
	if c == nil {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrUnknownPipeline, name)
	}
	if c.hold != nil {
		d.mu.Unlock()
		return nil, fmt.Errorf("pipeline %q is already paused", name)
	}
	if st := d.status[name]; st != nil && st.State == StateWaiting {
		d.mu.Unlock()
		return nil, fmt.Errorf("pipeline %q runs in another process (this one stands by); pause it there", name)
	}
	hold := make(chan struct{})
	c.hold = hold
	cancel, idle := c.cancel, c.idle
	d.mu.Unlock()
	resume = func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if c.hold == hold {
			c.hold = nil
			close(hold)
		}
	}
	if cancel != nil {
		cancel()
	}
	select {
	case <-idle:
		return resume, nil
	case <-ctx.Done():
		resume()
		return nil, ctx.Err()
	}
}

// runOnce takes the pipeline's lock, builds its connectors and runs it.
func (d *Daemon) runOnce(ctx context.Context, p *Pipeline, log *slog.Logger) error {
	lock, err := offsets.Lock(d.DataDir, p.Name)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	job, err := p.Job(d.DataDir, d.Offsets, log, d.Metrics)
	if err != nil {
		return err
	}
	job.ShutdownTimeout = d.ShutdownTimeout
	d.set(p.Name, StateRunning, nil)
	d.mu.Lock()
	d.sinks[p.Name] = job.Sink
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.sinks, p.Name)
		d.mu.Unlock()
	}()
	return Run(ctx, job)
}

// Job builds the connectors of p and returns a Job that runs them with the
// given offset store.
func (p *Pipeline) Job(dataDir string, store offsets.Store, log *slog.Logger, m *Metrics) (Job, error) {
	return p.job(dataDir, store, log, m, p.Name)
}

// job is Job with the pipeline name the source is built with (a rebuild
// reads the log under its own consumer name).
func (p *Pipeline) job(dataDir string, store offsets.Store, log *slog.Logger, m *Metrics, sourceAs string) (Job, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var reg prometheus.Registerer
	if m != nil {
		reg = m.Registerer
	}
	rt := func(name string) connectors.Runtime {
		return connectors.Runtime{Pipeline: p.Name, DataDir: dataDir, Logger: log.With("connector", name), Metrics: reg}
	}
	srt := rt(p.Source.Type)
	srt.Pipeline = sourceAs
	srt.Rebuild = sourceAs != p.Name
	src, err := p.Source.Reg.NewSource(p.Source.Config, srt)
	if err != nil {
		return Job{}, fmt.Errorf("source %s: %w", p.Source.Type, err)
	}
	sink, err := p.Sink.Reg.NewSink(p.Sink.Config, rt(p.Sink.Type))
	if err != nil {
		src.Close(context.Background())
		return Job{}, fmt.Errorf("sink %s: %w", p.Sink.Type, err)
	}
	job := Job{
		Name:           p.Name,
		Source:         src,
		Sink:           sink,
		Offsets:        store,
		Limits:         p.Batch,
		OnError:        p.OnError,
		Retry:          p.Retry,
		Transforms:     p.TransformChain(),
		FormatPosition: p.Source.Reg.FormatPosition,
		Logger:         log,
		Metrics:        m,
	}
	if p.DLQ != nil {
		if job.DLQ, err = p.DLQ.Reg.NewSink(p.DLQ.Config, rt("dlq-"+p.DLQ.Type)); err != nil {
			src.Close(context.Background())
			sink.Close(context.Background())
			return Job{}, fmt.Errorf("dead-letter sink %s: %w", p.DLQ.Type, err)
		}
	}
	return job, nil
}
