// Package connectortest is the conformance suite every tapline connector
// runs from its own tests, as Conduit's acceptance tests do: resume after a
// partial ack loses and repeats nothing, batch bounds (count and bytes)
// hold, a cancelled read returns, a replayed batch is harmless, positions
// stored by an atomic sink survive a reopen, Close is idempotent, and no
// goroutine is left behind. Each property is a subtest named for it (see
// RunSource and RunSink), so a failure names the check that caught it.
//
// A connector's test calls RunSource or RunSink with a small harness that
// builds the connector against its real upstream or store. The suite tests
// itself against connectors broken on purpose (selftest_test.go): each
// must fail the check meant to catch it.
package connectortest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
)

// SourceHarness describes a source under test.
type SourceHarness struct {
	// New builds a fresh, unopened source reading the same upstream data
	// each time it is called.
	New func(t *testing.T) connectors.Source
	// Events is how many events the upstream holds; the suite reads exactly
	// this many (a finite source may then return io.EOF; an endless one
	// would block, and the suite does not read further).
	Events int
	// Limits bound the batches the suite asks for; zero means 50 events,
	// 64 KiB and 200ms.
	Limits connectors.Limits
	// Timeout bounds each read of all events; default 60s.
	Timeout time.Duration
	// Unordered is set for sources whose positions do not follow
	// bytes.Compare (a multi-partition Kafka source); ordering checks are
	// then skipped.
	Unordered bool
	// IgnoreLeaks lists goroutine top functions that the connector's
	// libraries leave running by design (goleak.IgnoreTopFunction).
	IgnoreLeaks []string
}

func (h *SourceHarness) defaults() {
	if h.Limits == (connectors.Limits{}) {
		h.Limits = connectors.Limits{MaxEvents: 50, MaxBytes: 64 << 10, MaxWait: 200 * time.Millisecond}
	}
	if h.Timeout <= 0 {
		h.Timeout = 60 * time.Second
	}
}

// RunSource runs the source conformance checks as subtests of t, each named
// for what it checks:
//
//   - ReadAllWithinBounds: the events come in batches within h.Limits, each
//     event with a schema, a valid op and a position after the previous one.
//   - ReadAllWithinTightBounds: the same events again with a bound of 3
//     events per batch, then with a byte bound of about two events, so that
//     both bounds bind whatever h.Limits and h.Events are.
//   - CancelledReadStops: a source with events to deliver returns at most
//     one batch once its context is cancelled, then context.Canceled.
//   - ResumeAfterPartialAck: opened after an acknowledged event (inside a
//     batch), the source delivers exactly the events after it: none
//     repeated, none lost.
//   - CancelledReadReturns: a source with nothing to deliver returns from
//     ReadBatch when its context is cancelled instead of blocking.
//   - CloseTwice, CloseWithoutOpen: Close returns nil (and does not panic)
//     when called a second time or on a source never opened.
//   - NoGoroutineLeft: once every source the suite built is closed, no
//     goroutine started during the suite is still running.
//
// The checks that read events run only when ReadAllWithinBounds read all
// h.Events; the Close and leak checks always run.
func RunSource(t *testing.T, h SourceHarness) {
	h.defaults()
	if h.New == nil || h.Events <= 0 {
		t.Fatal("connectortest: SourceHarness needs New and Events > 0")
	}
	leakOpts := leakOptions(h.IgnoreLeaks)

	// The reads before ResumeAfterPartialAck acknowledge nothing, so that
	// sources whose upstream forgets what was acknowledged (a replication
	// slot) can replay it.
	var all []connectors.Event
	t.Run("ReadAllWithinBounds", func(t *testing.T) {
		all = readRange(t, &h, h.Limits, nil, h.Events, -1, true)
		if len(all) < h.Events {
			t.Fatalf("source ended (io.EOF) after %d events, want %d", len(all), h.Events)
		}
	})
	if len(all) == h.Events {
		runSourceReads(t, &h, all)
	} else {
		t.Errorf("connectortest: could not read the %d events; the checks that need them did not run", h.Events)
	}
	t.Run("CloseTwice", func(t *testing.T) {
		src := h.New(t)
		ctx := context.Background()
		if err := src.Open(ctx, nil); err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := closeSafely(ctx, src); err != nil {
			t.Fatalf("first Close: %v", err)
		}
		if err := closeSafely(ctx, src); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("CloseWithoutOpen", func(t *testing.T) {
		if err := closeSafely(context.Background(), h.New(t)); err != nil {
			t.Fatalf("Close of a source never opened: %v", err)
		}
	})
	t.Run("NoGoroutineLeft", func(t *testing.T) { checkNoLeak(t, leakOpts, "source") })
}

// runSourceReads runs the checks that need the events ReadAllWithinBounds
// read.
func runSourceReads(t *testing.T, h *SourceHarness, all []connectors.Event) {
	t.Run("ReadAllWithinTightBounds", func(t *testing.T) {
		for _, lim := range tightLimits(h, all) {
			got := readRange(t, h, lim, nil, h.Events, -1, true)
			when := fmt.Sprintf("read with MaxEvents %d and MaxBytes %d", lim.MaxEvents, lim.MaxBytes)
			if h.Unordered {
				checkSameSet(t, got, all, when)
			} else {
				checkSame(t, got, all, when)
			}
		}
	})
	t.Run("CancelledReadStops", func(t *testing.T) {
		// Opened before the last event, the source has events to deliver.
		var pos connectors.Position
		if len(all) > 1 {
			pos = all[0].Position
		}
		src := h.New(t)
		if err := src.Open(context.Background(), pos); err != nil {
			t.Fatalf("Open at %s: %v", pos, err)
		}
		defer src.Close(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() {
			var err error
			var sizes []int
			for range 2 {
				var b connectors.Batch
				if b, err = src.ReadBatch(ctx, h.Limits); err != nil {
					break
				}
				sizes = append(sizes, len(b.Events))
			}
			if err == nil {
				err = fmt.Errorf("two calls returned batches of %v events and no error", sizes)
			} else if !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("returned %w; want context.Canceled", err)
			} else {
				err = nil
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("ReadBatch with a cancelled context and events to deliver: %v", err)
			}
		case <-time.After(h.Timeout):
			t.Fatal("ReadBatch with a cancelled context and events to deliver did not return")
		}
	})
	t.Run("ResumeAfterPartialAck", func(t *testing.T) {
		var prev connectors.Position
		done := 0
		for _, k := range []int{1, h.Events / 3, h.Events - 1} {
			if k <= done || k >= h.Events {
				continue
			}
			// Read on from the last acknowledged event through event k,
			// acknowledge event k (which may sit inside a batch) and close.
			got := readRange(t, h, h.Limits, prev, k-done, k-1-done, false)
			checkSame(t, got[:min(len(got), k-done)], all[done:k], fmt.Sprintf("after acknowledging event %d", done))
			// Open at event k: the rest follows exactly, none lost, none
			// repeated.
			rest := readRange(t, h, h.Limits, all[k-1].Position, h.Events-k, -1, false)
			checkSame(t, rest, all[k:], fmt.Sprintf("resumed after event %d", k))
			prev, done = all[k-1].Position, k
		}
	})
	t.Run("CancelledReadReturns", func(t *testing.T) {
		src := h.New(t)
		if err := src.Open(context.Background(), all[len(all)-1].Position); err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer src.Close(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() {
			_, err := src.ReadBatch(ctx, h.Limits)
			if err == nil {
				_, err = src.ReadBatch(ctx, h.Limits)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("ReadBatch with a cancelled context returned no error twice")
			}
			if !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) {
				t.Fatalf("ReadBatch with a cancelled context: %v; want context.Canceled (or io.EOF at the end)", err)
			}
		case <-time.After(h.Timeout):
			t.Fatalf("ReadBatch ignored a cancelled context (blocked for %s with nothing to read)", h.Timeout)
		}
	})
}

// tightLimits returns two limits under which a source must cut batches
// smaller than the harness's: one bounded by 3 events, one by about two
// events' bytes.
func tightLimits(h *SourceHarness, all []connectors.Event) []connectors.Limits {
	sizes := make([]int, len(all))
	for i := range all {
		sizes[i] = all[i].Size()
	}
	sort.Ints(sizes)
	count := 3
	if h.Limits.MaxEvents > 0 {
		count = min(count, h.Limits.MaxEvents)
	}
	return []connectors.Limits{
		{MaxEvents: count, MaxBytes: h.Limits.MaxBytes, MaxWait: h.Limits.MaxWait},
		{MaxEvents: h.Events, MaxBytes: 2*sizes[len(sizes)/2] + 1, MaxWait: h.Limits.MaxWait},
	}
}

// readRange opens a source at pos and reads at least n events, or until the
// source ends (io.EOF), checking bounds and order against lim if asked;
// when ackAt >= 0 it acknowledges the position of the ackAt-th event read
// (0-based) before closing. With checkBounds it also fails when the source
// delivers more than n events.
func readRange(t *testing.T, h *SourceHarness, lim connectors.Limits, pos connectors.Position, n, ackAt int, checkBounds bool) []connectors.Event {
	t.Helper()
	src := h.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	if err := src.Open(ctx, pos); err != nil {
		t.Fatalf("Open at %s: %v", pos, err)
	}
	defer func() {
		if err := closeSafely(context.Background(), src); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	var out []connectors.Event
	last := pos
	for len(out) < n {
		b, err := src.ReadBatch(ctx, lim)
		if checkBounds {
			checkBatch(t, lim, h.Unordered, &b, last)
		}
		for _, ev := range b.Events {
			if ev.Op != connectors.OpHeartbeat { // not a change of the upstream's
				out = append(out, ev)
			}
		}
		if b.Last != nil {
			if !h.Unordered && last != nil && b.Last.Compare(last) < 0 {
				t.Fatalf("batch Last %s is before the previous %s", b.Last, last)
			}
			last = b.Last
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ReadBatch after %d events: %v", len(out), err)
		}
	}
	if ackAt >= 0 && ackAt < len(out) {
		if err := src.Ack(ctx, out[ackAt].Position); err != nil {
			t.Fatalf("Ack %s: %v", out[ackAt].Position, err)
		}
	} else if checkBounds && len(out) > n {
		t.Fatalf("read %d events, the upstream holds %d", len(out), n)
	}
	return out
}

// checkSame fails unless got holds exactly the events of want, in order. A
// difference is named: an event repeated from before, one skipped, or one
// the source should not have delivered.
func checkSame(t *testing.T, got, want []connectors.Event, when string) {
	t.Helper()
	for i := range min(len(got), len(want)) {
		g, w := describe(&got[i]), describe(&want[i])
		if g == w {
			continue
		}
		what := "a different event"
		switch {
		case i+1 < len(want) && g == describe(&want[i+1]):
			what = fmt.Sprintf("the event after it: event %d was skipped (lost)", i+1)
		case i > 0 && g == describe(&want[i-1]):
			what = "the event before it again: repeated"
		case i == 0 && ackedBefore(&got[0], &want[0]):
			what = "an event at or before the acknowledged one: repeated"
		}
		t.Fatalf("%s: event %d is %s\n  %s\nwant\n  %s", when, i+1, what, g, w)
	}
	if len(got) < len(want) {
		t.Fatalf("%s: read %d events, want %d: lost from %s", when, len(got), len(want), describe(&want[len(got)]))
	}
	if len(got) > len(want) {
		t.Fatalf("%s: read %d events, want %d: %s", when, len(got), len(want), describe(&got[len(want)]))
	}
}

// ackedBefore reports whether got's position is before want's, i.e. at or
// before the position the source was opened after.
func ackedBefore(got, want *connectors.Event) bool {
	return got.Position != nil && want.Position != nil && got.Position.Compare(want.Position) < 0
}

// checkSameSet fails unless got and want hold the same events, in any
// order (for sources whose order is not one stream's).
func checkSameSet(t *testing.T, got, want []connectors.Event, when string) {
	t.Helper()
	count := map[string]int{}
	for i := range want {
		count[describe(&want[i])]++
	}
	for i := range got {
		count[describe(&got[i])]--
	}
	var problems []string
	for d, n := range count {
		switch {
		case n > 0:
			problems = append(problems, fmt.Sprintf("missing %d× %s", n, d))
		case n < 0:
			problems = append(problems, fmt.Sprintf("extra %d× %s", -n, d))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Fatalf("%s: read %d events, want %d; differences:\n  %s", when, len(got), len(want), strings.Join(problems[:min(10, len(problems))], "\n  "))
	}
}

func checkBatch(t *testing.T, lim connectors.Limits, unordered bool, b *connectors.Batch, prev connectors.Position) {
	t.Helper()
	if lim.MaxEvents > 0 && len(b.Events) > lim.MaxEvents {
		t.Errorf("batch of %d events, limit %d (Limits.MaxEvents)", len(b.Events), lim.MaxEvents)
	}
	if size := b.Size(); lim.MaxBytes > 0 && len(b.Events) > 1 && size-b.Events[len(b.Events)-1].Size() >= lim.MaxBytes {
		t.Errorf("batch of %d events and %d bytes went on past the %d-byte limit (Limits.MaxBytes)", len(b.Events), size, lim.MaxBytes)
	}
	for i := range b.Events {
		ev := &b.Events[i]
		if ev.Op == connectors.OpHeartbeat {
			// No table or rows; only its place in the order matters.
			if ev.Schema != nil || ev.Before != nil || ev.After != nil {
				t.Fatalf("heartbeat event %d has a schema or rows", i)
			}
		} else if ev.Schema == nil {
			t.Fatalf("event %d has no schema", i)
		}
		if ev.Op.String()[0] == 'O' {
			t.Fatalf("event %d has an invalid op %v", i, ev.Op)
		}
		if ev.Position == nil {
			t.Fatalf("event %d has no position", i)
		}
		if !unordered {
			if prev != nil && ev.Position.Compare(prev) <= 0 {
				t.Fatalf("out of order: event %d of a batch has position %s, not after %s", i, ev.Position, prev)
			}
			prev = ev.Position
		}
		for _, row := range [][]connectors.Value{ev.Before, ev.After} {
			if row != nil && len(row) != len(ev.Schema.Columns) {
				t.Fatalf("event %d has %d values for %d columns", i, len(row), len(ev.Schema.Columns))
			}
		}
	}
	if n := len(b.Events); n > 0 && !unordered && b.Last.Compare(b.Events[n-1].Position) < 0 {
		t.Errorf("batch Last %s is before its last event %s", b.Last, b.Events[n-1].Position)
	}
}

// closeSafely calls c.Close, turning a panic into an error.
func closeSafely(ctx context.Context, c interface{ Close(context.Context) error }) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panicked: %v", r)
		}
	}()
	return c.Close(ctx)
}

func leakOptions(ignore []string) []goleak.Option {
	var opts []goleak.Option
	for _, f := range ignore {
		opts = append(opts, goleak.IgnoreTopFunction(f))
	}
	// Goroutines running before the suite started are not its business.
	return append(opts, goleak.IgnoreCurrent())
}

// checkNoLeak fails if a goroutine started since leakOptions was called is
// still running (goleak retries for a while, so that goroutines on their
// way out are not reported).
func checkNoLeak(t *testing.T, opts []goleak.Option, what string) {
	t.Helper()
	if err := goleak.Find(opts...); err != nil {
		t.Errorf("goroutines left running after every %s the suite built was closed: %v", what, err)
	}
}

// describe is a stable text form of an event's content (not its timing).
func describe(ev *connectors.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s key=%v before=%v after=%v pos=%x", ev.Op, ev.Table(), ev.Key(), ev.Before, ev.After, []byte(ev.Position))
	return b.String()
}

// SinkHarness describes a sink under test.
type SinkHarness struct {
	// New builds a fresh, unopened sink writing to the same store each
	// time it is called.
	New func(t *testing.T) connectors.Sink
	// State reads what the store holds now, folded to the latest row per
	// key: key (as Key formats it) → row (as Row formats it). For a log
	// sink, read the log and fold it.
	State func(t *testing.T) map[string]string
	// Records, if set, counts what the store holds before any folding:
	// the rows of a table, the messages of a log. The suite then checks
	// that a batch written twice is not stored twice, which State, folded
	// by key, cannot see. Leave it nil for a sink that documents
	// duplicates on replay (at-least-once).
	Records func(t *testing.T) int
	// IgnoreLeaks as in SourceHarness.
	IgnoreLeaks []string
}

// Schema is the table the sink suite writes.
var Schema = connectors.MustSchema(connectors.TableID{Schema: "conformance", Name: "items"}, 1, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Native: "int8", Key: 1},
	{Name: "name", Type: connectors.TypeString, Native: "text", Nullable: true},
	{Name: "qty", Type: connectors.TypeInt64, Native: "int8", Nullable: true},
	{Name: "price", Type: connectors.TypeDecimal, Native: "numeric(10,2)", Nullable: true},
})

// Key formats a key the way SinkHarness.State must.
func Key(id int64) string { return fmt.Sprintf("id=%d", id) }

// Row formats a row of Schema the way SinkHarness.State must: values in
// column order, NULL for nil, separated by "|".
func Row(vals ...connectors.Value) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		if v == nil {
			parts[i] = "NULL"
		} else {
			parts[i] = fmt.Sprint(v)
		}
	}
	return strings.Join(parts, "|")
}

// Changes returns n deterministic changes to Schema starting at transaction
// commit: creates of new ids, then updates and deletes of earlier ones, and
// the state they leave.
func Changes(commit uint64, n int, firstID int64, state map[string]string) []connectors.Event {
	var evs []connectors.Event
	live := []int64{}
	for k := range state {
		var id int64
		fmt.Sscanf(k, "id=%d", &id)
		live = append(live, id)
	}
	sort.Slice(live, func(i, j int) bool { return live[i] < live[j] })
	next := firstID
	for i := 0; i < n; i++ {
		pos := connectors.TxPosition{Commit: commit + uint64(i/10), Ordinal: uint32(i%10 + 1)}.Encode()
		ev := connectors.Event{Schema: Schema, Position: pos,
			Source: connectors.SourceInfo{Connector: "conformance", Schema: "conformance", Table: "items", TsMs: time.Now().UnixMilli()}}
		switch {
		case i%5 == 3 && len(live) > 0: // update
			id := live[i%len(live)]
			ev.Op = connectors.OpUpdate
			ev.Before = []connectors.Value{id, nil, nil, nil}
			ev.After = []connectors.Value{id, fmt.Sprintf("item %d v%d", id, i), int64(i), fmt.Sprintf("%d.%02d", i, i%100)}
		case i%7 == 6 && len(live) > 1: // delete
			j := i % len(live)
			id := live[j]
			live = append(live[:j], live[j+1:]...)
			ev.Op = connectors.OpDelete
			ev.Before = []connectors.Value{id, nil, nil, nil}
		default: // create
			id := next
			next++
			live = append(live, id)
			ev.Op = connectors.OpCreate
			ev.After = []connectors.Value{id, fmt.Sprintf("item %d", id), nil, "0.50"}
		}
		apply(state, &ev)
		evs = append(evs, ev)
	}
	return evs
}

func apply(state map[string]string, ev *connectors.Event) {
	id := ev.Row()[0].(int64)
	if ev.Op == connectors.OpDelete {
		delete(state, Key(id))
		return
	}
	state[Key(id)] = Row(ev.After...)
}

// RunSink runs the sink conformance checks as subtests of t, each named for
// what it checks. The store must be empty when it starts.
//
//   - WriteAndRead: an AtomicSink on an empty store has no position; 200
//     changes in batches of 50 leave the store holding their result, and
//     the sink's CommittedPosition is the last batch's.
//   - ReplayedBatchIsHarmless: 200 more changes, one batch written twice
//     (as the engine does after a crash before its commit), leave the store
//     as if it had been written once; with Records, the second write
//     stores nothing more.
//   - PositionSurvivesReopen: a new sink on the same store reports the last
//     position written and holds the same rows.
//   - PipelinedWrites: 100 more changes in batches of 25. A
//     connectors.PipelinedSink gets them as the engine gives them: each
//     batch started (StartBatch) while the one before is in flight, whose
//     Pending must then end without error; once the last one's ends, the
//     store holds them all and CommittedPosition is the last batch's.
//     Other sinks get them through WriteBatch.
//   - EmptyBatch: a batch with no events is accepted, changes no row, and
//     moves an AtomicSink's position, also across a reopen.
//   - CloseTwice, CloseWithoutOpen: Close returns nil (and does not panic)
//     when called a second time or on a sink never opened.
//   - NoGoroutineLeft: once every sink the suite built is closed, no
//     goroutine started during the suite is still running.
//
// The checks build on each other's writes: when one fails, the ones after
// it that compare the store usually fail too.
func RunSink(t *testing.T, h SinkHarness) {
	if h.New == nil || h.State == nil {
		t.Fatal("connectortest: SinkHarness needs New and State")
	}
	leakOpts := leakOptions(h.IgnoreLeaks)
	ctx := context.Background()

	want := map[string]string{}
	first := Changes(1, 200, 1, want)
	afterFirst := clone(want)
	second := Changes(100, 200, 1000, want)
	afterSecond := clone(want)
	third := Changes(200, 100, 2000, want)

	t.Run("WriteAndRead", func(t *testing.T) {
		s := h.New(t)
		mustOpen(t, s)
		defer mustClose(t, s)
		checkCommitted(t, s, nil, "on an empty store, before any write")
		for _, b := range batches(first, 50) {
			if err := s.WriteBatch(ctx, b); err != nil {
				t.Fatalf("WriteBatch: %v", err)
			}
		}
		compare(t, h.State(t), afterFirst)
		checkCommitted(t, s, first[len(first)-1].Position, "after the last batch")
	})
	t.Run("ReplayedBatchIsHarmless", func(t *testing.T) {
		s := h.New(t)
		mustOpen(t, s)
		defer mustClose(t, s)
		bs := batches(second, 40)
		for i, b := range bs {
			if err := s.WriteBatch(ctx, b); err != nil {
				t.Fatalf("WriteBatch %d: %v", i, err)
			}
			if i == 2 {
				// A crash before the commit: the engine writes the batch again.
				before := -1
				if h.Records != nil {
					before = h.Records(t)
				}
				if err := s.WriteBatch(ctx, b); err != nil {
					t.Fatalf("WriteBatch again: %v", err)
				}
				if h.Records != nil {
					if after := h.Records(t); after != before {
						t.Errorf("the batch written again changed the records stored from %d to %d: a replayed batch must not be stored twice", before, after)
					}
				}
			}
		}
		compare(t, h.State(t), afterSecond)
	})
	t.Run("PositionSurvivesReopen", func(t *testing.T) {
		s := h.New(t)
		mustOpen(t, s)
		defer mustClose(t, s)
		checkCommitted(t, s, second[len(second)-1].Position, "after a reopen")
		compare(t, h.State(t), afterSecond)
	})
	t.Run("PipelinedWrites", func(t *testing.T) {
		s := h.New(t)
		mustOpen(t, s)
		defer mustClose(t, s)
		ps, pipelined := s.(connectors.PipelinedSink)
		var fly connectors.Pending
		for i, b := range batches(third, 25) {
			if !pipelined {
				if err := s.WriteBatch(ctx, b); err != nil {
					t.Fatalf("WriteBatch %d: %v", i, err)
				}
				continue
			}
			p, err := ps.StartBatch(ctx, b)
			if err != nil {
				t.Fatalf("StartBatch %d: %v", i, err)
			}
			if fly != nil {
				awaitPending(t, fly, i-1)
			}
			fly = p
		}
		if fly != nil {
			awaitPending(t, fly, len(third)/25-1)
		}
		compare(t, h.State(t), want)
		checkCommitted(t, s, third[len(third)-1].Position, "after the last pipelined batch")
	})
	t.Run("EmptyBatch", func(t *testing.T) {
		s := h.New(t)
		mustOpen(t, s)
		// A batch with no events still moves the position.
		empty := connectors.Batch{Last: connectors.TxPosition{Commit: 10_000, Ordinal: 1}.Encode()}
		if err := s.WriteBatch(ctx, empty); err != nil {
			mustClose(t, s)
			t.Fatalf("WriteBatch of an empty batch: %v", err)
		}
		checkCommitted(t, s, empty.Last, "after an empty batch")
		mustClose(t, s)
		s = h.New(t)
		mustOpen(t, s)
		defer mustClose(t, s)
		checkCommitted(t, s, empty.Last, "after an empty batch and a reopen")
		compare(t, h.State(t), want)
	})
	t.Run("CloseTwice", func(t *testing.T) {
		s := h.New(t)
		mustOpen(t, s)
		if err := closeSafely(ctx, s); err != nil {
			t.Fatalf("first Close: %v", err)
		}
		if err := closeSafely(ctx, s); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("CloseWithoutOpen", func(t *testing.T) {
		if err := closeSafely(ctx, h.New(t)); err != nil {
			t.Fatalf("Close of a sink never opened: %v", err)
		}
	})
	t.Run("NoGoroutineLeft", func(t *testing.T) { checkNoLeak(t, leakOpts, "sink") })
}

// awaitPending waits for batch i's Pending to end, without error.
func awaitPending(t *testing.T, p connectors.Pending, i int) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("batch %d: Pending.Done not closed 30s after StartBatch", i)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("batch %d: Pending.Err: %v", i, err)
	}
}

func batches(evs []connectors.Event, size int) []connectors.Batch {
	var out []connectors.Batch
	for len(evs) > 0 {
		n := min(size, len(evs))
		out = append(out, connectors.Batch{Events: evs[:n:n], Last: evs[n-1].Position})
		evs = evs[n:]
	}
	return out
}

// checkCommitted checks an AtomicSink's CommittedPosition (nil want: none).
// A wrong position is reported and the check goes on, so that what the
// store holds is still compared.
func checkCommitted(t *testing.T, s connectors.Sink, want connectors.Position, when string) {
	t.Helper()
	as, ok := s.(connectors.AtomicSink)
	if !ok {
		return
	}
	got, err := as.CommittedPosition(context.Background())
	if err != nil {
		t.Fatalf("CommittedPosition %s: %v", when, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("CommittedPosition %s = %s, want %s", when, got, want)
	}
}

func compare(t *testing.T, got, want map[string]string) {
	t.Helper()
	var problems []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("missing %s (want %s)", k, w))
		case g != w:
			problems = append(problems, fmt.Sprintf("%s = %s, want %s", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			problems = append(problems, fmt.Sprintf("unexpected %s = %s", k, g))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("... and %d more", len(problems)-10))
		}
		t.Fatalf("the store differs from the changes written (%d rows, want %d):\n  %s", len(got), len(want), strings.Join(problems, "\n  "))
	}
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func mustOpen(t *testing.T, s connectors.Sink) {
	t.Helper()
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
}

func mustClose(t *testing.T, s connectors.Sink) {
	t.Helper()
	if err := closeSafely(context.Background(), s); err != nil {
		t.Errorf("Close: %v", err)
	}
}
