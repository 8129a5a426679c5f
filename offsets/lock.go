package offsets

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// PipelineLock is a held pipeline lock, from Lock. Its holder is the
// pipeline's single writer: the only one that commits its position or moves
// it.
type PipelineLock struct {
	mu sync.Mutex
	f  *os.File // nil once unlocked
}

// LockedError is returned by Lock when another holder has the pipeline's
// lock: a running pipeline, in this process or another. PID and Since are
// what the holder wrote into the lock file; they are zero if it could not be
// read (the holder had only just taken the lock).
type LockedError struct {
	Pipeline string
	PID      int
	Since    time.Time
}

// Error says who holds the lock, e.g. `pipeline "orders" is running (pid
// 1234 since 2026-11-23T08:00:00Z); stop it first`.
func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("pipeline %q is running (owner unknown); stop it first", e.Pipeline)
	}
	return fmt.Sprintf("pipeline %q is running (pid %d since %s); stop it first",
		e.Pipeline, e.PID, e.Since.UTC().Format(time.RFC3339))
}

// LockPath returns the file that Lock locks for pipeline:
// <dataDir>/locks/<pipeline>.lock, with the name path-escaped (url.PathEscape)
// so that any pipeline name makes one plain file name.
func LockPath(dataDir, pipeline string) string {
	return filepath.Join(dataDir, "locks", url.PathEscape(pipeline)+".lock")
}

// Lock takes the pipeline's lock without waiting: an exclusive flock on
// LockPath(dataDir, pipeline), creating the directories and the file if
// needed, and writes the caller's pid and the time into the file. If another
// holder has the lock, in this process or another, it returns a
// *LockedError naming the holder.
//
// The operating system releases the lock when the holder's process ends, even
// by SIGKILL, so a crashed pipeline never leaves a stale lock. Lock files are
// never removed: removing one while another process waits to open it would let
// two processes hold "the" lock. The data directory must be on a local file
// system; flock over NFS is not to be relied on.
func Lock(dataDir, pipeline string) (*PipelineLock, error) {
	if pipeline == "" {
		return nil, fmt.Errorf("offsets: lock pipeline %q: %w", pipeline, errEmptyName)
	}
	path := LockPath(dataDir, pipeline)
	fail := func(err error) (*PipelineLock, error) {
		return nil, fmt.Errorf("offsets: lock pipeline %q (%s): %w", pipeline, path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fail(err)
	}
	// Every Lock opens the file anew: flock belongs to the open file
	// description, so two Locks in one process conflict as two processes do.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fail(err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, since := readOwner(f)
			return nil, &LockedError{Pipeline: pipeline, PID: pid, Since: since}
		}
		return fail(err)
	}
	owner := fmt.Appendf(nil, "pid %d since %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339Nano))
	// Write, then cut what a longer earlier owner line left behind: a reader
	// at any moment sees a whole first line, old or new.
	if _, err := f.WriteAt(owner, 0); err == nil {
		err = f.Truncate(int64(len(owner)))
	}
	if err != nil {
		f.Close() // releases the flock
		return fail(fmt.Errorf("write owner: %w", err))
	}
	return &PipelineLock{f: f}, nil
}

// Unlock releases the lock. Calling it again, or on a nil lock, does nothing
// and returns nil.
func (l *PipelineLock) Unlock() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	// Empty the file while still holding the lock, so that it never names a
	// process that no longer holds it.
	err := f.Truncate(0)
	err = errors.Join(err, flock(f, syscall.LOCK_UN), f.Close())
	if err != nil {
		return fmt.Errorf("offsets: unlock %s: %w", f.Name(), err)
	}
	return nil
}

// flock applies how to f, retrying when a signal interrupts it.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if ferr != syscall.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	if ferr != nil {
		return os.NewSyscallError("flock", ferr)
	}
	return nil
}

// readOwner reads the holder's pid and start time from a lock file. A holder
// writes them just after taking the lock, so the file can be empty for a
// moment: readOwner tries a few times over some milliseconds (polling another
// process's file; there is nothing to wait on) and returns zeros if it still
// finds no owner line.
func readOwner(f *os.File) (pid int, since time.Time) {
	buf := make([]byte, 128)
	for try := 0; try < 10; try++ {
		if try > 0 {
			time.Sleep(time.Millisecond)
		}
		n, _ := f.ReadAt(buf, 0)
		line, _, ok := bytes.Cut(buf[:n], []byte{'\n'})
		if !ok {
			continue
		}
		var ts string
		if _, err := fmt.Sscanf(string(line), "pid %d since %s", &pid, &ts); err != nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || pid <= 0 {
			continue
		}
		return pid, t
	}
	return 0, time.Time{}
}
