package nats_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/internal/natsembed"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/sources/nats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// upstream is a stream holding events, on the test NATS server or on the
// embedded one.
type upstream struct {
	url      string // "" for the embedded server
	dataDir  string
	port     int
	stream   string
	subject  string
	pipeline string
	js       jetstream.JetStream
	evs      []connectors.Event
}

func realUpstream(t *testing.T) *upstream {
	t.Helper()
	nc := servicetest.NATS(t)
	js, _ := jetstream.New(nc)
	name := servicetest.Name(t, "tl")
	u := &upstream{url: nc.ConnectedUrl(), stream: "S_" + name, subject: name + ".conformance.items", pipeline: "p_" + name, js: js}
	u.create(t)
	t.Cleanup(func() {
		if err := js.DeleteStream(context.Background(), u.stream); err != nil {
			t.Errorf("cleanup: delete stream %s: %v", u.stream, err)
		}
	})
	return u
}

// embeddedUpstream holds the embedded server for the test's life.
func embeddedUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{dataDir: t.TempDir(), port: freePort(t), stream: "TAPLINE", subject: "tapline.conformance.items", pipeline: "conformance"}
	url, release, err := natsembed.Acquire(context.Background(), u.dataDir, u.port, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := gonats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); release() })
	u.js, _ = jetstream.New(nc)
	u.create(t)
	return u
}

func (u *upstream) create(t *testing.T) {
	t.Helper()
	prefix, _, _ := strings.Cut(u.subject, ".")
	if _, err := u.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: u.stream, Subjects: []string{prefix + ".>"}}); err != nil {
		t.Fatal(err)
	}
}

// publish appends events (as the nats sink would) and returns them.
func (u *upstream) publish(t *testing.T, evs []connectors.Event) {
	t.Helper()
	for i := range evs {
		data, err := eventjson.Marshal(&evs[i])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := u.js.Publish(context.Background(), u.subject, data); err != nil {
			t.Fatal(err)
		}
	}
	u.evs = append(u.evs, evs...)
}

func (u *upstream) publishRaw(t *testing.T, subject string, data []byte) {
	t.Helper()
	if _, err := u.js.Publish(context.Background(), subject, data); err != nil {
		t.Fatal(err)
	}
}

func (u *upstream) config() nats.Config {
	cfg := nats.DefaultConfig()
	cfg.URL = u.url
	if u.url == "" {
		cfg.EmbeddedPort = u.port
	}
	cfg.Stream = u.stream
	return cfg
}

func (u *upstream) newSource(t *testing.T, cfg nats.Config) *nats.Source {
	t.Helper()
	s, err := nats.New(cfg, connectors.Runtime{Pipeline: u.pipeline, DataDir: u.dataDir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (u *upstream) consumer(t *testing.T, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := u.js.Consumer(context.Background(), u.stream, durable)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

var lim = connectors.Limits{MaxEvents: 40, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond}

// read reads n events (or fails), acknowledging nothing.
func read(t *testing.T, s connectors.Source, n int) []connectors.Event {
	t.Helper()
	return readLim(t, s, n, lim)
}

func readLim(t *testing.T, s connectors.Source, n int, lim connectors.Limits) []connectors.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []connectors.Event
	for len(out) < n {
		b, err := s.ReadBatch(ctx, lim)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d events: %v", len(out), n, err)
		}
		out = append(out, b.Events...)
	}
	if len(out) != n {
		t.Fatalf("read %d events, want %d", len(out), n)
	}
	return out
}

// checkSeqs checks that evs are the stream's events from..from+len-1, in
// order, with their positions.
func (u *upstream) checkSeqs(t *testing.T, evs []connectors.Event, from uint64) {
	t.Helper()
	for i := range evs {
		seq, err := nats.DecodePosition(evs[i].Position)
		if err != nil {
			t.Fatal(err)
		}
		if want := from + uint64(i); seq != want {
			t.Fatalf("event %d is at sequence %d, want %d", i, seq, want)
		}
		a, _ := eventjson.Marshal(&u.evs[seq-1])
		b, _ := eventjson.Marshal(&evs[i])
		if string(a) != string(b) {
			t.Fatalf("sequence %d:\n got %s\nwant %s", seq, b, a)
		}
	}
}

func open(t *testing.T, s connectors.Source, pos connectors.Position) {
	t.Helper()
	if err := s.Open(context.Background(), pos); err != nil {
		t.Fatalf("Open at %s: %v", pos, err)
	}
}

func TestConformance(t *testing.T) {
	u := realUpstream(t)
	u.publish(t, connectortest.Changes(1, 300, 1, map[string]string{}))
	connectortest.RunSource(t, connectortest.SourceHarness{
		New:    func(t *testing.T) connectors.Source { return u.newSource(t, u.config()) },
		Events: len(u.evs),
	})
}

// The same suite on the embedded server, where consumers are moved with
// a reset (nats-server 2.14+) instead of being created again.
func TestConformanceEmbedded(t *testing.T) {
	u := embeddedUpstream(t)
	u.publish(t, connectortest.Changes(1, 300, 1, map[string]string{}))
	// Create the consumer first: the server (held by the test) keeps its
	// goroutines, which the suite's leak check would otherwise report.
	s := u.newSource(t, u.config())
	open(t, s, nil)
	s.Close(context.Background())
	connectortest.RunSource(t, connectortest.SourceHarness{
		New:         func(t *testing.T) connectors.Source { return u.newSource(t, u.config()) },
		Events:      len(u.evs),
		IgnoreLeaks: []string{"github.com/nats-io/nats-server/v2/server.(*Server).sendStatsz"},
	})
}

// A reader killed mid-stream (closed with messages delivered and not
// acknowledged) and reopened at its last acknowledged position loses and
// repeats nothing, in order; on both servers.
func TestKilledReaderResumes(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) *upstream{"real": realUpstream, "embedded": embeddedUpstream} {
		t.Run(name, func(t *testing.T) {
			u := mk(t)
			u.publish(t, connectortest.Changes(1, 200, 1, map[string]string{}))
			s := u.newSource(t, u.config())
			open(t, s, nil)
			got := read(t, s, 120)
			u.checkSeqs(t, got, 1)
			if err := s.Ack(context.Background(), got[69].Position); err != nil {
				t.Fatal(err)
			}
			if ci := u.consumer(t, s.Durable()); ci.AckFloor.Stream != 70 || ci.NumAckPending == 0 {
				t.Fatalf("after acking 70 of 120 read: ack floor %d, %d pending; want 70 and some pending", ci.AckFloor.Stream, ci.NumAckPending)
			}
			s.Close(context.Background()) // killed: 50 read, never acknowledged

			s = u.newSource(t, u.config())
			open(t, s, got[69].Position)
			defer s.Close(context.Background())
			rest := read(t, s, 130)
			u.checkSeqs(t, rest, 71)
			// More arrive while reading: they follow in order.
			u.publish(t, connectortest.Changes(100, 20, 1000, map[string]string{}))
			u.checkSeqs(t, read(t, s, 20), 201)
		})
	}
}

// The stored position wins over the consumer's acknowledgement floor in
// both directions (an exactly-once view sink stores its own).
func TestStoredPositionWins(t *testing.T) {
	u := realUpstream(t)
	u.publish(t, connectortest.Changes(1, 100, 1, map[string]string{}))
	s := u.newSource(t, u.config())
	open(t, s, nil)
	got := read(t, s, 80)
	s.Ack(context.Background(), got[79].Position)
	s.Close(context.Background())

	for _, at := range []uint64{20, 90} {
		s := u.newSource(t, u.config())
		open(t, s, nats.EncodePosition(at))
		u.checkSeqs(t, read(t, s, 100-int(at)), at+1)
		s.Close(context.Background())
	}
}

// Messages delivered again by the server (ack_wait passed) are not
// returned twice within a run.
func TestRedeliveriesSkipped(t *testing.T) {
	u := realUpstream(t)
	u.publish(t, connectortest.Changes(1, 30, 1, map[string]string{}))
	cfg := u.config()
	cfg.AckWait = time.Second
	s := u.newSource(t, cfg)
	open(t, s, nil)
	defer s.Close(context.Background())
	got := readLim(t, s, 10, connectors.Limits{MaxEvents: 10, MaxWait: time.Second})
	// Let ack_wait pass: the next pull request gets the ten again first.
	time.Sleep(1500 * time.Millisecond)
	got = append(got, read(t, s, 20)...)
	u.checkSeqs(t, got, 1)
	if ci := u.consumer(t, s.Durable()); ci.NumRedelivered == 0 {
		t.Fatal("the server redelivered nothing; the test did not exercise redelivery")
	}
}

// max_ack_pending caps what is delivered and not acknowledged: the source
// gets no more until it acknowledges.
func TestMaxAckPendingBackpressure(t *testing.T) {
	u := realUpstream(t)
	u.publish(t, connectortest.Changes(1, 50, 1, map[string]string{}))
	cfg := u.config()
	cfg.MaxAckPending = 10
	s := u.newSource(t, cfg)
	open(t, s, nil)
	defer s.Close(context.Background())
	got := read(t, s, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	b, err := s.ReadBatch(ctx, lim)
	cancel()
	if len(b.Events) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read %d more events past max_ack_pending (%v)", len(b.Events), err)
	}
	if ci := u.consumer(t, s.Durable()); ci.NumAckPending != 10 || ci.Delivered.Stream != 10 {
		t.Fatalf("consumer has %d pending, delivered to %d; want 10 and 10", ci.NumAckPending, ci.Delivered.Stream)
	}
	if n, err := s.Backlog(context.Background()); err != nil || n != 40 {
		t.Fatalf("Backlog = %d, %v; want 40", n, err)
	}
	if err := s.Ack(context.Background(), got[9].Position); err != nil {
		t.Fatal(err)
	}
	u.checkSeqs(t, read(t, s, 10), 11)
}

// A message that is not an event stops the source after the events before
// it, naming stream, sequence and subject; skip_invalid skips it.
func TestInvalidMessage(t *testing.T) {
	u := realUpstream(t)
	u.publish(t, connectortest.Changes(1, 3, 1, map[string]string{}))
	u.publishRaw(t, u.subject, []byte(`{"op":"c","after":{"id":}}`))
	u.evs = append(u.evs, connectors.Event{}) // sequence 4 holds no event
	u.publish(t, connectortest.Changes(10, 2, 100, map[string]string{}))

	s := u.newSource(t, u.config())
	open(t, s, nil)
	u.checkSeqs(t, read(t, s, 3), 1)
	_, err := s.ReadBatch(context.Background(), lim)
	want := fmt.Sprintf("nats: stream %q sequence 4 subject %q: not a tapline event", u.stream, u.subject)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "skip_invalid") {
		t.Fatalf("ReadBatch = %v; want an error containing %q", err, want)
	}
	s.Close(context.Background())

	cfg := u.config()
	cfg.SkipInvalid = true
	s = u.newSource(t, cfg)
	open(t, s, nats.EncodePosition(3))
	defer s.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var evs []connectors.Event
	var last connectors.Position
	for len(evs) < 2 {
		b, err := s.ReadBatch(ctx, lim)
		if err != nil {
			t.Fatal(err)
		}
		evs, last = append(evs, b.Events...), b.Last
	}
	u.checkSeqs(t, evs, 5)
	if last.Compare(nats.EncodePosition(6)) != 0 {
		t.Fatalf("batch Last %s", last)
	}
}

// Without a stream name the source finds the stream by subject; a durable
// defaults to the pipeline name.
func TestStreamBySubject(t *testing.T) {
	u := realUpstream(t)
	u.publish(t, connectortest.Changes(1, 5, 1, map[string]string{}))
	cfg := u.config()
	cfg.Stream = ""
	cfg.Subjects = []string{u.subject}
	s := u.newSource(t, cfg)
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	open(t, s, nil)
	defer s.Close(context.Background())
	u.checkSeqs(t, read(t, s, 5), 1)
	if s.StreamName() != u.stream || s.Durable() != u.pipeline {
		t.Fatalf("stream %q durable %q", s.StreamName(), s.Durable())
	}
}

// A stored position past the stream's end (the stream was recreated) is an
// error that says what to do.
func TestPositionPastStreamEnd(t *testing.T) {
	u := realUpstream(t)
	u.publish(t, connectortest.Changes(1, 5, 1, map[string]string{}))
	s := u.newSource(t, u.config())
	defer s.Close(context.Background())
	err := s.Open(context.Background(), nats.EncodePosition(500))
	if err == nil || !strings.Contains(err.Error(), "ends at 5") || !strings.Contains(err.Error(), "tapline offsets delete") {
		t.Fatalf("Open past the end: %v", err)
	}
}

func TestPositionFormat(t *testing.T) {
	p := nats.EncodePosition(1200)
	if s, err := nats.PositionFormat.Format(p); err != nil || s != "1200" {
		t.Fatalf("Format = %q, %v", s, err)
	}
	if q, err := nats.PositionFormat.Parse("1200"); err != nil || q.Compare(p) != 0 {
		t.Fatalf("Parse = %s, %v", q, err)
	}
	if nats.EncodePosition(255).Compare(nats.EncodePosition(256)) >= 0 {
		t.Fatal("positions do not order by sequence")
	}
	if _, err := nats.DecodePosition(connectors.TxPosition{Commit: 1}.Encode()); err == nil {
		t.Fatal("a foreign position decoded")
	}
}

// When the consumer's deliveries jump (here: someone resets it behind the
// source's back, as lost deliveries in a reconnect would look), the source
// moves it back to after the last acknowledged message and skips what it
// already returned: nothing lost, nothing repeated, in order.
func TestDeliveryGapRecovers(t *testing.T) {
	u := embeddedUpstream(t)
	u.publish(t, connectortest.Changes(1, 120, 1, map[string]string{}))
	s := u.newSource(t, u.config())
	open(t, s, nil)
	defer s.Close(context.Background())
	got := readLim(t, s, 40, connectors.Limits{MaxEvents: 40, MaxWait: time.Second})
	if err := s.Ack(context.Background(), got[19].Position); err != nil {
		t.Fatal(err)
	}
	if _, err := u.js.ResetConsumerToSequence(context.Background(), u.stream, s.Durable(), 70); err != nil {
		t.Fatal(err)
	}
	got = append(got, read(t, s, 80)...)
	u.checkSeqs(t, got, 1)
}

// A rebuild reads through a durable consumer of its own, also when the
// config names one: sharing the live consumer would split its messages.
func TestRebuildGetsItsOwnConsumer(t *testing.T) {
	cfg := nats.DefaultConfig()
	cfg.Stream = "SHOP"
	for _, c := range []struct {
		durable string
		rt      connectors.Runtime
		want    string
	}{
		{"", connectors.Runtime{Pipeline: "view"}, "view"},
		{"", connectors.Runtime{Pipeline: "view-rebuild", Rebuild: true}, "view-rebuild"},
		{"orders", connectors.Runtime{Pipeline: "view"}, "orders"},
		{"orders", connectors.Runtime{Pipeline: "view-rebuild", Rebuild: true}, "orders-rebuild"},
	} {
		cfg.Durable = c.durable
		s, err := nats.New(cfg, c.rt)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Durable(); got != c.want {
			t.Errorf("durable %q, pipeline %q, rebuild %v: consumer %q, want %q", c.durable, c.rt.Pipeline, c.rt.Rebuild, got, c.want)
		}
	}
}
