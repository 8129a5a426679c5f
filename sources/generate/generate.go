// Package generate is the "generate" source: deterministic synthetic row
// changes for demos, tests and benchmarks, with no upstream to run.
//
// Every event is a pure function of the seed and its sequence number, so a
// source opened after a position regenerates exactly the events an
// uninterrupted run would have made next, with nothing stored. See
// README.md for the tables it makes and how the ops pattern works.
package generate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapline/tapline/connectors"
)

func init() {
	connectors.RegisterSource("generate", "deterministic synthetic row changes (no upstream needed)", DefaultConfig,
		func(cfg Config, rt connectors.Runtime) (connectors.Source, error) { return New(cfg, rt) },
		connectors.WithPositions(connectors.TxPositionFormat))
}

// Config is the generate source's configuration.
type Config struct {
	Tables []string `yaml:"tables" doc:"tables to make changes to, as name or schema.name; events go round-robin over them"`
	Count  int64    `yaml:"count" doc:"events to make in all, then finish; 0 means endless"`
	Rate   float64  `yaml:"rate" doc:"events per second; 0 means as fast as the pipeline takes them"`
	Seed   int64    `yaml:"seed" doc:"seed of the values: the same seed makes the same events"`
	Ops    string   `yaml:"ops" doc:"the pattern of operations each table repeats, as letters: c insert, r snapshot read, u update, d delete (e.g. cccud)"`
}

// DefaultConfig returns the defaults: inserts into one table "orders",
// endless, unthrottled, seed 1.
func DefaultConfig() Config {
	return Config{Tables: []string{"orders"}, Seed: 1, Ops: "c"}
}

// Validate checks the tables, the numbers and the ops pattern.
func (c Config) Validate() error {
	if len(c.Tables) == 0 {
		return errors.New("tables: give at least one table")
	}
	seen := map[string]bool{}
	for _, t := range c.Tables {
		id := connectors.ParseTableID(t)
		if id.Name == "" || strings.TrimSpace(t) != t {
			return fmt.Errorf("tables: %q is not a table name", t)
		}
		if seen[id.String()] {
			return fmt.Errorf("tables: %q is listed twice", t)
		}
		seen[id.String()] = true
	}
	if c.Count < 0 {
		return fmt.Errorf("count: %d is negative (0 means endless)", c.Count)
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("rate: %v is not a rate (events per second; 0 means unthrottled)", c.Rate)
	}
	_, err := newPattern(c.Ops)
	return err
}

// Source is the generate source. Build it with New.
type Source struct {
	cfg     Config
	log     *slog.Logger
	tables  []table
	pattern pattern
	seed    uint64

	// Owned by the reading goroutine.
	opened   bool
	next     uint64    // sequence number of the next event, from 1
	rateBase time.Time // when event rateSeq was due
	rateSeq  uint64
	timer    *time.Timer

	closed atomic.Bool
	mu     sync.Mutex
	acked  connectors.Position
}

// New builds a generate source from a validated config.
func New(cfg Config, rt connectors.Runtime) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	p, _ := newPattern(cfg.Ops)
	s := &Source{cfg: cfg, log: rt.Log(), pattern: p, seed: uint64(cfg.Seed)}
	for _, name := range cfg.Tables {
		id := connectors.ParseTableID(name)
		h := fnv.New64a()
		h.Write([]byte(id.String()))
		s.tables = append(s.tables, table{id: id, schema: tableSchema(id), salt: h.Sum64()})
	}
	return s, nil
}

// Open positions the source to continue strictly after pos (nil: from the
// first event). It connects to nothing.
func (s *Source) Open(_ context.Context, pos connectors.Position) error {
	if s.closed.Load() {
		return connectors.ErrClosed
	}
	s.next = 1
	if pos != nil {
		tp, err := connectors.DecodeTxPosition(pos)
		if err != nil {
			return fmt.Errorf("generate: resume: %w", err)
		}
		// (n, 1) and later ordinals mean event n is done; (n, 0) means it
		// is not.
		s.next = max(1, tp.Commit)
		if tp.Ordinal > 0 {
			s.next = tp.Commit + 1
		}
	}
	s.opened = true
	s.rateBase, s.rateSeq = time.Now(), s.next
	s.log.Debug("generate: open", "next_event", s.next, "tables", len(s.tables))
	return nil
}

// ReadBatch makes the next events within lim and the configured rate. It
// returns io.EOF once count events have been made. When ctx is done it
// returns the events it has made with a nil error, or ctx.Err() if none.
func (s *Source) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	var b connectors.Batch
	if s.closed.Load() {
		return b, connectors.ErrClosed
	}
	if !s.opened {
		return b, errors.New("generate: ReadBatch before Open")
	}
	if err := ctx.Err(); err != nil {
		return b, err
	}
	if s.finished() {
		return b, io.EOF
	}
	if lim.MaxEvents <= 0 && lim.MaxBytes <= 0 {
		lim.MaxEvents = 1000 // an endless source needs some bound
	}
	if lim.MaxEvents > 0 && s.cfg.Rate == 0 {
		n := lim.MaxEvents
		if s.cfg.Count > 0 {
			n = int(min(int64(n), s.cfg.Count-int64(s.next)+1))
		}
		b.Events = make([]connectors.Event, 0, min(n, 4096))
	}
	size := 0
	var deadline time.Time
	for !s.finished() && !lim.Full(len(b.Events), size) {
		now := time.Now()
		if s.cfg.Rate > 0 {
			due := s.due(now)
			if now.Before(due) {
				wait := due.Sub(now)
				if len(b.Events) > 0 {
					left := deadline.Sub(now)
					if left <= 0 {
						break
					}
					wait = min(wait, left)
				}
				if !s.sleep(ctx, wait) {
					if len(b.Events) > 0 {
						break
					}
					return b, ctx.Err()
				}
				continue
			}
		} else if len(b.Events)&63 == 63 && ctx.Err() != nil {
			break
		}
		ev := s.event(s.next, now.UnixMilli())
		if len(b.Events) == 0 {
			deadline = now.Add(lim.MaxWait)
		}
		b.Events = append(b.Events, ev)
		size += ev.Size()
		s.next++
	}
	if n := len(b.Events); n > 0 {
		b.Last = b.Events[n-1].Position
	}
	return b, nil
}

// due returns when event s.next may be made. After a stall (a slow sink)
// it allows a burst of at most one second's worth of events, not the whole
// backlog.
func (s *Source) due(now time.Time) time.Time {
	at := func() time.Time {
		return s.rateBase.Add(time.Duration(float64(s.next-s.rateSeq) / s.cfg.Rate * float64(time.Second)))
	}
	d := at()
	if now.Sub(d) > time.Second {
		s.rateBase, s.rateSeq = now.Add(-time.Second), s.next
		d = at()
	}
	return d
}

// sleep waits for d or ctx, and reports whether it waited d.
func (s *Source) sleep(ctx context.Context, d time.Duration) bool {
	if s.timer == nil {
		s.timer = time.NewTimer(d)
	} else {
		s.timer.Reset(d)
	}
	select {
	case <-s.timer.C:
		return true
	case <-ctx.Done():
		s.timer.Stop()
		return false
	}
}

func (s *Source) finished() bool {
	return s.cfg.Count > 0 && s.next > uint64(s.cfg.Count)
}

// Ack records pos as the last acknowledged position; there is nothing
// upstream to release.
func (s *Source) Ack(_ context.Context, pos connectors.Position) error {
	s.mu.Lock()
	s.acked = pos
	s.mu.Unlock()
	return nil
}

// Acked returns the last position given to Ack, or nil.
func (s *Source) Acked() connectors.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

// Close stops the source; it holds no resources. A second Close returns nil.
func (s *Source) Close(context.Context) error {
	s.closed.Store(true)
	return nil
}
