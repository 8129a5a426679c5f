// Package mysql is the "mysql" view sink: it materializes each source table
// into a table of a MySQL or MariaDB database, one row per primary key
// (upsert mode) or one row per event (history mode), and stores the
// pipeline's position in the same transaction as each batch, so that a
// batch is applied exactly once (connectors.AtomicSink).
//
// Rows go in with multi-row INSERT ... ON DUPLICATE KEY UPDATE statements,
// cut to fit the server's max_allowed_packet; deletes by lists of keys.
// MySQL commits DDL on its own, so schema changes run before the batch's
// transaction (they are idempotent), and a rebuild's promote is one atomic
// RENAME TABLE recorded so that a crash in the middle is finished or undone
// on the next open. The shared apply logic (coalescing, schema evolution,
// positions, rebuilds) is in internal/viewsql; this package is the MySQL
// half.
package mysql

import (
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

func init() {
	connectors.RegisterSink("mysql", "materialize tables into a MySQL/MariaDB database (upsert or history), exactly once", DefaultConfig,
		func(cfg Config, rt connectors.Runtime) (connectors.Sink, error) { return New(cfg, rt) })
}

// Config is the mysql sink's configuration.
type Config struct {
	DSN connectors.Secret `yaml:"dsn" required:"true" doc:"the view database's DSN in go-sql-driver form: user:pass@tcp(host:3306)/database"`

	viewsql.Config `yaml:",inline"`
}

// DefaultConfig returns the shared view defaults (upsert mode, tables named
// like the source's).
func DefaultConfig() Config { return Config{Config: viewsql.DefaultConfig()} }

// Validate checks the DSN (without connecting) and the view settings.
func (c Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("dsn: give the view database's DSN, e.g. user:pass@tcp(127.0.0.1:3306)/views"))
	} else if mc, err := mysql.ParseDSN(c.DSN.Reveal()); err != nil {
		errs = append(errs, fmt.Errorf("dsn: %s", connectors.RedactDSN(err.Error())))
	} else if mc.DBName == "" {
		errs = append(errs, errors.New("dsn: name the database of the view after the slash: user:pass@tcp(host:3306)/database"))
	}
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Sink is the mysql view sink. Build it with New. Its methods are those of
// the shared view sink (internal/viewsql): Open connects, creates
// tapline_offsets if absent, finishes or undoes a promote a crash
// interrupted and reads the stored position; WriteBatch applies a batch and
// its position in one transaction; Promote swaps the shadow tables in with
// one atomic RENAME TABLE. It implements connectors.AtomicSink,
// connectors.ShadowSink, connectors.OriginTracker and connectors.Checker.
type Sink struct {
	*viewsql.Sink
}

var (
	_ connectors.AtomicSink    = (*Sink)(nil)
	_ connectors.ShadowSink    = (*Sink)(nil)
	_ connectors.OriginTracker = (*Sink)(nil)
	_ connectors.Checker       = (*Sink)(nil)
)

// New builds a mysql sink.
func New(cfg Config, rt connectors.Runtime) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	b, err := newBackend(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	v, err := viewsql.New("mysql", cfg.Config, b, rt)
	if err != nil {
		return nil, err
	}
	return &Sink{Sink: v}, nil
}
