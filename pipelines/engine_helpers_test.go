package pipelines

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/tapline/tapline/connectors"
)

var seqSchema = connectors.MustSchema(connectors.TableID{Schema: "public", Name: "seq"}, 1, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Key: 1},
	{Name: "body", Type: connectors.TypeString, Nullable: true},
})

// seqEvent is event n (1-based) of seqSource: a row with id n in
// transaction (n+perTx-1)/perTx.
func seqEvent(n uint64, perTx uint64, body string) connectors.Event {
	tx := (n-1)/perTx + 1
	ord := uint32((n-1)%perTx + 1)
	return connectors.Event{
		Op:       connectors.OpCreate,
		Schema:   seqSchema,
		After:    []connectors.Value{int64(n), strings.Clone(body)}, // its own memory, as a decoded row has
		Source:   connectors.SourceInfo{Connector: "seq", Schema: "public", Table: "seq", TxID: int64(tx)},
		Tx:       connectors.TxInfo{ID: fmt.Sprint(tx), TotalOrder: int64(ord)},
		Position: connectors.TxPosition{Commit: tx, Ordinal: ord}.Encode(),
	}
}

// seqN returns the event number of a seqSource position.
func seqN(t testing.TB, p connectors.Position, perTx uint64) uint64 {
	t.Helper()
	if p == nil {
		return 0
	}
	tp, err := connectors.DecodeTxPosition(p)
	if err != nil {
		t.Fatalf("decode position: %v", err)
	}
	return (tp.Commit-1)*perTx + uint64(tp.Ordinal)
}

// seqSource emits events 1..Count (0 = endless), PerTx to a transaction,
// resuming exactly after the position it is opened at. It checks every Ack
// with AckCheck.
type seqSource struct {
	Count    uint64
	PerTx    uint64
	Body     string
	AckCheck func(connectors.Position) error
	ReadErr  func(next uint64) error // injected before event next is read

	mu       sync.Mutex
	next     uint64
	acked    connectors.Position
	ackErr   error
	reads    int // ReadBatch calls that returned events
	inflight int // events read, not acked
	closed   int
}

func (s *seqSource) Open(ctx context.Context, pos connectors.Position) error {
	if s.PerTx == 0 {
		s.PerTx = 1
	}
	s.next = 1
	if pos != nil {
		tp, err := connectors.DecodeTxPosition(pos)
		if err != nil {
			return err
		}
		s.next = (tp.Commit-1)*s.PerTx + uint64(min(uint64(tp.Ordinal), s.PerTx)) + 1
	}
	return nil
}

func (s *seqSource) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	if err := ctx.Err(); err != nil {
		return connectors.Batch{}, err
	}
	var b connectors.Batch
	size := 0
	for !lim.Full(len(b.Events), size) {
		if s.Count > 0 && s.next > s.Count {
			break
		}
		if s.ReadErr != nil {
			if err := s.ReadErr(s.next); err != nil {
				return b, err
			}
		}
		ev := seqEvent(s.next, s.PerTx, s.Body)
		size += ev.Size()
		b.Events = append(b.Events, ev)
		b.Last = ev.Position
		s.next++
	}
	if len(b.Events) == 0 {
		return b, io.EOF
	}
	s.mu.Lock()
	s.reads++
	s.inflight += len(b.Events)
	s.mu.Unlock()
	return b, nil
}

func (s *seqSource) Ack(ctx context.Context, pos connectors.Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.AckCheck != nil {
		if err := s.AckCheck(pos); err != nil && s.ackErr == nil {
			s.ackErr = err
		}
	}
	if pos.Compare(s.acked) < 0 && s.ackErr == nil {
		s.ackErr = fmt.Errorf("ack went backwards: %s after %s", pos, s.acked)
	}
	s.acked = pos
	return nil
}

func (s *seqSource) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed++
	s.mu.Unlock()
	return nil
}

func (s *seqSource) stats() (reads int, acked connectors.Position, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads, s.acked, s.ackErr
}

// recSink records every batch it made durable. Fail, when set, is called
// before each write and may fail it.
type recSink struct {
	Fail  func(call int, b connectors.Batch) error
	Block chan struct{} // when set, WriteBatch waits for it (or ctx)

	mu      sync.Mutex
	calls   int
	ids     []int64 // ids in write order
	durable connectors.Position
	opened  int
	closed  int
	writing chan struct{} // closed at the first WriteBatch call, if set
}

func (s *recSink) Open(ctx context.Context) error {
	s.mu.Lock()
	s.opened++
	s.mu.Unlock()
	return nil
}

func (s *recSink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	if s.writing != nil && call == 1 {
		close(s.writing)
	}
	s.mu.Unlock()
	if s.Block != nil {
		select {
		case <-s.Block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.Fail != nil {
		if err := s.Fail(call, b); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range b.Events {
		s.ids = append(s.ids, ev.After[0].(int64))
	}
	if b.Last.Compare(s.durable) > 0 {
		s.durable = b.Last
	}
	return nil
}

func (s *recSink) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed++
	s.mu.Unlock()
	return nil
}

func (s *recSink) written() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.ids...)
}

func (s *recSink) durablePos() connectors.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable
}

// checkExactly verifies ids are exactly 1..n in order.
func checkExactly(t *testing.T, ids []int64, n int) {
	t.Helper()
	if len(ids) != n {
		t.Errorf("sink has %d events, want %d", len(ids), n)
	}
	bad := 0
	for i, id := range ids {
		if id != int64(i+1) {
			if bad < 5 {
				t.Errorf("event %d has id %d, want %d", i, id, i+1)
			}
			bad++
		}
	}
}
