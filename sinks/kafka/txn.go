package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

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
	cerr := s.cl.EndTransaction(ectx, kgo.TryCommit)
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
