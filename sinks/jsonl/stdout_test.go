package jsonl

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
)

// With path "-" the sink writes to stdout, one line per event, and has no
// file to fsync or close.
func TestStdout(t *testing.T) {
	ctx := context.Background()
	s, err := New(Config{Path: "-", Fsync: true, OmitSchema: true}, connectors.Runtime{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s.stdout = &out
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	evs := connectortest.Changes(1, 7, 1, map[string]string{})
	if err := s.WriteBatch(ctx, connectors.Batch{Events: evs, Last: evs[6].Position}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], `{"op":"c","before":null,"after":{"id":1,`) || strings.Contains(out.String(), `"schema":{`) {
		t.Fatalf("stdout:\n%s", out.String())
	}
}
