// Package kafka is the "kafka" sink: it writes each event to Kafka topics
// (through franz-go), one topic per table, keyed by the row's primary key
// so that Kafka's default partitioner (murmur2, as in the Java client) keeps
// every change of a row in one partition, in order.
//
// The record value is the event's JSON envelope (package eventjson, with
// its schema block); the key is the primary key as a JSON object
// ({"id":42}); headers carry op, table, schema_version and position. A
// delete is followed by a tombstone (same key, null value) so that a
// compacted topic forgets the row. One pipeline can write every event to
// several topics (Config.Topics): a compacted "table" topic holding the
// latest row per key next to a "history" topic keeping every change.
//
// The producer is always idempotent and waits for all in-sync replicas:
// WriteBatch returns only when every record of the batch is acknowledged.
// With delivery: exactly_once each batch is one Kafka transaction that
// also writes the batch's position to a compacted offsets topic, and the
// sink is a connectors.AtomicSink: a read_committed consumer sees each
// batch once, whatever crash happens between produce and commit.
package kafka

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/internal/kafkaopts"
)

func init() {
	connectors.RegisterSink("kafka", "write events to Kafka topics, one per table, keyed by primary key (franz-go)", DefaultConfig, New)
}

// The record headers the sink sets on every record.
const (
	HeaderOp            = "op"             // the event's op letter: c, u, d, r, t, h
	HeaderTable         = "table"          // the logical table, schema.name
	HeaderSchemaVersion = "schema_version" // the table's schema version, decimal
	HeaderPosition      = "position"       // the event's position in the pipeline's source, 0x-hex
)

// HeartbeatSuffix ends the name of the topic heartbeat events (op h) are
// written to: <topic_prefix>._heartbeat, one record per heartbeat keyed by
// its origin ("postgres/shop"). A view reading the log lists that topic
// among its topics so that read-your-writes waits end while the captured
// tables are idle.
const HeartbeatSuffix = "_heartbeat"

// maxKeptBuffer is the largest encoding buffer kept between batches.
const maxKeptBuffer = 8 << 20

// Sink is the Kafka sink with delivery: at_least_once. Build it with New.
type Sink struct {
	cfg     Config
	log     *slog.Logger
	conn    []kgo.Opt // connection options, also for the offsets reader
	produce []kgo.Opt // producer options
	tmpl    template
	outs    []output
	eos     bool
	txnID   string
	posKey  []byte // the pipeline name: the key of its position in offsets_topic
	// endWatch is the producer's logger with exactly_once: it sees
	// franz-go turn a commit into an abort (see endWatch).
	endWatch *endWatch

	// beforeCommit, when set by a test, runs between the produce and the
	// commit of a transaction; an error from it makes WriteBatch return
	// at once, leaving the transaction open, as a crash would.
	beforeCommit func() error

	mu        sync.Mutex // held by Open, WriteBatch, CommittedPosition and Close
	cl        *kgo.Client
	adm       *kadm.Client
	opened    bool
	closed    bool
	committed connectors.Position // exactly_once: the position stored with the last batch

	// Owned by WriteBatch (under mu).
	enc      eventjson.Encoder
	buf      []byte
	names    map[nameKey][]string // topic names per output, by origin
	ready    map[string]bool      // topics known to exist
	tables   map[*connectors.Schema]tableHeaders
	warnedTT map[string]bool // compacted topics warned about skipped truncates
}

var (
	_ connectors.Sink       = (*Sink)(nil)
	_ connectors.Checker    = (*Sink)(nil)
	_ connectors.AtomicSink = ExactlyOnceSink{}
	_ connectors.Checker    = ExactlyOnceSink{}
)

// nameKey is what a topic name depends on.
type nameKey struct{ db, schema, table, dest string }

type tableHeaders struct{ table, version []byte }

// ExactlyOnceSink is the Kafka sink with delivery: exactly_once: a Sink
// that is also a connectors.AtomicSink. Build it with New.
type ExactlyOnceSink struct {
	*Sink
}

// CommittedPosition returns the position stored with the last batch
// written (read from offsets_topic when the sink opened, then kept as
// batches commit), or nil if none was.
func (s ExactlyOnceSink) CommittedPosition(context.Context) (connectors.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.opened {
		return nil, errors.New("kafka: CommittedPosition before Open")
	}
	return bytes.Clone(s.committed), nil
}

// New builds a Kafka sink: a *Sink, or an ExactlyOnceSink for delivery:
// exactly_once. It does not connect; Open does.
func New(cfg Config, rt connectors.Runtime) (connectors.Sink, error) {
	s, err := newSink(cfg, rt)
	if err != nil {
		return nil, err
	}
	if s.eos {
		return ExactlyOnceSink{s}, nil
	}
	return s, nil
}

func newSink(cfg Config, rt connectors.Runtime) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	s := &Sink{cfg: cfg, log: rt.Log(), eos: cfg.Delivery == ExactlyOnce}
	s.tmpl, _ = parseTemplate(cfg.Topic)
	s.outs, _ = cfg.outputs()
	conn, err := cfg.Conn.Options(s.log)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	codec, _ := compression(cfg.Compression)
	s.conn = conn
	s.produce = append(append([]kgo.Opt(nil), conn...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence needs acks from all in-sync replicas
		kgo.ProducerBatchCompression(codec),
		// Keyed records go to murmur2(key) mod partitions, as the Java
		// client's default partitioner does; unkeyed ones fill a batch
		// of one partition at a time (Kafka's KIP-794).
		kgo.RecordPartitioner(kgo.UniformBytesPartitioner(64<<10, true, true, nil)),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		kgo.ProducerBatchMaxBytes(int32(max(cfg.MaxMessageBytes+1024, 1_000_012))),
	)
	if s.eos {
		if rt.Pipeline == "" {
			return nil, errors.New("kafka: delivery: exactly_once needs the pipeline's name, which keys the stored position")
		}
		s.posKey = []byte(rt.Pipeline)
		s.txnID = cfg.TxnID
		if s.txnID == "" {
			s.txnID = "tapline-" + rt.Pipeline
		}
		s.endWatch = &endWatch{inner: kafkaopts.Logger(s.log)}
		s.produce = append(s.produce, kgo.TransactionalID(s.txnID), kgo.TransactionTimeout(cfg.TransactionTimeout),
			kgo.WithLogger(s.endWatch))
	}
	return s, nil
}

// Open connects to the brokers. With delivery: exactly_once it also makes
// sure offsets_topic exists, takes over the transactional id (the broker
// then aborts any transaction a crashed predecessor left open) and reads
// the position stored last.
func (s *Sink) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return connectors.ErrClosed
	case s.opened:
		return nil
	}
	cl, err := kgo.NewClient(s.produce...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	s.cl, s.adm = cl, kadm.NewClient(cl)
	s.names, s.ready, s.tables, s.warnedTT = map[nameKey][]string{}, map[string]bool{}, map[*connectors.Schema]tableHeaders{}, map[string]bool{}
	if err := s.open(ctx); err != nil {
		cl.Close()
		s.cl, s.adm = nil, nil
		return err
	}
	s.opened = true
	return nil
}

func (s *Sink) open(ctx context.Context) error {
	if err := s.cl.Ping(ctx); err != nil {
		return kafkaopts.Err(fmt.Sprintf("kafka: reach brokers %v", s.cfg.Brokers), err)
	}
	if !s.eos {
		return nil
	}
	if err := s.ensureOffsetsTopic(ctx); err != nil {
		return err
	}
	// Initialising the producer id with our transactional id fences any
	// older producer using it and makes the broker abort the transaction
	// it left open, so that what we read next is settled.
	if _, _, err := s.cl.ProducerID(ctx); err != nil {
		return kafkaopts.Err(fmt.Sprintf("kafka: initialise transactional producer %q", s.txnID), err)
	}
	pos, err := s.readCommitted(ctx)
	if err != nil {
		return err
	}
	s.committed = pos
	return nil
}

// WriteBatch writes every event of b to its topics and returns once all
// records are acknowledged by all in-sync replicas. With delivery:
// exactly_once the batch and its position commit in one transaction; a
// batch whose Last is the position already stored is not written again.
//
// Events that cannot be written (not encodable, larger than
// max_message_bytes, a topic name Kafka refuses, or no primary key for a
// compacted topic) make a *connectors.RejectError, and nothing of the batch
// is written. Failures where trying again may help are
// connectors.Retryable.
func (s *Sink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return connectors.ErrClosed
	case !s.opened:
		return errors.New("kafka: WriteBatch before Open")
	case s.eos && b.Last != nil && bytes.Equal(b.Last, s.committed):
		return nil // committed before a crash or a lost reply: a replay
	case len(b.Events) == 0 && (!s.eos || b.Last == nil):
		return nil
	}
	recs, need, err := s.records(b.Events)
	if err != nil {
		return err
	}
	if err := s.ensureTopics(ctx, need); err != nil {
		return err
	}
	if s.eos {
		return s.writeTxn(ctx, recs, b.Last)
	}
	return s.send(ctx, recs)
}

// records encodes the events into records, in order: for each event one
// record per output, each followed by a tombstone after a delete. It
// returns the topics not yet known to exist, by output.
func (s *Sink) records(evs []connectors.Event) ([]kgo.Record, map[string]int, error) {
	recs := make([]kgo.Record, 0, len(evs)*len(s.outs))
	hdrs := make([]kgo.RecordHeader, 0, 4*len(evs)) // the batch's headers, in one allocation
	need := map[string]int{}
	buf := s.buf[:0]
	var rejected []connectors.EventError
	reject := func(i int, err error) { rejected = append(rejected, connectors.EventError{Index: i, Err: err}) }
	for i := range evs {
		ev := &evs[i]
		start := len(buf)
		var hasKey bool
		var err error
		buf, hasKey, err = eventjson.AppendKey(buf, ev)
		if err != nil {
			reject(i, err)
			continue
		}
		var key []byte
		if hasKey {
			key = buf[start:len(buf):len(buf)]
		}
		vstart := len(buf)
		if buf, err = s.enc.AppendEvent(buf, ev); err != nil {
			buf = buf[:start]
			reject(i, err)
			continue
		}
		value := buf[vstart:len(buf):len(buf)]
		hstart := len(hdrs)
		hdrs, buf = s.headers(hdrs, buf, ev)
		headers := hdrs[hstart:len(hdrs):len(hdrs)]
		if n := recordSize(key, value, headers); n > s.cfg.MaxMessageBytes {
			buf = buf[:start]
			reject(i, fmt.Errorf("record of %d bytes is larger than max_message_bytes (%d)", n, s.cfg.MaxMessageBytes))
			continue
		}
		if ev.Op == connectors.OpHeartbeat {
			// One record per heartbeat, keyed by its origin so that a
			// compacted topic keeps the latest of each.
			topic := s.cfg.TopicPrefix + "." + HeartbeatSuffix
			if err := kafkaopts.ValidTopic(topic); err != nil {
				buf = buf[:start]
				reject(i, fmt.Errorf("heartbeat topic: %w", err))
				continue
			}
			kstart := len(buf)
			buf = append(buf, connectors.OriginKey(ev.Source)...)
			if !s.ready[topic] {
				need[topic] = 0
			}
			recs = append(recs, kgo.Record{Topic: topic, Key: buf[kstart:len(buf):len(buf)], Value: value, Headers: headers})
			continue
		}
		names, err := s.topicNames(ev)
		if err != nil {
			buf = buf[:start]
			reject(i, err)
			continue
		}
		for oi, o := range s.outs {
			topic := names[oi]
			if key == nil && o.compact {
				if ev.Op == connectors.OpTruncate {
					if !s.warnedTT[topic] {
						s.warnedTT[topic] = true
						s.log.Warn("kafka: a truncate cannot be written to a compacted topic (it has no key); the topic keeps the rows until their deletes arrive", "topic", topic)
					}
					continue
				}
				reject(i, fmt.Errorf("table %s has no primary key, and topic %s is compacted (records need a key); give the table a key, or drop compact from topics[%d].cleanup_policy", ev.Table(), topic, oi))
				break
			}
			if !s.ready[topic] {
				need[topic] = oi
			}
			recs = append(recs, kgo.Record{Topic: topic, Key: key, Value: value, Headers: headers})
			if ev.Op == connectors.OpDelete && key != nil && o.tombstones {
				recs = append(recs, kgo.Record{Topic: topic, Key: key, Headers: headers})
			}
		}
	}
	if cap(buf) <= maxKeptBuffer {
		s.buf = buf
	} else {
		s.buf = nil
	}
	if rejected != nil {
		return nil, nil, &connectors.RejectError{Events: rejected}
	}
	return recs, need, nil
}

func recordSize(key, value []byte, headers []kgo.RecordHeader) int {
	n := len(key) + len(value) + 64 // record and batch overhead
	for _, h := range headers {
		n += len(h.Key) + len(h.Value) + 2
	}
	return n
}

var opValues = map[connectors.Op][]byte{
	connectors.OpCreate: []byte("c"), connectors.OpUpdate: []byte("u"), connectors.OpDelete: []byte("d"),
	connectors.OpRead: []byte("r"), connectors.OpTruncate: []byte("t"), connectors.OpHeartbeat: []byte("h"),
}

// headers appends the event's record headers to hs, the position's text
// to buf, and returns both; records of one event share the headers.
func (s *Sink) headers(hs []kgo.RecordHeader, buf []byte, ev *connectors.Event) ([]kgo.RecordHeader, []byte) {
	th, ok := s.tables[ev.Schema]
	if !ok {
		th.table = []byte(ev.Table().String())
		if ev.Schema != nil {
			th.version = strconv.AppendInt(nil, int64(ev.Schema.Version), 10)
		}
		if len(s.tables) >= 4096 {
			clear(s.tables)
		}
		s.tables[ev.Schema] = th
	}
	op := opValues[ev.Op]
	if op == nil {
		op = []byte(ev.Op.String())
	}
	hs = append(hs, kgo.RecordHeader{Key: HeaderOp, Value: op}, kgo.RecordHeader{Key: HeaderTable, Value: th.table})
	if th.version != nil {
		hs = append(hs, kgo.RecordHeader{Key: HeaderSchemaVersion, Value: th.version})
	}
	if ev.Position != nil {
		start := len(buf)
		buf = hex.AppendEncode(append(buf, "0x"...), ev.Position) // Position.String's form
		hs = append(hs, kgo.RecordHeader{Key: HeaderPosition, Value: buf[start:len(buf):len(buf)]})
	}
	return hs, buf
}

// topicNames returns the event's topic per output: the template's name,
// or the event's destination, plus each output's suffix.
func (s *Sink) topicNames(ev *connectors.Event) ([]string, error) {
	t := ev.Table()
	k := nameKey{db: ev.Source.DB, schema: t.Schema, table: t.Name, dest: ev.Destination}
	if names, ok := s.names[k]; ok {
		return names, nil
	}
	base := ev.Destination
	if base == "" {
		base = s.tmpl.render(s.cfg.TopicPrefix, k.db, k.schema, k.table)
	}
	names := make([]string, len(s.outs))
	for i, o := range s.outs {
		names[i] = base + o.suffix
		if err := kafkaopts.ValidTopic(names[i]); err != nil {
			return nil, fmt.Errorf("topic of %s: %w", t, err)
		}
	}
	if len(s.names) >= 4096 {
		clear(s.names)
	}
	s.names[k] = names
	return names, nil
}

// send produces recs and waits until every one is acknowledged or failed.
func (s *Sink) send(ctx context.Context, recs []kgo.Record) error {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		first  error
		topic  string
		failed int
	)
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if first == nil {
				first, topic = err, r.Topic
			}
			failed++
			mu.Unlock()
		}
		wg.Done()
	}
	wg.Add(len(recs))
	for i := range recs {
		s.cl.Produce(ctx, &recs[i], promise)
	}
	// Flush stops lingering and waits; the wait on the promises makes sure
	// that no record still refers to the encoding buffer, which the next
	// batch reuses, even when ctx ends the flush early.
	ferr := s.cl.Flush(ctx)
	wg.Wait()
	if first != nil {
		return kafkaopts.Err(fmt.Sprintf("kafka: %d of %d records failed (first to topic %s)", failed, len(recs), topic), hintTooLarge(first))
	}
	if ferr != nil {
		return kafkaopts.Err("kafka: flush", ferr)
	}
	return nil
}

func hintTooLarge(err error) error {
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
		return fmt.Errorf("%w (the topic's max.message.bytes or the broker's message.max.bytes is below a record; lower max_message_bytes so that such events are rejected instead)", err)
	}
	return err
}

// Close closes the client. A transaction left open (only by a crash
// simulated in tests) is left to the broker, which aborts it when the
// transactional id is next initialised or the transaction times out. A
// second Close, or one without Open, returns nil.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.buf = nil
	if s.cl != nil {
		s.cl.Close()
		s.cl, s.adm = nil, nil
	}
	return nil
}
