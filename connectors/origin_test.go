package connectors_test

import (
	"strconv"
	"testing"

	"github.com/tapline/tapline/connectors"
)

func init() {
	// A toy order for the test: plain integers.
	connectors.RegisterOriginOrder("test-int", func(a, b string) (int, bool) {
		x, errA := strconv.Atoi(a)
		y, errB := strconv.Atoi(b)
		if errA != nil || errB != nil {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	})
}

func TestOriginsKeepTheFurthestPosition(t *testing.T) {
	o := connectors.Origins{}
	ev := func(conn, name, pos string) *connectors.Event {
		return &connectors.Event{Source: connectors.SourceInfo{Connector: conn, DB: name, Position: pos}}
	}
	for _, e := range []*connectors.Event{
		ev("test-int", "a", "snapshot:1"), // unorderable first
		ev("test-int", "a", "5"),          // orderable beats unorderable
		ev("test-int", "a", "snapshot:2"), // never hides an orderable one
		ev("test-int", "a", "3"),          // out of order: ignored
		ev("test-int", "a", "9"),
		ev("test-int", "b", "1"),
		ev("unknown", "x", "p1"),
		ev("unknown", "x", "p0"), // unknown connector: newest wins
		ev("", "x", "p9"),        // no connector: ignored
	} {
		o.Observe(e)
	}
	want := map[string]string{"test-int/a": "9", "test-int/b": "1", "unknown/x": "p0"}
	if len(o) != len(want) {
		t.Fatalf("origins %v, want %v", o, want)
	}
	for k, v := range want {
		if o[k] != v {
			t.Errorf("origin %s = %q, want %q (all: %v)", k, o[k], v, o)
		}
	}
	o.Merge(map[string]string{"test-int/a": "7", "test-int/b": "2", "test-int/c": "snapshot:1"})
	if o["test-int/a"] != "9" || o["test-int/b"] != "2" || o["test-int/c"] != "snapshot:1" {
		t.Errorf("after merge: %v", o)
	}
}

func TestOriginKeyPrefersName(t *testing.T) {
	if k := connectors.OriginKey(connectors.SourceInfo{Connector: "postgres", Name: "legacy", DB: "shop"}); k != "postgres/legacy" {
		t.Errorf("key %q", k)
	}
	if k := connectors.OriginKey(connectors.SourceInfo{Connector: "postgres", DB: "shop"}); k != "postgres/shop" {
		t.Errorf("key %q", k)
	}
}
