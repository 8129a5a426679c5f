// Package jsonl is the "jsonl" source: it reads events as JSON lines
// (package eventjson), from a file or stdin, until the end of the input.
//
// A position is the line number: connectors.TxPosition{Commit: line,
// Ordinal: 1}. Opening after a position reads the file again from the start
// and skips the lines up to it; stdin cannot be read again, so it cannot
// resume. Blank lines are skipped (they still count as lines).
package jsonl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
)

func init() {
	connectors.RegisterSource("jsonl", "read events from JSON lines in a file or stdin", DefaultConfig,
		func(cfg Config, rt connectors.Runtime) (connectors.Source, error) { return New(cfg, rt) },
		connectors.WithPositions(connectors.TxPositionFormat))
}

// Config is the jsonl source's configuration.
type Config struct {
	Path         string `yaml:"path" doc:"file to read events from, one JSON line each; - for stdin"`
	MaxLineBytes int    `yaml:"max_line_bytes" doc:"longest line accepted, in bytes; a longer one stops the source with an error"`
}

// DefaultConfig returns the defaults: stdin, lines up to 16 MiB.
func DefaultConfig() Config { return Config{Path: "-", MaxLineBytes: 16 << 20} }

// Validate checks the path and the line bound.
func (c Config) Validate() error {
	if c.Path == "" {
		return errors.New("path: give a file, or - for stdin")
	}
	if c.MaxLineBytes <= 0 {
		return fmt.Errorf("max_line_bytes: %d is not a size", c.MaxLineBytes)
	}
	return nil
}

// chunk is a run of lines handed from the reading goroutine to ReadBatch.
type chunk struct {
	buf   []byte
	lines []line
	err   error // what ended the input after these lines: io.EOF, or a read error
}

// line is one line of a chunk: buf[start:end], line number num.
type line struct {
	start, end int
	num        uint64
}

const (
	chunkBytes = 1 << 20 // a chunk is sent when it holds this much
	chunkLines = 4096    // or this many lines
	readBuffer = 64 << 10
)

// Source is the jsonl source. Build it with New.
//
// A goroutine reads lines ahead, one chunk of about 1 MiB while ReadBatch
// decodes another (chunks read to the end are reused, at most four exist,
// plus one long line), so that ReadBatch can return at MaxWait or when its
// context is done even while a read of stdin blocks.
type Source struct {
	cfg   Config
	log   *slog.Logger
	name  string    // the path, or "stdin", for errors
	stdin io.Reader // os.Stdin; tests replace it

	chunks  chan chunk
	free    chan chunk // chunks read to the end, for the reader to fill again
	stop    chan struct{}
	done    chan struct{} // closed when the reading goroutine ends
	reading atomic.Bool   // the goroutine is inside a Read

	// Owned by the goroutine calling ReadBatch.
	opened  bool
	dec     *eventjson.Decoder
	cur     chunk
	next    int   // next line of cur
	pending error // returned by the next ReadBatch, after the events before it
	eof     bool

	closeOnce sync.Once
	closed    atomic.Bool
	mu        sync.Mutex
	acked     connectors.Position
}

// New builds a jsonl source.
func New(cfg Config, rt connectors.Runtime) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jsonl: %w", err)
	}
	name := cfg.Path
	if name == "-" {
		name = "stdin"
	}
	return &Source{
		cfg: cfg, log: rt.Log(), name: name, stdin: os.Stdin, dec: eventjson.NewDecoder(),
		chunks: make(chan chunk), free: make(chan chunk, 2), stop: make(chan struct{}), done: make(chan struct{}),
	}, nil
}

// Open opens the input and starts reading after line pos (nil: from the
// first line). Stdin can only be read from its start.
func (s *Source) Open(_ context.Context, pos connectors.Position) error {
	if s.closed.Load() {
		return connectors.ErrClosed
	}
	if s.opened {
		return errors.New("jsonl: Open called twice")
	}
	var skip uint64 // lines to skip
	if pos != nil {
		tp, err := connectors.DecodeTxPosition(pos)
		if err != nil {
			return fmt.Errorf("jsonl: resume %s: %w", s.name, err)
		}
		skip = tp.Commit
		if tp.Ordinal == 0 && skip > 0 {
			skip-- // before line Commit
		}
		if s.cfg.Path == "-" && skip > 0 {
			return fmt.Errorf("jsonl: cannot resume stdin after line %d: stdin cannot be read again; read from a file to resume, or reset the pipeline's offset (tapline offsets delete)", skip)
		}
	}
	var r io.Reader = s.stdin
	var f *os.File
	if s.cfg.Path != "-" {
		var err error
		if f, err = os.Open(s.cfg.Path); err != nil {
			return fmt.Errorf("jsonl: %w", err)
		}
		r = f
	}
	s.opened = true
	go s.read(&stoppableReader{r: r, stop: s.stop, reading: &s.reading}, f, skip)
	return nil
}

// stoppableReader refuses to start a read once stop is closed, and tells
// whether a read is under way.
type stoppableReader struct {
	r       io.Reader
	stop    <-chan struct{}
	reading *atomic.Bool
}

var errStopped = errors.New("stopped")

// Read reads from the underlying reader, unless stop is closed.
func (sr *stoppableReader) Read(p []byte) (int, error) {
	sr.reading.Store(true)
	defer sr.reading.Store(false)
	select {
	case <-sr.stop:
		return 0, errStopped
	default:
	}
	return sr.r.Read(p)
}

// read is the reading goroutine: it reads lines after the first skip ones
// and sends them in chunks, the last of which carries what ended the input.
func (s *Source) read(r io.Reader, f *os.File, skip uint64) {
	defer close(s.done)
	if f != nil {
		defer f.Close()
	}
	br := bufio.NewReaderSize(r, readBuffer)
	newChunk := func() chunk {
		select {
		case c := <-s.free:
			return chunk{buf: c.buf[:0], lines: c.lines[:0]}
		default:
			return chunk{buf: make([]byte, 0, chunkBytes+readBuffer)}
		}
	}
	var (
		num  uint64
		long []byte // a line longer than the reader's buffer, being assembled
		ch   = newChunk()
	)
	send := func() bool {
		select {
		case s.chunks <- ch:
			ch = newChunk()
			return true
		case <-s.stop:
			return false
		}
	}
	for {
		data, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull || long != nil {
			long = append(long, data...)
			data = long
		}
		if len(data) > s.cfg.MaxLineBytes+2 && len(bytes.TrimRight(data, "\r\n")) > s.cfg.MaxLineBytes {
			ch.err = fmt.Errorf("line %d is longer than max_line_bytes (%d)", num+1, s.cfg.MaxLineBytes)
			send()
			return
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if len(data) > 0 {
			num++
			if num > skip && len(bytes.TrimSpace(data)) > 0 {
				ch.lines = append(ch.lines, line{start: len(ch.buf), end: len(ch.buf) + len(data), num: num})
				ch.buf = append(ch.buf, data...)
			}
			long = nil
		}
		if err != nil {
			if errors.Is(err, errStopped) {
				return
			}
			if err != io.EOF {
				err = fmt.Errorf("read after line %d: %w", num, err)
			}
			ch.err = err
			send()
			return
		}
		if len(ch.buf) >= chunkBytes || len(ch.lines) >= chunkLines || (len(ch.lines) > 0 && br.Buffered() == 0) {
			if !send() {
				return
			}
		}
	}
}

// ReadBatch decodes the next lines into events, within lim. It returns
// io.EOF after the last line. A malformed line ends the source with an
// error naming the file and line, after the events before it.
func (s *Source) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	var b connectors.Batch
	switch {
	case s.closed.Load():
		return b, connectors.ErrClosed
	case !s.opened:
		return b, errors.New("jsonl: ReadBatch before Open")
	case s.pending != nil:
		return b, s.pending
	case s.eof:
		return b, io.EOF
	}
	if err := ctx.Err(); err != nil {
		return b, err
	}
	if lim.MaxEvents <= 0 && lim.MaxBytes <= 0 {
		lim.MaxEvents = 1000
	}
	if n := len(s.cur.lines) - s.next; n > 0 && lim.MaxEvents > 0 {
		b.Events = make([]connectors.Event, 0, min(n, lim.MaxEvents))
	}
	size := 0
	var timer *time.Timer
	var expired <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for !lim.Full(len(b.Events), size) {
		if s.next >= len(s.cur.lines) {
			if s.cur.err != nil {
				if s.cur.err == io.EOF {
					s.eof = true
				} else {
					s.pending = fmt.Errorf("jsonl: %s: %w", s.name, s.cur.err)
				}
				break
			}
			s.release()
			if len(b.Events) > 0 && lim.MaxWait <= 0 {
				select {
				case s.cur = <-s.chunks:
					s.next = 0
					continue
				default:
					goto done
				}
			}
			select {
			case s.cur = <-s.chunks:
				s.next = 0
				continue
			case <-expired:
				goto done
			case <-ctx.Done():
				if len(b.Events) > 0 {
					goto done
				}
				return b, ctx.Err()
			}
		}
		ln := s.cur.lines[s.next]
		s.next++
		ev, err := s.dec.Decode(s.cur.buf[ln.start:ln.end])
		if err != nil {
			s.pending = fmt.Errorf("jsonl: %s:%d: %w", s.name, ln.num, err)
			break
		}
		ev.Position = connectors.TxPosition{Commit: ln.num, Ordinal: 1}.Encode()
		if len(b.Events) == 0 && lim.MaxWait > 0 {
			timer = time.NewTimer(lim.MaxWait)
			expired = timer.C
		}
		b.Events = append(b.Events, ev)
		size += ev.Size()
	}
done:
	if s.next >= len(s.cur.lines) {
		s.release()
	}
	if n := len(b.Events); n > 0 {
		b.Last = b.Events[n-1].Position
		return b, nil
	}
	if s.pending != nil {
		return b, s.pending
	}
	if s.eof {
		return b, io.EOF
	}
	return b, nil
}

// release hands the current chunk, read to its end, back to the reading
// goroutine for reuse (the events do not refer to it), unless a long line
// made it big.
func (s *Source) release() {
	if s.cur.buf != nil && cap(s.cur.buf) <= 2*(chunkBytes+readBuffer) {
		select {
		case s.free <- s.cur:
		default:
		}
	}
	s.cur = chunk{err: s.cur.err}
	s.next = 0
}

// Ack records pos as the last acknowledged position; a file is not changed.
func (s *Source) Ack(_ context.Context, pos connectors.Position) error {
	s.mu.Lock()
	s.acked = pos
	s.mu.Unlock()
	return nil
}

// Acked returns the last position given to Ack, or nil.
func (s *Source) Acked() connectors.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

// Close stops the reading goroutine and closes the file. A read of stdin
// under way cannot be interrupted: Close then returns without waiting, and
// the goroutine ends when that read returns (at the latest when the
// process exits). A second Close returns nil.
func (s *Source) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
	})
	if !s.opened {
		return nil
	}
	if s.cfg.Path == "-" && s.reading.Load() {
		return nil
	}
	select {
	case <-s.done:
	case <-ctx.Done():
	}
	return nil
}
