package connectors_test

import (
	"encoding/json"
	"testing"

	"github.com/tapline/tapline/connectors"
)

type chunk struct {
	End   int  `json:"end"`
	Final bool `json:"final"`
}

func (c chunk) IsFinal() bool { return c.Final }

// Resume keeps durable chunks and drops tables left finished; Prune keeps
// the last durable chunk of each table and drops tables whose final chunk
// is durable; Drop removes an unfinished table; the JSON form is the
// state file's.
func TestSnapshotProgress(t *testing.T) {
	p := connectors.SnapshotProgress[chunk]{Tables: []connectors.SnapshotTable[chunk]{
		{Table: "a", Chunks: []chunk{{End: 1}, {End: 2, Final: true}}},
		{Table: "b", Chunks: []chunk{{End: 3}, {End: 5}}},
		{Table: "c"},
	}}
	upTo := func(n int) func(chunk) bool { return func(c chunk) bool { return c.End <= n } }
	p.Resume(upTo(3))
	if len(p.Tables) != 2 || p.Tables[0].Table != "b" || len(p.Tables[0].Chunks) != 1 {
		t.Fatalf("after Resume(3): %+v", p.Tables)
	}
	if c, ok := p.LastChunk(); !ok || c.End != 3 || p.Current().Table != "b" {
		t.Fatalf("LastChunk = %+v %v, current %v", c, ok, p.Current())
	}
	p.Tables[0].Chunks = append(p.Tables[0].Chunks, chunk{End: 4}, chunk{End: 6, Final: true})
	p.Prune(upTo(4))
	if got := p.Tables[0].Chunks; len(got) != 2 || got[0].End != 4 {
		t.Fatalf("after Prune(4): %+v", got)
	}
	if p.Current().Table != "c" {
		t.Fatalf("current = %v, want c", p.Current())
	}
	p.Prune(upTo(6))
	b, _ := json.Marshal(p)
	if string(b) != `{"tables":[{"table":"c","chunks":null}]}` {
		t.Fatalf("after Prune(6): %s", b)
	}
	p.Drop("c")
	if len(p.Tables) != 0 || p.Current() != nil {
		t.Fatalf("after Drop: %+v", p.Tables)
	}
}
