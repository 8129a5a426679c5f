package connectors

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Batch is a bounded run of events in source order. Last is the position to
// commit once every event is durable; it is at or after the last event's
// position and may be set on a batch with no events, so that a source can
// advance its position without data (heartbeats, skipped tables).
type Batch struct {
	Events []Event
	Last   Position
}

// Size is the sum of the events' estimated sizes.
func (b *Batch) Size() int {
	n := 0
	for i := range b.Events {
		n += b.Events[i].Size()
	}
	return n
}

// Limits bounds one batch. A source returns a batch as soon as it holds
// MaxEvents events or MaxBytes estimated bytes (Event.Size), or MaxWait has
// passed since its first event was read, whichever comes first.
type Limits struct {
	MaxEvents int
	MaxBytes  int
	MaxWait   time.Duration
}

// Full reports whether a batch of n events and size bytes has reached the
// count or byte bound.
func (l Limits) Full(n, size int) bool {
	return (l.MaxEvents > 0 && n >= l.MaxEvents) || (l.MaxBytes > 0 && size >= l.MaxBytes)
}

// Source reads changes from one upstream stream.
//
// The engine calls Open once, then ReadBatch repeatedly from one goroutine.
// Ack is called from another goroutine, concurrently with ReadBatch, in
// position order, and possibly after ReadBatch's context is done. Close is
// called once, after the last Ack; it must also be safe to call when Open
// failed, and a second call returns nil.
type Source interface {
	// Open connects and positions the source to continue strictly after pos;
	// a nil pos means start as configured (from the beginning, or with a
	// snapshot). ctx bounds the connect only, not the life of the source.
	Open(ctx context.Context, pos Position) error

	// ReadBatch returns the next events in order, within lim. It blocks
	// until it has at least one event or a position to advance to. When ctx
	// is done it returns what it has buffered, if anything, with a nil
	// error, and ctx.Err() on the next call. A source holds at most one
	// batch's worth of events in memory, whatever the size of an upstream
	// transaction.
	ReadBatch(ctx context.Context, lim Limits) (Batch, error)

	// Ack tells the source that everything up to and including pos is
	// durable downstream, so it may release it upstream (Postgres: confirm
	// the flush LSN; Kafka: commit the group offset; NATS: ack messages).
	// A source must never release more than was acked.
	Ack(ctx context.Context, pos Position) error

	// Close releases every resource. It does not acknowledge anything.
	Close(ctx context.Context) error
}

// Sink writes batches to a store or a log.
//
// The engine calls Open once, WriteBatch from one goroutine, then Close once
// (also after a failed Open; a second Close returns nil).
type Sink interface {
	Open(ctx context.Context) error

	// WriteBatch returns nil only when every event of b is durable. On error
	// nothing is assumed durable and the batch may be written again; a sink
	// must make a repeated write harmless (upserts by key, deduplication
	// ids), or be an AtomicSink. A sink that refuses particular events (a
	// value the store cannot hold) returns a *RejectError naming them,
	// having written nothing of the batch.
	WriteBatch(ctx context.Context, b Batch) error

	Close(ctx context.Context) error
}

// AtomicSink is a Sink that stores b.Last in the same transaction as b's
// events. The engine resumes the source from CommittedPosition rather than
// from the offset store, so a batch is never applied twice: exactly-once.
type AtomicSink interface {
	Sink
	// CommittedPosition returns the position stored with the last batch
	// written, or nil if none was. It is called after Open.
	CommittedPosition(ctx context.Context) (Position, error)
}

// PipelinedSink is a Sink that can take the next batch while earlier ones
// are still becoming durable: a log that acknowledges asynchronously (NATS
// JetStream). The engine starts a batch, then starts the next one before
// waiting for the first, so the log's pipe never drains between batches;
// it still commits and acknowledges each batch only once it is durable,
// and in order.
type PipelinedSink interface {
	Sink
	// StartBatch starts writing b and returns once the sink no longer
	// refers to b's events; the Pending reports when they are durable.
	// Batches become durable in the order they were started. A
	// *RejectError means nothing of b was written; any other error, from
	// StartBatch or the Pending, means b is not durable and is written
	// again (with WriteBatch, after the Pendings started before it are
	// done), exactly as after a WriteBatch error.
	StartBatch(ctx context.Context, b Batch) (Pending, error)
}

// Pending is a batch a PipelinedSink has started.
type Pending interface {
	// Done is closed once the batch is durable or has failed.
	Done() <-chan struct{}
	// Err, after Done is closed, is nil when every event of the batch is
	// durable.
	Err() error
}

// Checker is implemented by connectors that can verify their connectivity
// and the upstream's settings without reading or writing data
// (`tapline validate --connect`). Check is called before Open, and the
// connector is then closed.
type Checker interface {
	Check(ctx context.Context) error
}

// Runtime is what the engine gives a connector when building it.
type Runtime struct {
	// Pipeline is the name of the pipeline the connector runs in; sinks that
	// store positions key them by it.
	Pipeline string
	// DataDir is the directory tapline keeps its state in; connectors may
	// create files under DataDir/<pipeline>.
	DataDir string
	// Logger is the connector's logger, with pipeline and connector set.
	Logger *slog.Logger
	// Metrics registers the connector's own metrics; nil means don't.
	Metrics prometheus.Registerer
	// Rebuild is set for the source of a rebuild (`tapline rebuild`): it
	// reads the log again beside the live pipeline, so a consumer group
	// or durable consumer named in its config must not be the live one's.
	// Pipeline is then the rebuild's own name.
	Rebuild bool
}

// RebuildName is the name a source reading for a rebuild gives a consumer
// group or durable consumer that its config names explicitly.
func RebuildName(name string) string { return name + "-rebuild" }

// Log returns r.Logger, or a logger that discards everything.
func (r Runtime) Log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// ShadowSink is a view sink that can be rebuilt by replay (`tapline
// rebuild`): a second instance of it, told to use shadow tables, is filled
// from the start of the log while the live view keeps serving, then
// promoted in one step.
type ShadowSink interface {
	Sink
	// UseShadow, called before Open, makes the sink write every table into
	// a shadow copy (emptied when Open finds one left by an earlier,
	// abandoned rebuild) and keep its stored positions apart from the live
	// ones, leaving the live view untouched.
	UseShadow()
	// Promote atomically replaces the live tables and stored positions with
	// the shadow ones: a reader sees the old view or the new one, never a
	// mix or an empty table. The sink is then closed.
	Promote(ctx context.Context) error
}

// Backlogger is a source that can tell how far it is behind the end of
// what it reads (messages left in a log), for the lag metric and to know
// when a rebuild has caught up.
type Backlogger interface {
	// Backlog returns the number of events (or messages) after the last
	// one ReadBatch returned that are already in the log.
	Backlog(ctx context.Context) (int64, error)
}

// Dropper is a source that keeps state upstream (a replication slot, a
// publication, a durable consumer) and can release it for good:
// `tapline source NAME --drop-slot`. Drop is called instead of Open; the
// position stored for the source is meaningless afterwards.
type Dropper interface {
	Drop(ctx context.Context) error
}
