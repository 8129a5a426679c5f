// Package sqlite is the "sqlite" view sink: it materializes each source
// table into a table of a SQLite file, one row per primary key (upsert
// mode) or one row per event (history mode), and stores the pipeline's
// position in the same transaction as each batch, so that a batch is
// applied exactly once (connectors.AtomicSink).
//
// The file is in WAL mode: other processes can read the view while the
// sink writes, and each reader sees whole batches. The shared apply logic
// (coalescing, schema evolution, positions, rebuilds) is in
// internal/viewsql; this package is the SQLite half.
package sqlite

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

func init() {
	connectors.RegisterSink("sqlite", "materialize tables into a SQLite file (upsert or history), exactly once", DefaultConfig,
		func(cfg Config, rt connectors.Runtime) (connectors.Sink, error) { return New(cfg, rt) })
}

// Config is the sqlite sink's configuration.
type Config struct {
	Path        string        `yaml:"path" required:"true" doc:"the SQLite file of the view (created with its parent directories)"`
	Synchronous string        `yaml:"synchronous" doc:"full: a batch is on disk when it counts as written; normal: it survives a crash of tapline, but a power loss may undo the last batches (with their position)"`
	BusyTimeout time.Duration `yaml:"busy_timeout" doc:"how long a write waits for another writer of the file before it fails (and is retried)"`

	viewsql.Config `yaml:",inline"`
}

// DefaultConfig returns the defaults: synchronous full, a 5s busy timeout,
// and the shared view defaults (upsert mode, tables named like the source's).
func DefaultConfig() Config {
	return Config{Synchronous: "full", BusyTimeout: 5 * time.Second, Config: viewsql.DefaultConfig()}
}

// Validate checks the path and settings.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: give the SQLite file of the view"))
	}
	switch strings.ToLower(c.Synchronous) {
	case "full", "normal":
	default:
		errs = append(errs, fmt.Errorf("synchronous: %q is not full or normal", c.Synchronous))
	}
	if c.BusyTimeout < 0 {
		errs = append(errs, errors.New("busy_timeout: must not be negative"))
	}
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Sink is the sqlite view sink. Build it with New. Its methods are those
// of the shared view sink (internal/viewsql): Open opens (creating) the
// file, checks that it is in WAL mode, creates tapline_offsets and reads
// the stored position; WriteBatch applies a batch and its position in one
// transaction and returns once it is committed (and, with synchronous
// full, on disk); Check verifies that the file can be opened and written.
// It implements connectors.AtomicSink, connectors.ShadowSink,
// connectors.OriginTracker and connectors.Checker.
type Sink struct {
	*viewsql.Sink
}

var (
	_ connectors.AtomicSink    = (*Sink)(nil)
	_ connectors.ShadowSink    = (*Sink)(nil)
	_ connectors.OriginTracker = (*Sink)(nil)
	_ connectors.Checker       = (*Sink)(nil)
)

// New builds a sqlite sink.
func New(cfg Config, rt connectors.Runtime) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	v, err := viewsql.New("sqlite", cfg.Config, newBackend(cfg), rt)
	if err != nil {
		return nil, err
	}
	return &Sink{Sink: v}, nil
}
