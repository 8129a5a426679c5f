package offsets_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tapline/tapline/offsets"
)

// mustLock takes the lock, failing t otherwise, and releases it when the
// test ends.
func mustLock(t *testing.T, dir, pipeline string) *offsets.PipelineLock {
	t.Helper()
	l, err := offsets.Lock(dir, pipeline)
	if err != nil {
		t.Fatalf("Lock(%q): %v", pipeline, err)
	}
	t.Cleanup(func() { l.Unlock() })
	return l
}

// wantLocked checks that err is a *LockedError for pipeline held by pid.
func wantLocked(t *testing.T, err error, pipeline string, pid int) *offsets.LockedError {
	t.Helper()
	var le *offsets.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("Lock(%q) = %v, want a *LockedError", pipeline, err)
	}
	if le.Pipeline != pipeline || le.PID != pid {
		t.Errorf("LockedError{Pipeline: %q, PID: %d}, want {%q, %d}", le.Pipeline, le.PID, pipeline, pid)
	}
	return le
}

func TestLockInOneProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // Lock creates it
	before := time.Now()
	l := mustLock(t, dir, "orders")

	// Two Locks in one process conflict: each opens the file anew.
	_, err := offsets.Lock(dir, "orders")
	le := wantLocked(t, err, "orders", os.Getpid())
	if le.Since.Before(before) || le.Since.After(time.Now()) {
		t.Errorf("LockedError.Since = %v, want between %v and now", le.Since, before)
	}

	other := mustLock(t, dir, "customers") // other pipelines are not held up
	if err := other.Unlock(); err != nil {
		t.Fatal(err)
	}

	if err := l.Unlock(); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
	var nilLock *offsets.PipelineLock
	if err := nilLock.Unlock(); err != nil {
		t.Errorf("Unlock of a nil lock: %v", err)
	}
	l2 := mustLock(t, dir, "orders") // free again
	l2.Unlock()

	if b, err := os.ReadFile(offsets.LockPath(dir, "orders")); err != nil || len(b) != 0 {
		t.Errorf("lock file after Unlock holds %q (%v); want it empty, naming no holder", b, err)
	}
}

func TestLockPath(t *testing.T) {
	dir := t.TempDir()
	for name, want := range map[string]string{
		"orders":        "orders.lock",
		"legacy-orders": "legacy-orders.lock",
		"a/b":           "a%2Fb.lock",
		"..":            "...lock",
		"a b":           "a%20b.lock",
		"100%":          "100%25.lock",
		"nul\x00":       "nul%00.lock",
	} {
		got := offsets.LockPath(dir, name)
		if got != filepath.Join(dir, "locks", want) {
			t.Errorf("LockPath(%q) = %s, want <dir>/locks/%s", name, got, want)
			continue
		}
		l := mustLock(t, dir, name)
		if _, err := os.Stat(got); err != nil {
			t.Errorf("Lock(%q) made no %s: %v", name, got, err)
		}
		l.Unlock()
	}
	if _, err := offsets.Lock(dir, ""); err == nil {
		t.Error("Lock of an empty pipeline name succeeded")
	}
}

func TestLockedErrorMessage(t *testing.T) {
	e := &offsets.LockedError{Pipeline: "orders", PID: 1234, Since: time.Date(2026, 11, 23, 9, 0, 0, 500, time.FixedZone("CET", 3600))}
	if got, want := e.Error(), `pipeline "orders" is running (pid 1234 since 2026-11-23T08:00:00Z); stop it first`; got != want {
		t.Errorf("Error() = %s\nwant      %s", got, want)
	}
	e = &offsets.LockedError{Pipeline: "orders"}
	if got, want := e.Error(), `pipeline "orders" is running (owner unknown); stop it first`; got != want {
		t.Errorf("Error() = %s\nwant      %s", got, want)
	}
}

// A second process is refused with the holder's pid; once the holder
// unlocks and exits, the lock is free.
func TestLockAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	env := []string{"HELPER_DIR=" + dir, "HELPER_PIPELINE=orders"}
	before := time.Now()
	h := startHelper(t, "lock", env...)
	if got := h.line(t); got != "locked" {
		t.Fatalf("helper says %q, want locked", got)
	}

	_, err := offsets.Lock(dir, "orders")
	le := wantLocked(t, err, "orders", h.cmd.Process.Pid)
	if le.Since.Before(before) || le.Since.After(time.Now()) {
		t.Errorf("LockedError.Since = %v, want between %v and now", le.Since, before)
	}
	want := fmt.Sprintf(`pipeline "orders" is running (pid %d since %s); stop it first`,
		h.cmd.Process.Pid, le.Since.UTC().Format(time.RFC3339))
	if err.Error() != want {
		t.Errorf("error = %s\nwant    %s", err, want)
	}

	h.stop(t)
	mustLock(t, dir, "orders").Unlock()

	// And the other way round: while this process holds the lock, another
	// process is refused with this process's pid.
	l := mustLock(t, dir, "orders")
	h = startHelper(t, "trylock", env...)
	if got, want := h.line(t), "locked-by "+strconv.Itoa(os.Getpid()); got != want {
		t.Errorf("helper says %q, want %q", got, want)
	}
	h.stop(t)
	l.Unlock()
	h = startHelper(t, "trylock", env...)
	if got := h.line(t); got != "acquired" {
		t.Errorf("helper says %q after Unlock, want acquired", got)
	}
	h.stop(t)
}

// A holder killed with SIGKILL cannot unlock; the kernel releases its flock,
// so the next Lock succeeds, and the file then names the new holder, not the
// dead one.
func TestLockReleasedWhenHolderIsKilled(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "lock", "HELPER_DIR="+dir, "HELPER_PIPELINE=orders")
	if got := h.line(t); got != "locked" {
		t.Fatalf("helper says %q, want locked", got)
	}
	_, err := offsets.Lock(dir, "orders")
	wantLocked(t, err, "orders", h.cmd.Process.Pid)

	h.kill(t)

	mustLock(t, dir, "orders")
	_, err = offsets.Lock(dir, "orders")
	wantLocked(t, err, "orders", os.Getpid())
}
