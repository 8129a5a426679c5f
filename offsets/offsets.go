// Package offsets keeps the committed position of each pipeline, and guards
// each pipeline with a lock so that it has one writer.
//
// The engine commits a batch's last position to a Store only after the sink
// has made the batch durable, and reads it back when the pipeline starts.
// SQLite, a file under the data directory, is the default Store; Memory is
// for tests. Lock is the single-writer guard: the daemon holds a pipeline's
// lock while the pipeline runs, and `tapline offsets set/delete` take it
// briefly, so they refuse while the pipeline runs.
//
// See README.md in this directory for the file layout and the guarantees.
package offsets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tapline/tapline/connectors"
)

// Store keeps the committed position of each pipeline, keyed by pipeline
// name.
//
// A Store is safe for concurrent use. Operations on one pipeline take effect
// in the order the store applies them: the last Commit applied wins, and a
// Get or List that starts after a Commit or Delete has returned sees it (or
// a later change). Every method honours ctx; when it fails or ctx is done
// before it returns, a Commit or Delete may or may not have taken effect.
//
// Positions are opaque bytes; a Store never decodes or orders them, so
// moving a pipeline back (`tapline offsets set`) is an ordinary Commit.
type Store interface {
	// Get returns the pipeline's committed position, or nil and a nil error
	// if it has none. A committed empty position is returned as a non-nil
	// empty Position.
	Get(ctx context.Context, pipeline string) (connectors.Position, error)

	// Commit stores pos as the pipeline's position, replacing any earlier
	// one. It is durable when Commit returns nil: a crash of the process (and,
	// for SQLite, of the machine) afterwards does not lose it. pos must not
	// be nil (use Delete to forget a position); the store keeps a copy.
	Commit(ctx context.Context, pipeline string, pos connectors.Position) error

	// Delete forgets the pipeline's position, so that it starts afresh.
	// Deleting a pipeline that has no position is not an error.
	Delete(ctx context.Context, pipeline string) error

	// List returns every pipeline that has a position, sorted by pipeline
	// name (byte order).
	List(ctx context.Context) ([]Entry, error)

	// Close releases the store. A second Close returns nil; any other method
	// called after Close returns an error wrapping ErrClosed.
	Close() error
}

// Entry is one pipeline's committed position, as List returns it.
type Entry struct {
	Pipeline string
	Position connectors.Position
	// Updated is when the position was last committed, to the millisecond,
	// in UTC.
	Updated time.Time
}

// ErrClosed is returned, wrapped, by a Store used after Close.
var ErrClosed = errors.New("store closed")

// errNilPosition is returned by Commit for a nil position.
var errNilPosition = errors.New("nil position (use Delete to forget a position)")

// errEmptyName is returned for an empty pipeline name.
var errEmptyName = errors.New("empty pipeline name")

// now is the commit time as stores record it: UTC, to the millisecond.
func now() time.Time { return time.UnixMilli(time.Now().UnixMilli()).UTC() }

// opError wraps err with what the store was doing, naming the pipeline and
// where the store keeps it: `offsets: commit pipeline "orders" to
// /data/offsets.db: ...`.
func opError(op, pipeline, where string, err error) error {
	switch op {
	case "commit":
		return fmt.Errorf("offsets: commit pipeline %q to %s: %w", pipeline, where, err)
	case "list":
		return fmt.Errorf("offsets: list %s: %w", where, err)
	default:
		return fmt.Errorf("offsets: %s pipeline %q from %s: %w", op, pipeline, where, err)
	}
}

// checkCall returns why a call on pipeline must not go on, or nil.
func checkCall(ctx context.Context, pipeline string) error {
	if pipeline == "" {
		return errEmptyName
	}
	return ctx.Err()
}
