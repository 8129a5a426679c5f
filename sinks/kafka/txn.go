package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/kafkaopts"
)

func newClient(opts []kgo.Opt, more ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...), more...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return cl, nil
}

// writeTxn writes recs and the position last in one transaction.
//
// A crash anywhere before the commit leaves the transaction open; the
// next sink with the same transactional id aborts it when it opens, and
// the engine writes the batch again from the position stored before, so a
// read_committed consumer sees the batch once. When the commit's outcome
// is unknown (the reply was lost), the transaction is aborted if it is
// still open and the stored position tells whether it committed.
func (s *Sink) writeTxn(ctx context.Context, recs []kgo.Record, last connectors.Position) error {
	if err := s.cl.BeginTransaction(); err != nil {
		return s.txnErr("begin transaction", err)
	}
	if last != nil {
		recs = append(recs, kgo.Record{Topic: s.cfg.OffsetsTopic, Key: s.posKey, Value: last})
	}
	// EndTransaction must not be cut short: a cancelled commit has an
	// unknown outcome, and a cancelled abort leaves the client unusable.
	ectx := context.WithoutCancel(ctx)
	if err := s.send(ctx, recs); err != nil {
		if aerr := s.cl.EndTransaction(ectx, kgo.TryAbort); aerr != nil {
			s.log.Warn("kafka: abort the transaction of a failed batch", "transactional_id", s.txnID, "error", aerr)
		}
		if fenced(err) {
			return s.txnErr("produce", err)
		}
		return err
	}
	if s.beforeCommit != nil {
		if err := s.beforeCommit(); err != nil {
			return err
		}
	}
	s.endWatch.reset()
	cerr := s.cl.EndTransaction(ectx, kgo.TryCommit)
	if cerr == nil && s.endWatch.abortedCommit() {
		// Nothing of the batch is visible to read_committed readers, and
		// the stored position has not moved: write it again, with a new
		// client, since this one's producer state is off (its next
		// produce can fail with OUT_OF_ORDER_SEQUENCE_NUMBER).
		s.log.Warn("kafka: the client ended the batch's transaction with an abort although asked to commit; reconnecting to write the batch again",
			"transactional_id", s.txnID, "position", last.String())
		err := fmt.Errorf("kafka: the transaction of the batch ending at %s was aborted by the client (franz-go saw no partition added to it, although its records were acknowledged); it is written again", last)
		if rerr := s.reconnect(ctx); rerr != nil {
			return fmt.Errorf("%w; and reconnecting failed: %w", err, rerr)
		}
		return connectors.Retryable(err)
	}
	if cerr == nil {
		if last != nil {
			s.committed = bytes.Clone(last)
		}
		return nil
	}
	// The commit failed or its outcome is unknown. Aborting settles it:
	// it aborts the transaction if it is still open (reloading the
	// producer id fences it broker-side) and does nothing if it
	// committed. The stored position then says which happened.
	if aerr := s.cl.EndTransaction(ectx, kgo.TryAbort); aerr != nil {
		s.log.Warn("kafka: abort after a failed commit", "transactional_id", s.txnID, "error", aerr)
	}
	err := s.txnErr("commit transaction", cerr)
	if last == nil || fenced(cerr) {
		return err
	}
	pos, rerr := s.readCommitted(ctx)
	switch {
	case rerr != nil:
		return fmt.Errorf("%w; and reading the stored position to learn whether it committed failed: %v", err, rerr)
	case bytes.Equal(pos, last):
		s.log.Warn("kafka: the transaction committed although its commit reported an error", "transactional_id", s.txnID, "error", cerr)
		s.committed = pos
		return nil
	}
	// Not committed, and aborted: writing the batch again is safe.
	return connectors.Retryable(err)
}

// reconnect replaces the client with a new one, opened as Open does: it
// takes over the transactional id again and reads the stored position.
func (s *Sink) reconnect(ctx context.Context) error {
	s.cl.Close()
	cl, err := kgo.NewClient(s.produce...)
	if err != nil {
		s.cl, s.adm = nil, nil
		s.opened = false
		return fmt.Errorf("kafka: %w", err)
	}
	s.cl, s.adm = cl, kadm.NewClient(cl)
	if err := s.open(ctx); err != nil {
		return err
	}
	return nil
}

// endWatch is the transactional producer's logger. It passes what it is
// given on to the configured logger, and notes when franz-go ends a
// transaction it was asked to commit with an abort.
//
// franz-go (v1.22.2) does so when it finds no partition marked as added
// to the transaction, and EndTransaction then returns nil. That happens
// although the sink's records were produced and acknowledged: seen under
// load (with -race and the CPU busy) in about one transaction of a few
// hundred with a single record, the stored position alone
// (TestEmptyBatchesSurviveReopens), and the client's next produce may then
// fail with OUT_OF_ORDER_SEQUENCE_NUMBER. Without this watch the
// sink took the batch for committed: its events were lost to
// read_committed readers, and its position was not stored, so a restart
// would read the batch's source events again, but a running pipeline
// went on past them. The only sign of it is a log line, emitted inside
// EndTransaction; this logger turns it into an error.
type endWatch struct {
	inner   kgo.Logger
	aborted atomic.Bool
}

// abortMessage begins franz-go's log line for a commit it turns into an
// abort.
const abortMessage = "no produce succeeded in this transaction"

// Level is at least LogLevelInfo, the level of that line.
func (w *endWatch) Level() kgo.LogLevel { return max(w.inner.Level(), kgo.LogLevelInfo) }

// Log notes the abort line, and passes on what the inner logger wants.
func (w *endWatch) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if strings.HasPrefix(msg, abortMessage) {
		w.aborted.Store(true)
	}
	if level <= w.inner.Level() {
		w.inner.Log(level, msg, keyvals...)
	}
}

func (w *endWatch) reset()              { w.aborted.Store(false) }
func (w *endWatch) abortedCommit() bool { return w.aborted.Load() }

// fenced reports errors after which this producer can no longer write:
// another producer took over its transactional id, or the broker aborted
// its transaction.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDNotFound) || errors.Is(err, kerr.InvalidProducerIDMapping) ||
		errors.Is(err, kerr.InvalidTxnState)
}

// txnErr explains transaction errors: a fenced producer means another sink
// took over the transactional id, which retrying cannot fix.
func (s *Sink) txnErr(what string, err error) error {
	if fenced(err) {
		return fmt.Errorf("kafka: %s (transactional id %q): %w; another sink with this transactional id has started (is the pipeline running twice?), or a batch took longer than transaction_timeout (%s); the pipeline must restart", what, s.txnID, err, s.cfg.TransactionTimeout)
	}
	if errors.Is(err, kerr.OperationNotAttempted) {
		return connectors.Retryable(fmt.Errorf("kafka: %s: %w", what, err))
	}
	return kafkaopts.Err("kafka: "+what, err)
}

// keyPartition returns the partition of n that a record keyed key goes to,
// as the producer's partitioner chooses it (murmur2, like Java's).
func keyPartition(topic string, key []byte, n int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: key}, n))
}

// readCommitted reads the latest committed record keyed by the pipeline
// name from its partition of offsets_topic, with isolation read_committed:
// it reads the partition from its start up to the high watermark listed
// first, so that a commit made before the call is seen even while another
// pipeline's transaction on the same partition is still open (the read
// waits for that one to settle; a transaction lasts at most
// transaction_timeout). A tombstone there means no position.
func (s *Sink) readCommitted(ctx context.Context) (connectors.Position, error) {
	topic := s.cfg.OffsetsTopic
	what := "kafka: read the stored position from offsets_topic " + topic
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*s.cfg.TransactionTimeout+30*time.Second)
		defer cancel()
	}
	md, err := s.adm.Metadata(ctx, topic)
	if err != nil {
		return nil, kafkaopts.Err(what, err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		err := td.Err
		if err == nil {
			err = kerr.UnknownTopicOrPartition
		}
		return nil, kafkaopts.Err(what, err)
	}
	p := keyPartition(topic, s.posKey, len(td.Partitions))
	starts, err := s.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, kafkaopts.Err(what, err)
	}
	ends, err := s.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, kafkaopts.Err(what, err)
	}
	so, ok1 := starts.Lookup(topic, p)
	eo, ok2 := ends.Lookup(topic, p)
	if !ok1 || !ok2 || so.Err != nil || eo.Err != nil {
		return nil, kafkaopts.Err(what, errors.Join(so.Err, eo.Err, errors.New("no offsets listed")))
	}
	if eo.Offset <= so.Offset {
		return nil, nil
	}
	cl, err := newClient(s.conn,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(so.Offset)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // the last record before the end may be a commit marker
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var pos connectors.Position
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, kafkaopts.Err(fmt.Sprintf("%s (partition %d, reading offsets %d to %d)", what, p, so.Offset, eo.Offset), err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return nil, kafkaopts.Err(what, ferr)
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= eo.Offset-1 {
				done = true
			}
			if r.Offset < eo.Offset && !r.Attrs.IsControl() && bytes.Equal(r.Key, s.posKey) {
				pos = bytes.Clone(r.Value) // nil for a tombstone
			}
		})
		if done {
			return pos, nil
		}
	}
}
