package pipelines

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tapline/tapline/connectors"
)

// ErrUnknownPipeline is returned by Daemon.Wait for a name no pipeline has.
var ErrUnknownPipeline = errors.New("no such pipeline")

// ErrNotView is returned by Daemon.Wait when the pipeline's sink does not
// record the origin positions it applies (it is not a view sink).
var ErrNotView = errors.New("the pipeline's sink does not record applied origin positions (only view sinks do)")

// WaitResult is what Daemon.Wait found.
type WaitResult struct {
	Pipeline string `json:"pipeline"`
	// Reached reports whether the view has applied the position.
	Reached bool `json:"reached"`
	// Origin is the origin whose applied position reached the one asked
	// for, when Reached.
	Origin string `json:"origin,omitempty"`
	// Applied holds the furthest applied position per origin when Wait
	// returned.
	Applied map[string]string `json:"applied"`
	// Waited is how long Wait waited, in milliseconds.
	WaitedMs int64 `json:"waited_ms"`
}

// waitPoll is how often Wait looks at the sink's applied positions (an
// in-memory read).
const waitPoll = 5 * time.Millisecond

// Wait blocks until the named pipeline's view has applied origin position
// pos (read-your-writes), ctx is done, or timeout passes; it returns the
// result with Reached false and a nil error on timeout. origin, when set,
// names the origin to compare with (connectors.OriginKey, e.g.
// "postgres/shop"); otherwise any origin whose connector can order pos
// counts. A pipeline that is not running in this process (restarting, or
// on standby) is waited for.
func (d *Daemon) Wait(ctx context.Context, pipeline, origin, pos string, timeout time.Duration) (WaitResult, error) {
	res := WaitResult{Pipeline: pipeline, Applied: map[string]string{}}
	if !d.Has(pipeline) {
		return res, fmt.Errorf("%w: %q", ErrUnknownPipeline, pipeline)
	}
	if pos == "" {
		return res, errors.New("position is empty")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for {
		sink, running := d.viewSink(pipeline)
		if running && sink == nil {
			return res, ErrNotView
		}
		if sink != nil {
			applied, err := sink.AppliedOrigins(ctx)
			if err == nil {
				res.Applied = applied
				if key, ok := reached(applied, origin, pos); ok {
					res.Reached, res.Origin = true, key
					res.WaitedMs = time.Since(start).Milliseconds()
					return res, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			res.WaitedMs = time.Since(start).Milliseconds()
			if parent := context.Cause(ctx); errors.Is(parent, context.Canceled) {
				return res, parent
			}
			return res, nil
		case <-t.C:
		}
	}
}

// reached reports which origin of applied is at or after pos.
func reached(applied map[string]string, origin, pos string) (string, bool) {
	for key, at := range applied {
		if origin != "" && key != origin {
			continue
		}
		connector, _, _ := strings.Cut(key, "/")
		if c, ok := connectors.CompareOrigin(connector, at, pos); ok && c >= 0 {
			return key, true
		}
	}
	return "", false
}

// viewSink returns the running sink of pipeline as an OriginTracker;
// running reports whether the pipeline runs in this process at all.
func (d *Daemon) viewSink(pipeline string) (sink connectors.OriginTracker, running bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.sinks[pipeline]
	if !ok {
		return nil, false
	}
	t, _ := s.(connectors.OriginTracker)
	return t, true
}
