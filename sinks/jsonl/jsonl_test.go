package jsonl_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/sinks/jsonl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSink(t testing.TB, path string, mod func(*jsonl.Config)) *jsonl.Sink {
	t.Helper()
	cfg := jsonl.DefaultConfig()
	cfg.Path = path
	if mod != nil {
		mod(&cfg)
	}
	s, err := jsonl.New(cfg, connectors.Runtime{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readLines decodes every line of the file.
func readLines(t *testing.T, path string) []connectors.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	d := eventjson.NewDecoder()
	var out []connectors.Event
	for n := 1; sc.Scan(); n++ {
		ev, err := d.Decode(sc.Bytes())
		if err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out", "events.jsonl")
	connectortest.RunSink(t, connectortest.SinkHarness{
		New: func(t *testing.T) connectors.Sink { return newSink(t, path, nil) },
		State: func(t *testing.T) map[string]string {
			state := map[string]string{}
			if _, err := os.Stat(path); err != nil {
				return state
			}
			for _, ev := range readLines(t, path) { // fold the log by key
				key := connectortest.Key(ev.Row()[0].(int64))
				if ev.Op == connectors.OpDelete {
					delete(state, key)
				} else {
					state[key] = connectortest.Row(ev.After...)
				}
			}
			return state
		},
	})
}

func batchOf(evs []connectors.Event) connectors.Batch {
	return connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}
}

// Reopening appends; nothing already written is lost.
func TestAppends(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	evs := connectortest.Changes(1, 30, 1, map[string]string{})
	for _, part := range [][]connectors.Event{evs[:10], evs[10:25], evs[25:]} {
		s := newSink(t, path, nil)
		if err := s.Open(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteBatch(ctx, batchOf(part)); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := readLines(t, path)
	if len(got) != 30 {
		t.Fatalf("%d lines, want 30", len(got))
	}
	for i := range got {
		a, _ := eventjson.Marshal(&evs[i])
		b, _ := eventjson.Marshal(&got[i])
		if string(a) != string(b) {
			t.Fatalf("line %d:\n got %s\nwant %s", i+1, b, a)
		}
	}
}

// A torn last line (a crash in the middle of a write) is cut off when the
// sink opens; a whole last line without its newline gets one.
func TestRepairsTornTail(t *testing.T) {
	ctx := context.Background()
	evs := connectortest.Changes(1, 3, 1, map[string]string{})
	var whole []byte
	for i := range evs {
		whole, _ = eventjson.AppendEvent(whole, &evs[i], eventjson.Options{})
		whole = append(whole, '\n')
	}
	for _, tc := range []struct {
		name, tail string
		lines      int
	}{
		{"torn", `{"op":"c","after":{"id":4,"na`, 4},
		{"whole without newline", `{"op":"c","after":{"id":4},"source":{"table":"items"}}`, 5},
		{"only a torn line", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			content := string(whole) + tc.tail
			if tc.tail == "" {
				content = `{"op":"c","aft`
			}
			os.WriteFile(path, []byte(content), 0o644)
			s := newSink(t, path, nil)
			if err := s.Open(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteBatch(ctx, batchOf(connectortest.Changes(10, 1, 100, map[string]string{}))); err != nil {
				t.Fatal(err)
			}
			s.Close(ctx)
			if got := readLines(t, path); len(got) != tc.lines {
				t.Fatalf("%d lines, want %d", len(got), tc.lines)
			}
		})
	}
}

func TestRejectsWithoutWriting(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s := newSink(t, path, nil)
	defer s.Close(ctx)
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	evs := connectortest.Changes(1, 5, 1, map[string]string{})
	evs[1].After = append([]connectors.Value(nil), evs[1].After...)
	evs[1].After[2] = 3 // an int, not an int64
	evs[3].After = evs[3].After[:2]
	err := s.WriteBatch(ctx, batchOf(evs))
	var rej *connectors.RejectError
	if !errors.As(err, &rej) || len(rej.Events) != 2 || rej.Events[0].Index != 1 || rej.Events[1].Index != 3 {
		t.Fatalf("WriteBatch: %v", err)
	}
	if !strings.Contains(err.Error(), "unsupported value type int") {
		t.Errorf("error %v", err)
	}
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Fatalf("a rejected batch wrote %d bytes", fi.Size())
	}
}

func TestOmitSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s := newSink(t, path, func(c *jsonl.Config) { c.OmitSchema, c.Fsync = true, false })
	s.Open(ctx)
	s.WriteBatch(ctx, batchOf(connectortest.Changes(1, 3, 1, map[string]string{})))
	s.Close(ctx)
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), `"schema":{`) || strings.Count(string(b), "\n") != 3 {
		t.Fatalf("file:\n%s", b)
	}
}

func TestLifecycleErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := jsonl.New(jsonl.Config{}, connectors.Runtime{}); err == nil {
		t.Error("empty path accepted")
	}
	s := newSink(t, "/proc/tapline-cannot-write-here/out.jsonl", nil)
	if err := s.Open(ctx); err == nil || !strings.Contains(err.Error(), "jsonl: mkdir /proc/tapline-cannot-write-here") {
		t.Errorf("Open of an unwritable path: %v", err)
	}
	s.Close(ctx)
	s = newSink(t, filepath.Join(t.TempDir(), "x.jsonl"), nil)
	evs := connectortest.Changes(1, 1, 1, map[string]string{})
	if err := s.WriteBatch(ctx, batchOf(evs)); err == nil {
		t.Error("WriteBatch before Open: no error")
	}
	s.Open(ctx)
	if err := s.WriteBatch(ctx, connectors.Batch{Last: evs[0].Position}); err != nil {
		t.Errorf("empty batch: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.WriteBatch(cctx, batchOf(evs)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled WriteBatch: %v", err)
	}
	s.Close(ctx)
	if err := s.WriteBatch(ctx, batchOf(evs)); !errors.Is(err, connectors.ErrClosed) {
		t.Errorf("WriteBatch after Close: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	reg, err := connectors.Default.Lookup(connectors.KindSink, "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range reg.Fields() {
		got = append(got, f.Key+"="+f.Default)
	}
	if s := strings.Join(got, " "); s != "path=- fsync=true omit_schema=" {
		t.Errorf("config: %s", s)
	}
}

func BenchmarkWriteBatch(b *testing.B) {
	ctx := context.Background()
	for _, fsync := range []bool{false, true} {
		name := "NoFsync"
		if fsync {
			name = "Fsync"
		}
		b.Run(name, func(b *testing.B) {
			s := newSink(b, filepath.Join(b.TempDir(), "bench.jsonl"), func(c *jsonl.Config) { c.Fsync = fsync })
			s.Open(ctx)
			defer s.Close(ctx)
			batch := batchOf(connectortest.Changes(1, 1000, 1, map[string]string{}))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.WriteBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/event")
		})
	}
}
