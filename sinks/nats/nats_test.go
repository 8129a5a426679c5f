package nats_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/sinks/nats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	tg := realTarget(t)
	connectortest.RunSink(t, connectortest.SinkHarness{
		New:     func(t *testing.T) connectors.Sink { return tg.newSink(t, tg.config()) },
		State:   func(t *testing.T) map[string]string { return fold(t, tg.url, tg.stream) },
		Records: func(t *testing.T) int { return len(readStream(t, tg.url, tg.stream)) },
	})
}

// The same suite against the embedded server (nats-server in the process).
func TestConformanceEmbedded(t *testing.T) {
	tg := &target{dataDir: t.TempDir(), port: freePort(t), prefix: "tapline", stream: "TAPLINE", pipeline: "conformance"}
	tg.url = ""
	url := fmt.Sprintf("nats://127.0.0.1:%d", tg.port)
	connectortest.RunSink(t, connectortest.SinkHarness{
		New:     func(t *testing.T) connectors.Sink { return tg.newSink(t, tg.config()) },
		State:   func(t *testing.T) map[string]string { return fold(t, url, tg.stream) },
		Records: func(t *testing.T) int { return len(readStream(t, url, tg.stream)) },
	})
}

// A batch published again by a fresh sink (the engine replaying after a
// crash before the offset commit) is dropped by JetStream: each event is
// stored once, in order.
func TestRepublishAfterCrashIsDropped(t *testing.T) {
	tg := realTarget(t)
	evs := connectortest.Changes(1, 300, 1, map[string]string{})
	for round := 0; round < 2; round++ {
		s := tg.newSink(t, tg.config())
		mustOpen(t, s)
		for _, b := range []connectors.Batch{batchOf(evs[:100]), batchOf(evs[100:])} {
			if err := s.WriteBatch(context.Background(), b); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		s.Close(context.Background()) // the "crash": a new instance follows
	}
	// A partial overlap, as after a crash in the middle of a batch.
	s := tg.newSink(t, tg.config())
	mustOpen(t, s)
	if err := s.WriteBatch(context.Background(), batchOf(evs[250:])); err != nil {
		t.Fatal(err)
	}
	ms := readStream(t, tg.url, tg.stream)
	if len(ms) != len(evs) {
		t.Fatalf("stream holds %d messages after publishing %d events twice; want each once", len(ms), len(evs))
	}
	for i, m := range ms {
		want := tg.pipeline + "/" + base64.RawURLEncoding.EncodeToString(evs[i].Position)
		if got := m.header.Get(jetstream.MsgIDHeader); got != want {
			t.Fatalf("message %d has Nats-Msg-Id %q, want %q (stream order must follow the events)", i, got, want)
		}
	}
}

// Messages carry the id, op, table, schema version and key headers, on
// subjects from the template; tables without a schema lose that token,
// names with dots or spaces are escaped, and the destination wins.
func TestSubjectsAndHeaders(t *testing.T) {
	tg := realTarget(t)
	s := tg.newSink(t, tg.config())
	mustOpen(t, s)
	plain := connectortest.Changes(1, 1, 1, map[string]string{})[0]
	odd := plain
	odd.Schema = connectors.MustSchema(connectors.TableID{Name: "my table.v2"}, 3, connectortest.Schema.Columns)
	odd.Position = connectors.TxPosition{Commit: 2, Ordinal: 1}.Encode()
	routed := plain
	routed.Destination = tg.prefix + ".routed.here"
	routed.Position = connectors.TxPosition{Commit: 3, Ordinal: 1}.Encode()
	if err := s.WriteBatch(context.Background(), batchOf([]connectors.Event{plain, odd, routed})); err != nil {
		t.Fatal(err)
	}
	ms := readStream(t, tg.url, tg.stream)
	want := []string{tg.prefix + ".conformance.items", tg.prefix + ".my%20table%2Ev2", tg.prefix + ".routed.here"}
	if got := subjectsOf(ms); !slices.Equal(got, want) {
		t.Fatalf("subjects %q, want %q", got, want)
	}
	h := ms[1].header
	for k, v := range map[string]string{
		nats.HeaderOp: "c", nats.HeaderTable: "my table.v2", nats.HeaderSchemaVersion: "3", nats.HeaderKey: `{"id":1}`,
		jetstream.MsgIDHeader: tg.pipeline + "/" + base64.RawURLEncoding.EncodeToString(odd.Position),
	} {
		if got := h.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	ev, err := eventjson.Unmarshal(ms[0].data)
	if err != nil || ev.Schema == nil || ev.Schema.Version != 1 || len(ev.Schema.Columns) != 4 {
		t.Fatalf("payload does not decode to the event with its schema: %v %+v", err, ev.Schema)
	}
}

// Events that can never be published are rejected, with nothing of the
// batch published.
func TestRejectsWithoutPublishing(t *testing.T) {
	tg := realTarget(t)
	s := tg.newSink(t, tg.config())
	mustOpen(t, s)
	evs := connectortest.Changes(1, 3, 1, map[string]string{})
	evs[1].Destination = "elsewhere.orders"
	evs[2].After = append([]connectors.Value(nil), evs[2].After...)
	evs[2].After[1] = struct{}{} // a Go type event JSON cannot encode
	err := s.WriteBatch(context.Background(), batchOf(evs))
	var rej *connectors.RejectError
	if !errors.As(err, &rej) || len(rej.Events) != 2 || rej.Events[0].Index != 1 || rej.Events[1].Index != 2 {
		t.Fatalf("WriteBatch = %v; want a RejectError for events 1 and 2", err)
	}
	if !strings.Contains(rej.Events[0].Err.Error(), `"elsewhere.orders" is not among stream`) {
		t.Errorf("reject reason %q does not name the subject and the stream", rej.Events[0].Err)
	}
	if ms := readStream(t, tg.url, tg.stream); len(ms) != 0 {
		t.Fatalf("a rejected batch published %d messages", len(ms))
	}
	if err := s.WriteBatch(context.Background(), batchOf(evs[:1])); err != nil {
		t.Fatalf("the rest of the batch: %v", err)
	}
}

// An existing stream whose subjects do not cover the sink's is an error
// naming the stream, its subjects and the fix.
func TestStreamWithOtherSubjects(t *testing.T) {
	tg := realTarget(t)
	ctx := context.Background()
	if _, err := tg.js.CreateStream(ctx, jetstream.StreamConfig{Name: tg.stream, Subjects: []string{tg.prefix + ".only.this"}}); err != nil {
		t.Fatal(err)
	}
	s := tg.newSink(t, tg.config())
	defer s.Close(ctx)
	for _, op := range []struct {
		name string
		f    func(context.Context) error
	}{{"Check", s.Check}, {"Open", s.Open}} {
		err := op.f(ctx)
		if err == nil {
			t.Fatalf("%s accepted a stream with other subjects", op.name)
		}
		for _, want := range []string{tg.stream, tg.prefix + ".only.this", tg.prefix + ".>", "nats stream edit"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s error %q does not mention %q", op.name, err, want)
			}
		}
		if connectors.IsRetryable(err) {
			t.Errorf("%s: a config mismatch is retryable: %v", op.name, err)
		}
	}
}

// max_pending bounds the messages published and not yet acknowledged.
func TestMaxPendingBoundsInFlight(t *testing.T) {
	tg := realTarget(t)
	cfg := tg.config()
	cfg.MaxPending = 8
	s := tg.newSink(t, cfg)
	mustOpen(t, s)
	evs := connectortest.Changes(1, 2000, 1, map[string]string{})
	if err := s.WriteBatch(context.Background(), batchOf(evs)); err != nil {
		t.Fatal(err)
	}
	if peak := s.PeakInFlight(); peak > 8 || peak < 2 {
		t.Fatalf("peak of %d unacknowledged messages; want between 2 (asynchronous) and max_pending 8", peak)
	}
	if ms := readStream(t, tg.url, tg.stream); len(ms) != len(evs) {
		t.Fatalf("stream holds %d messages, want %d", len(ms), len(evs))
	}
}

// Mode latest keeps one message per key: the stream folds to the same rows
// and holds no more messages than keys written.
func TestModeLatest(t *testing.T) {
	tg := realTarget(t)
	cfg := tg.config()
	cfg.Mode = nats.ModeLatest
	want := map[string]string{}
	evs := connectortest.Changes(1, 400, 1, want)
	keys := map[string]bool{}
	for i := range evs {
		keys[connectortest.Key(evs[i].Row()[0].(int64))] = true
	}
	s := tg.newSink(t, cfg)
	mustOpen(t, s)
	for i := 0; i < len(evs); i += 100 {
		if err := s.WriteBatch(context.Background(), batchOf(evs[i:i+100])); err != nil {
			t.Fatal(err)
		}
	}
	ms := readStream(t, tg.url, tg.stream)
	if len(ms) != len(keys) {
		t.Fatalf("stream holds %d messages for %d keys; mode latest keeps one per key", len(ms), len(keys))
	}
	if got := fold(t, tg.url, tg.stream); !maps.Equal(got, want) {
		t.Fatalf("folded stream differs: %d rows, want %d", len(got), len(want))
	}
	if ms[0].subject != tg.prefix+".conformance.items."+strings.TrimPrefix(connectortest.Key(1), "id=") && !strings.HasPrefix(ms[0].subject, tg.prefix+".conformance.items.") {
		t.Errorf("subject %q is not per key", ms[0].subject)
	}
	// A keyless table cannot be compacted: rejected.
	keyless := evs[0]
	keyless.Schema = connectors.MustSchema(connectors.TableID{Schema: "s", Name: "nokey"}, 1, []connectors.Column{{Name: "id", Type: connectors.TypeInt64}})
	keyless.After = []connectors.Value{int64(1)}
	var rej *connectors.RejectError
	if err := s.WriteBatch(context.Background(), batchOf([]connectors.Event{keyless})); !errors.As(err, &rej) ||
		!strings.Contains(err.Error(), "no primary key") {
		t.Fatalf("keyless event in mode latest: %v", err)
	}
	// Opening mode history on the compacted stream is refused.
	hist := tg.newSink(t, tg.config())
	defer hist.Close(context.Background())
	if err := hist.Open(context.Background()); err == nil || !strings.Contains(err.Error(), "max_msgs_per_subject") {
		t.Fatalf("mode history on a latest stream: %v", err)
	}
}

// Errors never show credentials.
func TestNoCredentialsInErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	port := freePort(t) // nobody listens
	for _, cfg := range []nats.Config{
		func() nats.Config {
			c := nats.DefaultConfig()
			c.URL = fmt.Sprintf("nats://alice:pw-secret-1@127.0.0.1:%d", port)
			return c
		}(),
		func() nats.Config {
			c := nats.DefaultConfig()
			c.URL = fmt.Sprintf("nats://127.0.0.1:%d", port)
			c.Token = "tok-secret-2"
			return c
		}(),
	} {
		s, err := nats.New(cfg, connectors.Runtime{Pipeline: "p"})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Open(ctx)
		s.Close(ctx)
		if err == nil {
			t.Fatal("Open reached a server that is not there")
		}
		if strings.Contains(err.Error(), "secret") || !connectors.IsRetryable(err) {
			t.Fatalf("error %q shows a credential, or is not retryable", err)
		}
		if got := fmt.Sprintf("%v %+v", cfg, cfg); strings.Contains(got, "secret-2") {
			t.Fatalf("config prints its token: %s", got)
		}
	}
}

// Batches started one after the other (the engine's pipelining) are stored
// in the order they were started, each reported done when stored, and
// max_pending bounds the unacknowledged messages over all of them.
func TestStartBatchPipelinesInOrder(t *testing.T) {
	tg := realTarget(t)
	cfg := tg.config()
	cfg.MaxPending = 64
	s := tg.newSink(t, cfg)
	mustOpen(t, s)
	want := map[string]string{}
	first := connectortest.Changes(1, 500, 1, want)
	second := connectortest.Changes(100, 500, 1000, want) // updates and deletes of the same keys, later
	ctx := context.Background()
	p1, err := s.StartBatch(ctx, batchOf(first))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s.StartBatch(ctx, batchOf(second))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range []connectors.Pending{p1, p2} {
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			t.Fatalf("batch %d not done after 30s", i+1)
		}
		if err := p.Err(); err != nil {
			t.Fatalf("batch %d: %v", i+1, err)
		}
	}
	ms := readStream(t, tg.url, tg.stream)
	if len(ms) != len(first)+len(second) {
		t.Fatalf("stream holds %d messages, want %d", len(ms), len(first)+len(second))
	}
	// Stored in start order: the second batch's updates come last per key.
	if got := fold(t, tg.url, tg.stream); !maps.Equal(got, want) {
		t.Fatalf("stream folds to %d rows that differ from the %d written", len(got), len(want))
	}
	if peak := s.PeakInFlight(); peak > 64 || peak < 2 {
		t.Fatalf("peak of %d unacknowledged messages over two batches; want between 2 and max_pending 64", peak)
	}
}

// Closing the sink with a batch still unacknowledged completes it with an
// error instead of leaving the engine waiting.
func TestCloseFailsBatchesInFlight(t *testing.T) {
	tg := realTarget(t)
	s := tg.newSink(t, tg.config())
	mustOpen(t, s)
	evs := connectortest.Changes(1, 2000, 1, map[string]string{})
	p, err := s.StartBatch(context.Background(), batchOf(evs))
	if err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a batch in flight at Close was not completed")
	}
	// Done either way; stored only if every ack arrived before Close.
	if err := p.Err(); err != nil && !errors.Is(err, connectors.ErrClosed) {
		if !strings.Contains(err.Error(), "not acknowledged") {
			t.Fatalf("batch in flight at Close: %v", err)
		}
	}
}

// A heartbeat event (op h) goes to <subject_prefix>._heartbeat, in either
// mode.
func TestHeartbeatSubject(t *testing.T) {
	for _, mode := range []string{nats.ModeHistory, nats.ModeLatest} {
		t.Run(mode, func(t *testing.T) {
			tg := realTarget(t)
			cfg := tg.config()
			cfg.Mode = mode
			s := tg.newSink(t, cfg)
			mustOpen(t, s)
			hb := connectors.Event{Op: connectors.OpHeartbeat,
				Source:   connectors.SourceInfo{Connector: "postgres", DB: "shop", Position: "0/3A1C2F8:0"},
				Position: connectors.TxPosition{Commit: 0x3A1C2F8}.Encode()}
			evs := append(connectortest.Changes(1, 3, 1, map[string]string{}), hb)
			if err := s.WriteBatch(context.Background(), batchOf(evs)); err != nil {
				t.Fatal(err)
			}
			ms := readStream(t, tg.url, tg.stream)
			last := ms[len(ms)-1]
			if want := tg.prefix + "." + nats.HeartbeatToken; len(ms) != 4 || last.subject != want || last.header.Get(nats.HeaderOp) != "h" {
				t.Fatalf("stream holds %d messages, the last on %q with op %q; want 4, the heartbeat on %q", len(ms), last.subject, last.header.Get(nats.HeaderOp), want)
			}
		})
	}
}

// A heartbeat replaces the one before it in the stream the sink creates
// (a rollup of its subject), so that history-mode streams do not fill up
// with heartbeats; a stream made without rollups keeps them all, and still
// takes them.
func TestHeartbeatsRollUp(t *testing.T) {
	for _, rollup := range []bool{true, false} {
		t.Run(fmt.Sprint("allow_rollup=", rollup), func(t *testing.T) {
			tg := realTarget(t)
			cfg := tg.config()
			if !rollup {
				if _, err := tg.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: tg.stream,
					Subjects: []string{tg.prefix + ".>"}, Duplicates: cfg.DuplicateWindow}); err != nil {
					t.Fatal(err)
				}
			}
			s := tg.newSink(t, cfg)
			mustOpen(t, s)
			evs := connectortest.Changes(1, 3, 1, map[string]string{})
			for i := uint64(1); i <= 3; i++ {
				evs = append(evs, connectors.Event{Op: connectors.OpHeartbeat,
					Source:   connectors.SourceInfo{Connector: "postgres", DB: "shop", Position: fmt.Sprintf("0/%X:0", 0x100*i)},
					Position: connectors.TxPosition{Commit: 0x100 * i}.Encode()})
			}
			// The heartbeats in two batches: a rollup also reaches back
			// into an earlier batch.
			if err := s.WriteBatch(context.Background(), batchOf(evs[:4])); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteBatch(context.Background(), batchOf(evs[4:])); err != nil {
				t.Fatal(err)
			}
			var beats []string
			for _, m := range readStream(t, tg.url, tg.stream) {
				if m.header.Get(nats.HeaderOp) == "h" {
					beats = append(beats, m.header.Get(jetstream.MsgIDHeader))
				}
			}
			want := 1
			if !rollup {
				want = 3
			}
			if len(beats) != want {
				t.Fatalf("the stream keeps %d heartbeats (%v), want %d", len(beats), beats, want)
			}
			wantLast := connectors.TxPosition{Commit: 0x300}.Encode()
			if !strings.HasSuffix(beats[len(beats)-1], base64.RawURLEncoding.EncodeToString(wantLast)) {
				t.Errorf("the last heartbeat kept is %s, want the one at %x", beats[len(beats)-1], wantLast)
			}
		})
	}
}
