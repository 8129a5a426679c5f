package nats_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/sinks/nats"
)

// target is where a test's sinks write: a unique subject prefix and stream
// on the real NATS server (or the embedded one).
type target struct {
	url      string // "" for the embedded server
	dataDir  string
	port     int
	prefix   string
	stream   string
	pipeline string
	js       jetstream.JetStream
}

// realTarget returns a unique prefix and stream on the test NATS server,
// deleted when the test ends.
func realTarget(t testing.TB) *target {
	t.Helper()
	nc := servicetest.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	prefix := servicetest.Name(t, "tl")
	tg := &target{url: nc.ConnectedUrl(), prefix: prefix, stream: "S_" + prefix, pipeline: "p_" + prefix, js: js}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, tg.stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("cleanup: delete stream %s: %v", tg.stream, err)
		}
	})
	return tg
}

// freePort returns a TCP port on 127.0.0.1 that nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (tg *target) config() nats.Config {
	cfg := nats.DefaultConfig()
	cfg.URL = tg.url
	if tg.url == "" {
		cfg.EmbeddedPort = tg.port
	}
	cfg.SubjectPrefix = tg.prefix
	cfg.Stream = tg.stream
	return cfg
}

func (tg *target) newSink(t testing.TB, cfg nats.Config) *nats.Sink {
	t.Helper()
	s, err := nats.New(cfg, connectors.Runtime{Pipeline: tg.pipeline, DataDir: tg.dataDir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stored is one message read back from the stream.
type stored struct {
	seq     uint64
	subject string
	header  gonats.Header
	data    []byte
}

// readStream returns every message the stream holds, in order, through a
// client of its own.
func readStream(t *testing.T, url, stream string) []stored {
	t.Helper()
	nc, err := gonats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	n := st.CachedInfo().State.Msgs
	if n == 0 {
		return nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for uint64(len(out)) < n {
		batch, err := c.Fetch(int(min(n-uint64(len(out)), 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			out = append(out, stored{seq: md.Sequence.Stream, subject: m.Subject(), header: m.Headers(), data: m.Data()})
			got++
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
		if got == 0 {
			t.Fatalf("read %d of %d messages of stream %s", len(out), n, stream)
		}
	}
	return out
}

// fold reads the stream and folds it by key into the conformance suite's
// state form.
func fold(t *testing.T, url, stream string) map[string]string {
	t.Helper()
	state := map[string]string{}
	dec := eventjson.NewDecoder()
	for _, m := range readStream(t, url, stream) {
		ev, err := dec.Decode(m.data)
		if err != nil {
			t.Fatalf("stream %s seq %d: %v", stream, m.seq, err)
		}
		id, ok := ev.Row()[0].(int64)
		if !ok {
			t.Fatalf("seq %d: id is %T", m.seq, ev.Row()[0])
		}
		if ev.Op == connectors.OpDelete {
			delete(state, connectortest.Key(id))
			continue
		}
		state[connectortest.Key(id)] = connectortest.Row(ev.After...)
	}
	return state
}

func batchOf(evs []connectors.Event) connectors.Batch {
	return connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}
}

func mustOpen(t *testing.T, s connectors.Sink) {
	t.Helper()
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
}

func subjectsOf(ms []stored) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = fmt.Sprint(m.subject)
	}
	return out
}
