// Package offsetstest is the behaviour every offsets.Store shows, as a test
// suite: each store implementation runs Run against fresh instances of
// itself.
package offsetstest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
)

// Run runs the behavioural tests of offsets.Store as subtests of t. open
// returns a new, empty store for each subtest; it may register its own
// cleanup with t (Run closes each store too, and a second Close is fine).
// Run it with -race: one subtest commits from many goroutines.
func Run(t *testing.T, open func(t *testing.T) offsets.Store) {
	t.Helper()
	newStore := func(t *testing.T) offsets.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	for _, tc := range []struct {
		name string
		f    func(*testing.T, offsets.Store)
	}{
		{"GetMissing", testGetMissing},
		{"CommitGet", testCommitGet},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"List", testList},
		{"EmptyPosition", testEmptyPosition},
		{"ZeroBytes", testZeroBytes},
		{"LargePosition", testLargePosition},
		{"NilPositionRefused", testNilPosition},
		{"EmptyNameRefused", testEmptyName},
		{"CancelledContext", testCancelled},
		{"Concurrent", testConcurrent},
		{"Close", testClose},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, newStore(t)) })
	}
}

// mustGet returns s's position for pipeline, failing t on error.
func mustGet(t *testing.T, s offsets.Store, pipeline string) connectors.Position {
	t.Helper()
	p, err := s.Get(t.Context(), pipeline)
	if err != nil {
		t.Fatalf("Get(%q): %v", pipeline, err)
	}
	return p
}

func mustCommit(t *testing.T, s offsets.Store, pipeline string, pos connectors.Position) {
	t.Helper()
	if err := s.Commit(t.Context(), pipeline, pos); err != nil {
		t.Fatalf("Commit(%q, %s): %v", pipeline, pos, err)
	}
}

func mustList(t *testing.T, s offsets.Store) []offsets.Entry {
	t.Helper()
	es, err := s.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return es
}

func testGetMissing(t *testing.T, s offsets.Store) {
	if p := mustGet(t, s, "orders"); p != nil {
		t.Errorf("Get of a pipeline never committed = %s, want nil", p)
	}
	if es := mustList(t, s); len(es) != 0 {
		t.Errorf("List of an empty store = %v, want none", es)
	}
}

func testCommitGet(t *testing.T, s offsets.Store) {
	pos := connectors.TxPosition{Commit: 1200, Ordinal: 3}.Encode()
	mustCommit(t, s, "orders", pos)
	want := slices.Clone(pos)
	pos[5] ^= 0xff // the store must have kept its own copy
	got := mustGet(t, s, "orders")
	if !bytes.Equal(got, want) {
		t.Fatalf("Get = %s, want %s", got, want)
	}
	got[5] ^= 0xff // and handed out a copy
	if got := mustGet(t, s, "orders"); !bytes.Equal(got, want) {
		t.Errorf("Get after changing an earlier result = %s, want %s", got, want)
	}
	if p := mustGet(t, s, "orders-view"); p != nil {
		t.Errorf("Get of another pipeline = %s, want nil", p)
	}
}

func testOverwrite(t *testing.T, s offsets.Store) {
	positions := []connectors.Position{
		connectors.TxPosition{Commit: 100, Ordinal: 1}.Encode(),
		connectors.TxPosition{Commit: 200, Ordinal: 7}.Encode(),
		[]byte("short"), // shorter than before
		connectors.TxPosition{Commit: 50}.Encode(),  // backwards: a store does not order positions
		bytes.Repeat([]byte("long position "), 100), // longer again
		connectors.TxPosition{Commit: 300}.End().Encode(),
	}
	for _, p := range positions {
		mustCommit(t, s, "orders", p)
		if got := mustGet(t, s, "orders"); !bytes.Equal(got, p) {
			t.Errorf("after Commit(%s): Get = %s", p, got)
		}
	}
	if es := mustList(t, s); len(es) != 1 {
		t.Errorf("List after overwrites has %d entries, want 1: %v", len(es), es)
	}
}

func testDelete(t *testing.T, s offsets.Store) {
	ctx := t.Context()
	if err := s.Delete(ctx, "orders"); err != nil {
		t.Errorf("Delete of a pipeline never committed: %v", err)
	}
	mustCommit(t, s, "orders", []byte("a"))
	mustCommit(t, s, "customers", []byte("b"))
	if err := s.Delete(ctx, "orders"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if p := mustGet(t, s, "orders"); p != nil {
		t.Errorf("Get after Delete = %s, want nil", p)
	}
	if p := mustGet(t, s, "customers"); !bytes.Equal(p, []byte("b")) {
		t.Errorf("Delete touched another pipeline: Get = %s, want b", p)
	}
	es := mustList(t, s)
	if len(es) != 1 || es[0].Pipeline != "customers" {
		t.Errorf("List after Delete = %v, want customers only", es)
	}
	if err := s.Delete(ctx, "orders"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	mustCommit(t, s, "orders", []byte("c"))
	if p := mustGet(t, s, "orders"); !bytes.Equal(p, []byte("c")) {
		t.Errorf("Get after Delete and Commit = %s, want c", p)
	}
}

func testList(t *testing.T, s offsets.Store) {
	// Byte order: upper case before lower case, '-' before '.', ASCII before
	// UTF-8, a prefix before its extensions.
	names := []string{"orders", "Orders", "orders-view", "orders.view", "orders view", "ordersß", "a", "zz", "ä", "orders2"}
	want := slices.Clone(names)
	slices.Sort(want)
	rand.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })

	before := time.Now().Add(-time.Millisecond)
	for _, n := range names {
		mustCommit(t, s, n, []byte("pos of "+n))
	}
	after := time.Now().Add(time.Millisecond)

	es := mustList(t, s)
	var got []string
	for _, e := range es {
		got = append(got, e.Pipeline)
		if !bytes.Equal(e.Position, []byte("pos of "+e.Pipeline)) {
			t.Errorf("List: %q has position %q", e.Pipeline, e.Position)
		}
		if e.Updated.Before(before) || e.Updated.After(after) {
			t.Errorf("List: %q updated %v, want between %v and %v", e.Pipeline, e.Updated, before, after)
		}
		if e.Updated.Location() != time.UTC {
			t.Errorf("List: %q updated %v, want UTC", e.Pipeline, e.Updated)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("List order = %q\nwant         %q", got, want)
	}

	es[0].Position[0] ^= 0xff // List hands out copies
	if p := mustGet(t, s, es[0].Pipeline); !bytes.Equal(p, []byte("pos of "+es[0].Pipeline)) {
		t.Errorf("changing a List result changed the store: Get = %q", p)
	}
}

func testEmptyPosition(t *testing.T, s offsets.Store) {
	mustCommit(t, s, "orders", connectors.Position{})
	p := mustGet(t, s, "orders")
	if p == nil || len(p) != 0 {
		t.Errorf("Get of a committed empty position = %#v, want a non-nil empty Position", p)
	}
	es := mustList(t, s)
	if len(es) != 1 || es[0].Position == nil || len(es[0].Position) != 0 {
		t.Errorf("List with an empty position = %#v, want one entry with a non-nil empty Position", es)
	}
}

func testZeroBytes(t *testing.T, s offsets.Store) {
	for _, p := range []connectors.Position{
		{0},
		make([]byte, 64),
		[]byte("before\x00after\x00"),
		{0, 0xff, 0, 0xfe, 0},
		connectors.TxPosition{}.Encode(),
	} {
		mustCommit(t, s, "orders", p)
		if got := mustGet(t, s, "orders"); !bytes.Equal(got, p) {
			t.Errorf("Get = %s, want %s", got, p)
		}
	}
}

func testLargePosition(t *testing.T, s offsets.Store) {
	for _, n := range []int{64 << 10, 1 << 20, 4 << 20} {
		p := make([]byte, n)
		rng := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)})
		rng.Read(p)
		mustCommit(t, s, "big", p)
		if got := mustGet(t, s, "big"); !bytes.Equal(got, p) {
			t.Errorf("Get of a %d-byte position: got %d bytes, not equal", n, len(got))
		}
	}
	mustCommit(t, s, "big", []byte("small again"))
	if got := mustGet(t, s, "big"); string(got) != "small again" {
		t.Errorf("Get after shrinking = %q", got)
	}
}

func testNilPosition(t *testing.T, s offsets.Store) {
	ctx := t.Context()
	mustCommit(t, s, "orders", []byte("kept"))
	if err := s.Commit(ctx, "orders", nil); err == nil {
		t.Errorf("Commit of a nil position succeeded; want an error (Delete forgets a position)")
	}
	if p := mustGet(t, s, "orders"); string(p) != "kept" {
		t.Errorf("Get after a refused nil Commit = %q, want kept", p)
	}
}

func testEmptyName(t *testing.T, s offsets.Store) {
	ctx := t.Context()
	if err := s.Commit(ctx, "", []byte("x")); err == nil {
		t.Errorf("Commit with an empty pipeline name succeeded")
	}
	if _, err := s.Get(ctx, ""); err == nil {
		t.Errorf("Get with an empty pipeline name succeeded")
	}
	if err := s.Delete(ctx, ""); err == nil {
		t.Errorf("Delete with an empty pipeline name succeeded")
	}
	if es := mustList(t, s); len(es) != 0 {
		t.Errorf("List = %v, want none", es)
	}
}

func testCancelled(t *testing.T, s offsets.Store) {
	cctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Commit(cctx, "orders", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.Get(cctx, "orders"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v, want context.Canceled", err)
	}
	if err := s.Delete(cctx, "orders"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.List(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context: %v, want context.Canceled", err)
	}
	// The store is still usable.
	mustCommit(t, s, "orders", []byte("y"))
	if p := mustGet(t, s, "orders"); string(p) != "y" {
		t.Errorf("Get = %q, want y", p)
	}
}

// seqPosition encodes commit i of goroutine g so that a torn or mixed-up
// value is detected: the 16 bytes of (g, i) followed by their complement.
func seqPosition(g, i int) connectors.Position {
	p := make([]byte, 32)
	binary.BigEndian.PutUint64(p[0:8], uint64(g))
	binary.BigEndian.PutUint64(p[8:16], uint64(i))
	for k := range 16 {
		p[16+k] = ^p[k]
	}
	return p
}

// decodeSeq decodes a seqPosition, reporting whether p is one.
func decodeSeq(p connectors.Position) (g, i int, ok bool) {
	if len(p) != 32 {
		return 0, 0, false
	}
	for k := range 16 {
		if p[16+k] != ^p[k] {
			return 0, 0, false
		}
	}
	return int(binary.BigEndian.Uint64(p[0:8])), int(binary.BigEndian.Uint64(p[8:16])), true
}

func testConcurrent(t *testing.T, s offsets.Store) {
	ctx := t.Context()
	const (
		writers = 6
		commits = 30 // per writer, alternating between its own pipeline and a shared one
	)
	own := func(g int) string { return "own-" + string(rune('a'+g)) }
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, writers*commits+100)
	for g := range writers {
		wg.Go(func() {
			for i := 1; i <= commits; i++ {
				name := own(g)
				if i%2 == 0 {
					name = "shared"
				}
				if err := s.Commit(ctx, name, seqPosition(g, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// Readers, while the writers write: every value seen is whole.
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				p, err := s.Get(ctx, "shared")
				if err == nil && p != nil {
					if _, _, ok := decodeSeq(p); !ok {
						errs <- errors.New("Get(shared) returned a torn value " + p.String())
						return
					}
				}
				if err == nil {
					_, err = s.List(ctx)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent use: %v", err)
	}

	lastOwn := commits
	if lastOwn%2 == 0 {
		lastOwn--
	}
	for g := range writers {
		if got, want := mustGet(t, s, own(g)), seqPosition(g, lastOwn); !bytes.Equal(got, want) {
			t.Errorf("Get(%s) = %s, want the writer's last commit %s", own(g), got, want)
		}
	}
	// The last commit to "shared" was some writer's last to it.
	lastShared := commits - commits%2
	g, i, ok := decodeSeq(mustGet(t, s, "shared"))
	if !ok || g < 0 || g >= writers || i != lastShared {
		t.Errorf("Get(shared) = writer %d commit %d (valid %v); want some writer's commit %d", g, i, ok, lastShared)
	}
	if es := mustList(t, s); len(es) != writers+1 {
		t.Errorf("List has %d entries, want %d", len(es), writers+1)
	}
}

func testClose(t *testing.T, s offsets.Store) {
	ctx := t.Context()
	mustCommit(t, s, "orders", []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Get(ctx, "orders"); !errors.Is(err, offsets.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if err := s.Commit(ctx, "orders", []byte("y")); !errors.Is(err, offsets.ErrClosed) {
		t.Errorf("Commit after Close: %v, want ErrClosed", err)
	}
	if err := s.Delete(ctx, "orders"); !errors.Is(err, offsets.ErrClosed) {
		t.Errorf("Delete after Close: %v, want ErrClosed", err)
	}
	if _, err := s.List(ctx); !errors.Is(err, offsets.ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
}
