package jsonl_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/sources/jsonl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// writeEvents writes evs as JSON lines to a new file and returns its path.
func writeEvents(t *testing.T, evs []connectors.Event, between string) string {
	t.Helper()
	var buf []byte
	for i := range evs {
		var err error
		if buf, err = eventjson.AppendEvent(buf, &evs[i], eventjson.Options{}); err != nil {
			t.Fatal(err)
		}
		buf = append(buf, '\n')
		buf = append(buf, between...)
	}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func newSource(t *testing.T, path string) *jsonl.Source {
	t.Helper()
	cfg := jsonl.DefaultConfig()
	cfg.Path = path
	s, err := jsonl.New(cfg, connectors.Runtime{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readAll reads s to io.EOF, or to the first error, acknowledging batches.
func readAll(t *testing.T, s *jsonl.Source, lim connectors.Limits) ([]connectors.Event, error) {
	t.Helper()
	ctx := context.Background()
	var out []connectors.Event
	for {
		b, err := s.ReadBatch(ctx, lim)
		if lim.MaxEvents > 0 && len(b.Events) > lim.MaxEvents {
			t.Fatalf("batch of %d events, limit %d", len(b.Events), lim.MaxEvents)
		}
		out = append(out, b.Events...)
		if b.Last != nil {
			s.Ack(ctx, b.Last)
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

var lim = connectors.Limits{MaxEvents: 50, MaxBytes: 1 << 20, MaxWait: time.Second}

func TestConformance(t *testing.T) {
	evs := connectortest.Changes(1, 300, 1, map[string]string{})
	path := writeEvents(t, evs, "")
	connectortest.RunSource(t, connectortest.SourceHarness{
		New:    func(t *testing.T) connectors.Source { return newSource(t, path) },
		Events: len(evs),
	})
}

// The events come back as they were written, positioned by line, with blank
// lines skipped; resuming skips exactly the lines up to the position.
func TestReadBackAndResume(t *testing.T) {
	evs := connectortest.Changes(1, 120, 1, map[string]string{})
	path := writeEvents(t, evs, "\n") // a blank line after each event
	s := newSource(t, path)
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, s, lim)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(evs) {
		t.Fatalf("read %d events, wrote %d", len(got), len(evs))
	}
	for i := range got {
		if want := (connectors.TxPosition{Commit: uint64(2*i + 1), Ordinal: 1}); got[i].Position.Compare(want.Encode()) != 0 {
			t.Fatalf("event %d at %s, want line %s", i, got[i].Position, want)
		}
		a, _ := eventjson.Marshal(&evs[i])
		b, _ := eventjson.Marshal(&got[i])
		if !bytes.Equal(a, b) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, b, a)
		}
	}
	if got[0].Schema != got[len(got)-1].Schema {
		t.Error("events of one table do not share their schema")
	}
	if s.Acked().Compare(got[len(got)-1].Position) != 0 {
		t.Errorf("Acked() = %s", s.Acked())
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// After line 7 (event 4) comes line 9 (event 5); after blank line 8 too.
	for _, pos := range []connectors.TxPosition{{Commit: 7, Ordinal: 1}, {Commit: 8, Ordinal: 1}, {Commit: 9, Ordinal: 0}} {
		s := newSource(t, path)
		if err := s.Open(context.Background(), pos.Encode()); err != nil {
			t.Fatal(err)
		}
		rest, err := readAll(t, s, lim)
		s.Close(context.Background())
		if err != nil || len(rest) != len(evs)-4 || rest[0].Position.Compare(connectors.TxPosition{Commit: 9, Ordinal: 1}.Encode()) != 0 {
			t.Fatalf("after %s: %d events from %v, %v", pos, len(rest), rest[0].Position, err)
		}
	}
}

func TestMalformedLine(t *testing.T) {
	evs := connectortest.Changes(1, 5, 1, map[string]string{})
	path := writeEvents(t, evs, "")
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"op":"c","after":{"id":}}` + "\n")
	f.Close()
	s := newSource(t, path)
	defer s.Close(context.Background())
	s.Open(context.Background(), nil)
	got, err := readAll(t, s, lim)
	want := path + `:6: eventjson: field "after" at byte 24: invalid character '}' looking for a value`
	if len(got) != 5 || err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("%d events, error %v; want 5 and an error with %q", len(got), err, want)
	}
	// The error stays.
	if _, err2 := s.ReadBatch(context.Background(), lim); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("next ReadBatch: %v", err2)
	}
}

func TestLongLines(t *testing.T) {
	// A value larger than the read buffer, and a last line without newline.
	schema := connectors.MustSchema(connectors.TableID{Name: "t"}, 1, []connectors.Column{{Name: "s", Type: connectors.TypeText}})
	big := strings.Repeat("x", 300_000)
	evs := []connectors.Event{
		{Op: connectors.OpCreate, Schema: schema, After: []connectors.Value{"small"}},
		{Op: connectors.OpCreate, Schema: schema, After: []connectors.Value{big}},
		{Op: connectors.OpCreate, Schema: schema, After: []connectors.Value{"last"}},
	}
	path := writeEvents(t, evs, "")
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.TrimSuffix(data, []byte("\n")), 0o644)

	s := newSource(t, path)
	s.Open(context.Background(), nil)
	got, err := readAll(t, s, lim)
	s.Close(context.Background())
	if err != nil || len(got) != 3 || got[1].After[0] != big || got[2].After[0] != "last" {
		t.Fatalf("%d events, %v", len(got), err)
	}

	cfg := jsonl.DefaultConfig()
	cfg.Path, cfg.MaxLineBytes = path, 100_000
	s, _ = jsonl.New(cfg, connectors.Runtime{})
	defer s.Close(context.Background())
	s.Open(context.Background(), nil)
	got, err = readAll(t, s, lim)
	if len(got) != 1 || err == nil || !strings.Contains(err.Error(), path+": line 2 is longer than max_line_bytes (100000)") {
		t.Fatalf("%d events, error %v", len(got), err)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	cfg := jsonl.DefaultConfig()
	cfg.MaxLineBytes = 0
	if _, err := jsonl.New(cfg, connectors.Runtime{}); err == nil || !strings.Contains(err.Error(), "max_line_bytes") {
		t.Errorf("max_line_bytes 0: %v", err)
	}
	if _, err := jsonl.New(jsonl.Config{MaxLineBytes: 1}, connectors.Runtime{}); err == nil || !strings.Contains(err.Error(), "path") {
		t.Errorf("no path: %v", err)
	}
	s := newSource(t, filepath.Join(t.TempDir(), "missing.jsonl"))
	if err := s.Open(ctx, nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close after a failed Open: %v", err)
	}
	s = newSource(t, "-")
	err := s.Open(ctx, connectors.TxPosition{Commit: 12, Ordinal: 1}.Encode())
	if err == nil || !strings.Contains(err.Error(), "cannot resume stdin after line 12") {
		t.Errorf("resuming stdin: %v", err)
	}
	s.Close(ctx)
	s = newSource(t, writeEvents(t, nil, ""))
	if _, err := s.ReadBatch(ctx, lim); err == nil {
		t.Error("ReadBatch before Open: no error")
	}
	if err := s.Open(ctx, connectors.Position("x")); err == nil {
		t.Error("Open at a foreign position: no error")
	}
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := s.ReadBatch(ctx, lim); !errors.Is(err, io.EOF) || len(b.Events) != 0 {
		t.Errorf("empty file: %d events, %v", len(b.Events), err)
	}
	s.Close(ctx)
	s.Close(ctx)
	if _, err := s.ReadBatch(ctx, lim); !errors.Is(err, connectors.ErrClosed) {
		t.Errorf("ReadBatch after Close: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	reg, err := connectors.Default.Lookup(connectors.KindSource, "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range reg.Fields() {
		got = append(got, f.Key+"="+f.Default)
	}
	if s := strings.Join(got, " "); s != "path=- max_line_bytes=16777216" {
		t.Errorf("config: %s", s)
	}
	if p, err := reg.ParsePosition("12:1"); err != nil || reg.FormatPosition(p) != "12:1" {
		t.Errorf("positions: %v %v", p, err)
	}
}

func BenchmarkRead(b *testing.B) {
	// 10,000 generated-style events of about 700 bytes each, read again and
	// again.
	schema := connectortest.Schema
	var buf []byte
	for i := range 10_000 {
		ev := connectors.Event{Op: connectors.OpCreate, Schema: schema,
			After:  []connectors.Value{int64(i), "item name", int64(i * 3), "12.50"},
			Source: connectors.SourceInfo{Connector: "bench", DB: "db", Schema: "conformance", Table: "items", Position: "1:1", TsMs: 1}}
		buf, _ = eventjson.AppendEvent(buf, &ev, eventjson.Options{})
		buf = append(buf, '\n')
	}
	path := filepath.Join(b.TempDir(), "bench.jsonl")
	os.WriteFile(path, buf, 0o644)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	ctx := context.Background()
	for b.Loop() {
		cfg := jsonl.DefaultConfig()
		cfg.Path = path
		s, _ := jsonl.New(cfg, connectors.Runtime{})
		s.Open(ctx, nil)
		n := 0
		for {
			bt, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 1000})
			n += len(bt.Events)
			if err != nil {
				break
			}
		}
		s.Close(ctx)
		if n != 10_000 {
			b.Fatalf("read %d events", n)
		}
	}
}
