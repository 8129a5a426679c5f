package connectors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Incremental snapshot requests (`tapline snapshot PIPELINE --table T`, or
// the daemon's API) are files in the data directory, so that a request
// reaches a source running in another process and survives a restart: the
// requester writes one, the database source takes it (and keeps its own
// progress) within a second.

// SnapshotDir is the directory of a pipeline's incremental snapshot state.
func SnapshotDir(dataDir, pipeline string) string {
	return filepath.Join(dataDir, "snapshots", sanitizeFileName(pipeline))
}

func sanitizeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, s)
}

type snapshotRequest struct {
	Tables []string  `json:"tables"`
	At     time.Time `json:"at"`
}

// RequestSnapshot asks the pipeline's source to re-read tables (schema.name)
// while it streams.
func RequestSnapshot(dataDir, pipeline string, tables []string) error {
	if len(tables) == 0 {
		return errors.New("snapshot: name at least one table")
	}
	dir := filepath.Join(SnapshotDir(dataDir, pipeline), "requests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	b, err := json.Marshal(snapshotRequest{Tables: tables, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	name := strconv.FormatInt(time.Now().UnixNano(), 10)
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, name+".json"))
}

// TakeSnapshotRequests hands the tables of the pending requests, in the
// order they were made, to keep (which must make them durable on its side),
// then removes the requests; if keep fails, they stay.
func TakeSnapshotRequests(dataDir, pipeline string, keep func(tables []string) error) error {
	dir := filepath.Join(SnapshotDir(dataDir, pipeline), "requests")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	var tables, files []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var req snapshotRequest
		if err := json.Unmarshal(b, &req); err != nil {
			return fmt.Errorf("snapshot request %s: %w", p, err)
		}
		tables = append(tables, req.Tables...)
		files = append(files, p)
	}
	if len(files) == 0 {
		return nil
	}
	if err := keep(tables); err != nil {
		return err
	}
	for _, p := range files {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

// LoadSnapshotState reads a database source's incremental snapshot
// progress (state.json in SnapshotDir) into v, reporting false when there
// is none yet.
func LoadSnapshotState(dataDir, pipeline string, v any) (bool, error) {
	path := filepath.Join(SnapshotDir(dataDir, pipeline), "state.json")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("incremental snapshot state: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("incremental snapshot state %s: %w", path, err)
	}
	return true, nil
}

// SaveSnapshotState replaces the progress LoadSnapshotState reads with v,
// atomically (a temporary file renamed over it).
func SaveSnapshotState(dataDir, pipeline string, v any) error {
	dir := SnapshotDir(dataDir, pipeline)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("incremental snapshot state: %w", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("incremental snapshot state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}

// SnapshotChunk is a chunk of an incremental snapshot as a source records
// it in its SnapshotProgress: what it needs to know whether the chunk is
// durable and where the next one starts is the source's own.
type SnapshotChunk interface {
	// IsFinal reports whether the chunk is its table's last.
	IsFinal() bool
}

// SnapshotProgress is a database source's incremental snapshot progress,
// as LoadSnapshotState and SaveSnapshotState keep it: the tables
// requested, in order, each with the chunks emitted whose durability is
// not known yet, plus the last one known durable. A table is done, and
// dropped, once its final chunk is durable.
type SnapshotProgress[C SnapshotChunk] struct {
	Tables []SnapshotTable[C] `json:"tables"`
}

// SnapshotTable is a table of a SnapshotProgress and its chunks.
type SnapshotTable[C SnapshotChunk] struct {
	Table  string `json:"table"`
	Chunks []C    `json:"chunks"`
}

// Finished reports whether the table's final chunk has been emitted.
func (t *SnapshotTable[C]) Finished() bool {
	return len(t.Chunks) > 0 && t.Chunks[len(t.Chunks)-1].IsFinal()
}

// Current returns the table being read: the first whose final chunk has
// not been emitted, or nil.
func (p *SnapshotProgress[C]) Current() *SnapshotTable[C] {
	for i := range p.Tables {
		if !p.Tables[i].Finished() {
			return &p.Tables[i]
		}
	}
	return nil
}

// LastChunk returns the current table's last chunk emitted, after which
// its next chunk starts; false when it has none (it starts at the
// beginning) or no table is being read.
func (p *SnapshotProgress[C]) LastChunk() (C, bool) {
	if cur := p.Current(); cur != nil && len(cur.Chunks) > 0 {
		return cur.Chunks[len(cur.Chunks)-1], true
	}
	var none C
	return none, false
}

// Resume keeps, after a restart, the chunks durable reports as made
// durable (the others are read again), and drops the tables it leaves
// finished.
func (p *SnapshotProgress[C]) Resume(durable func(C) bool) {
	kept := p.Tables[:0]
	for _, t := range p.Tables {
		chunks := t.Chunks[:0]
		for _, c := range t.Chunks {
			if durable(c) {
				chunks = append(chunks, c)
			}
		}
		t.Chunks = chunks
		if !t.Finished() {
			kept = append(kept, t)
		}
	}
	p.Tables = kept
}

// Prune forgets what is known durable: per table, the chunks before the
// last durable one, and the tables whose final chunk is durable.
func (p *SnapshotProgress[C]) Prune(durable func(C) bool) {
	kept := p.Tables[:0]
	for _, t := range p.Tables {
		first := 0
		for i, c := range t.Chunks {
			if durable(c) {
				first = i
			}
		}
		t.Chunks = t.Chunks[first:]
		if t.Finished() && durable(t.Chunks[len(t.Chunks)-1]) {
			continue
		}
		kept = append(kept, t)
	}
	p.Tables = kept
}

// Drop removes the first table named table whose final chunk has not been
// emitted: a request that cannot be served.
func (p *SnapshotProgress[C]) Drop(table string) {
	for i := range p.Tables {
		if p.Tables[i].Table == table && !p.Tables[i].Finished() {
			p.Tables = append(p.Tables[:i], p.Tables[i+1:]...)
			return
		}
	}
}
