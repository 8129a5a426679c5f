// Package nats is the "nats" source: it reads tapline events (event JSON,
// package eventjson) from a NATS JetStream stream through a durable pull
// consumer, for pipelines that materialize views from the log.
//
// A position is the message's stream sequence (see EncodePosition). The
// consumer acknowledges with the "all" policy, so Ack(pos) is one
// acknowledgement of the last message at or below pos, and never covers
// more. Open moves the consumer to the position the engine stored, which
// wins over the consumer's own acknowledgement floor. Within one run,
// messages at or below the last one returned (redeliveries) are skipped, so
// events come out once and in stream order.
//
// With no url the source uses the embedded NATS server (package
// natsembed).
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/internal/natsembed"
)

func init() {
	connectors.RegisterSource("nats", "read events from a NATS JetStream stream (durable pull consumer)", DefaultConfig,
		func(cfg Config, rt connectors.Runtime) (connectors.Source, error) { return New(cfg, rt) },
		connectors.WithPositions(PositionFormat))
}

// The deliver policies.
const (
	DeliverAll             = "all"               // from the first message the stream holds
	DeliverNew             = "new"               // from the first message published after the consumer is created
	DeliverByStartSequence = "by_start_sequence" // from start_sequence
)

// Config is the nats source's configuration.
type Config struct {
	natsembed.Conn `yaml:",inline"`

	Stream        string        `yaml:"stream" doc:"stream to read; default: the stream that holds the first of subjects"`
	Subjects      []string      `yaml:"subjects" doc:"subjects to read, wildcards allowed; empty reads the whole stream"`
	Durable       string        `yaml:"durable" doc:"durable consumer name; default: the pipeline name, with characters a consumer name cannot hold made _. A rebuild reads through a consumer of its own (this name, or the pipeline's, with -rebuild)"`
	Deliver       string        `yaml:"deliver" doc:"where a pipeline with no stored position starts: all, new, or by_start_sequence"`
	StartSequence uint64        `yaml:"start_sequence" doc:"first stream sequence to read with deliver: by_start_sequence"`
	MaxAckPending int           `yaml:"max_ack_pending" doc:"most messages delivered and not yet acknowledged (the backpressure bound); keep it above a few batches"`
	AckWait       time.Duration `yaml:"ack_wait" doc:"how long the server waits for an acknowledgement before delivering a message again"`
	SkipInvalid   bool          `yaml:"skip_invalid" doc:"skip messages that are not tapline events (logged, then acknowledged with the batch) instead of stopping"`
}

// DefaultConfig returns the defaults: the embedded server, every message
// from the start of the stream, 5000 unacknowledged messages at most.
func DefaultConfig() Config {
	return Config{
		Conn:          natsembed.DefaultConn(),
		Deliver:       DeliverAll,
		MaxAckPending: 5000,
		AckWait:       30 * time.Second,
	}
}

// Validate checks the config.
func (c Config) Validate() error {
	if err := c.Conn.Validate(); err != nil {
		return err
	}
	switch {
	case c.Stream == "" && len(c.Subjects) == 0:
		return errors.New("stream: give a stream, subjects, or both")
	case c.Stream != "" && strings.ContainsAny(c.Stream, ".*> \t\r\n/\\"):
		return fmt.Errorf("stream: %q cannot hold dots, wildcards, slashes or spaces", c.Stream)
	case c.Durable != "" && strings.ContainsAny(c.Durable, ".*> \t\r\n/\\"):
		return fmt.Errorf("durable: %q cannot hold dots, wildcards, slashes or spaces", c.Durable)
	case c.Deliver != DeliverAll && c.Deliver != DeliverNew && c.Deliver != DeliverByStartSequence:
		return fmt.Errorf("deliver: %q; want all, new or by_start_sequence", c.Deliver)
	case c.Deliver == DeliverByStartSequence && c.StartSequence == 0:
		return errors.New("start_sequence: deliver: by_start_sequence needs a start_sequence of 1 or more")
	case c.Deliver != DeliverByStartSequence && c.StartSequence != 0:
		return errors.New("start_sequence is set but deliver is not by_start_sequence")
	case c.MaxAckPending < 1:
		return fmt.Errorf("max_ack_pending: %d; want at least 1", c.MaxAckPending)
	case c.AckWait < time.Second:
		return fmt.Errorf("ack_wait: %s; want at least 1s", c.AckWait)
	}
	for _, s := range c.Subjects {
		if !validFilter(s) {
			return fmt.Errorf("subjects: %q is not a subject (non-empty tokens, no spaces; * and > as whole tokens)", s)
		}
	}
	return nil
}

func validFilter(s string) bool {
	if s == "" {
		return false
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "" || strings.ContainsAny(t, " \t\r\n") ||
			(strings.ContainsAny(t, "*>") && t != "*" && t != ">") || (t == ">" && i != len(toks)-1) {
			return false
		}
	}
	return true
}

// ConsumerName derives a durable consumer name from a pipeline name:
// characters a consumer name cannot hold (. * > / \ and white space) become
// "_"; an empty name gives "tapline".
func ConsumerName(pipeline string) string {
	if pipeline == "" {
		return "tapline"
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' || r <= ' ' {
			return '_'
		}
		return r
	}, pipeline)
}

const (
	// pullExpires is how long one pull request waits at the server for
	// messages; the source sends the next one when it ends.
	pullExpires = 10 * time.Second
	// pullGrace is how long after pullExpires the source stops waiting
	// for the server's end-of-request status (lost in a reconnect).
	pullGrace = 3 * time.Second
	// defaultBatch is the batch bound when Limits sets no event count.
	defaultBatch = 1000
	// maxPull is the most messages one pull request asks for.
	maxPull = 4096
)

// handle is what Ack needs of a delivered message: its stream sequence and
// the subject to acknowledge it on.
type handle struct {
	seq   uint64
	reply string
}

// Source is the nats source. Build it with New.
//
// ReadBatch and Ack may run concurrently, as the engine calls them. A
// single subscription receives the messages of every pull request of a
// run, so a ReadBatch that returns early (its context done, MaxWait) loses
// nothing: what arrives later is read by the next call.
type Source struct {
	cfg     Config
	rt      connectors.Runtime
	log     *slog.Logger
	durable string

	nc        *gonats.Conn
	js        jetstream.JetStream
	release   func()
	stream    string
	retention jetstream.RetentionPolicy
	canReset  bool // the server can reset a consumer (nats-server 2.14+)
	sub       *gonats.Subscription
	inbox     string
	msgs      chan *gonats.Msg
	nextSubj  string // the pull request subject

	// Owned by the goroutine calling ReadBatch.
	opened      bool
	dec         *eventjson.Decoder
	reqOpen     bool      // a pull request is under way
	reqLeft     int       // messages it may still deliver
	reqDeadline time.Time // when to stop waiting for its end
	lastDseq    uint64    // the consumer's delivery sequence of the last message
	lost        bool      // deliveries were lost: reposition before reading on
	pending     error     // returned by the next ReadBatch

	lastSeq atomic.Uint64 // the last stream sequence returned or skipped past
	closed  atomic.Bool

	mu      sync.Mutex // guards handles and acked
	handles []handle   // delivered, not acknowledged, by sequence
	acked   uint64     // everything at or below is acknowledged (or was before Open)
	closeMu sync.Mutex
}

// New builds a nats source.
func New(cfg Config, rt connectors.Runtime) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	durable := cfg.Durable
	switch {
	case durable == "":
		durable = ConsumerName(rt.Pipeline)
	case rt.Rebuild:
		// A rebuild reads everything again through a consumer of its own;
		// sharing the live one would split (and ack) the live view's
		// messages.
		durable = connectors.RebuildName(durable)
	}
	return &Source{cfg: cfg, rt: rt, log: rt.Log(), durable: durable, dec: eventjson.NewDecoder()}, nil
}

// Durable returns the name of the source's durable consumer.
func (s *Source) Durable() string { return s.durable }

// StreamName returns the stream the source reads, once Open or Check has
// found it.
func (s *Source) StreamName() string { return s.stream }

func (s *Source) connect(ctx context.Context) error {
	nc, release, err := s.cfg.Dial(ctx, s.rt, "tapline source "+s.rt.Pipeline)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		release()
		return fmt.Errorf("nats: %w", err)
	}
	s.nc, s.js, s.release = nc, js, release
	s.canReset = serverAtLeast(nc.ConnectedServerVersion(), 2, 14)
	return nil
}

// serverAtLeast reports whether version "major.minor.patch" is at least
// major.minor.
func serverAtLeast(version string, major, minor int) bool {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// findStream resolves the stream: the configured one, or the one holding
// the first subject.
func (s *Source) findStream(ctx context.Context) (jetstream.Stream, error) {
	name := s.cfg.Stream
	if name == "" {
		var err error
		if name, err = s.js.StreamNameBySubject(ctx, s.cfg.Subjects[0]); err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, fmt.Errorf("nats: no stream on %s holds subject %q; set stream, or check subjects (a nats sink creates its stream when it first opens)",
					s.cfg.Describe(), s.cfg.Subjects[0])
			}
			return nil, s.apiError(fmt.Sprintf("find the stream of subject %q", s.cfg.Subjects[0]), err)
		}
	}
	st, err := s.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("nats: stream %q does not exist on %s; check stream (a nats sink creates its stream when it first opens)", name, s.cfg.Describe())
	}
	if err != nil {
		return nil, s.apiError(fmt.Sprintf("look up stream %q", name), err)
	}
	s.stream = name
	return st, nil
}

// apiError wraps an error of a JetStream API call; one that may pass is
// retryable.
func (s *Source) apiError(what string, err error) error {
	werr := fmt.Errorf("nats: %s on %s: %s", what, s.cfg.Describe(), s.cfg.Scrub(err))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 {
		return werr
	}
	return connectors.Retryable(werr)
}

// Open connects, finds the stream and positions the durable consumer to
// deliver the first message after pos (nil: as deliver says). The stored
// position wins over the consumer's own state: a consumer that is
// elsewhere, or has messages delivered and not acknowledged (a crashed
// run), is reset to it (nats-server 2.14+), or deleted and created again
// on older servers (for limits retention only: deleting the consumer of an
// interest or workqueue stream would discard messages).
func (s *Source) Open(ctx context.Context, pos connectors.Position) error {
	if s.closed.Load() {
		return connectors.ErrClosed
	}
	if s.opened {
		return errors.New("nats: Open called twice")
	}
	if s.nc == nil { // Check may have connected
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	if err := s.open(ctx, pos); err != nil {
		s.disconnect()
		return err
	}
	s.opened = true
	return nil
}

func (s *Source) open(ctx context.Context, pos connectors.Position) error {
	st, err := s.findStream(ctx)
	if err != nil {
		return err
	}
	info := st.CachedInfo()
	s.retention = info.Config.Retention
	start, err := s.startSeq(info, pos)
	if err != nil {
		return err
	}
	expect, err := s.ensureConsumer(ctx, st, info, &start, pos == nil)
	if err != nil {
		return err
	}
	s.lastDseq = expect - 1
	s.acked = start - 1
	s.lastSeq.Store(start - 1)
	s.nextSubj = "$JS.API.CONSUMER.MSG.NEXT." + s.stream + "." + s.durable
	s.inbox = s.nc.NewInbox()
	s.msgs = make(chan *gonats.Msg, 2*maxPull+64)
	if s.sub, err = s.nc.ChanSubscribe(s.inbox, s.msgs); err != nil {
		return connectors.Retryable(fmt.Errorf("nats: subscribe: %w", err))
	}
	s.log.Info("nats: reading", "stream", s.stream, "consumer", s.durable, "start_sequence", start, "server", s.cfg.Describe())
	return nil
}

// startSeq returns the first stream sequence to read: after pos, or as
// deliver says. A position past the stream's end, or messages the
// pipeline has not read that the stream no longer holds, is an error.
func (s *Source) startSeq(info *jetstream.StreamInfo, pos connectors.Position) (uint64, error) {
	state := info.State
	if pos == nil {
		switch s.cfg.Deliver {
		case DeliverByStartSequence:
			return s.cfg.StartSequence, nil
		case DeliverNew:
			return state.LastSeq + 1, nil // an existing consumer keeps its place; see ensureConsumer
		}
		return 1, nil
	}
	seq, err := DecodePosition(pos)
	if err != nil {
		return 0, fmt.Errorf("nats: %w", err)
	}
	if seq > state.LastSeq {
		return 0, fmt.Errorf("nats: the stored position is stream sequence %d, but stream %q ends at %d: the stream was deleted and created again, or is another one; "+
			"reset the pipeline's offset (tapline offsets delete %s) to read it from its start", seq, s.stream, state.LastSeq, s.rt.Pipeline)
	}
	start := seq + 1
	if start < state.FirstSeq && s.readsWholeStream(info) {
		return 0, fmt.Errorf("nats: stream %q no longer holds sequences %d to %d, which this pipeline has not read (it starts at %d): "+
			"they were removed by the stream's limits (max_age, max_bytes, max_msgs) or a purge; rebuild from what the stream holds by "+
			"resetting the pipeline's offset (tapline offsets delete %s)", s.stream, start, state.FirstSeq-1, state.FirstSeq, s.rt.Pipeline)
	}
	return start, nil
}

// readsWholeStream reports whether messages missing at the stream's start
// must have been ones the source would have read: a limits stream that keeps
// every message per subject, read without a narrower filter.
func (s *Source) readsWholeStream(info *jetstream.StreamInfo) bool {
	c := &info.Config
	if c.Retention != jetstream.LimitsPolicy || c.MaxMsgsPerSubject > 0 {
		return false
	}
	if len(s.cfg.Subjects) == 0 {
		return true
	}
	for _, ss := range c.Subjects {
		covered := false
		for _, f := range s.cfg.Subjects {
			covered = covered || subjectCovers(f, ss)
		}
		if !covered {
			return false
		}
	}
	return true
}

// subjectCovers reports whether filter matches every subject pattern does.
func subjectCovers(filter, pattern string) bool {
	f, p := strings.Split(filter, "."), strings.Split(pattern, ".")
	for i, ft := range f {
		if ft == ">" {
			return i < len(p)
		}
		if i >= len(p) || p[i] == ">" || (ft != "*" && ft != p[i]) {
			return false
		}
	}
	return len(f) == len(p)
}

// consumerConfig is the consumer the source creates to start at start.
func (s *Source) consumerConfig(start uint64) jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:       s.durable,
		Description:   "tapline nats source, pipeline " + s.rt.Pipeline,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       s.cfg.AckWait,
		MaxAckPending: s.cfg.MaxAckPending,
		MaxDeliver:    -1,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if start > 1 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	s.setFilters(&cc)
	return cc
}

func (s *Source) setFilters(cc *jetstream.ConsumerConfig) {
	cc.FilterSubject, cc.FilterSubjects = "", nil
	switch len(s.cfg.Subjects) {
	case 0:
	case 1:
		cc.FilterSubject = s.cfg.Subjects[0]
	default:
		cc.FilterSubjects = s.cfg.Subjects
	}
}

func filtersOf(cc *jetstream.ConsumerConfig) []string {
	var out []string
	if cc.FilterSubject != "" {
		out = append(out, cc.FilterSubject)
	}
	out = append(out, cc.FilterSubjects...)
	sort.Strings(out)
	return out
}

// ensureConsumer creates the durable consumer to start at *start, or makes
// the existing one fit the config and deliver from *start next. It returns
// the delivery sequence the first message will carry.
func (s *Source) ensureConsumer(ctx context.Context, st jetstream.Stream, sinfo *jetstream.StreamInfo, start *uint64, fresh bool) (uint64, error) {
	if len(s.cfg.Subjects) > 1 && !serverAtLeast(s.nc.ConnectedServerVersion(), 2, 10) {
		return 0, fmt.Errorf("nats: subjects: nats-server %s takes one filter subject per consumer; list one subject (a wildcard can cover several), or upgrade to nats-server 2.10+",
			s.nc.ConnectedServerVersion())
	}
	c, err := st.Consumer(ctx, s.durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		if _, err := st.CreateConsumer(ctx, s.consumerConfig(*start)); err != nil {
			return 0, s.apiError(fmt.Sprintf("create consumer %q on stream %q", s.durable, s.stream), err)
		}
		return 1, nil
	}
	if err != nil {
		return 0, s.apiError(fmt.Sprintf("look up consumer %q on stream %q", s.durable, s.stream), err)
	}
	info := c.CachedInfo()
	cc := info.Config
	if cc.AckPolicy != jetstream.AckAllPolicy || cc.DeliverSubject != "" {
		return 0, fmt.Errorf("nats: consumer %q on stream %q exists but is not a pull consumer with ack policy all, which this source needs; "+
			"delete it (nats consumer rm %s %s) or set durable to another name", s.durable, s.stream, s.stream, s.durable)
	}
	want := append([]string(nil), s.cfg.Subjects...)
	sort.Strings(want)
	if !slices.Equal(filtersOf(&cc), want) || cc.MaxAckPending != s.cfg.MaxAckPending || cc.AckWait != s.cfg.AckWait {
		s.setFilters(&cc)
		cc.MaxAckPending, cc.AckWait = s.cfg.MaxAckPending, s.cfg.AckWait
		if _, err := st.UpdateConsumer(ctx, cc); err != nil {
			return 0, fmt.Errorf("nats: update consumer %q on stream %q to subjects [%s], max_ack_pending %d, ack_wait %s: %s; "+
				"delete the consumer (nats consumer rm %s %s) or set durable to another name",
				s.durable, s.stream, strings.Join(s.cfg.Subjects, ", "), s.cfg.MaxAckPending, s.cfg.AckWait, s.cfg.Scrub(err), s.stream, s.durable)
		}
	}
	if fresh && s.cfg.Deliver == DeliverNew {
		*start = info.AckFloor.Stream + 1 // "new" was fixed when the consumer was created
	}
	first := max(sinfo.State.FirstSeq, 1)
	if info.NumAckPending == 0 && info.Delivered.Stream == info.AckFloor.Stream &&
		max(info.AckFloor.Stream+1, first) == max(*start, first) {
		return info.Delivered.Consumer + 1, nil
	}
	s.log.Info("nats: moving the consumer to the stored position", "consumer", s.durable, "stream", s.stream,
		"start_sequence", *start, "ack_floor", info.AckFloor.Stream, "delivered", info.Delivered.Stream, "ack_pending", info.NumAckPending)
	return s.reposition(ctx, st, *start)
}

// reposition makes the consumer deliver from start next, forgetting its
// deliveries: a reset on nats-server 2.14+, else delete and create again.
// It returns the delivery sequence the first message will carry.
func (s *Source) reposition(ctx context.Context, st jetstream.Stream, start uint64) (uint64, error) {
	if s.canReset {
		_, err := st.ResetConsumerToSequence(ctx, s.durable, max(start, 1))
		if err == nil {
			return 1, nil
		}
		if !errors.Is(err, jetstream.ErrConsumerInvalidReset) {
			return 0, s.apiError(fmt.Sprintf("reset consumer %q on stream %q to sequence %d", s.durable, s.stream, start), err)
		}
		// Below the consumer's configured start: create it again.
	}
	if s.retention != jetstream.LimitsPolicy {
		return 0, fmt.Errorf("nats: consumer %q on stream %q must move to sequence %d, but nats-server %s cannot reset a consumer to it, "+
			"and deleting the consumer of a stream with %s retention would discard its unacknowledged messages; "+
			"upgrade to nats-server 2.14+, or move it yourself (nats consumer rm %s %s, knowing what that discards)",
			s.durable, s.stream, start, s.nc.ConnectedServerVersion(), s.retention, s.stream, s.durable)
	}
	if err := st.DeleteConsumer(ctx, s.durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, s.apiError(fmt.Sprintf("delete consumer %q on stream %q to move it to sequence %d", s.durable, s.stream, start), err)
	}
	if _, err := st.CreateConsumer(ctx, s.consumerConfig(start)); err != nil {
		return 0, s.apiError(fmt.Sprintf("create consumer %q on stream %q at sequence %d", s.durable, s.stream, start), err)
	}
	return 1, nil
}

// pull asks the server for up to n messages.
func (s *Source) pull(n int) error {
	n = min(n, maxPull)
	req, _ := json.Marshal(struct {
		Batch   int           `json:"batch"`
		Expires time.Duration `json:"expires"`
	}{n, pullExpires})
	if err := s.nc.PublishRequest(s.nextSubj, s.inbox, req); err != nil {
		return fmt.Errorf("nats: request messages from consumer %q on stream %q: %w", s.durable, s.stream, err)
	}
	s.reqOpen, s.reqLeft, s.reqDeadline = true, n, time.Now().Add(pullExpires+pullGrace)
	return nil
}

// ReadBatch returns the next events in stream order, within lim. It blocks
// until it has an event (or a skipped message to advance past), and
// returns at MaxWait after the first. A message that is not a tapline
// event stops the source with an error naming the stream, sequence and
// subject, after the events before it (unless skip_invalid is set).
func (s *Source) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	var b connectors.Batch
	switch {
	case s.closed.Load():
		return b, connectors.ErrClosed
	case !s.opened:
		return b, errors.New("nats: ReadBatch before Open")
	case s.pending != nil:
		return b, s.pending
	}
	if err := ctx.Err(); err != nil {
		return b, err
	}
	if s.lost {
		if err := s.recover(ctx); err != nil {
			return b, err
		}
	}
	maxEvents := lim.MaxEvents
	if maxEvents <= 0 {
		maxEvents = defaultBatch
	}
	size := 0
	var timer *time.Timer
	var expired <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	started := func() {
		if timer == nil && lim.MaxWait > 0 {
			timer = time.NewTimer(lim.MaxWait)
			expired = timer.C
		}
	}
	for len(b.Events) < maxEvents && !lim.Full(len(b.Events), size) {
		if !s.reqOpen || time.Now().After(s.reqDeadline) {
			if err := s.pull(maxEvents - len(b.Events)); err != nil {
				if len(b.Events) > 0 || b.Last != nil {
					break
				}
				return b, err
			}
		}
		var m *gonats.Msg
		select {
		case m = <-s.msgs:
		default:
			have := len(b.Events) > 0 || b.Last != nil
			if have && lim.MaxWait <= 0 {
				return b, nil
			}
			wait := time.NewTimer(time.Until(s.reqDeadline))
			select {
			case m = <-s.msgs:
				wait.Stop()
			case <-expired: // set once the batch has something
				wait.Stop()
				return b, nil
			case <-wait.C:
				s.reqOpen = false // its end was lost; ask again
				continue
			case <-ctx.Done():
				wait.Stop()
				if have {
					return b, nil
				}
				return b, ctx.Err()
			}
		}
		ev, seq, err := s.handle(m)
		if err != nil {
			if len(b.Events) > 0 || b.Last != nil {
				s.pending = err
				return b, nil
			}
			return b, err
		}
		switch {
		case s.lost:
			return b, nil // read on after repositioning
		case seq == 0:
			continue // a status, or a redelivery
		case ev == nil:
			b.Last = EncodePosition(seq) // a skipped invalid message
			started()
			continue
		}
		b.Events = append(b.Events, *ev)
		b.Last = ev.Position
		size += ev.Size()
		started()
	}
	return b, nil
}

// handle processes one message from the subscription. It returns the
// event, or a nil event with the sequence of a skipped invalid message, or
// sequence 0 for anything else (a status, a redelivery).
func (s *Source) handle(m *gonats.Msg) (*connectors.Event, uint64, error) {
	if m.Reply == "" {
		return nil, 0, s.status(m)
	}
	meta, err := m.Metadata()
	if err != nil {
		s.log.Warn("nats: ignoring a message that is not from the consumer", "subject", m.Subject, "error", err)
		return nil, 0, nil
	}
	if s.reqLeft--; s.reqLeft <= 0 {
		s.reqOpen = false
	}
	dseq, seq := meta.Sequence.Consumer, meta.Sequence.Stream
	if dseq != s.lastDseq+1 {
		// Deliveries went missing (a reconnect, a dropped message) or the
		// consumer was reset by someone else: reposition from the last
		// acknowledged message; what was returned since is skipped.
		s.log.Warn("nats: consumer delivery sequence jumped; repositioning the consumer after the last acknowledged message",
			"consumer", s.durable, "stream", s.stream, "expected", s.lastDseq+1, "got", dseq)
		s.lost = true
		return nil, 0, nil
	}
	s.lastDseq = dseq
	s.track(seq, m.Reply)
	if seq <= s.lastSeq.Load() {
		return nil, 0, nil
	}
	ev, err := s.dec.Decode(m.Data)
	if err != nil {
		err = fmt.Errorf("nats: stream %q sequence %d subject %q: not a tapline event: %w", s.stream, seq, m.Subject, err)
		if !s.cfg.SkipInvalid {
			return nil, 0, fmt.Errorf("%w (set skip_invalid: true to skip such messages)", err)
		}
		s.log.Warn("nats: skipping a message (skip_invalid)", "error", err)
		s.lastSeq.Store(seq)
		return nil, seq, nil
	}
	ev.Position = EncodePosition(seq)
	s.lastSeq.Store(seq)
	return &ev, seq, nil
}

// status handles a status message of a pull request.
func (s *Source) status(m *gonats.Msg) error {
	code := m.Header.Get("Status")
	desc := m.Header.Get("Description")
	switch code {
	case "100": // idle heartbeat
		return nil
	case "404", "408":
		s.reqOpen = false
		return nil
	case "409":
		s.reqOpen = false
		d := strings.ToLower(desc)
		switch {
		case strings.Contains(d, "deleted"):
			return fmt.Errorf("nats: consumer %q on stream %q was deleted while reading; the next run creates it again at the stored position", s.durable, s.stream)
		case strings.Contains(d, "push"):
			return fmt.Errorf("nats: consumer %q on stream %q is a push consumer; delete it (nats consumer rm %s %s) or set durable to another name", s.durable, s.stream, s.stream, s.durable)
		}
		s.log.Debug("nats: pull request ended", "status", code, "description", desc)
		return nil
	case "503":
		s.reqOpen = false
		return connectors.Retryable(fmt.Errorf("nats: no JetStream answers for consumer %q on stream %q (503 %s)", s.durable, s.stream, desc))
	case "":
		s.log.Warn("nats: ignoring a message without reply subject", "subject", m.Subject)
		return nil
	}
	s.reqOpen = false
	return fmt.Errorf("nats: pull request to consumer %q on stream %q failed: %s %s", s.durable, s.stream, code, desc)
}

// track records a delivered message for Ack. A message at or below what
// was acknowledged already (a redelivery racing the ack) is acknowledged
// again at once.
func (s *Source) track(seq uint64, reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.acked {
		s.nc.Publish(reply, ackBody)
		return
	}
	n := len(s.handles)
	if n == 0 || s.handles[n-1].seq < seq {
		s.handles = append(s.handles, handle{seq, reply})
		return
	}
	// A redelivery: acknowledge with the newest delivery, which the server
	// counts.
	i := sort.Search(n, func(i int) bool { return s.handles[i].seq >= seq })
	if i < n && s.handles[i].seq == seq {
		s.handles[i].reply = reply
	}
}

var ackBody = []byte("+ACK")

// recover repositions the consumer after lost deliveries: it delivers again
// from after the last acknowledged message, and what was already returned
// is skipped.
func (s *Source) recover(ctx context.Context) error {
	s.mu.Lock()
	start := s.acked + 1
	s.handles = nil
	s.mu.Unlock()
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return s.apiError(fmt.Sprintf("look up stream %q", s.stream), err)
	}
	expect, err := s.reposition(ctx, st, start)
	if err != nil {
		return err
	}
	for len(s.msgs) > 0 {
		<-s.msgs
	}
	s.lastDseq, s.reqOpen, s.lost = expect-1, false, false
	return nil
}

// Ack acknowledges every message up to and including pos: one
// acknowledgement, of the last message at or below pos, which the "all"
// ack policy extends to those before it. It waits for the server to
// confirm.
func (s *Source) Ack(ctx context.Context, pos connectors.Position) error {
	seq, err := DecodePosition(pos)
	if err != nil {
		return fmt.Errorf("nats: ack: %w", err)
	}
	s.mu.Lock()
	if s.closed.Load() || !s.opened || seq <= s.acked {
		s.mu.Unlock()
		return nil
	}
	s.acked = seq
	i := sort.Search(len(s.handles), func(i int) bool { return s.handles[i].seq > seq }) - 1
	if i < 0 {
		s.mu.Unlock()
		return nil
	}
	reply := s.handles[i].reply
	s.handles = append(s.handles[:0], s.handles[i+1:]...)
	s.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	if _, err := s.nc.RequestWithContext(ctx, reply, ackBody); err != nil {
		return connectors.Retryable(fmt.Errorf("nats: acknowledge stream %q sequence %d to consumer %q: %w", s.stream, seq, s.durable, err))
	}
	return nil
}

// Backlog returns the messages matching the consumer's filter that are in
// the stream after the last one returned: those not yet delivered
// (NumPending) and those delivered but not yet returned.
func (s *Source) Backlog(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, connectors.ErrClosed
	}
	if s.js == nil || s.stream == "" {
		return 0, errors.New("nats: Backlog before Open")
	}
	c, err := s.js.Consumer(ctx, s.stream, s.durable)
	if err != nil {
		return 0, s.apiError(fmt.Sprintf("read consumer %q on stream %q", s.durable, s.stream), err)
	}
	info := c.CachedInfo()
	unread := int64(len(s.msgs))
	if unread == 0 && info.Delivered.Stream > s.lastSeq.Load() {
		unread = 1 // delivered, still on its way
	}
	return int64(info.NumPending) + unread, nil
}

// Check connects, reads the JetStream account info, finds the stream and,
// if the durable consumer exists, checks that the source can use it.
func (s *Source) Check(ctx context.Context) error {
	if s.closed.Load() {
		return connectors.ErrClosed
	}
	if s.nc == nil {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	if _, err := s.js.AccountInfo(ctx); err != nil {
		return s.apiError("read the JetStream account info", err)
	}
	st, err := s.findStream(ctx)
	if err != nil {
		return err
	}
	c, err := st.Consumer(ctx, s.durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return s.apiError(fmt.Sprintf("look up consumer %q on stream %q", s.durable, s.stream), err)
	}
	if cc := c.CachedInfo().Config; cc.AckPolicy != jetstream.AckAllPolicy || cc.DeliverSubject != "" {
		return fmt.Errorf("nats: consumer %q on stream %q exists but is not a pull consumer with ack policy all, which this source needs; "+
			"delete it (nats consumer rm %s %s) or set durable to another name", s.durable, s.stream, s.stream, s.durable)
	}
	return nil
}

func (s *Source) disconnect() {
	if s.sub != nil {
		s.sub.Unsubscribe()
		s.sub = nil
	}
	if s.release != nil {
		s.release()
	}
	s.nc, s.js, s.release = nil, nil, nil
}

// Close unsubscribes, closes the connection and releases the embedded
// server. It acknowledges nothing: messages delivered and not acknowledged
// are delivered again to the next run. A second Close returns nil.
func (s *Source) Close(context.Context) error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	s.handles = nil
	s.mu.Unlock()
	s.disconnect()
	return nil
}
