// Package nats is the "nats" sink: it publishes each event, as event JSON
// (package eventjson) with its schema block, to a NATS JetStream stream, one
// subject per table (or per row key in mode latest).
//
// WriteBatch publishes asynchronously with a bounded number of
// unacknowledged messages (max_pending) and returns only when JetStream has
// acknowledged every message of the batch, that is, stored it. Each message
// carries a Nats-Msg-Id made of the pipeline name and the event's position,
// so a batch published again after a crash or a failed acknowledgement is
// dropped by JetStream's duplicate window instead of stored twice.
//
// With no url the sink uses the embedded NATS server (package natsembed).
package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/internal/natsembed"
)

func init() {
	connectors.RegisterSink("nats", "publish events to a NATS JetStream stream (embedded server by default)", DefaultConfig,
		func(cfg Config, rt connectors.Runtime) (connectors.Sink, error) { return New(cfg, rt) })
}

// The message headers the sink sets besides Nats-Msg-Id.
const (
	HeaderOp            = "tapline-op"             // the event's op letter: c, u, d, r, t, h
	HeaderTable         = "tapline-table"          // the logical table, schema.table
	HeaderSchemaVersion = "tapline-schema-version" // the table's schema version
	HeaderKey           = "tapline-key"            // the primary key as JSON, {"id":42}; absent without a key
)

// HeartbeatToken is the last token of the subject heartbeat events (op h)
// are published to: <subject_prefix>._heartbeat. A view reading the stream
// lists that subject among its subjects so that read-your-writes waits end
// while the captured tables are idle.
const HeartbeatToken = "_heartbeat"

// The modes.
const (
	ModeHistory = "history" // keep every event
	ModeLatest  = "latest"  // keep the latest event per row key
)

// Config is the nats sink's configuration.
type Config struct {
	natsembed.Conn `yaml:",inline"`

	SubjectPrefix   string        `yaml:"subject_prefix" doc:"first subject token(s), {prefix} in subject"`
	Subject         string        `yaml:"subject" doc:"subject template; placeholders {prefix} {db} {schema} {table}; a token whose placeholders are all empty is dropped; the route transform's destination overrides it"`
	Stream          string        `yaml:"stream" doc:"JetStream stream, created if absent; default: subject_prefix in upper case, dots and other characters a stream name cannot hold made _"`
	Mode            string        `yaml:"mode" doc:"history: keep every event; latest: keep only the latest event per row key (one subject per key, max_msgs_per_subject 1), like a compacted topic"`
	Retention       string        `yaml:"retention" doc:"retention of a stream the sink creates: limits, interest or workqueue"`
	MaxAge          time.Duration `yaml:"max_age" doc:"oldest message a created stream keeps; 0 keeps them forever"`
	MaxBytes        int64         `yaml:"max_bytes" doc:"size a created stream is bounded to, oldest messages discarded first; 0 is unbounded"`
	Replicas        int           `yaml:"replicas" doc:"replicas of a created stream (1 for a single server)"`
	DuplicateWindow time.Duration `yaml:"duplicate_window" doc:"how long JetStream remembers message ids to drop re-published batches (created stream)"`
	MaxPending      int           `yaml:"max_pending" doc:"most messages published and not yet acknowledged by JetStream at once"`
	AckTimeout      time.Duration `yaml:"ack_timeout" doc:"how long to wait for JetStream to acknowledge a message before the batch is retried"`
}

// DefaultConfig returns the defaults: the embedded server, subjects
// tapline.<schema>.<table> in stream TAPLINE, every event kept.
func DefaultConfig() Config {
	return Config{
		Conn:            natsembed.DefaultConn(),
		SubjectPrefix:   "tapline",
		Subject:         "{prefix}.{schema}.{table}",
		Mode:            ModeHistory,
		Retention:       "limits",
		Replicas:        1,
		DuplicateWindow: 2 * time.Minute,
		MaxPending:      4096,
		AckTimeout:      30 * time.Second,
	}
}

// Validate checks the config.
func (c Config) Validate() error {
	if err := c.Conn.Validate(); err != nil {
		return err
	}
	switch {
	case !validSubject(c.SubjectPrefix) || strings.HasPrefix(c.SubjectPrefix, "$"):
		return fmt.Errorf("subject_prefix: %q is not a subject prefix (non-empty tokens, no spaces or wildcards, not starting with $)", c.SubjectPrefix)
	case c.Mode != ModeHistory && c.Mode != ModeLatest:
		return fmt.Errorf("mode: %q; want history or latest", c.Mode)
	case c.MaxPending <= 0:
		return fmt.Errorf("max_pending: %d; want at least 1", c.MaxPending)
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("replicas: %d; want 1 to 5", c.Replicas)
	case c.DuplicateWindow <= 0:
		return fmt.Errorf("duplicate_window: %s; want a duration above 0 (it is what drops re-published batches)", c.DuplicateWindow)
	case c.MaxAge < 0 || c.MaxBytes < 0:
		return errors.New("max_age and max_bytes cannot be negative")
	case c.MaxAge > 0 && c.DuplicateWindow > c.MaxAge:
		return fmt.Errorf("duplicate_window (%s) cannot be longer than max_age (%s)", c.DuplicateWindow, c.MaxAge)
	case c.AckTimeout <= 0:
		return fmt.Errorf("ack_timeout: %s; want a duration above 0", c.AckTimeout)
	}
	if _, err := retention(c.Retention); err != nil {
		return err
	}
	if _, err := parseTemplate(c.Subject); err != nil {
		return fmt.Errorf("subject: %w", err)
	}
	if c.Stream != "" && strings.ContainsAny(c.Stream, ".*> \t\r\n/\\") {
		return fmt.Errorf("stream: %q cannot hold dots, wildcards, slashes or spaces", c.Stream)
	}
	return nil
}

func retention(s string) (jetstream.RetentionPolicy, error) {
	switch s {
	case "limits":
		return jetstream.LimitsPolicy, nil
	case "interest":
		return jetstream.InterestPolicy, nil
	case "workqueue":
		return jetstream.WorkQueuePolicy, nil
	}
	return 0, fmt.Errorf("retention: %q; want limits, interest or workqueue", s)
}

// Sink is the nats sink. Build it with New. Its methods are serialised: a
// Close during a WriteBatch waits for it.
type Sink struct {
	cfg      Config
	rt       connectors.Runtime
	log      *slog.Logger
	tmpl     *template
	stream   string
	coverage string // the subjects the sink publishes to, as a pattern
	idPrefix string // the Nats-Msg-Id prefix: the pipeline name and "/"

	mu       sync.Mutex
	nc       *gonats.Conn
	js       jetstream.JetStream
	release  func()
	subjects []string // the stream's subjects
	rollup   bool     // the stream takes Nats-Rollup headers: heartbeats replace the one before
	maxMsg   int64    // the largest message the server takes
	opened   bool
	closed   bool

	enc eventjson.Encoder

	// The publish pipeline: StartBatch takes a slot per message before
	// publishing it and queues its future on acks; the acker goroutine
	// resolves the futures in order, frees their slots, and completes a
	// batch when it reaches the batch's end marker.
	slots     chan struct{}
	acks      chan ackItem
	ackerStop chan struct{}
	ackerDone chan struct{}
	inFlight  peakCounter // unacknowledged messages now, and the peak; for tests

	freeMu sync.Mutex
	free   []*buffers // buffers of batches known stored, for reuse
}

// buffers hold a started batch's messages and payloads until JetStream has
// acknowledged them: the client may publish a message again (no responders)
// until then.
type buffers struct {
	buf  []byte
	msgs []gonats.Msg
}

// ackItem is a published message's future, or (f nil) the end of a batch.
type ackItem struct {
	f    jetstream.PubAckFuture
	p    *pending
	bufs *buffers // with the end marker: returned to the free list on success
}

// pending is a started batch (connectors.Pending). The acker alone writes
// its fields, before closing done.
type pending struct {
	done    chan struct{}
	n       int // messages in the batch
	err     error
	first   error // the first failed message's error
	nFailed int
}

// Done is closed when every message of the batch is acknowledged or has
// failed.
func (p *pending) Done() <-chan struct{} { return p.done }

// Err is nil when JetStream stored every message of the batch.
func (p *pending) Err() error { return p.err }

func (p *pending) fail(err error) {
	if p.first == nil {
		p.first = err
	}
	p.nFailed++
}

// peakCounter counts and remembers the highest count.
type peakCounter struct {
	mu       sync.Mutex
	now, max int
}

func (a *peakCounter) add(d int) {
	a.mu.Lock()
	a.now += d
	a.max = max(a.max, a.now)
	a.mu.Unlock()
}

func (a *peakCounter) peak() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.max
}

// takeBuffers returns buffers for a batch: free ones, or new.
func (s *Sink) takeBuffers() *buffers {
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		return b
	}
	return &buffers{}
}

// putBuffers keeps bufs for another batch, unless enough are kept or they
// grew too large.
func (s *Sink) putBuffers(b *buffers) {
	clear(b.msgs) // drop references to headers and data
	if cap(b.buf) > maxKeptBuffer {
		return
	}
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	if len(s.free) < 3 {
		s.free = append(s.free, b)
	}
}

// New builds a nats sink.
func New(cfg Config, rt connectors.Runtime) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	tmpl, _ := parseTemplate(cfg.Subject)
	s := &Sink{cfg: cfg, rt: rt, log: rt.Log(), tmpl: tmpl, stream: cfg.Stream,
		coverage: tmpl.coverage(cfg.SubjectPrefix), idPrefix: rt.Pipeline + "/"}
	if s.stream == "" {
		s.stream = streamName(cfg.SubjectPrefix)
	}
	if cfg.Mode == ModeLatest && !strings.HasSuffix(s.coverage, ">") {
		s.coverage += ".>"
	}
	return s, nil
}

// Stream returns the name of the stream the sink writes to.
func (s *Sink) Stream() string { return s.stream }

// Open connects and makes sure the stream exists and takes the sink's
// subjects, creating it if absent.
func (s *Sink) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return connectors.ErrClosed
	case s.opened:
		return nil
	}
	if s.nc == nil { // Check may have connected
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	if err := s.ensureStream(ctx); err != nil {
		s.disconnect()
		return err
	}
	s.opened = true
	return nil
}

func (s *Sink) connect(ctx context.Context) error {
	nc, release, err := s.cfg.Dial(ctx, s.rt, "tapline sink "+s.rt.Pipeline)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(s.cfg.MaxPending+16),
		jetstream.WithPublishAsyncTimeout(s.cfg.AckTimeout))
	if err != nil {
		release()
		return fmt.Errorf("nats: %w", err)
	}
	s.nc, s.js, s.release, s.maxMsg = nc, js, release, nc.MaxPayload()
	s.slots = make(chan struct{}, s.cfg.MaxPending)
	s.acks = make(chan ackItem, s.cfg.MaxPending+4)
	s.ackerStop = make(chan struct{})
	s.ackerDone = make(chan struct{})
	go s.acker(s.acks, s.slots, s.ackerStop, s.ackerDone)
	return nil
}

// disconnect stops the acker (batches not yet acknowledged fail with
// ErrClosed; they were never reported durable) and closes the connection.
// The caller holds s.mu, so no StartBatch is publishing.
func (s *Sink) disconnect() {
	if s.acks != nil {
		close(s.ackerStop)
		close(s.acks)
		<-s.ackerDone
		s.acks, s.slots = nil, nil
	}
	if s.release != nil {
		s.release()
	}
	s.nc, s.js, s.release = nil, nil, nil
}

// ensureStream creates the stream if absent, or checks that the existing
// one takes the sink's subjects and suits its mode.
func (s *Sink) ensureStream(ctx context.Context) error {
	info, err := s.streamInfo(ctx)
	if err != nil {
		return err
	}
	if info == nil {
		ret, _ := retention(s.cfg.Retention)
		cfg := jetstream.StreamConfig{
			Name:        s.stream,
			Description: "tapline change events",
			Subjects:    []string{s.coverage},
			Retention:   ret,
			MaxAge:      s.cfg.MaxAge,
			MaxBytes:    -1,
			MaxMsgs:     -1,
			Storage:     jetstream.FileStorage,
			Replicas:    s.cfg.Replicas,
			Duplicates:  s.cfg.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
			// Heartbeats roll up: the stream keeps the latest of them only.
			AllowRollup: true,
		}
		if s.cfg.MaxBytes > 0 {
			cfg.MaxBytes = s.cfg.MaxBytes
		}
		if s.cfg.Mode == ModeLatest {
			cfg.MaxMsgsPerSubject = 1
		}
		st, err := s.js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return s.ensureStream(ctx) // created meanwhile by another sink
		}
		if err != nil {
			return s.apiError(fmt.Sprintf("create stream %q with subjects [%s]", s.stream, s.coverage), err)
		}
		info = st.CachedInfo()
		s.log.Info("nats: created stream", "stream", s.stream, "subjects", s.coverage, "mode", s.cfg.Mode,
			"retention", s.cfg.Retention, "duplicate_window", s.cfg.DuplicateWindow)
	}
	if err := s.checkStream(info); err != nil {
		return err
	}
	s.subjects = info.Config.Subjects
	s.rollup = info.Config.AllowRollup && !info.Config.DenyPurge
	if !s.rollup && s.cfg.Mode == ModeHistory {
		s.log.Info("nats: the stream does not allow rollup headers, so it keeps every heartbeat message; allow them to keep only the latest (nats stream edit "+s.stream+" --allow-rollup), or bound the stream with max_age",
			"stream", s.stream, "heartbeat_subject", s.cfg.SubjectPrefix+"."+HeartbeatToken)
	}
	if info.Config.Duplicates < s.cfg.DuplicateWindow {
		s.log.Info("nats: the stream's duplicate window is shorter than duplicate_window; re-published batches older than it are stored twice",
			"stream", s.stream, "stream_duplicate_window", info.Config.Duplicates, "duplicate_window", s.cfg.DuplicateWindow)
	}
	return nil
}

// streamInfo returns the stream's info, or nil if it does not exist.
func (s *Sink) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	st, err := s.js.Stream(ctx, s.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, s.apiError(fmt.Sprintf("look up stream %q", s.stream), err)
	}
	return st.CachedInfo(), nil
}

// checkStream checks that an existing stream can take the sink's events.
func (s *Sink) checkStream(info *jetstream.StreamInfo) error {
	c := &info.Config
	switch {
	case c.Mirror != nil:
		return fmt.Errorf("nats: stream %q is a mirror and cannot be published to; set stream to another name", s.stream)
	case c.Sealed:
		return fmt.Errorf("nats: stream %q is sealed and takes no more messages; set stream to another name", s.stream)
	case !coveredBy(c.Subjects, s.coverage):
		return fmt.Errorf("nats: stream %q has subjects [%s], which do not cover %q, the subjects this sink publishes to; "+
			"add it to the stream (nats stream edit %s --subjects '%s'), or set stream or subject_prefix so they match",
			s.stream, strings.Join(c.Subjects, ", "), s.coverage, s.stream, strings.Join(append(append([]string(nil), c.Subjects...), s.coverage), ","))
	case s.cfg.Mode == ModeLatest && c.MaxMsgsPerSubject != 1:
		return fmt.Errorf("nats: mode latest needs a stream that keeps one message per subject, but stream %q keeps %d "+
			"(max_msgs_per_subject); set stream to a new name to have one created, or edit it (nats stream edit %s --max-msgs-per-subject 1)",
			s.stream, c.MaxMsgsPerSubject, s.stream)
	case s.cfg.Mode == ModeHistory && c.MaxMsgsPerSubject > 0:
		return fmt.Errorf("nats: mode history keeps every event, but stream %q keeps only %d message(s) per subject "+
			"(max_msgs_per_subject); use mode: latest, or set stream to another name", s.stream, c.MaxMsgsPerSubject)
	}
	return nil
}

// apiError wraps an error of a JetStream API call: one that may pass (a
// timeout, no JetStream responding yet) is retryable.
func (s *Sink) apiError(what string, err error) error {
	werr := fmt.Errorf("nats: %s on %s: %s", what, s.cfg.Describe(), s.cfg.Scrub(err))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 {
		return werr
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return fmt.Errorf("%w (start nats-server with -js, or enable JetStream for the account)", werr)
	}
	return connectors.Retryable(werr)
}

// Check connects, reads the JetStream account info and checks the stream,
// if it exists, as Open would.
func (s *Sink) Check(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
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
	info, err := s.streamInfo(ctx)
	if err != nil || info == nil {
		return err
	}
	return s.checkStream(info)
}

// subjectFor appends the subject of ev to dst.
func (s *Sink) subjectFor(dst []byte, ev *connectors.Event) ([]byte, error) {
	if ev.Op == connectors.OpHeartbeat {
		return append(append(dst, s.cfg.SubjectPrefix...), "."+HeartbeatToken...), nil
	}
	if ev.Destination != "" {
		dst = append(dst, ev.Destination...)
	} else {
		t := ev.Table()
		v := values{prefix: s.cfg.SubjectPrefix, db: ev.Source.DB, schema: t.Schema, table: t.Name}
		dst = s.tmpl.appendSubject(dst, &v)
	}
	if s.cfg.Mode == ModeLatest && ev.Op != connectors.OpTruncate {
		dst = append(dst, '.')
		var ok bool
		var err error
		if dst, ok, err = keyTokens(dst, ev); err != nil {
			return dst, err
		}
		if !ok {
			return dst, fmt.Errorf("table %s has no primary key, and mode latest keeps one message per key; use mode history for it (or route it to another sink)", ev.Table())
		}
	}
	return dst, nil
}

// WriteBatch publishes the batch's events in order and returns once
// JetStream has acknowledged every one of them. Events that can never be
// published (a value event JSON cannot encode, a subject outside the
// stream, a message above the server's max_payload, a keyless table in
// mode latest) make a *connectors.RejectError, with nothing of the batch
// published. A publish that fails or is not acknowledged within
// ack_timeout makes a retryable error: the engine writes the batch again,
// and JetStream drops the messages that had been stored (same
// Nats-Msg-Id).
func (s *Sink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	if len(b.Events) == 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case s.closed:
			return connectors.ErrClosed
		case !s.opened:
			return errors.New("nats: WriteBatch before Open")
		}
		return nil
	}
	p, err := s.StartBatch(ctx, b)
	if err != nil {
		return err
	}
	select {
	case <-p.Done():
		return p.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StartBatch publishes b and returns without waiting for JetStream's
// acknowledgements, which the returned Pending reports (the engine starts
// the next batch meanwhile: connectors.PipelinedSink). At most max_pending
// messages, over all started batches, are unacknowledged at once.
func (s *Sink) StartBatch(ctx context.Context, b connectors.Batch) (connectors.Pending, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, connectors.ErrClosed
	case !s.opened:
		return nil, errors.New("nats: StartBatch before Open")
	}
	bufs := s.takeBuffers()
	if err := s.encode(bufs, b.Events); err != nil {
		s.putBuffers(bufs)
		return nil, err
	}
	p := &pending{done: make(chan struct{}), n: len(bufs.msgs)}
	err := s.publish(ctx, p, bufs.msgs)
	if err != nil {
		p.err = err // read by the acker after the end marker
	}
	// The end marker completes p once every future queued before it is
	// resolved; on success it gives the buffers back.
	s.acks <- ackItem{p: p, bufs: bufs}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// encode builds one message per event into bufs, their payloads in
// bufs.buf.
func (s *Sink) encode(bufs *buffers, evs []connectors.Event) error {
	buf := bufs.buf[:0]
	if cap(bufs.msgs) < len(evs) {
		bufs.msgs = make([]gonats.Msg, len(evs))
	}
	msgs := bufs.msgs[:len(evs)]
	spans := make([][2]int, len(evs)) // payload offsets in buf
	var rejected []connectors.EventError
	reject := func(i int, err error) { rejected = append(rejected, connectors.EventError{Index: i, Err: err}) }
	for i := range evs {
		ev := &evs[i]
		start := len(buf)
		var err error
		if buf, err = s.subjectFor(buf, ev); err != nil {
			buf = buf[:start]
			reject(i, err)
			continue
		}
		subj := string(buf[start:]) // checked below; kept as a string for the message
		buf = buf[:start]
		switch {
		case !validSubject(subj):
			reject(i, fmt.Errorf("subject %q (from the event's destination) is not a subject one can publish to", subj))
			continue
		case !coveredBy(s.subjects, subj):
			reject(i, fmt.Errorf("subject %q is not among stream %q's subjects [%s]; route the event under %q",
				subj, s.stream, strings.Join(s.subjects, ", "), s.coverage))
			continue
		}
		if buf, err = s.enc.AppendEvent(buf, ev); err != nil {
			buf = buf[:start]
			reject(i, err)
			continue
		}
		hdr, hsize, err := s.headers(ev)
		if err != nil {
			buf = buf[:start]
			reject(i, err)
			continue
		}
		if size := int64(len(buf)-start) + int64(hsize) + int64(len(subj)); s.maxMsg > 0 && size > s.maxMsg {
			buf = buf[:start]
			reject(i, fmt.Errorf("message of %d bytes is larger than the server's max_payload (%d bytes)", size, s.maxMsg))
			continue
		}
		msgs[i] = gonats.Msg{Subject: subj, Header: hdr}
		spans[i] = [2]int{start, len(buf)}
	}
	bufs.buf, bufs.msgs = buf, msgs
	if rejected != nil {
		clear(msgs)
		return &connectors.RejectError{Events: rejected}
	}
	// Slice the payloads only now: buf may have moved while growing.
	for i := range msgs {
		msgs[i].Data = buf[spans[i][0]:spans[i][1]:spans[i][1]]
	}
	return nil
}

// maxKeptBuffer is the largest encoding buffer kept between batches.
const maxKeptBuffer = 8 << 20

// headers returns the event's message headers and their approximate size.
func (s *Sink) headers(ev *connectors.Event) (gonats.Header, int, error) {
	h := make(gonats.Header, 5)
	size := 0
	set := func(k, v string) {
		h[k] = []string{v}
		size += len(k) + len(v) + 4
	}
	if ev.Position != nil {
		set(jetstream.MsgIDHeader, s.idPrefix+base64.RawURLEncoding.EncodeToString(ev.Position))
	}
	set(HeaderOp, ev.Op.String())
	if ev.Op == connectors.OpHeartbeat && s.rollup {
		// Only the latest heartbeat matters (the furthest origin
		// position): it replaces those before it on its subject.
		set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	}
	t := ev.Table()
	set(HeaderTable, headerValue(t.String()))
	if ev.Schema != nil {
		set(HeaderSchemaVersion, strconv.Itoa(ev.Schema.Version))
	}
	key, err := eventjson.MarshalKey(ev)
	if err != nil {
		return nil, 0, fmt.Errorf("key: %w", err)
	}
	if key != nil {
		set(HeaderKey, headerValue(string(key)))
	}
	return h, size + 12, nil
}

// headerValue removes line breaks, which a header value cannot hold.
func headerValue(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// publish publishes msgs asynchronously for p, taking a slot per message
// (so never more than max_pending are unacknowledged over all batches), and
// queues their futures for the acker.
func (s *Sink) publish(ctx context.Context, p *pending, msgs []gonats.Msg) error {
	for i := range msgs {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.inFlight.add(1)
		// The jetstream client writes the message out and keeps it for a
		// retry when no stream answered; the buffers stay untouched until
		// every future of the batch is resolved.
		f, err := s.js.PublishMsgAsync(&msgs[i])
		if err != nil {
			<-s.slots
			s.inFlight.add(-1)
			return connectors.Retryable(fmt.Errorf("nats: publish to %s: %s", msgs[i].Subject, s.cfg.Scrub(err)))
		}
		s.acks <- ackItem{f: f, p: p}
	}
	return nil
}

// acker resolves the futures in publish order. A batch is complete at its
// end marker, which comes after all its futures.
func (s *Sink) acker(acks <-chan ackItem, slots <-chan struct{}, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for it := range acks {
		if it.f == nil { // a batch's end
			p := it.p
			if p.err == nil && p.nFailed > 0 {
				p.err = connectors.Retryable(fmt.Errorf("nats: %d of %d message(s) of the batch were not acknowledged by stream %q (first: %s); the batch will be written again and JetStream drops what was stored",
					p.nFailed, p.n, s.stream, s.cfg.Scrub(p.first)))
			}
			close(p.done)
			if p.err == nil {
				s.putBuffers(it.bufs)
			} // else abandoned: the client may still hold its messages
			continue
		}
		select {
		case <-it.f.Ok():
		case err := <-it.f.Err():
			it.p.fail(err)
		case <-stop:
			it.p.fail(connectors.ErrClosed)
		}
		s.inFlight.add(-1)
		<-slots
	}
}

// Close closes the connection (messages not yet acknowledged are dropped;
// they were never reported durable) and releases the embedded server. A
// second Close, or one without Open, returns nil.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.disconnect()
	s.free = nil
	return nil
}
