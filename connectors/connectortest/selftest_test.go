package connectortest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
)

// The suite's self-test: a suite that never fails proves nothing. Each case
// below runs RunSource or RunSink against a connector broken in one way and
// asserts that exactly the expected checks (subtests) fail, each with a
// message that says what went wrong, and that the others pass. The suite
// runs in a child process (this test binary, with brokenEnv set), one
// subtest per case, because a failing subtest fails its parent for good: it
// cannot run in-process under a *testing.T whose failure is then taken
// back.

// brokenEnv set to 1 makes TestBrokenConnectorsFailTheSuite the child.
const brokenEnv = "TAPLINE_CONNECTORTEST_BROKEN"

// selfTest is the name of the test function both processes run.
const selfTest = "TestBrokenConnectorsFailTheSuite"

// brokenCase is one broken connector and how the suite must fail on it.
type brokenCase struct {
	name   string
	source *connectortest.SourceHarness
	sink   *connectortest.SinkHarness
	// fail maps every check that must fail to a fragment of its message;
	// every other check must pass, or be in notRun.
	fail   map[string]string
	notRun []string
}

var sourceChecks = []string{"ReadAllWithinBounds", "ReadAllWithinTightBounds", "CancelledReadStops",
	"ResumeAfterPartialAck", "CancelledReadReturns", "CloseTwice", "CloseWithoutOpen", "NoGoroutineLeft"}

var sinkChecks = []string{"WriteAndRead", "ReplayedBatchIsHarmless", "PositionSurvivesReopen", "PipelinedWrites",
	"EmptyBatch", "CloseTwice", "CloseWithoutOpen", "NoGoroutineLeft"}

// brokenCases builds the cases; each call builds fresh upstreams and
// stores.
func brokenCases() []brokenCase {
	storeDiffers := "the store differs from the changes written"
	return []brokenCase{
		{name: "source/reference", source: sourceHarness("", 300)},
		{name: "source/resumes-one-too-early", source: sourceHarness("resume-early", 300),
			fail: map[string]string{"ResumeAfterPartialAck": "resumed after event 1: event 1 is an event at or before the acknowledged one: repeated"}},
		{name: "source/resumes-one-too-late", source: sourceHarness("resume-late", 300),
			fail: map[string]string{"ResumeAfterPartialAck": "resumed after event 1: event 1 is the event after it: event 1 was skipped (lost)"}},
		{name: "source/ignores-max-events", source: sourceHarness("ignore-max-events", 300),
			fail: map[string]string{
				"ReadAllWithinBounds":      "events, limit 50 (Limits.MaxEvents)",
				"ReadAllWithinTightBounds": "limit 3 (Limits.MaxEvents)",
			}},
		// With fewer events than the harness's MaxEvents only the tight
		// bounds can see it.
		{name: "source/ignores-max-events-few-events", source: sourceHarness("ignore-max-events", 40),
			fail: map[string]string{"ReadAllWithinTightBounds": "batch of 40 events, limit 3 (Limits.MaxEvents)"}},
		{name: "source/ignores-max-bytes", source: sourceHarness("ignore-max-bytes", 300),
			fail: map[string]string{"ReadAllWithinTightBounds": "byte limit (Limits.MaxBytes)"}},
		{name: "source/out-of-order", source: sourceHarness("swap-pairs", 300),
			fail: map[string]string{"ReadAllWithinBounds": "out of order: event 1 of a batch"},
			// They need the events in order.
			notRun: []string{"ReadAllWithinTightBounds", "CancelledReadStops", "ResumeAfterPartialAck", "CancelledReadReturns"}},
		{name: "source/read-ignores-cancel", source: sourceHarness("deaf-to-ctx", 300),
			fail: map[string]string{
				"CancelledReadStops":   "two calls returned batches of [50 50] events and no error",
				"CancelledReadReturns": "ReadBatch ignored a cancelled context",
			}},
		{name: "source/close-twice-errors", source: sourceHarness("close-twice-errors", 300),
			fail: map[string]string{"CloseTwice": "second Close: source already closed"}},
		{name: "source/close-twice-panics", source: sourceHarness("close-twice-panics", 300),
			fail: map[string]string{"CloseTwice": "second Close: panicked: close of closed channel"}},
		{name: "source/leaks-goroutine", source: sourceHarness("leak", 300),
			fail: map[string]string{"NoGoroutineLeft": "connectortest_test.(*brokenSource).heartbeat"}},

		{name: "sink/reference", sink: sinkHarness("")},
		{name: "sink/drops-last-event-of-batch", sink: sinkHarness("drop-last"),
			fail: map[string]string{
				"WriteAndRead": storeDiffers, "ReplayedBatchIsHarmless": storeDiffers,
				"PositionSurvivesReopen": storeDiffers, "PipelinedWrites": storeDiffers, "EmptyBatch": storeDiffers,
			}},
		{name: "sink/stale-position-after-reopen", sink: sinkHarness("stale-position"),
			fail: map[string]string{
				"PositionSurvivesReopen": "CommittedPosition after a reopen = ",
				"EmptyBatch":             "CommittedPosition after an empty batch and a reopen = ",
			}},
		{name: "sink/position-on-an-empty-store", sink: sinkHarness("foreign-position"),
			fail: map[string]string{"WriteAndRead": "CommittedPosition on an empty store, before any write = 0x"}},
		{name: "sink/replay-applied-twice", sink: sinkHarness("dupes"),
			fail: map[string]string{
				"ReplayedBatchIsHarmless": "unexpected id=", "PositionSurvivesReopen": "unexpected id=",
				"PipelinedWrites": "unexpected id=", "EmptyBatch": "unexpected id=",
			}},
		{name: "sink/replay-logged-twice", sink: sinkHarness("log-dupes"),
			fail: map[string]string{"ReplayedBatchIsHarmless": "changed the records stored from"}},
		{name: "sink/pipelined-reference", sink: sinkHarness("pipelined")},
		{name: "sink/pipelined-done-before-durable", sink: sinkHarness("pipelined-early-done"),
			fail: map[string]string{"PipelinedWrites": storeDiffers, "EmptyBatch": storeDiffers}},
		{name: "sink/empty-batch-errors", sink: sinkHarness("empty-batch-errors"),
			fail: map[string]string{"EmptyBatch": "WriteBatch of an empty batch: nothing to write"}},
		{name: "sink/close-twice-errors", sink: sinkHarness("close-twice-errors"),
			fail: map[string]string{"CloseTwice": "second Close: sink already closed"}},
		{name: "sink/leaks-goroutine", sink: sinkHarness("leak"),
			fail: map[string]string{"NoGoroutineLeft": "connectortest_test.(*brokenSink).flusher"}},
	}
}

func TestBrokenConnectorsFailTheSuite(t *testing.T) {
	cases := brokenCases()
	if os.Getenv(brokenEnv) != "" {
		// The child: the suite on every case, one after the other (the
		// leak check sees the whole process).
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if c.source != nil {
					connectortest.RunSource(t, *c.source)
				} else {
					connectortest.RunSink(t, *c.sink)
				}
			})
		}
		return
	}
	code, out := runChild(t)
	// 0: the suite passed every broken connector; 2 or more: it crashed
	// (a panic, a timeout) instead of failing checks.
	if code != 1 {
		t.Fatalf("the suite exited with %d, want 1 (failed checks):\n%s", code, out)
	}
	var names []string
	for _, c := range cases {
		names = append(names, c.name)
	}
	results := parseResults(out, names)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := results[c.name]
			if r == nil {
				t.Fatalf("the child did not run the case:\n%s", out)
			}
			checks := sourceChecks
			if c.sink != nil {
				checks = sinkChecks
			}
			for _, check := range checks {
				msg, mustFail := c.fail[check]
				logged, failed := r.failed[check]
				switch {
				case mustFail && !failed:
					t.Errorf("check %s did not fail (passed: %v)", check, r.passed[check])
				case mustFail && !strings.Contains(logged, msg):
					t.Errorf("check %s failed, but its message does not contain %q; it is:\n%s", check, msg, logged)
				case !mustFail && failed:
					t.Errorf("check %s failed too:\n%s", check, logged)
				case !mustFail && !r.passed[check] && !slices.Contains(c.notRun, check):
					t.Errorf("check %s did not run", check)
				case slices.Contains(c.notRun, check) && (failed || r.passed[check]):
					t.Errorf("check %s ran; it should not have", check)
				}
			}
			for check := range r.failed {
				if !slices.Contains(checks, check) {
					t.Errorf("unknown check %s failed:\n%s", check, r.failed[check])
				}
			}
			if t.Failed() {
				t.Logf("the child's output for this case:\n%s", r.output)
			}
		})
	}
}

// runChild runs this test in a child process and returns its exit status
// and output.
func runChild(t *testing.T) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+selfTest+"$", "-test.count=1", "-test.v", "-test.timeout=50s")
	cmd.Env = append(os.Environ(), brokenEnv+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	case err != nil:
		t.Fatalf("running the suite in a child process: %v\n%s", err, out)
	}
	return 0, string(out)
}

// caseResults is what the child reported for one case.
type caseResults struct {
	failed map[string]string // check → what it logged
	passed map[string]bool
	output string
}

var (
	headerRE = regexp.MustCompile(`^=== (?:RUN|NAME|CONT|PAUSE)\s+(\S+)`)
	resultRE = regexp.MustCompile(`^\s*--- (FAIL|PASS|SKIP): (\S+) \(`)
)

// parseResults reads the child's verbose output (go test -v): by case (of
// those named), the checks that failed with what each logged, and those
// that passed. A log line belongs to the test named by the last
// "=== RUN/NAME/CONT" header; a case's own lines (not a check's) go to its
// output only.
func parseResults(out string, cases []string) map[string]*caseResults {
	results := map[string]*caseResults{}
	logs := map[string]*strings.Builder{}
	// split turns selfTest/<case>[/<check>] into its case and check.
	split := func(name string) (string, string, bool) {
		rest, ok := strings.CutPrefix(name, selfTest+"/")
		if !ok {
			return "", "", false
		}
		for _, c := range cases {
			if check, ok := strings.CutPrefix(rest, c); ok && (check == "" || check[0] == '/') {
				return c, strings.TrimPrefix(check, "/"), true
			}
		}
		return "", "", false
	}
	result := func(c string) *caseResults {
		if results[c] == nil {
			results[c] = &caseResults{failed: map[string]string{}, passed: map[string]bool{}}
		}
		return results[c]
	}
	current := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := headerRE.FindStringSubmatch(line); m != nil {
			current = m[1]
		} else if m := resultRE.FindStringSubmatch(line); m != nil {
			current = ""
			if c, check, ok := split(m[2]); ok && check != "" {
				switch m[1] {
				case "FAIL":
					result(c).failed[check] = ""
				case "PASS":
					result(c).passed[check] = true
				}
			}
		} else if current != "" {
			if logs[current] == nil {
				logs[current] = &strings.Builder{}
			}
			fmt.Fprintln(logs[current], line)
		}
		if c, _, ok := split(current); ok {
			r := result(c)
			r.output += line + "\n"
		}
	}
	for name, b := range logs {
		if c, check, ok := split(name); ok && check != "" {
			if _, failed := results[c].failed[check]; failed {
				results[c].failed[check] = b.String()
			}
		}
	}
	return results
}

// sourceHarness is a harness over n events whose source has the fault
// named ("" for none).
func sourceHarness(fault string, n int) *connectortest.SourceHarness {
	evs := connectortest.Changes(1, n, 1, map[string]string{})
	timeout := 10 * time.Second
	if fault == "deaf-to-ctx" {
		timeout = time.Second // how long CancelledReadReturns waits
	}
	return &connectortest.SourceHarness{
		New: func(*testing.T) connectors.Source {
			return &brokenSource{sliceSource: sliceSource{evs: evs}, fault: fault,
				closed: make(chan struct{}), stop: make(chan struct{})}
		},
		Events:  n,
		Timeout: timeout,
	}
}

// brokenSource is the reference source with one fault.
type brokenSource struct {
	sliceSource
	fault  string
	closes int
	closed chan struct{} // closed by Close
	stop   chan struct{} // never closed: what the leaked goroutine waits for
}

func (s *brokenSource) Open(ctx context.Context, pos connectors.Position) error {
	if err := s.sliceSource.Open(ctx, pos); err != nil {
		return err
	}
	switch s.fault {
	case "resume-early": // opens at pos instead of after it
		if pos != nil && s.next > 0 {
			s.next--
		}
	case "resume-late": // skips the event after pos
		if pos != nil && s.next < len(s.evs) {
			s.next++
		}
	case "leak": // a goroutine that Close does not stop
		go s.heartbeat()
	}
	return nil
}

func (s *brokenSource) heartbeat() { <-s.stop }

func (s *brokenSource) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	switch s.fault {
	case "ignore-max-events":
		lim.MaxEvents = 0
	case "ignore-max-bytes":
		lim.MaxBytes = 0
	case "deaf-to-ctx": // waits for more events without watching ctx
		b, err := s.sliceSource.ReadBatch(context.Background(), lim)
		if errors.Is(err, io.EOF) {
			<-s.closed
			return b, connectors.ErrClosed
		}
		return b, err
	}
	b, err := s.sliceSource.ReadBatch(ctx, lim)
	if s.fault == "swap-pairs" && len(b.Events) > 1 {
		b.Events[0], b.Events[1] = b.Events[1], b.Events[0]
	}
	return b, err
}

func (s *brokenSource) Close(context.Context) error {
	s.closes++
	switch {
	case s.fault == "close-twice-errors" && s.closes > 1:
		return errors.New("source already closed")
	case s.fault == "close-twice-panics", s.closes == 1:
		close(s.closed)
	}
	return nil
}

// sinkHarness is a harness over a fresh map store whose sink has the fault
// named ("" for none).
func sinkHarness(fault string) *connectortest.SinkHarness {
	var mu sync.Mutex
	rows := map[string]string{}
	var pos connectors.Position
	var log int
	return &connectortest.SinkHarness{
		New: func(*testing.T) connectors.Sink {
			s := &brokenSink{mapSink: mapSink{mu: &mu, rows: rows, pos: &pos, dupes: fault == "dupes",
				log: &log, logDupes: fault == "log-dupes"},
				fault: fault, stop: make(chan struct{})}
			if strings.HasPrefix(fault, "pipelined") {
				return &pipelinedSink{brokenSink: s}
			}
			return s
		},
		Records: func(*testing.T) int {
			mu.Lock()
			defer mu.Unlock()
			return log
		},
		State: stateOf(&mu, rows),
	}
}

// brokenSink is the reference atomic sink with one fault.
type brokenSink struct {
	mapSink
	fault  string
	closes int
	// stale-position: the position this sink last wrote; the store gets
	// the one before it.
	last connectors.Position
	stop chan struct{} // never closed: what the leaked goroutine waits for
}

func (s *brokenSink) Open(context.Context) error {
	if s.fault == "leak" {
		go s.flusher()
	}
	return nil
}

func (s *brokenSink) flusher() { <-s.stop }

func (s *brokenSink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	switch s.fault {
	case "empty-batch-errors":
		if len(b.Events) == 0 {
			return errors.New("nothing to write")
		}
	case "drop-last": // an off-by-one in a chunking loop
		if n := len(b.Events); n > 0 {
			b.Events = b.Events[:n-1]
		}
	case "stale-position": // stores the previous batch's position
		s.applyRows(b.Events)
		if s.last != nil {
			s.setPosition(s.last)
		}
		s.last = b.Last
		return nil
	}
	return s.mapSink.WriteBatch(ctx, b)
}

func (s *brokenSink) CommittedPosition(ctx context.Context) (connectors.Position, error) {
	if s.fault == "stale-position" && s.last != nil {
		return s.last, nil // this sink's memory, not the store
	}
	p, err := s.mapSink.CommittedPosition(ctx)
	if s.fault == "foreign-position" && p == nil {
		// Reads another pipeline's row of a shared positions table.
		p = connectors.TxPosition{Commit: 500, Ordinal: 1}.Encode()
	}
	return p, err
}

func (s *brokenSink) Close(context.Context) error {
	s.closes++
	if s.fault == "close-twice-errors" && s.closes > 1 {
		return errors.New("sink already closed")
	}
	return nil
}

// pipelinedSink is the broken sink as a connectors.PipelinedSink: fault
// "pipelined" writes each started batch in a goroutine, after the one
// before, and ends its Pending once written; "pipelined-early-done" ends
// the Pending at once and writes the batch only when the next one starts
// (the last one never).
type pipelinedSink struct {
	*brokenSink
	prev <-chan struct{}   // the Pending of the batch before
	held *connectors.Batch // pipelined-early-done: started, not written
}

type pending struct {
	done chan struct{}
	err  error
}

func (p *pending) Done() <-chan struct{} { return p.done }
func (p *pending) Err() error            { return p.err }

func (s *pipelinedSink) StartBatch(ctx context.Context, b connectors.Batch) (connectors.Pending, error) {
	p := &pending{done: make(chan struct{})}
	if s.fault == "pipelined-early-done" {
		if s.held != nil {
			s.mapSink.WriteBatch(ctx, *s.held)
		}
		s.held = &b
		close(p.done)
		return p, nil
	}
	prev := s.prev
	s.prev = p.done
	go func() {
		if prev != nil {
			<-prev
		}
		p.err = s.mapSink.WriteBatch(ctx, b)
		close(p.done)
	}()
	return p, nil
}
