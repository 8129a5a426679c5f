package pipelines

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
)

func init() {
	connectors.RegisterOriginOrder("seqwait", func(a, b string) (int, bool) {
		pa, errA := connectors.ParseTxPosition(a)
		pb, errB := connectors.ParseTxPosition(b)
		if errA != nil || errB != nil {
			return 0, false
		}
		return bytes.Compare(pa.Encode(), pb.Encode()), true
	})
}

// originSource is a seqSource whose events carry an origin position.
type originSource struct{ seqSource }

func (s *originSource) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	b, err := s.seqSource.ReadBatch(ctx, lim)
	for i := range b.Events {
		ev := &b.Events[i]
		tp, _ := connectors.DecodeTxPosition(ev.Position)
		ev.Source.Connector, ev.Source.DB, ev.Source.Position = "seqwait", "db", tp.String()
	}
	return b, err
}

// viewSink applies slowly and records the origins it applied, as a view
// sink does: its applied positions move only after a batch is "committed".
type viewSink struct {
	mu      sync.Mutex
	applied int
	origins connectors.Origins
}

func (s *viewSink) Open(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.origins = connectors.Origins{}
	return nil
}
func (s *viewSink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	time.Sleep(2 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b.Events {
		s.origins.Observe(&b.Events[i])
	}
	s.applied += len(b.Events)
	return nil
}
func (s *viewSink) Close(context.Context) error { return nil }
func (s *viewSink) AppliedOrigins(context.Context) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(map[string]string(s.origins)), nil
}
func (s *viewSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

type noConfig struct{}

func TestDaemonWaitReadYourWrites(t *testing.T) {
	view := &viewSink{}
	reg := connectors.NewRegistry()
	connectors.RegisterSourceIn(reg, "seq", "", func() noConfig { return noConfig{} },
		func(noConfig, connectors.Runtime) (connectors.Source, error) {
			return &originSource{seqSource{Count: 0, PerTx: 1}}, nil
		})
	connectors.RegisterSinkIn(reg, "view", "", func() noConfig { return noConfig{} },
		func(noConfig, connectors.Runtime) (connectors.Sink, error) { return view, nil })
	connectors.RegisterSinkIn(reg, "plain", "", func() noConfig { return noConfig{} },
		func(noConfig, connectors.Runtime) (connectors.Sink, error) { return &recSink{}, nil })
	spec := func(kind connectors.Kind, name string) Spec {
		r, err := reg.Lookup(kind, name)
		if err != nil {
			t.Fatal(err)
		}
		return Spec{Type: name, Reg: r, Config: r.NewConfig()}
	}
	limits := connectors.Limits{MaxEvents: 10, MaxWait: time.Millisecond}
	d := &Daemon{
		Pipelines: []*Pipeline{
			{Name: "orders-view", Source: spec(connectors.KindSource, "seq"), Sink: spec(connectors.KindSink, "view"), Batch: limits},
			{Name: "to-log", Source: spec(connectors.KindSource, "seq"), Sink: spec(connectors.KindSink, "plain"), Batch: limits},
		},
		DataDir: t.TempDir(),
		Offsets: offsets.NewMemory(),
		Metrics: NewMetrics(nil),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}()

	res, err := d.Wait(ctx, "orders-view", "", "300:1", 30*time.Second)
	if err != nil || !res.Reached {
		t.Fatalf("wait for 300:1: %+v, %v", res, err)
	}
	if n := view.count(); n < 300 {
		t.Fatalf("wait returned when the view had applied %d events, before event 300", n)
	}
	if res.Origin != "seqwait/db" {
		t.Errorf("reached through origin %q, want seqwait/db", res.Origin)
	}
	// A named origin that does not exist never reaches.
	if res, err := d.Wait(ctx, "orders-view", "postgres/other", "1:1", 50*time.Millisecond); err != nil || res.Reached {
		t.Errorf("wait on another origin: %+v, %v; want a timeout", res, err)
	}
	// Far ahead: times out with what was applied so far.
	res, err = d.Wait(ctx, "orders-view", "", "100000000:1", 50*time.Millisecond)
	if err != nil || res.Reached || res.Applied["seqwait/db"] == "" {
		t.Errorf("wait far ahead: %+v, %v; want a timeout that reports the applied position", res, err)
	}
	if _, err := d.Wait(ctx, "nope", "", "1:1", time.Second); !errors.Is(err, ErrUnknownPipeline) {
		t.Errorf("unknown pipeline: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := d.Wait(ctx, "to-log", "", "1:1", 20*time.Millisecond)
		if errors.Is(err, ErrNotView) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wait on a pipeline without a view sink: %v, want ErrNotView", err)
		}
	}
}
