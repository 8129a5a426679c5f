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
