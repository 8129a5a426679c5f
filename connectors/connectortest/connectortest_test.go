package connectortest_test

import (
	"context"
	"io"
	"maps"
	"sync"
	"testing"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
)

// The suite's own test: a reference source over a fixed slice and a
// reference atomic sink over a map pass it; broken ones (selftest_test.go)
// fail it.

type sliceSource struct {
	evs  []connectors.Event
	next int
}

func (s *sliceSource) Open(_ context.Context, pos connectors.Position) error {
	s.next = 0
	for pos != nil && s.next < len(s.evs) && s.evs[s.next].Position.Compare(pos) <= 0 {
		s.next++
	}
	return nil
}

func (s *sliceSource) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	if err := ctx.Err(); err != nil {
		return connectors.Batch{}, err
	}
	var b connectors.Batch
	size := 0
	for s.next < len(s.evs) && !lim.Full(len(b.Events), size) {
		ev := s.evs[s.next]
		b.Events = append(b.Events, ev)
		size += ev.Size()
		b.Last = ev.Position
		s.next++
	}
	if len(b.Events) == 0 {
		return b, io.EOF
	}
	return b, nil
}

func (s *sliceSource) Ack(context.Context, connectors.Position) error { return nil }
func (s *sliceSource) Close(context.Context) error                    { return nil }

type mapSink struct {
	mu    *sync.Mutex
	rows  map[string]string
	pos   *connectors.Position
	dupes bool // broken: a replayed create adds a second row instead of upserting
	// log, if set, counts the events stored as a log would: those after
	// the stored position, or every one when logDupes (broken).
	log      *int
	logDupes bool
}

func (m *mapSink) Open(context.Context) error  { return nil }
func (m *mapSink) Close(context.Context) error { return nil }
func (m *mapSink) WriteBatch(_ context.Context, b connectors.Batch) error {
	if m.log != nil {
		m.mu.Lock()
		for _, ev := range b.Events {
			if m.logDupes || *m.pos == nil || ev.Position.Compare(*m.pos) > 0 {
				*m.log++
			}
		}
		m.mu.Unlock()
	}
	m.applyRows(b.Events)
	m.setPosition(b.Last)
	return nil
}

// applyRows upserts or deletes each event's row by key.
func (m *mapSink) applyRows(evs []connectors.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range evs {
		k := connectortest.Key(ev.Row()[0].(int64))
		if ev.Op == connectors.OpDelete {
			delete(m.rows, k)
			continue
		}
		if _, exists := m.rows[k]; exists && m.dupes && ev.Op == connectors.OpCreate {
			k += "-again"
		}
		m.rows[k] = connectortest.Row(ev.After...)
	}
}

// setPosition stores the position "in the same transaction" as the rows.
func (m *mapSink) setPosition(p connectors.Position) {
	m.mu.Lock()
	defer m.mu.Unlock()
	*m.pos = p
}

func (m *mapSink) CommittedPosition(context.Context) (connectors.Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return *m.pos, nil
}

func TestReferenceConnectorsConform(t *testing.T) {
	evs := connectortest.Changes(1, 300, 1, map[string]string{})
	connectortest.RunSource(t, connectortest.SourceHarness{
		New:    func(*testing.T) connectors.Source { return &sliceSource{evs: evs} },
		Events: len(evs),
	})
	var mu sync.Mutex
	rows := map[string]string{}
	var pos connectors.Position
	connectortest.RunSink(t, connectortest.SinkHarness{
		New:   func(*testing.T) connectors.Sink { return &mapSink{mu: &mu, rows: rows, pos: &pos} },
		State: stateOf(&mu, rows),
	})
}

// stateOf is a SinkHarness.State of a map store: a copy of rows, read
// under mu.
func stateOf(mu *sync.Mutex, rows map[string]string) func(*testing.T) map[string]string {
	return func(*testing.T) map[string]string {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(rows)
	}
}

func TestChangesAreDeterministicAndMixed(t *testing.T) {
	a := connectortest.Changes(1, 100, 1, map[string]string{})
	b := connectortest.Changes(1, 100, 1, map[string]string{})
	ops := map[connectors.Op]int{}
	for i := range a {
		if a[i].Op != b[i].Op || a[i].Position.Compare(b[i].Position) != 0 {
			t.Fatalf("event %d differs between two calls", i)
		}
		ops[a[i].Op]++
	}
	if ops[connectors.OpCreate] == 0 || ops[connectors.OpUpdate] == 0 || ops[connectors.OpDelete] == 0 {
		t.Fatalf("changes %v lack creates, updates or deletes", ops)
	}
}
