// Package postgres is the "postgres" view sink: it materializes each source
// table into a table of a Postgres schema, one row per primary key (upsert
// mode) or one row per event (history mode), and stores the pipeline's
// position in the same transaction as each batch, so that a batch is
// applied exactly once (connectors.AtomicSink).
//
// Each batch is one transaction: its rows are copied (COPY, binary) into
// temporary tables, then merged with INSERT ... SELECT ... ON CONFLICT DO
// UPDATE and DELETE ... USING. Column types follow internal/pgconv's
// DDLType, keeping a Postgres source's exact types. The shared apply logic
// (coalescing, schema evolution, positions, rebuilds) is in
// internal/viewsql; this package is the Postgres half.
package postgres

import (
	"errors"
	"fmt"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

func init() {
	connectors.RegisterSink("postgres", "materialize tables into a Postgres schema (upsert or history), exactly once", DefaultConfig,
		func(cfg Config, rt connectors.Runtime) (connectors.Sink, error) { return New(cfg, rt) })
}

// Config is the postgres sink's configuration.
type Config struct {
	DSN    connectors.Secret `yaml:"dsn" required:"true" doc:"connection string of the view's database (postgres://user:pass@host:5432/db or key=value form)"`
	Schema string            `yaml:"schema" doc:"schema of the view's tables and of tapline_offsets (created if absent)"`

	viewsql.Config `yaml:",inline"`
}

// DefaultConfig returns the defaults: schema public, and the shared view
// defaults (upsert mode, tables named like the source's).
func DefaultConfig() Config {
	return Config{Schema: "public", Config: viewsql.DefaultConfig()}
}

// Validate checks the settings.
func (c Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("dsn: give the connection string of the view's database"))
	}
	if c.Schema == "" {
		errs = append(errs, errors.New("schema: give a schema (public by default)"))
	}
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Sink is the postgres view sink. Build it with New. Its methods are those
// of the shared view sink (internal/viewsql): Open connects, creates the
// schema and tapline_offsets if absent and reads the stored position;
// WriteBatch applies a batch (COPY into temporary tables, then merge) and
// its position in one transaction; Check verifies that the server accepts
// writes and that the user may create tables in the schema. It implements
// connectors.AtomicSink, connectors.ShadowSink, connectors.OriginTracker
// and connectors.Checker.
type Sink struct {
	*viewsql.Sink
}

var (
	_ connectors.AtomicSink    = (*Sink)(nil)
	_ connectors.ShadowSink    = (*Sink)(nil)
	_ connectors.OriginTracker = (*Sink)(nil)
	_ connectors.Checker       = (*Sink)(nil)
)

// New builds a postgres sink.
func New(cfg Config, rt connectors.Runtime) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	v, err := viewsql.New("postgres", cfg.Config, newBackend(cfg), rt)
	if err != nil {
		return nil, err
	}
	return &Sink{Sink: v}, nil
}
