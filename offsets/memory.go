package offsets

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/tapline/tapline/connectors"
)

// Memory is a Store that keeps positions in memory, for tests. Nothing
// survives the process; within it, Commit is "durable" as soon as it returns.
// It also counts commits per pipeline (Commits), so that tests can check how
// often the engine commits. The zero value is not usable; call NewMemory.
type Memory struct {
	mu      sync.Mutex
	entries map[string]Entry
	commits map[string]int
	closed  bool
}

var _ Store = (*Memory)(nil)

// memoryWhere names a Memory store in errors.
const memoryWhere = "memory"

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{entries: make(map[string]Entry), commits: make(map[string]int)}
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, pipeline string) (connectors.Position, error) {
	var pos connectors.Position
	err := m.do(ctx, "get", pipeline, func() {
		if e, ok := m.entries[pipeline]; ok {
			pos = clonePosition(e.Position)
		}
	})
	return pos, err
}

// Commit implements Store.
func (m *Memory) Commit(ctx context.Context, pipeline string, pos connectors.Position) error {
	if pos == nil {
		return opError("commit", pipeline, memoryWhere, errNilPosition)
	}
	return m.do(ctx, "commit", pipeline, func() {
		m.entries[pipeline] = Entry{Pipeline: pipeline, Position: clonePosition(pos), Updated: now()}
		m.commits[pipeline]++
	})
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, pipeline string) error {
	return m.do(ctx, "delete", pipeline, func() { delete(m.entries, pipeline) })
}

// List implements Store.
func (m *Memory) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	err := m.do(ctx, "list", "", func() {
		out = make([]Entry, 0, len(m.entries))
		for _, e := range m.entries {
			e.Position = clonePosition(e.Position)
			out = append(out, e)
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Pipeline, b.Pipeline) })
	return out, nil
}

// Close implements Store. The positions stay readable through Commits, but
// every Store method now fails with ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// Commits returns how many times Commit has succeeded for pipeline since the
// store was made. Delete does not reset the count.
func (m *Memory) Commits(pipeline string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.commits[pipeline]
}

// do runs f under m.mu if the call may go on; pipeline is "" for List.
func (m *Memory) do(ctx context.Context, op, pipeline string, f func()) error {
	err := ctx.Err()
	if op != "list" {
		err = checkCall(ctx, pipeline)
	}
	if err == nil {
		m.mu.Lock()
		if m.closed {
			err = ErrClosed
		} else {
			f()
		}
		m.mu.Unlock()
	}
	if err != nil {
		return opError(op, pipeline, memoryWhere, err)
	}
	return nil
}

// clonePosition copies p, keeping nil nil and empty non-nil.
func clonePosition(p connectors.Position) connectors.Position {
	if p == nil {
		return nil
	}
	return bytes.Clone(p)
}
