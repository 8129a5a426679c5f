package postgres

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// spill holds the changes of one streamed, not yet committed transaction
// (pgoutput v2 streaming) in a temporary file, so that memory stays bounded
// whatever the transaction's size, and an aborted transaction or
// subtransaction emits nothing.
type spill struct {
	f       *os.File
	w       *bufio.Writer
	aborted map[uint32]bool // aborted subtransactions
	records int
}

func newSpill(dir string, xid uint32) (*spill, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("postgres: spill directory: %w", err)
		}
	}
	f, err := os.CreateTemp(dir, fmt.Sprintf("tapline-stream-%d-*.spill", xid))
	if err != nil {
		return nil, fmt.Errorf("postgres: spill file for streamed transaction %d: %w", xid, err)
	}
	return &spill{f: f, w: bufio.NewWriterSize(f, 64<<10), aborted: map[uint32]bool{}}, nil
}

// add appends one pgoutput message of subtransaction subxid.
func (s *spill) add(subxid uint32, msg []byte) error {
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(msg)))
	binary.BigEndian.PutUint32(hdr[4:], subxid)
	if _, err := s.w.Write(hdr[:]); err != nil {
		return fmt.Errorf("postgres: spill: %w", err)
	}
	if _, err := s.w.Write(msg); err != nil {
		return fmt.Errorf("postgres: spill: %w", err)
	}
	s.records++
	return nil
}

// replay calls fn for every message of the transaction, in order, leaving
// out those of aborted subtransactions.
func (s *spill) replay(fn func(msg []byte) error) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("postgres: spill: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("postgres: spill: %w", err)
	}
	r := bufio.NewReaderSize(s.f, 64<<10)
	var hdr [8]byte
	var buf []byte
	for i := 0; i < s.records; i++ {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("postgres: spill: read record %d: %w", i, err)
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > 1<<30 {
			return fmt.Errorf("postgres: spill: record %d claims %d bytes", i, n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("postgres: spill: read record %d: %w", i, err)
		}
		if s.aborted[binary.BigEndian.Uint32(hdr[4:])] {
			continue
		}
		if err := fn(buf); err != nil {
			return err
		}
	}
	return nil
}

// discard removes the file.
func (s *spill) discard() {
	s.f.Close()
	os.Remove(s.f.Name())
}
