package offsets

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/tapline/tapline/connectors"
)

// schemaVersion is the version of the offsets table layout that this
// package writes, kept in the file's user_version pragma. OpenSQLite creates
// the schema in a new file, migrates older versions and refuses newer ones.
const schemaVersion = 1

// defaultBusyTimeout is how long a statement waits for another connection
// (another tapline process, or a second Store on the same file) to release
// the write lock before it fails with a retryable error.
const defaultBusyTimeout = 5 * time.Second

// The SQL of the schema and of each operation. updated_at is in Unix
// milliseconds.
const (
	createTableSQL = `CREATE TABLE offsets (
	pipeline   TEXT PRIMARY KEY,
	position   BLOB NOT NULL,
	updated_at INTEGER NOT NULL
)`
	commitSQL = `INSERT INTO offsets (pipeline, position, updated_at) VALUES (?, ?, ?)
ON CONFLICT (pipeline) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at`
	getSQL    = `SELECT position FROM offsets WHERE pipeline = ?`
	deleteSQL = `DELETE FROM offsets WHERE pipeline = ?`
	listSQL   = `SELECT pipeline, position, updated_at FROM offsets ORDER BY pipeline`
)

// SQLite is the default Store: one SQLite file (by default
// <data-dir>/offsets.db) holding the table
//
//	offsets(pipeline TEXT PRIMARY KEY, position BLOB NOT NULL, updated_at INTEGER NOT NULL)
//
// with updated_at in Unix milliseconds. The file is in WAL mode with
// synchronous=FULL, so a Commit is on disk (fsync'ed) when it returns, and
// readers do not wait for the writer. Several stores, in one process or in
// several (the daemon and `tapline offsets`), may open the same file; a
// write waits up to five seconds for another's, then fails with an error
// that connectors.IsRetryable reports as retryable.
//
// A SQLite store is safe for concurrent use; it uses one connection, so
// calls from several goroutines take turns.
type SQLite struct {
	path string // as the caller gave it, for errors

	mu     sync.RWMutex // held for reading by every call, for writing by Close
	closed bool
	db     *sql.DB
	commit *sql.Stmt
	get    *sql.Stmt
	del    *sql.Stmt
	list   *sql.Stmt
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens the offset store in the SQLite file at path, creating the
// file, its parent directories and the schema if they do not exist.
func OpenSQLite(path string) (*SQLite, error) {
	return openSQLite(path, defaultBusyTimeout)
}

func openSQLite(path string, busyTimeout time.Duration) (*SQLite, error) {
	s, err := openFile(path, busyTimeout)
	if err != nil {
		return nil, fmt.Errorf("offsets: open %s: %w", path, classify(err))
	}
	return s, nil
}

func openFile(path string, busyTimeout time.Duration) (_ *SQLite, err error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, err
	}
	_, statErr := os.Stat(abs)
	created := errors.Is(statErr, fs.ErrNotExist)

	// A file: URI with the path escaped, so that no character of the path
	// ('?', '#', '%') is taken for part of the query. The query parameters
	// starting with _ are go-sqlite3's, applied to every connection it
	// opens; _synchronous must be given after WAL, which would otherwise
	// lower it to NORMAL. SQLite ignores them.
	q := url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_busy_timeout": {strconv.FormatInt(busyTimeout.Milliseconds(), 10)},
		"_txlock":       {"immediate"},
	}
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	// One connection: writers in this process queue in database/sql rather
	// than sleep in SQLite's busy handler, and the prepared statements are
	// prepared once.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	ctx := context.Background()
	// Turning a new file to WAL takes an exclusive lock, and SQLite does
	// not call the busy handler for it: processes (or pipelines) opening
	// the same new file at once get "database is locked". Try again until
	// the busy timeout has passed.
	deadline := time.Now().Add(busyTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err = checkPragmas(ctx, db)
		var se sqlite3.Error
		if err == nil || !errors.As(err, &se) || se.Code != sqlite3.ErrBusy && se.Code != sqlite3.ErrLocked || time.Now().After(deadline) {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, db); err != nil {
		return nil, err
	}
	if created {
		// Make the new file's directory entry durable too; SQLite syncs the
		// directory of its journal files, not of the database.
		if err := syncDir(filepath.Dir(abs)); err != nil {
			return nil, err
		}
	}

	s := &SQLite{path: path, db: db}
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{{&s.commit, commitSQL}, {&s.get, getSQL}, {&s.del, deleteSQL}, {&s.list, listSQL}} {
		if *p.stmt, err = db.PrepareContext(ctx, p.sql); err != nil {
			return nil, fmt.Errorf("prepare %q: %w", p.sql, err)
		}
	}
	return s, nil
}

// checkPragmas makes sure that the settings that the durability and
// concurrency guarantees rest on are in force.
func checkPragmas(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, not wal (does the file system support shared memory?)", mode)
	}
	var syncMode int
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return fmt.Errorf("read synchronous: %w", err)
	}
	if syncMode != 2 {
		return fmt.Errorf("synchronous is %d, not 2 (FULL)", syncMode)
	}
	return nil
}

// migrate brings the schema to schemaVersion, under the write lock so that
// two processes opening a new file do not both create it.
func migrate(ctx context.Context, db *sql.DB) error {
	v, err := userVersion(ctx, db)
	if err != nil {
		return err
	}
	if v == schemaVersion {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: takes the write lock
	if err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	defer tx.Rollback()
	if v, err = userVersion(ctx, tx); err != nil {
		return err
	}
	switch {
	case v == schemaVersion:
		return nil // another process got there first
	case v > schemaVersion:
		return fmt.Errorf("schema version %d is newer than this tapline's (%d); use a newer tapline", v, schemaVersion)
	case v == 0:
		if _, err := tx.ExecContext(ctx, createTableSQL); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	// Later versions add their steps here, each from the one before.
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(schemaVersion)); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	return nil
}

func userVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Get implements Store.
func (s *SQLite) Get(ctx context.Context, pipeline string) (connectors.Position, error) {
	var b []byte
	err := s.do(ctx, "get", pipeline, func() error {
		err := s.get.QueryRowContext(ctx, pipeline).Scan(&b)
		if errors.Is(err, sql.ErrNoRows) {
			b = nil
			return nil
		}
		if err == nil && b == nil {
			b = []byte{} // an empty position, not "none"
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Commit implements Store. It is an upsert through a prepared statement; in
// WAL mode with synchronous=FULL it costs one fsync of the WAL file.
func (s *SQLite) Commit(ctx context.Context, pipeline string, pos connectors.Position) error {
	if pos == nil {
		return opError("commit", pipeline, s.path, errNilPosition)
	}
	return s.do(ctx, "commit", pipeline, func() error {
		_, err := s.commit.ExecContext(ctx, pipeline, []byte(pos), now().UnixMilli())
		return err
	})
}

// Delete implements Store.
func (s *SQLite) Delete(ctx context.Context, pipeline string) error {
	return s.do(ctx, "delete", pipeline, func() error {
		_, err := s.del.ExecContext(ctx, pipeline)
		return err
	})
}

// List implements Store.
func (s *SQLite) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	err := s.do(ctx, "list", "", func() error {
		rows, err := s.list.QueryContext(ctx)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e Entry
			var pos []byte
			var ms int64
			if err := rows.Scan(&e.Pipeline, &pos, &ms); err != nil {
				return err
			}
			if pos == nil {
				pos = []byte{}
			}
			e.Position = pos
			e.Updated = time.UnixMilli(ms).UTC()
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Close implements Store. It waits for calls in progress to finish.
func (s *SQLite) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, st := range []*sql.Stmt{s.commit, s.get, s.del, s.list} {
		errs = append(errs, st.Close())
	}
	errs = append(errs, s.db.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("offsets: close %s: %w", s.path, err)
	}
	return nil
}

// do runs f unless the call is invalid or the store closed, and wraps its
// error; pipeline is "" for List.
func (s *SQLite) do(ctx context.Context, op, pipeline string, f func() error) error {
	err := ctx.Err()
	if op != "list" {
		err = checkCall(ctx, pipeline)
	}
	if err == nil {
		s.mu.RLock()
		if s.closed {
			err = ErrClosed
		} else {
			err = f()
		}
		s.mu.RUnlock()
	}
	if err != nil {
		return opError(op, pipeline, s.path, classify(err))
	}
	return nil
}

// classify marks the errors that trying again may cure: the file was locked
// by another connection for longer than the busy timeout.
func classify(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked) {
		return connectors.Retryable(err)
	}
	return err
}
