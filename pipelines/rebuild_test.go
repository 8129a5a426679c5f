package pipelines

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
)

// memLog is an append-only log of events shared by the fakes below.
type memLog struct {
	mu     sync.Mutex
	events []connectors.Event
}

func (l *memLog) append(key int64, body string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pos := make(connectors.Position, 8)
	binary.BigEndian.PutUint64(pos, uint64(len(l.events)+1))
	l.events = append(l.events, connectors.Event{Op: connectors.OpCreate, Schema: seqSchema,
		After: []connectors.Value{key, body}, Position: pos})
}

func (l *memLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// logSource reads a memLog from a position; it is a Backlogger.
type logSource struct {
	log  *memLog
	next int // index of the next event
	mu   sync.Mutex
}

func (s *logSource) Open(_ context.Context, pos connectors.Position) error {
	if pos != nil {
		s.next = int(binary.BigEndian.Uint64(pos))
	}
	return nil
}
func (s *logSource) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		s.log.mu.Lock()
		end := min(len(s.log.events), s.next+lim.MaxEvents)
		evs := append([]connectors.Event(nil), s.log.events[s.next:end]...)
		s.log.mu.Unlock()
		if len(evs) > 0 {
			s.mu.Lock()
			s.next = end
			s.mu.Unlock()
			return connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}, nil
		}
		select {
		case <-ctx.Done():
			return connectors.Batch{}, ctx.Err()
		case <-t.C:
		}
	}
}
func (s *logSource) Ack(context.Context, connectors.Position) error { return nil }
func (s *logSource) Close(context.Context) error                    { return nil }
func (s *logSource) Backlog(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(s.log.len() - s.next), nil
}

// viewRow is a row of memView: the body, and how many events were applied
// to the key (to catch a lost or doubled event).
type viewRow struct {
	body    string
	applied int
}

// memStore holds a view's live and shadow tables and positions.
type memStore struct {
	mu         sync.Mutex
	live       map[int64]viewRow
	livePos    connectors.Position
	shadow     map[int64]viewRow
	shadowPos  connectors.Position
	promotions int
}

func (st *memStore) read() map[int64]viewRow {
	st.mu.Lock()
	defer st.mu.Unlock()
	return maps.Clone(st.live)
}

// memView is an atomic, shadowable view sink over a memStore; its config
// says whether it upper-cases bodies (the "new shape" of a rebuilt view).
type memView struct {
	st       *memStore
	upper    bool
	isShadow bool
}

func (v *memView) UseShadow() { v.isShadow = true }
func (v *memView) Open(context.Context) error {
	if v.isShadow {
		v.st.mu.Lock()
		v.st.shadow, v.st.shadowPos = map[int64]viewRow{}, nil
		v.st.mu.Unlock()
	}
	return nil
}
func (v *memView) tables() (*map[int64]viewRow, *connectors.Position) {
	if v.isShadow {
		return &v.st.shadow, &v.st.shadowPos
	}
	return &v.st.live, &v.st.livePos
}
func (v *memView) CommittedPosition(context.Context) (connectors.Position, error) {
	v.st.mu.Lock()
	defer v.st.mu.Unlock()
	_, pos := v.tables()
	return *pos, nil
}
func (v *memView) WriteBatch(_ context.Context, b connectors.Batch) error {
	v.st.mu.Lock()
	defer v.st.mu.Unlock()
	rows, pos := v.tables()
	if b.Last.Compare(*pos) <= 0 {
		return nil // a replay
	}
	for _, ev := range b.Events {
		k, body := ev.After[0].(int64), ev.After[1].(string)
		if v.upper {
			body = strings.ToUpper(body)
		}
		(*rows)[k] = viewRow{body: body, applied: (*rows)[k].applied + 1}
	}
	*pos = b.Last
	return nil
}
func (v *memView) Promote(context.Context) error {
	v.st.mu.Lock()
	defer v.st.mu.Unlock()
	v.st.live, v.st.livePos = v.st.shadow, v.st.shadowPos
	v.st.shadow, v.st.shadowPos = nil, nil
	v.st.promotions++
	return nil
}
func (v *memView) Close(context.Context) error { return nil }

type viewConfig struct {
	Upper bool `yaml:"upper"`
}

// A rebuild under a running daemon: the shadow is filled from the start of
// the log while the live view serves and the log keeps growing, the live
// pipeline is paused for the hand-over, the shadow is promoted, and the
// live pipeline resumes from the shadow's position: in the end the view
// holds every event of the log applied exactly once, in the new shape.
func TestRebuildUnderTheDaemon(t *testing.T) {
	lg := &memLog{}
	for i := range 3000 {
		lg.append(int64(i%500), fmt.Sprintf("v%d", i))
	}
	st := &memStore{live: map[int64]viewRow{}}
	reg := connectors.NewRegistry()
	connectors.RegisterSourceIn(reg, "log", "", func() noConfig { return noConfig{} },
		func(noConfig, connectors.Runtime) (connectors.Source, error) { return &logSource{log: lg}, nil })
	connectors.RegisterSinkIn(reg, "view", "", func() viewConfig { return viewConfig{} },
		func(c viewConfig, _ connectors.Runtime) (connectors.Sink, error) {
			return &memView{st: st, upper: c.Upper}, nil
		})
	srcReg, _ := reg.Lookup(connectors.KindSource, "log")
	sinkReg, _ := reg.Lookup(connectors.KindSink, "view")
	sinkCfg := sinkReg.NewConfig()
	p := &Pipeline{Name: "v", Source: Spec{Type: "log", Reg: srcReg, Config: srcReg.NewConfig()},
		Sink: Spec{Type: "view", Reg: sinkReg, Config: sinkCfg}, Batch: connectors.Limits{MaxEvents: 100, MaxWait: time.Millisecond}}
	d := &Daemon{Pipelines: []*Pipeline{p}, DataDir: t.TempDir(), Offsets: offsets.NewMemory(), Metrics: NewMetrics(nil)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitUntil("the live view to apply the log", func() bool { return len(st.read()) == 500 })

	// The log keeps growing during the rebuild.
	stopWriting := make(chan struct{})
	written := make(chan int)
	go func() {
		n := 3000
		for {
			select {
			case <-stopWriting:
				written <- n
				return
			default:
			}
			lg.append(int64(n%500), fmt.Sprintf("v%d", n))
			n++
			time.Sleep(100 * time.Microsecond)
		}
	}()
	// A reader never sees an empty view.
	stopReading := make(chan struct{})
	readerErr := make(chan string, 1)
	go func() {
		for {
			select {
			case <-stopReading:
				readerErr <- ""
				return
			default:
			}
			if n := len(st.read()); n != 500 {
				readerErr <- fmt.Sprintf("a reader saw %d rows", n)
				return
			}
		}
	}()

	sinkCfg.(*viewConfig).Upper = true // the view's new shape
	var phases []string
	res, err := Rebuild(ctx, RebuildOptions{Pipeline: p, DataDir: d.DataDir, Poll: 5 * time.Millisecond,
		Pause: func(ctx context.Context) (func(), error) { return d.Pause(ctx, "v") },
		Progress: func(s RebuildStatus) {
			if len(phases) == 0 || phases[len(phases)-1] != s.Phase {
				phases = append(phases, s.Phase)
			}
		}})
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	close(stopWriting)
	total := <-written
	close(stopReading)
	if msg := <-readerErr; msg != "" {
		t.Error(msg)
	}
	if res.Phase != "promoted" || st.promotions != 1 || strings.Join(phases, ",") != "replaying,handing-over,promoted" {
		t.Errorf("rebuild result %+v, phases %v, %d promotions", res, phases, st.promotions)
	}
	// The live pipeline resumed from the promoted position and applies the
	// rest of the log.
	want := map[int64]viewRow{}
	for i := range total {
		k := int64(i % 500)
		want[k] = viewRow{body: strings.ToUpper(fmt.Sprintf("v%d", i)), applied: want[k].applied + 1}
	}
	waitUntil("the live view to apply the whole log", func() bool {
		got := st.read()
		return got[int64((total-1)%500)].body == want[int64((total-1)%500)].body
	})
	got := st.read()
	for k, w := range want {
		if got[k] != w {
			t.Fatalf("key %d: view %+v, want %+v (applied counts differ: an event lost or applied twice)", k, got[k], w)
		}
	}
	if s := d.Statuses()[0]; s.State != StateRunning {
		t.Errorf("after the rebuild the live pipeline is %s", s.State)
	}
}

// A pipeline whose source is not a log cannot be rebuilt, and says why.
func TestRebuildNeedsALogAndAShadowSink(t *testing.T) {
	reg := connectors.NewRegistry()
	connectors.RegisterSourceIn(reg, "seq", "", func() noConfig { return noConfig{} },
		func(noConfig, connectors.Runtime) (connectors.Source, error) { return &seqSource{}, nil })
	connectors.RegisterSinkIn(reg, "view", "", func() viewConfig { return viewConfig{} },
		func(c viewConfig, _ connectors.Runtime) (connectors.Sink, error) {
			return &memView{st: &memStore{}}, nil
		})
	connectors.RegisterSinkIn(reg, "plain", "", func() noConfig { return noConfig{} },
		func(noConfig, connectors.Runtime) (connectors.Sink, error) { return &recSink{}, nil })
	spec := func(kind connectors.Kind, name string) Spec {
		r, _ := reg.Lookup(kind, name)
		return Spec{Type: name, Reg: r, Config: r.NewConfig()}
	}
	for sink, want := range map[string]string{"view": "source is not a log", "plain": "cannot build a shadow view"} {
		p := &Pipeline{Name: "x", Source: spec(connectors.KindSource, "seq"), Sink: spec(connectors.KindSink, sink)}
		_, err := Rebuild(context.Background(), RebuildOptions{Pipeline: p, DataDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("rebuild with sink %s: %v, want an error saying %q", sink, err, want)
		}
	}
}
