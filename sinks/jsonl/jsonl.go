// Package jsonl is the "jsonl" sink: it appends each event as one line of
// event JSON (package eventjson) to a file or stdout.
//
// WriteBatch returns only once the batch is written and, for a file with
// fsync on (the default), fsync'ed. The file is opened in append mode and
// never truncated, except that a torn last line left by a crash in the
// middle of a write (never acknowledged) is cut off when the sink opens.
// A batch replayed after a crash is appended again: the file holds every
// event at least once, and a reader folding it by key gets the same rows.
package jsonl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
)

func init() {
	connectors.RegisterSink("jsonl", "append events as JSON lines to a file or stdout", DefaultConfig,
		func(cfg Config, rt connectors.Runtime) (connectors.Sink, error) { return New(cfg, rt) })
}

// Config is the jsonl sink's configuration.
type Config struct {
	Path       string `yaml:"path" doc:"file to append events to, one JSON line each (parent directories are created); - for stdout"`
	Fsync      bool   `yaml:"fsync" doc:"fsync the file before a batch counts as written (not for stdout)"`
	OmitSchema bool   `yaml:"omit_schema" doc:"leave the schema block out of each event (readers then infer column types)"`
}

// DefaultConfig returns the defaults: stdout, fsync on for files, schema
// blocks included.
func DefaultConfig() Config { return Config{Path: "-", Fsync: true} }

// Validate checks the path.
func (c Config) Validate() error {
	if c.Path == "" {
		return errors.New("path: give a file, or - for stdout")
	}
	return nil
}

// maxKeptBuffer is the largest encoding buffer kept between batches.
const maxKeptBuffer = 8 << 20

// Sink is the jsonl sink. Build it with New.
type Sink struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	stdout io.Writer // os.Stdout; tests replace it
	f      *os.File  // nil for stdout
	size   int64     // the file's size after the last whole batch
	enc    eventjson.Encoder
	buf    []byte
	opened bool
	closed bool
}

// New builds a jsonl sink.
func New(cfg Config, rt connectors.Runtime) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jsonl: %w", err)
	}
	s := &Sink{cfg: cfg, log: rt.Log(), stdout: os.Stdout}
	s.enc.Options.OmitSchema = cfg.OmitSchema
	return s, nil
}

// Open opens the file for appending, creating it and its directory if
// needed, and cuts off a torn last line.
func (s *Sink) Open(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return connectors.ErrClosed
	}
	if s.opened {
		return nil
	}
	if s.cfg.Path == "-" {
		s.opened = true
		return nil
	}
	if dir := filepath.Dir(s.cfg.Path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("jsonl: %w", err)
		}
	}
	f, err := os.OpenFile(s.cfg.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("jsonl: %w", err)
	}
	size, err := repairTail(f, s.log)
	if err != nil {
		f.Close()
		return fmt.Errorf("jsonl: %s: %w", s.cfg.Path, err)
	}
	s.f, s.size, s.opened = f, size, true
	return nil
}

// repairTail makes the file end with a whole line. A last line without its
// newline is a write a crash cut short, which was never acknowledged: it is
// cut off, unless it is a whole JSON value (a file written by something
// else), which gets its newline. It returns the file's size after.
func repairTail(f *os.File, log *slog.Logger) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if size == 0 || !fi.Mode().IsRegular() {
		return size, nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return 0, err
	}
	if last[0] == '\n' {
		return size, nil
	}
	// Find the start of the last line.
	start := int64(0)
	chunk := make([]byte, 64<<10)
	for end := size; end > 0; {
		n := min(int64(len(chunk)), end)
		if _, err := f.ReadAt(chunk[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk[:n], '\n'); i >= 0 {
			start = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	tail := size - start
	if tail <= 64<<20 {
		b := make([]byte, tail)
		if _, err := f.ReadAt(b, start); err != nil {
			return 0, err
		}
		if json.Valid(b) {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				return 0, err
			}
			return size + 1, f.Sync()
		}
	}
	log.Warn("jsonl: cutting off a torn last line (a write interrupted by a crash, never acknowledged)",
		"path", f.Name(), "bytes", tail, "offset", start)
	if err := f.Truncate(start); err != nil {
		return 0, fmt.Errorf("cut off the torn last line: %w", err)
	}
	return start, f.Sync()
}

// WriteBatch appends the batch's events, one line each, and returns once
// they are written and, for a file with fsync on, on disk. Events that
// cannot be encoded (a value of a type event JSON does not know) make a
// *connectors.RejectError, and nothing of the batch is written.
func (s *Sink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return connectors.ErrClosed
	case !s.opened:
		return errors.New("jsonl: WriteBatch before Open")
	case len(b.Events) == 0:
		return nil
	}
	buf := s.buf[:0]
	var rejected []connectors.EventError
	for i := range b.Events {
		start := len(buf)
		var err error
		if buf, err = s.enc.AppendEvent(buf, &b.Events[i]); err != nil {
			buf = buf[:start]
			rejected = append(rejected, connectors.EventError{Index: i, Err: err})
			continue
		}
		buf = append(buf, '\n')
	}
	if cap(buf) <= maxKeptBuffer {
		s.buf = buf
	} else {
		s.buf = nil
	}
	if rejected != nil {
		return &connectors.RejectError{Events: rejected}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.f == nil {
		if _, err := s.stdout.Write(buf); err != nil {
			return fmt.Errorf("jsonl: write to stdout: %w", err)
		}
		return nil
	}
	if _, err := s.f.Write(buf); err != nil {
		// Take back a partial write, so that a retry does not follow a
		// torn line.
		if terr := s.f.Truncate(s.size); terr != nil {
			s.log.Warn("jsonl: could not cut off a partial write; the file ends with a torn line until the sink reopens",
				"path", s.cfg.Path, "error", terr)
		}
		return fmt.Errorf("jsonl: write %s: %w", s.cfg.Path, err)
	}
	if s.cfg.Fsync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("jsonl: fsync %s: %w", s.cfg.Path, err)
		}
	}
	s.size += int64(len(buf))
	return nil
}

// Close closes the file. A second Close, or one without Open, returns nil.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.buf = nil
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("jsonl: close %s: %w", s.cfg.Path, err)
	}
	return nil
}
