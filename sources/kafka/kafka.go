// Package kafka is the "kafka" source: it reads events (event JSON, as
// the Kafka sink and Debezium write them) from Kafka topics as a member of
// a consumer group, with isolation read_committed, so that several tapline
// processes running one pipeline share the partitions.
//
// A position (Offsets) holds the next offset of every partition the source
// reads; each event's position covers that event and everything read
// before it. Open resumes from a position exactly, ahead of the group's
// committed offsets, which serve only for partitions the position does
// not name. Offsets are committed to the group only in Ack, and only what
// was acknowledged. Transaction markers, records of the sink's offsets
// topic, and tombstones without a key or a table header (Debezium's) are
// skipped; they advance the position.
//
// A tombstone (a key and a null value) with a table header, as the Kafka
// sink writes after each delete, becomes a delete of that key whose
// schema holds only the key columns (version connectors.KeyOnlyVersion, see
// connectors.Schema.KeyOnly): after compaction it is all a topic keeps of a deleted row,
// so a view built from the compacted topic must delete the row by key.
//
// On a rebalance the source stops returning events of partitions taken
// from it and commits what was acknowledged of them; events of those
// partitions it returned but that were not yet acknowledged are read
// again by the partitions' next owner (at-least-once across a rebalance).
package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/internal/kafkaopts"
)

func init() {
	connectors.RegisterSource("kafka", "read events from Kafka topics in a consumer group (franz-go)", DefaultConfig,
		func(cfg Config, rt connectors.Runtime) (connectors.Source, error) { return New(cfg, rt) },
		connectors.WithPositions(PositionFormat))
}

var (
	_ connectors.Source     = (*Source)(nil)
	_ connectors.Backlogger = (*Source)(nil)
	_ connectors.Checker    = (*Source)(nil)
)

// tp names a topic partition.
type tp struct {
	topic string
	part  int32
}

// Source is the Kafka source. Build it with New.
type Source struct {
	cfg   Config
	log   *slog.Logger
	group string
	conn  []kgo.Opt

	cl  *kgo.Client
	adm *kadm.Client

	mu        sync.Mutex
	cur       cursors       // next offset of each owned partition whose offset is known
	initial   Offsets       // Open's position, for partitions not assigned yet
	owned     map[tp]bool   // partitions assigned to this member
	acked     map[tp]int64  // the last acknowledged next offset per owned partition
	committed map[tp]int64  // the group's committed offset per owned partition, as known
	buf       []*kgo.Record // polled and not yet turned into events
	fatal     error         // data loss or a fetch error; stops ReadBatch
	closed    bool

	// Owned by the goroutine calling ReadBatch.
	opened     bool
	dec        *eventjson.Decoder
	keySchemas map[string]*connectors.Schema // key-only schemas of tombstones (see keySchema)
	pending    error                         // returned by the next ReadBatch, after the events before it
}

// New builds a Kafka source. It does not connect; Open does.
func New(cfg Config, rt connectors.Runtime) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	s := &Source{cfg: cfg, log: rt.Log(), group: cfg.Group, dec: eventjson.NewDecoder(),
		owned: map[tp]bool{}, acked: map[tp]int64{}, committed: map[tp]int64{}}
	switch {
	case s.group == "":
		s.group = rt.Pipeline
	case rt.Rebuild:
		// A rebuild reads everything again in a group of its own; joining
		// the live group would take partitions from the live view.
		s.group = connectors.RebuildName(s.group)
	}
	if s.group == "" {
		return nil, errors.New("kafka: group: give a consumer group (there is no pipeline name to default to)")
	}
	conn, err := cfg.Conn.Options(s.log)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	s.conn = conn
	return s, nil
}

// Open joins the consumer group and positions the source after pos: each
// partition pos names is read from its offset there when the group
// assigns it; the others from the group's committed offset, or from the
// start (earliest or latest) when there is none. ctx bounds the connect.
func (s *Source) Open(ctx context.Context, pos connectors.Position) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return connectors.ErrClosed
	case s.opened:
		return errors.New("kafka: Open called twice")
	}
	if pos != nil {
		o, err := DecodePosition(pos)
		if err != nil {
			return fmt.Errorf("kafka: resume: %w", err)
		}
		s.initial = o
	}
	start := kgo.NewOffset().AtStart()
	if s.cfg.Start == StartLatest {
		start = kgo.NewOffset().AtEnd()
	}
	opts := append(append([]kgo.Opt(nil), s.conn...),
		kgo.ConsumerGroup(s.group),
		kgo.DisableAutoCommit(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // so that positions move past transaction markers
		kgo.ConsumeResetOffset(start),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
		kgo.AdjustFetchOffsetsFn(s.adjust),
		kgo.FetchMaxBytes(s.cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(s.cfg.FetchMaxPartitionBytes),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		kgo.RebalanceTimeout(s.cfg.RebalanceTimeout),
	)
	if s.cfg.TopicRegex != "" {
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics(s.cfg.regex()))
	} else {
		opts = append(opts, kgo.ConsumeTopics(s.cfg.Topics...))
	}
	// The group is joined in the background as soon as the client
	// exists; its callbacks may run before NewClient returns.
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return kafkaopts.Err(fmt.Sprintf("kafka: reach brokers %v", s.cfg.Brokers), err)
	}
	s.mu.Lock()
	s.cl = cl
	if s.adm == nil {
		s.adm = kadm.NewClient(cl)
	}
	s.mu.Unlock()
	s.opened = true
	return nil
}

// assigned records the partitions the group gave this member. It runs
// before adjust, which knows their offsets.
func (s *Source) assigned(_ context.Context, cl *kgo.Client, parts map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adm == nil {
		s.adm = kadm.NewClient(cl)
	}
	for t, ps := range parts {
		for _, p := range ps {
			s.owned[tp{t, p}] = true
		}
	}
	s.log.Info("kafka: partitions assigned", "group", s.group, "partitions", fmtParts(parts))
}

// adjust sets where newly assigned partitions start: Open's position wins
// over the group's committed offset; with neither, the log's start
// (earliest) or its last stable offset (latest), looked up now, so that
// every position names each owned partition exactly. An exact start before
// the log's start (the records were deleted) or after its end (the topic
// was recreated) is data loss, reported by ReadBatch before any event.
func (s *Source) adjust(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	exact := map[tp]int64{}
	var unresolved []tp
	topics := make([]string, 0, len(offsets))
	s.mu.Lock()
	adm := s.adm
	for t, ps := range offsets {
		topics = append(topics, t)
		for p, o := range ps {
			k := tp{t, p}
			group := o.EpochOffset().Offset
			if group >= 0 {
				s.committed[k] = group
			}
			if n, ok := s.initial[t][p]; ok {
				delete(s.initial[t], p)
				ps[p] = kgo.NewOffset().At(n).WithEpoch(-1)
				if group >= 0 && group != n {
					s.log.Info("kafka: resuming a partition from the pipeline's position, not the group's offset",
						"topic", t, "partition", p, "position", n, "group_offset", group)
				}
				exact[k] = n
			} else if group >= 0 {
				exact[k] = group
			} else {
				unresolved = append(unresolved, k)
			}
		}
	}
	s.mu.Unlock()
	if len(topics) == 0 {
		return offsets, nil
	}
	starts, ends, lso, err := listOffsets(ctx, adm, topics)
	if err != nil {
		// The partitions without an offset start where kgo resets them;
		// their positions name them from their first record on.
		s.log.Warn("kafka: could not list the partitions' offsets to check and resolve where they start", "error", err)
	} else {
		if err := checkRange(exact, starts, ends); err != nil {
			s.mu.Lock()
			if s.fatal == nil {
				s.fatal = err
			}
			s.mu.Unlock()
		}
		for _, k := range unresolved {
			from := starts
			if s.cfg.Start == StartLatest {
				from = lso
			}
			if o, ok := from.Lookup(k.topic, k.part); ok && o.Err == nil {
				offsets[k.topic][k.part] = kgo.NewOffset().At(o.Offset).WithEpoch(-1)
				exact[k] = o.Offset
			}
		}
	}
	s.mu.Lock()
	for k, n := range exact {
		s.cur.set(k.topic, k.part, n)
	}
	s.mu.Unlock()
	return offsets, nil
}

// listOffsets lists the start, end and last stable offsets of topics.
func listOffsets(ctx context.Context, adm *kadm.Client, topics []string) (starts, ends, lso kadm.ListedOffsets, err error) {
	if starts, err = adm.ListStartOffsets(ctx, topics...); err != nil {
		return
	}
	if ends, err = adm.ListEndOffsets(ctx, topics...); err != nil {
		return
	}
	lso, err = adm.ListCommittedOffsets(ctx, topics...)
	return
}

// DataLossError reports a partition whose resume offset is no longer in
// the log: the records between were deleted (retention) or the topic was
// recreated. Reading on would silently skip or repeat them.
type DataLossError struct {
	Topic      string
	Partition  int32
	Offset     int64 // where the source was to resume
	Start, End int64 // the log's start and end offsets
}

// Error says what was lost and what to do.
func (e *DataLossError) Error() string {
	if e.Offset < e.Start {
		return fmt.Sprintf("kafka: %s/%d: the position is offset %d but the log starts at %d: records %d to %d were deleted (retention.ms or retention.bytes) before this pipeline read them; rebuild the views from a source that still has them, or move the position past the gap (tapline offsets)",
			e.Topic, e.Partition, e.Offset, e.Start, e.Offset, e.Start-1)
	}
	return fmt.Sprintf("kafka: %s/%d: the position is offset %d but the log ends at %d: the topic was deleted and recreated, or truncated; rebuild the views, or reset the position (tapline offsets delete)",
		e.Topic, e.Partition, e.Offset, e.End)
}

// checkRange checks that each exact start offset is within its log.
func checkRange(exact map[tp]int64, starts, ends kadm.ListedOffsets) error {
	keys := make([]tp, 0, len(exact))
	for k := range exact {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].topic < keys[j].topic || keys[i].topic == keys[j].topic && keys[i].part < keys[j].part
	})
	for _, k := range keys {
		n := exact[k]
		so, ok1 := starts.Lookup(k.topic, k.part)
		eo, ok2 := ends.Lookup(k.topic, k.part)
		if !ok1 || !ok2 || so.Err != nil || eo.Err != nil {
			continue
		}
		if n < so.Offset || n > eo.Offset {
			return &DataLossError{Topic: k.topic, Partition: k.part, Offset: n, Start: so.Offset, End: eo.Offset}
		}
	}
	return nil
}

// revoked handles partitions the group takes from this member: what was
// acknowledged of them and not committed yet is committed, and they are
// forgotten, so that no event of theirs is returned any more.
func (s *Source) revoked(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
	commit := s.drop(parts, true)
	s.log.Info("kafka: partitions revoked", "group", s.group, "partitions", fmtParts(parts))
	if len(commit) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.commit(ctx, cl, commit); err != nil {
		s.log.Warn("kafka: commit of acknowledged offsets of revoked partitions failed; their new owner reads them again", "error", err)
	}
}

// lost handles partitions lost without a rebalance (the session expired):
// nothing can be committed for them any more.
func (s *Source) lost(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	s.drop(parts, false)
	s.log.Warn("kafka: partitions lost (session expired); their unacknowledged events are read again by their next owner", "group", s.group, "partitions", fmtParts(parts))
}

// drop forgets partitions and returns, if asked, the acknowledged offsets
// of theirs not committed yet.
func (s *Source) drop(parts map[string][]int32, wantCommit bool) map[string]map[int32]kgo.EpochOffset {
	s.mu.Lock()
	defer s.mu.Unlock()
	commit := map[string]map[int32]kgo.EpochOffset{}
	gone := map[tp]bool{}
	for t, ps := range parts {
		for _, p := range ps {
			k := tp{t, p}
			gone[k] = true
			if a, ok := s.acked[k]; ok && wantCommit && a > s.committedOr(k) {
				if commit[t] == nil {
					commit[t] = map[int32]kgo.EpochOffset{}
				}
				commit[t][p] = kgo.EpochOffset{Epoch: -1, Offset: a}
			}
			delete(s.owned, k)
			delete(s.acked, k)
			delete(s.committed, k)
			s.cur.remove(t, p)
		}
	}
	kept := s.buf[:0]
	for _, r := range s.buf {
		if !gone[tp{r.Topic, r.Partition}] {
			kept = append(kept, r)
		}
	}
	clear(s.buf[len(kept):])
	s.buf = kept
	return commit
}

func (s *Source) committedOr(k tp) int64 {
	if c, ok := s.committed[k]; ok {
		return c
	}
	return -1
}

// commit commits offsets to the group and records them as committed.
func (s *Source) commit(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) error {
	var errs []error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					errs = append(errs, fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err))
					continue
				}
				k := tp{t.Topic, p.Partition}
				if s.owned[k] {
					s.committed[k] = offsets[t.Topic][p.Partition].Offset
				}
			}
		}
	})
	if len(errs) > 0 {
		return kafkaopts.Err(fmt.Sprintf("kafka: commit offsets of group %s", s.group), errors.Join(errs...))
	}
	return nil
}

// ReadBatch returns the next events, within lim. Events of one partition
// come in offset order; partitions interleave. It blocks until it has an
// event or a position to advance to (skipped records), then returns at
// lim's bounds or MaxWait after the first one. When ctx is done it returns
// what it has, and ctx.Err() on the next call.
//
// A record that is not event JSON stops the source with an error naming
// its topic, partition and offset, after the events before it.
func (s *Source) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	var b connectors.Batch
	switch {
	case s.isClosed():
		return b, connectors.ErrClosed
	case !s.opened:
		return b, errors.New("kafka: ReadBatch before Open")
	case s.pending != nil:
		return b, s.pending
	}
	if err := ctx.Err(); err != nil {
		return b, err
	}
	// Rebalances wait while this call holds polled records (see
	// kgo.BlockRebalanceOnPoll), so that no partition is taken away
	// between reading a record and returning its event.
	defer s.cl.AllowRebalance()
	if lim.MaxEvents <= 0 && lim.MaxBytes <= 0 {
		lim.MaxEvents = 1000
	}
	var (
		size     int
		advanced bool // a record was consumed, event or not
		deadline time.Time
		timer    *time.Timer
		expired  <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	started := func() {
		if !advanced && lim.MaxWait > 0 {
			deadline = time.Now().Add(lim.MaxWait)
			timer = time.NewTimer(lim.MaxWait)
			expired = timer.C
		}
		advanced = true
	}
read:
	for !lim.Full(len(b.Events), size) {
		if err := s.fatalErr(); err != nil {
			s.pending = err
			break
		}
		r, ok := s.nextRecord()
		if !ok {
			if advanced && lim.MaxWait <= 0 {
				break
			}
			select {
			case <-expired:
				break read
			default:
			}
			got, err := s.poll(ctx, deadline, lim, len(b.Events))
			if err != nil {
				if ctx.Err() != nil {
					if advanced {
						break
					}
					return b, ctx.Err()
				}
				s.pending = err
				break
			}
			if !got && !deadline.IsZero() && !time.Now().Before(deadline) {
				break // MaxWait has passed
			}
			continue
		}
		if r.Attrs.IsControl() || r.Topic == s.cfg.OffsetsTopic {
			s.advance(r, false)
			started()
			continue
		}
		if len(r.Value) == 0 {
			// A tombstone: after compaction it is all that is left of a
			// deleted row, so it deletes the row by key.
			ev, ok, err := s.tombstone(r)
			if err != nil {
				s.pending = err
				break
			}
			if !ok {
				s.advance(r, false)
				started()
				continue
			}
			ev.Position = s.advance(r, true)
			b.Events = append(b.Events, ev)
			size += ev.Size()
			started()
			continue
		}
		ev, err := s.dec.Decode(r.Value)
		if err != nil {
			s.pending = fmt.Errorf("kafka: %s/%d at offset %d is not an event: %w", r.Topic, r.Partition, r.Offset, err)
			break
		}
		ev.Position = s.advance(r, true)
		b.Events = append(b.Events, ev)
		size += ev.Size()
		started()
	}
	if advanced {
		s.mu.Lock()
		b.Last = s.cur.position()
		s.mu.Unlock()
	}
	if len(b.Events) == 0 && b.Last == nil && s.pending != nil {
		return b, s.pending
	}
	return b, nil
}

func (s *Source) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Source) fatalErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fatal
}

// nextRecord takes the next polled record of a partition still owned.
func (s *Source) nextRecord() (*kgo.Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.buf) > 0 {
		r := s.buf[0]
		s.buf[0] = nil
		s.buf = s.buf[1:]
		if s.owned[tp{r.Topic, r.Partition}] {
			return r, true
		}
	}
	s.buf = nil
	return nil, false
}

// advance moves the partition's position past r and returns, if asked,
// the position after it.
func (s *Source) advance(r *kgo.Record, encode bool) connectors.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.set(r.Topic, r.Partition, r.Offset+1)
	if !encode {
		return nil
	}
	return s.cur.position()
}

// poll fetches more records into the buffer: as many as the batch has room
// for, waiting until deadline (zero: until ctx is done) for the first. It
// reports whether it got any.
func (s *Source) poll(ctx context.Context, deadline time.Time, lim connectors.Limits, have int) (bool, error) {
	n := 1000
	if lim.MaxEvents > 0 {
		n = max(lim.MaxEvents-have, 1)
	}
	pctx := ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		pctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	fs := s.cl.PollRecords(pctx, n)
	var errs []error
	fs.EachError(func(t string, p int32, err error) {
		var loss *kgo.ErrDataLoss
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		case errors.As(err, &loss):
			errs = append(errs, &DataLossError{Topic: t, Partition: p, Offset: loss.ConsumedTo, Start: loss.ResetTo, End: loss.ResetTo})
		default:
			errs = append(errs, kafkaopts.Err(fmt.Sprintf("kafka: fetch %s/%d", t, p), err))
		}
	})
	recs := fs.Records()
	if len(recs) > 0 {
		s.mu.Lock()
		s.buf = append(s.buf, recs...)
		s.mu.Unlock()
	}
	if len(errs) > 0 && len(recs) == 0 {
		return false, errors.Join(errs...)
	}
	if len(errs) > 0 {
		// The error stops the source before any more event, these
		// records' included: after data loss they follow a gap.
		s.mu.Lock()
		if s.fatal == nil {
			s.fatal = errors.Join(errs...)
		}
		s.mu.Unlock()
	}
	if len(recs) == 0 {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if s.isClosed() {
			return false, connectors.ErrClosed
		}
	}
	return len(recs) > 0, nil
}

// Ack commits pos to the consumer group: for each partition this member
// owns, the next offset pos holds for it, when that is past what the group
// has. Partitions taken from this member since are left to their new
// owner, which reads them from the group's offset.
func (s *Source) Ack(ctx context.Context, pos connectors.Position) error {
	o, err := DecodePosition(pos)
	if err != nil {
		return fmt.Errorf("kafka: ack: %w", err)
	}
	s.mu.Lock()
	if s.closed || s.cl == nil {
		s.mu.Unlock()
		return connectors.ErrClosed
	}
	commit := map[string]map[int32]kgo.EpochOffset{}
	for t, ps := range o {
		for p, n := range ps {
			k := tp{t, p}
			if !s.owned[k] {
				continue
			}
			if a, ok := s.acked[k]; !ok || n > a {
				s.acked[k] = n
			}
			if n <= s.committedOr(k) {
				continue
			}
			if commit[t] == nil {
				commit[t] = map[int32]kgo.EpochOffset{}
			}
			commit[t][p] = kgo.EpochOffset{Epoch: -1, Offset: n}
		}
	}
	cl := s.cl
	s.mu.Unlock()
	if len(commit) == 0 {
		return nil
	}
	return s.commit(ctx, cl, commit)
}

// Backlog returns how many records of the partitions this member owns are
// in the log after its position: the last stable offset (the end a
// read_committed reader sees) minus the position, summed. Partitions with
// no position yet count from where they will start.
func (s *Source) Backlog(ctx context.Context) (int64, error) {
	s.mu.Lock()
	adm := s.adm
	if adm == nil || s.closed || !s.opened {
		s.mu.Unlock()
		return 0, connectors.ErrClosed
	}
	owned := make([]tp, 0, len(s.owned))
	next := map[tp]int64{}
	topics := map[string]bool{}
	for k := range s.owned {
		owned = append(owned, k)
		topics[k.topic] = true
		if n, ok := s.cur.get(k.topic, k.part); ok {
			next[k] = n
		}
	}
	s.mu.Unlock()
	if len(owned) == 0 {
		return 0, nil
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	ends, err := adm.ListCommittedOffsets(ctx, names...)
	if err != nil {
		return 0, kafkaopts.Err("kafka: list end offsets", err)
	}
	var starts kadm.ListedOffsets
	if len(next) < len(owned) && s.cfg.Start == StartEarliest {
		if starts, err = adm.ListStartOffsets(ctx, names...); err != nil {
			return 0, kafkaopts.Err("kafka: list start offsets", err)
		}
	}
	var total int64
	for _, k := range owned {
		eo, ok := ends.Lookup(k.topic, k.part)
		if !ok || eo.Err != nil {
			continue
		}
		n, known := next[k]
		if !known {
			if s.cfg.Start == StartLatest {
				continue
			}
			so, ok := starts.Lookup(k.topic, k.part)
			if !ok || so.Err != nil {
				continue
			}
			n = so.Offset
		}
		total += max(eo.Offset-n, 0)
	}
	return total, nil
}

// Close leaves the group (committing what was acknowledged of its
// partitions and not committed yet, nothing else) and closes the client.
// A second Close, or one without Open, returns nil.
func (s *Source) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cl := s.cl
	s.mu.Unlock()
	if cl == nil {
		return nil
	}
	cl.AllowRebalance()
	if err := cl.LeaveGroupContext(ctx); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Warn("kafka: leave group", "group", s.group, "error", err)
	}
	cl.Close()
	s.mu.Lock()
	s.buf = nil
	s.mu.Unlock()
	return nil
}

// Check connects and verifies, without joining the group, that the
// brokers answer, that the topics exist (or that topic_regex matches at
// least one), and that the group's coordinator answers and lets this
// principal describe the group.
func (s *Source) Check(ctx context.Context) error {
	cl, err := kgo.NewClient(s.conn...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.BrokerMetadata(ctx); err != nil {
		return kafkaopts.Err(fmt.Sprintf("kafka: brokers %v", s.cfg.Brokers), err)
	}
	var errs []error
	if s.cfg.TopicRegex != "" {
		all, err := adm.ListTopics(ctx)
		if err != nil {
			return kafkaopts.Err("kafka: list topics", err)
		}
		re := regexp.MustCompile(s.cfg.regex()) // checked by Validate
		matched := 0
		for _, t := range all.Names() {
			if re.MatchString(t) {
				matched++
			}
		}
		if matched == 0 {
			errs = append(errs, fmt.Errorf("kafka: topic_regex: %q matches no topic yet", s.cfg.TopicRegex))
		}
	} else {
		td, err := adm.ListTopics(ctx, s.cfg.Topics...)
		if err != nil {
			return kafkaopts.Err("kafka: look up topics", err)
		}
		for _, t := range s.cfg.Topics {
			if d, ok := td[t]; !ok || d.Err != nil {
				var derr error = kerr.UnknownTopicOrPartition
				if ok && d.Err != nil {
					derr = d.Err
				}
				errs = append(errs, fmt.Errorf("kafka: topics: %s: %w", t, derr))
			}
		}
	}
	dg, err := adm.DescribeGroups(ctx, s.group)
	if err == nil {
		if g, ok := dg[s.group]; ok && g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
			err = g.Err // a group that does not exist yet is fine: joining creates it
		}
	}
	if err != nil {
		errs = append(errs, kafkaopts.Err(fmt.Sprintf("kafka: group %s", s.group), err))
	}
	return errors.Join(errs...)
}

func fmtParts(parts map[string][]int32) string {
	var b bytes.Buffer
	topics := make([]string, 0, len(parts))
	for t := range parts {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for i, t := range topics {
		if i > 0 {
			b.WriteByte(' ')
		}
		ps := append([]int32(nil), parts[t]...)
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		fmt.Fprintf(&b, "%s%v", t, ps)
	}
	return b.String()
}
