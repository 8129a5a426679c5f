package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/mysqlconv"
)

func init() {
	connectors.RegisterSource("mysql", "MySQL/MariaDB binlog (go-mysql replication): one event per committed row change",
		DefaultConfig, func(cfg Config, rt connectors.Runtime) (connectors.Source, error) { return New(cfg, rt) },
		connectors.WithPositions(PositionFormat))
}

const (
	flavorMariaDB = "mariadb"
	flavorMySQL   = "mysql"
)

// Source reads a MySQL or MariaDB server's binlog as a replica. One
// goroutine (the receiver) owns the replication connection: go-mysql's
// goroutine reads and parses binlog events, decoding rows straight into
// tapline values; the receiver turns them into events on a bounded channel
// that ReadBatch drains, so a slow sink holds back the binlog reader and
// memory stays bounded whatever the size of a transaction. When the
// connection drops, the receiver reconnects after the last event it
// handed over, checking first that the server is the one the position
// belongs to.
type Source struct {
	cfg      Config
	rt       connectors.Runtime
	log      *slog.Logger
	dsn      *dsn
	serverID uint32
	opts     mysqlconv.Options

	db       *sql.DB
	flavor   string
	server   serverInfo
	charsets *mysqlconv.Charsets
	filter   *tableFilter
	kind     byte // the position kind of this run
	metrics  *metrics

	out    chan []item
	cancel context.CancelFunc
	done   chan struct{} // closed when the receiver has stopped
	err    error         // why the receiver stopped; read after done

	buf    []item // a chunk being read
	bufIdx int    // the first item of buf not returned yet

	acked           atomic.Pointer[posKey] // the last stream position acknowledged
	testIncremental func(*incremental)     // tests: adjust the incremental snapshot machinery
	testHistory     bool                   // tests: use the schema history although the server writes FULL metadata
	testMinimal     bool                   // tests: also drop what binlog_row_metadata=MINIMAL lacks from TABLE_MAPs (names, enum/set values, key)
	useHistory      bool                   // the server writes binlog_row_metadata=MINIMAL (or testHistory): keep a schema history

	closeOnce sync.Once
	closeErr  error
}

// item is one thing the receiver hands to ReadBatch: an event, or a
// position to advance to (the end of a transaction).
type item struct {
	ev    connectors.Event
	isEv  bool
	last  connectors.Position
	bytes int
}

// New builds a MySQL source; it connects in Open.
func New(cfg Config, rt connectors.Runtime) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d, err := parseDSN(cfg.DSN.Reveal())
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	s := &Source{cfg: cfg, rt: rt, log: rt.Log(), dsn: d, serverID: cfg.ServerID, filter: newTableFilter(cfg.Tables)}
	sig := cfg.signalTable()
	s.filter.signal = sig.Schema + "\x00" + sig.Name
	if s.serverID == 0 {
		s.serverID = defaultServerID(rt.Pipeline)
	}
	if cfg.ZeroDates == "null" {
		s.opts.ZeroDates = mysqlconv.ZeroDatesNull
	}
	return s, nil
}

// connectDB opens the pool for queries (catalog, checks, snapshot).
func (s *Source) connectDB(ctx context.Context) error {
	conn, err := driver.NewConnector(s.dsn.cfg)
	if err != nil {
		return fmt.Errorf("mysql: dsn: %s", connectors.RedactDSN(err.Error()))
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return classify(fmt.Errorf("mysql: connect to %s: %s", s.dsn.cfg.Addr, connectors.RedactDSN(err.Error())), "", 0, "")
	}
	s.db = db
	return nil
}

// Open connects, checks the server's settings and the user's privileges,
// and starts streaming after pos: from a stored binlog position (after
// checking that the server still has it and is the one it belongs to),
// from an interrupted snapshot, or, with no position, from a new consistent
// snapshot, the configured start_position, or the server's current position.
func (s *Source) Open(ctx context.Context, pos connectors.Position) error {
	var stored *streamPos
	var resume *snapPos
	switch {
	case pos == nil:
	case isSnapPos(pos):
		sp, err := decodeSnapPos(pos)
		if err != nil {
			return fmt.Errorf("mysql: stored position: %w", err)
		}
		resume = &sp
	default:
		sp, err := decodeStreamPos(pos)
		if err != nil {
			return fmt.Errorf("mysql: stored position %s is not a MySQL position: %w", pos, err)
		}
		stored = &sp
	}
	if err := s.connectDB(ctx); err != nil {
		return err
	}
	info, err := s.checkServer(ctx)
	if err != nil {
		return err
	}
	s.server, s.flavor = info, info.flavor
	s.useHistory = s.testHistory || s.testMinimal || !strings.EqualFold(info.vars["binlog_row_metadata"], "FULL")
	if s.useHistory && s.rt.DataDir == "" {
		return fmt.Errorf("mysql: the server writes binlog_row_metadata=%s: the source keeps a schema history, which needs a data directory (run under the daemon, or set binlog_row_metadata=FULL)", info.vars["binlog_row_metadata"])
	}
	if err := s.checkPrivileges(ctx); err != nil {
		return err
	}
	if s.charsets, err = loadCharsets(ctx, s.db); err != nil {
		return err
	}
	tables, err := s.resolveTables(ctx)
	if err != nil {
		return err
	}
	switch {
	case stored != nil:
		s.kind = stored.kind
	case resume != nil:
		s.kind = resume.Start.kind
	default:
		if s.kind, err = s.positionKind(); err != nil {
			return err
		}
	}
	s.metrics = registerMetrics(s.rt.Metrics, s.rt.Pipeline)

	needSnap := s.cfg.Snapshot != "never" && (pos == nil || resume != nil)
	var start streamPos
	var snap *snapshot
	switch {
	case stored != nil:
		start = *stored
	case needSnap:
		if snap, err = s.beginSnapshot(ctx, tables, resume); err != nil {
			return err
		}
		start = snap.start
	case s.cfg.StartPosition != "":
		if start, err = parseStreamPos(s.cfg.StartPosition); err != nil {
			return fmt.Errorf("mysql: start_position: %w", err)
		}
		s.kind = start.kind
	default:
		if start, err = s.currentPosition(ctx); err != nil {
			return err
		}
	}
	if snap == nil {
		if err := s.checkPosition(ctx, &start); err != nil {
			return err
		}
	}
	r := newReceiver(s, start)
	if s.useHistory {
		var at *posKey
		switch {
		case stored != nil:
			k := keyOf(*stored)
			at = &k
		case resume != nil:
			k := keyOf(resume.Start)
			at = &k
		}
		h, err := loadHistory(historyFile(s.rt.DataDir, s.rt.Pipeline), at)
		if err != nil {
			return err
		}
		added, err := s.seedHistory(ctx, h, tables)
		if err != nil {
			return err
		}
		if added && at != nil {
			s.log.Warn("schema history: tables without history at the stored position take today's columns from information_schema", "position", start.String())
		}
		if added || len(h.entries) == 0 {
			if err := h.record(keyOf(start), "", nil); err != nil {
				return err
			}
		}
		r.hist, r.cache.hist, r.dec.history = h, h, true
	}
	if stored != nil {
		k := keyOf(*stored)
		s.acked.Store(&k)
	}
	if s.rt.DataDir != "" {
		// Incremental snapshots (tapline snapshot) need a place for their
		// requests and progress.
		if r.incr, err = s.newIncremental(stored); err != nil {
			return err
		}
		if s.testIncremental != nil {
			s.testIncremental(r.incr)
		}
	}
	if snap == nil {
		if err := r.connect(ctx); err != nil {
			return err
		}
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.out = make(chan []item, 64)
	s.done = make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		err := func() error {
			if snap != nil {
				if err := snap.run(rctx, r); err != nil {
					return err
				}
				if s.cfg.Snapshot == "initial_only" {
					return io.EOF
				}
				if err := s.checkPosition(rctx, &start); err != nil {
					return err
				}
				if err := r.connect(rctx); err != nil {
					return err
				}
			} else if pos == nil {
				// Store where the stream starts, so that a restart before
				// the first change does not start from "now" again.
				if err := r.emit(rctx, item{last: start.encode()}); err != nil {
					return err
				}
			}
			return r.run(rctx)
		}()
		r.close()
		if rctx.Err() == nil {
			s.err = err
		}
		cancel()
	})
	wg.Go(func() { s.watchLag(rctx) })
	go func() {
		wg.Wait()
		close(s.done)
	}()
	s.log.Info("streaming", "tables", len(tables), "after", start.String(), "server_id", s.serverID, "flavor", s.flavor, "snapshot", snap != nil)
	return nil
}

// positionKind decides how this run's positions are kept.
func (s *Source) positionKind() (byte, error) {
	mode := s.cfg.PositionMode
	switch {
	case s.flavor == flavorMariaDB && mode != "file":
		return kindMaria, nil
	case s.flavor == flavorMySQL && mode != "file" && s.server.gtidMode:
		return kindMySQL, nil
	case mode == "gtid":
		return 0, &SettingError{Setting: "gtid_mode", Value: s.server.vars["gtid_mode"], Want: "ON for position_mode: gtid",
			Fix: "enable GTIDs (gtid_mode=ON, enforce_gtid_consistency=ON), or set position_mode to auto or file"}
	}
	return kindFile, nil
}

// ReadBatch returns the next changes, within lim.
func (s *Source) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	var b connectors.Batch
	if s.out == nil {
		return b, errors.New("mysql: ReadBatch before Open")
	}
	if err := ctx.Err(); err != nil {
		// Cancelled: stop, whatever is buffered (it stays for the next
		// call). A select below could otherwise pick a ready item over
		// ctx.Done, at random.
		return b, err
	}
	n := lim.MaxEvents
	if n <= 0 || n > 256 {
		n = 256
	}
	b.Events = make([]connectors.Event, 0, n)
	size := 0
	// take moves items from the current chunk into the batch; it reports
	// whether the batch is full.
	take := func() bool {
		for s.bufIdx < len(s.buf) {
			it := &s.buf[s.bufIdx]
			if it.isEv {
				if len(b.Events) > 0 && lim.Full(len(b.Events)+1, size+it.bytes) {
					return true
				}
				b.Events = append(b.Events, it.ev)
				size += it.bytes
				b.Last = it.ev.Position
			} else {
				b.Last = it.last
			}
			s.bufIdx++
			if lim.Full(len(b.Events), size) {
				return true
			}
		}
		s.buf, s.bufIdx = nil, 0
		return false
	}
	if take() {
		return b, nil
	}
	if b.Last == nil {
		select {
		case c := <-s.out:
			s.buf = c
			if take() {
				return b, nil
			}
		case <-s.done:
			if s.drain(take) || b.Last != nil {
				return b, nil
			}
			return b, s.stopped()
		case <-ctx.Done():
			return b, ctx.Err()
		}
	}
	var timer <-chan time.Time
	if lim.MaxWait > 0 {
		t := time.NewTimer(lim.MaxWait)
		defer t.Stop()
		timer = t.C
	}
	for {
		select {
		case c := <-s.out:
			s.buf = c
			if take() {
				return b, nil
			}
		case <-timer:
			return b, nil
		case <-s.done:
			s.drain(take)
			return b, nil // the error comes with the next call
		case <-ctx.Done():
			return b, nil
		}
	}
}

// drain takes what the stopped receiver left in the channel; it reports
// whether the batch filled up.
func (s *Source) drain(take func() bool) (full bool) {
	for {
		select {
		case c := <-s.out:
			s.buf = c
			if take() {
				return true
			}
		default:
			return false
		}
	}
}

func (s *Source) stopped() error {
	if s.err != nil {
		return s.err
	}
	return connectors.ErrClosed
}

// Ack records that everything up to pos is durable. A binlog reader has
// nothing to release upstream (the server keeps binlogs by its own
// expiry settings); the position tells incremental snapshots which chunks
// are durable.
func (s *Source) Ack(ctx context.Context, pos connectors.Position) error {
	if isSnapPos(pos) {
		return nil
	}
	sp, err := decodeStreamPos(pos)
	if err != nil {
		return fmt.Errorf("mysql: ack: %w", err)
	}
	k := keyOf(sp)
	for {
		cur := s.acked.Load()
		if cur != nil && cur.Kind == k.Kind && k.atOrBefore(*cur) {
			return nil
		}
		if s.acked.CompareAndSwap(cur, &k) {
			return nil
		}
	}
}

// Close stops streaming and closes the connections.
func (s *Source) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
			<-s.done
		}
		if s.db != nil {
			s.closeErr = s.db.Close()
		}
	})
	return s.closeErr
}
