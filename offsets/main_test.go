package offsets_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
)

// helperEnv makes the test binary act as a helper process, the way os/exec's
// tests re-execute themselves: its value is the helper's mode.
const helperEnv = "TAPLINE_OFFSETS_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintf(os.Stderr, "helper %s: %v\n", mode, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// runHelper is the body of a helper process. Its arguments come in
// HELPER_* environment variables; it reports on stdout, one line per fact,
// and treats the end of stdin as its parent having gone.
//
//   - "lock": takes the lock of HELPER_PIPELINE under HELPER_DIR, prints
//     "locked", and holds it until stdin closes; then unlocks and exits.
//   - "trylock": tries that lock once and prints "acquired" or
//     "locked-by PID".
//   - "commit": commits crashPosition(i) for i = 1, 2, ... (continuing after
//     what the store at HELPER_DB holds) and prints i after each Commit
//     returns, until it is killed or stdin closes.
func runHelper(mode string) error {
	dir, pipeline := os.Getenv("HELPER_DIR"), os.Getenv("HELPER_PIPELINE")
	switch mode {
	case "lock":
		l, err := offsets.Lock(dir, pipeline)
		if err != nil {
			return err
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin)
		return l.Unlock()
	case "trylock":
		l, err := offsets.Lock(dir, pipeline)
		var locked *offsets.LockedError
		switch {
		case errors.As(err, &locked):
			fmt.Printf("locked-by %d\n", locked.PID)
			return nil
		case err != nil:
			return err
		}
		fmt.Println("acquired")
		return l.Unlock()
	case "commit":
		go func() {
			io.Copy(io.Discard, os.Stdin)
			os.Exit(3) // the parent is gone: do not run on
		}()
		return commitForever(os.Getenv("HELPER_DB"))
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

func commitForever(path string) error {
	s, err := offsets.OpenSQLite(path)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx := context.Background()
	last, err := s.Get(ctx, "crash")
	if err != nil {
		return err
	}
	next := uint64(1)
	if last != nil {
		n, ok := decodeCrashPosition(last)
		if !ok {
			return fmt.Errorf("stored position %s is torn", last)
		}
		next = n + 1
	}
	for i := next; i < next+1_000_000; i++ {
		if err := s.Commit(ctx, "crash", crashPosition(i)); err != nil {
			return err
		}
		// One write(2) per line: the parent reads whole lines or none.
		if _, err := os.Stdout.WriteString(strconv.FormatUint(i, 10) + "\n"); err != nil {
			return err
		}
	}
	return nil
}

// crashPosition is commit i of the crash test: i, then bytes that only i
// makes, 13 bytes to 12 KiB long, so that it spans database pages and a torn
// value (half of one commit, half of another) is recognised.
func crashPosition(i uint64) connectors.Position {
	n := 8 + int(5+i*7919%12000)
	p := make([]byte, n)
	binary.BigEndian.PutUint64(p, i)
	var seed [32]byte
	binary.BigEndian.PutUint64(seed[:], i)
	rand.NewChaCha8(seed).Read(p[8:])
	return p
}

// decodeCrashPosition returns the i of a crashPosition, reporting whether p
// is whole.
func decodeCrashPosition(p connectors.Position) (uint64, bool) {
	if len(p) < 8 {
		return 0, false
	}
	i := binary.BigEndian.Uint64(p)
	return i, string(p) == string(crashPosition(i))
}

// helper is a started helper process.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *strings.Builder
}

// startHelper starts the test binary as a helper process in mode, with env
// added to its environment. The helper is killed when the test ends, if it
// still runs.
func startHelper(t *testing.T, mode string, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// atexit_sleep_ms: a race-enabled binary otherwise sleeps a second when
	// it exits.
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}, env...)...)
	h := &helper{cmd: cmd, stderr: new(strings.Builder)}
	cmd.Stderr = h.stderr
	var err error
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.stdout = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", mode, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			h.stdin.Close()
			io.Copy(io.Discard, h.stdout)
			cmd.Wait()
		}
	})
	return h
}

// line reads the helper's next line of output, without the newline. At the
// end of the output it fails t, showing the helper's stderr.
func (h *helper) line(t *testing.T) string {
	t.Helper()
	s, err := h.stdout.ReadString('\n')
	if err != nil {
		h.cmd.Wait()
		t.Fatalf("helper output ended (%v; %v); stderr:\n%s", err, h.cmd.ProcessState, h.stderr)
	}
	return strings.TrimSuffix(s, "\n")
}

// kill sends SIGKILL, reads the rest of the output in whole lines (a last
// line without its newline is dropped), waits, and checks that the helper
// died of the signal.
func (h *helper) kill(t *testing.T) (rest []string) {
	t.Helper()
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill helper: %v", err)
	}
	for {
		s, err := h.stdout.ReadString('\n')
		if err != nil {
			break
		}
		rest = append(rest, strings.TrimSuffix(s, "\n"))
	}
	h.stdin.Close()
	h.cmd.Wait()
	ws, ok := h.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, not by SIGKILL; stderr:\n%s", h.cmd.ProcessState, h.stderr)
	}
	return rest
}

// stop closes the helper's stdin and waits for it to exit successfully.
func (h *helper) stop(t *testing.T) {
	t.Helper()
	h.stdin.Close()
	io.Copy(io.Discard, h.stdout)
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v; stderr:\n%s", err, h.stderr)
	}
}
