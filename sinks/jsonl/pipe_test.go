package jsonl_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/sinks/jsonl"
	"github.com/tapline/tapline/sources/generate"
	jsonlsource "github.com/tapline/tapline/sources/jsonl"
)

// pipe moves everything from src to dst the way the engine does: read a
// batch, write it, then ack it.
func pipe(t *testing.T, src connectors.Source, dst connectors.Sink, lim connectors.Limits) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	for {
		b, err := src.ReadBatch(ctx, lim)
		if len(b.Events) > 0 {
			if werr := dst.WriteBatch(ctx, b); werr != nil {
				t.Fatal(werr)
			}
			n += len(b.Events)
		}
		if b.Last != nil {
			src.Ack(ctx, b.Last)
		}
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// generate (count 100000) into the jsonl sink writes exactly 100000 lines
// of distinct ids, and the jsonl source reads them all back.
func TestGenerateThroughJSONL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "out.jsonl")
	gcfg := generate.DefaultConfig()
	gcfg.Count = 100_000
	src, err := generate.New(gcfg, connectors.Runtime{})
	if err != nil {
		t.Fatal(err)
	}
	sink := newSink(t, path, nil)
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := sink.Open(ctx); err != nil {
		t.Fatal(err)
	}
	lim := connectors.Limits{MaxEvents: 1000, MaxBytes: 4 << 20}
	if n := pipe(t, src, sink, lim); n != 100_000 {
		t.Fatalf("piped %d events", n)
	}
	src.Close(ctx)
	sink.Close(ctx)

	// Every line is an insert of a new id (checked without decoding, which
	// the race detector makes slow; the jsonl source decodes them below).
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	seen := make(map[string]bool, 100_000)
	const prefix = `{"op":"c","before":null,"after":{"id":`
	for sc.Scan() {
		line := sc.Text()
		id, _, ok := strings.Cut(strings.TrimPrefix(line, prefix), ",")
		if !strings.HasPrefix(line, prefix) || !ok {
			t.Fatalf("line %d: %.80s", len(seen)+1, line)
		}
		seen[id] = true
	}
	if len(seen) != 100_000 {
		t.Fatalf("%s has %d distinct ids, want 100000 lines of distinct ids", path, len(seen))
	}

	// And back through the jsonl source into a second file.
	rcfg := jsonlsource.DefaultConfig()
	rcfg.Path = path
	back, err := jsonlsource.New(rcfg, connectors.Runtime{})
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.jsonl")
	sink2, _ := jsonl.New(jsonl.Config{Path: copyPath}, connectors.Runtime{})
	back.Open(ctx, nil)
	sink2.Open(ctx)
	if n := pipe(t, back, sink2, lim); n != 100_000 {
		t.Fatalf("read back %d events", n)
	}
	back.Close(ctx)
	sink2.Close(ctx)
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(copyPath)
	if !bytes.Equal(a, b) {
		t.Fatal("the copy made through the jsonl source differs from the original")
	}
}
