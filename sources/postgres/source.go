package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tapline/tapline/connectors"
)

func init() {
	connectors.RegisterSource("postgres", "Postgres logical replication (pgoutput): one event per committed row change",
		DefaultConfig, func(cfg Config, rt connectors.Runtime) (connectors.Source, error) { return New(cfg, rt) },
		connectors.WithPositions(PositionFormat))
}

// Source reads a Postgres database's changes through a logical replication
// slot. One goroutine owns the replication connection: it decodes messages
// into a bounded channel that ReadBatch drains, and sends standby status
// updates (with the acknowledged position, never more) on a timer and when
// the server asks, also while the channel is full, so a slow sink does not
// make the server drop the connection.
type Source struct {
	cfg  Config
	rt   connectors.Runtime
	log  *slog.Logger
	slot string
	pub  string
	db   string

	pool  *pgxpool.Pool
	rconn *pgconn.PgConn

	out    chan item
	acked  atomic.Uint64 // LSN confirmed as flushed
	cancel context.CancelFunc
	done   chan struct{} // closed when the receiver and heartbeat goroutines are gone
	err    error         // why the receiver stopped; read after done

	pending *item // an item read but not yet returned (it did not fit the batch)

	streamed, streamAborted atomic.Int64       // streamed transactions committed and aborted
	testIncremental         func(*incremental) // tests: adjust the incremental snapshot machinery
	types                   types
	closeOnce               sync.Once
	closeErr                error
}

// item is one decoded thing the receiver hands to ReadBatch: an event, or a
// position to advance to (a commit, a heartbeat).
type item struct {
	ev    connectors.Event
	isEv  bool
	last  connectors.Position
	bytes int
}

// New builds a Postgres source; it connects in Open.
func New(cfg Config, rt connectors.Runtime) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, rt: rt, log: rt.Log(), slot: cfg.Slot, pub: cfg.Publication}
	if s.slot == "" {
		s.slot = defaultName(rt.Pipeline)
	}
	if s.pub == "" {
		s.pub = defaultName(rt.Pipeline)
	}
	return s, nil
}

// Open connects, checks the server, makes sure the publication and the slot
// exist, and starts streaming after pos.
func (s *Source) Open(ctx context.Context, pos connectors.Position) error {
	var stored connectors.TxPosition
	var resume *snapPos
	switch {
	case pos == nil:
	case isSnapPos(pos):
		sp, err := decodeSnapPos(pos)
		if err != nil {
			return fmt.Errorf("postgres: stored position: %w", err)
		}
		resume = &sp
	default:
		tp, err := connectors.DecodeTxPosition(pos)
		if err != nil {
			return fmt.Errorf("postgres: stored position %s is not a Postgres position: %w", pos, err)
		}
		stored = tp
	}
	needSnap := s.cfg.Snapshot != "never" && (pos == nil || resume != nil)
	pool, err := pxpool(ctx, s.cfg.DSN.Reveal())
	if err != nil {
		return err
	}
	s.pool = pool
	if err := checkServer(ctx, pool); err != nil {
		return err
	}
	tables, err := resolveTables(ctx, pool, s.cfg.Tables)
	if err != nil {
		return err
	}
	if err := ensurePublication(ctx, pool, s.pub, tables, s.cfg.CreatePublication); err != nil {
		return err
	}
	if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&s.db); err != nil {
		return fmt.Errorf("postgres: current_database(): %w", err)
	}
	st, err := s.waitSlotInactive(ctx)
	if err != nil {
		return err
	}
	rcfg, err := replicationConfig(s.cfg.DSN.Reveal(), s.cfg.DecodingWorkMem)
	if err != nil {
		return err
	}
	var exported string // the slot's exported snapshot, when it was just created
	rconn, err := pgconn.ConnectConfig(ctx, rcfg)
	if err != nil {
		return fmt.Errorf("postgres: open a replication connection: %s", connectors.RedactDSN(err.Error()))
	}
	s.rconn = rconn
	switch {
	case !st.exists && pos != nil:
		return &SlotMissingError{Slot: s.slot, Position: s.format(pos)}
	case !st.exists:
		action := "NOEXPORT_SNAPSHOT"
		if needSnap {
			action = "EXPORT_SNAPSHOT"
		}
		res, err := pglogrepl.CreateReplicationSlot(ctx, rconn, s.slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: action})
		if err != nil {
			return classify(slotCreateError(s.slot, err))
		}
		s.log.Info("created replication slot", "slot", s.slot, "consistent_point", res.ConsistentPoint)
		st.confirmed, exported = res.ConsistentPoint, res.SnapshotName
	case st.wrongKind || st.plugin != "pgoutput":
		return fmt.Errorf("postgres: replication slot %q exists but is not a logical pgoutput slot (plugin %q); choose another slot name", s.slot, st.plugin)
	case st.wrongDB:
		return fmt.Errorf("postgres: replication slot %q belongs to database %q, not %q", s.slot, st.slotDB, st.currentDB)
	case st.active:
		return connectors.Retryable(fmt.Errorf("postgres: replication slot %q is in use by another process (pid %d); only one reader per slot", s.slot, st.activePID))
	}
	if pos != nil && resume == nil {
		s.acked.Store(stored.Commit)
	}
	start := func(ctx context.Context) error {
		err := pglogrepl.StartReplication(ctx, rconn, s.slot, 0, pglogrepl.StartReplicationOptions{
			Mode: pglogrepl.LogicalReplication,
			PluginArgs: []string{
				"proto_version '2'",
				fmt.Sprintf("publication_names '%s'", s.pub),
				"messages 'true'",
				"streaming 'on'",
			},
		})
		if err != nil {
			return classify(fmt.Errorf("postgres: start replication on slot %q: %w", s.slot, err))
		}
		s.log.Info("streaming", "slot", s.slot, "publication", s.pub, "tables", len(tables), "after", s.format(pos))
		return nil
	}
	var snap *snapshot
	if needSnap {
		cp, err := pglogrepl.ParseLSN(st.confirmed)
		if err != nil && resume == nil {
			return fmt.Errorf("postgres: slot %q has no consistent point to snapshot at (%q)", s.slot, st.confirmed)
		}
		if snap, err = s.beginSnapshot(ctx, exported, tables); err != nil {
			return err
		}
		snap.cp, snap.from = uint64(cp), resume
		if resume != nil {
			snap.cp = resume.CP
		}
	} else if err := start(ctx); err != nil {
		return err
	}

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.out = make(chan item, 1024)
	s.done = make(chan struct{})
	r := &receiver{src: s, conn: rconn, stored: stored, hasStored: pos != nil && resume == nil, relations: map[uint32]*relation{}}
	if s.rt.DataDir != "" {
		if r.incr, err = s.newIncremental(r.stored, r.hasStored); err != nil {
			cancel()
			return err
		}
		if s.testIncremental != nil {
			s.testIncremental(r.incr)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		err := func() error {
			if snap != nil {
				defer snap.conn.Close(context.Background())
				if err := snap.run(rctx, r); err != nil {
					return err
				}
				if s.cfg.Snapshot == "initial_only" {
					return io.EOF
				}
				if err := start(rctx); err != nil {
					return err
				}
			}
			return r.run(rctx)
		}()
		if rctx.Err() == nil {
			s.err = err
		}
		cancel() // stops the heartbeat too
	})
	if s.cfg.Heartbeat > 0 {
		wg.Go(func() { s.heartbeat(rctx) })
	}
	wg.Go(func() { s.watchLag(rctx) })
	go func() {
		wg.Wait()
		close(s.done)
	}()
	return nil
}

// waitSlotInactive reads the slot's state, waiting up to 10s while it is
// active: a walsender of a reader that just stopped (this pipeline's previous
// run) takes a moment to exit.
func (s *Source) waitSlotInactive(ctx context.Context) (slotState, error) {
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := readSlot(ctx, s.pool, s.slot)
		if err != nil || !st.exists || !st.active || time.Now().After(deadline) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

// beginSnapshot opens the snapshot's connection and transaction: at the
// slot's exported snapshot when there is one, so that the rows read and the
// changes streamed after the consistent point fit exactly; otherwise (an
// interrupted snapshot going on, or a slot that already existed) at a fresh
// snapshot, later than the slot's position, whose rows the stream then
// brings up to date.
func (s *Source) beginSnapshot(ctx context.Context, exported string, tables []connectors.TableID) (*snapshot, error) {
	cfg, err := pgx.ParseConfig(s.cfg.DSN.Reveal())
	if err != nil {
		return nil, fmt.Errorf("postgres: dsn: %s", connectors.RedactDSN(err.Error()))
	}
	for k, v := range outputSettings {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, classify(fmt.Errorf("postgres: snapshot connection: %s", connectors.RedactDSN(err.Error())))
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("postgres: snapshot: begin: %w", err)
	}
	if exported != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+exported+"'"); err != nil {
			conn.Close(ctx)
			return nil, fmt.Errorf("postgres: snapshot: import the slot's snapshot %s: %w", exported, err)
		}
	}
	sn := &snapshot{src: s, tx: tx, conn: conn, chunk: 5000}
	if err := sn.loadTables(ctx, tables); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return sn, nil
}

func pxpool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: dsn: %s", connectors.RedactDSN(err.Error()))
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %s", connectors.RedactDSN(err.Error()))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, connectors.Retryable(fmt.Errorf("postgres: connect: %s", connectors.RedactDSN(err.Error())))
	}
	return pool, nil
}

// slotCreateError explains the usual reasons a slot cannot be created.
func slotCreateError(slot string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "53400": // configuration_limit_exceeded
			return fmt.Errorf("postgres: create replication slot %q: all replication slots are in use: drop unused ones "+
				"(SELECT slot_name FROM pg_replication_slots WHERE NOT active), or raise max_replication_slots and restart the server: %w", slot, err)
		case "42501": // insufficient_privilege
			return fmt.Errorf("postgres: create replication slot %q: the user lacks the REPLICATION privilege (ALTER ROLE <user> REPLICATION): %w", slot, err)
		}
	}
	return fmt.Errorf("postgres: create replication slot %q: %w", slot, err)
}

// classify marks connection-level failures as retryable.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return err
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, io.ErrUnexpectedEOF) {
		return connectors.Retryable(err)
	}
	return err
}

func (s *Source) format(p connectors.Position) string {
	if p == nil {
		return "(start of slot)"
	}
	if f, err := formatPosition(p); err == nil {
		return f
	}
	return p.String()
}

// spillDir is where streamed transactions wait for their commit.
func (s *Source) spillDir() string {
	if s.rt.DataDir == "" {
		return "" // the system's temporary directory
	}
	return filepath.Join(s.rt.DataDir, "spill", s.rt.Pipeline)
}

// heartbeat writes a non-transactional logical message through the slot
// every interval, so that the slot's position advances (and the server can
// recycle WAL) while the captured tables are idle.
func (s *Source) heartbeat(ctx context.Context) {
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.pool.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, '')", heartbeatPrefix); err != nil && ctx.Err() == nil {
				s.log.Warn("heartbeat failed", "error", err)
			}
		}
	}
}

const heartbeatPrefix = "tapline_heartbeat"

// ReadBatch returns the next changes, within lim.
func (s *Source) ReadBatch(ctx context.Context, lim connectors.Limits) (connectors.Batch, error) {
	var b connectors.Batch
	if s.out == nil {
		return b, errors.New("postgres: ReadBatch before Open")
	}
	if err := ctx.Err(); err != nil {
		// Cancelled: stop, whatever is buffered (it stays for the next
		// call). A select below could otherwise pick a ready item over
		// ctx.Done, at random.
		return b, err
	}
	size := 0
	take := func(it item) bool {
		if it.isEv {
			if lim.Full(len(b.Events)+1, size+it.bytes) && len(b.Events) > 0 {
				s.pending = &it
				return false
			}
			b.Events = append(b.Events, it.ev)
			size += it.bytes
			b.Last = it.ev.Position
		} else {
			b.Last = it.last
		}
		return !lim.Full(len(b.Events), size)
	}
	if s.pending != nil {
		it := *s.pending
		s.pending = nil
		if !take(it) {
			return b, nil
		}
	}
	// Wait for the first item.
	if b.Last == nil {
		select {
		case it := <-s.out:
			if !take(it) {
				return b, nil
			}
		case <-s.done:
			if s.drain(take) {
				return b, nil
			}
			if b.Last != nil {
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
		case it := <-s.out:
			if !take(it) {
				return b, nil
			}
		case <-timer:
			return b, nil
		case <-s.done:
			s.drain(take)
			return b, nil // what is read is returned; the error comes next call
		case <-ctx.Done():
			return b, nil
		}
	}
}

// drain takes what the stopped receiver left in the channel; it reports
// whether the batch filled up.
func (s *Source) drain(take func(item) bool) (full bool) {
	for {
		select {
		case it := <-s.out:
			if !take(it) {
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

// Ack confirms pos's LSN as flushed; the receiver sends it with its next
// status update (at once if it is waiting).
func (s *Source) Ack(ctx context.Context, pos connectors.Position) error {
	if isSnapPos(pos) {
		return nil // the slot stays at the snapshot's consistent point
	}
	tp, err := connectors.DecodeTxPosition(pos)
	if err != nil {
		return fmt.Errorf("postgres: ack: %w", err)
	}
	for {
		cur := s.acked.Load()
		if tp.Commit <= cur || s.acked.CompareAndSwap(cur, tp.Commit) {
			return nil
		}
	}
}

// Close stops streaming and closes the connections. It sends a last status
// update with the acknowledged position.
func (s *Source) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
			<-s.done
		}
		if s.rconn != nil {
			if s.acked.Load() > 0 {
				lsn := pglogrepl.LSN(s.acked.Load())
				pglogrepl.SendStandbyStatusUpdate(ctx, s.rconn, pglogrepl.StandbyStatusUpdate{
					WALWritePosition: lsn, WALFlushPosition: lsn, WALApplyPosition: lsn})
			}
			s.rconn.Close(ctx)
		}
		if s.pool != nil {
			if s.cfg.DropSlotOnClose {
				// The walsender of the connection just closed takes a moment
				// to release the slot.
				if _, err := s.waitSlotInactive(ctx); err != nil {
					s.closeErr = fmt.Errorf("postgres: drop slot %q: %w", s.slot, err)
				} else if _, err := s.pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.slot); err != nil {
					s.closeErr = fmt.Errorf("postgres: drop slot %q: %w", s.slot, err)
				} else {
					s.log.Info("dropped replication slot", "slot", s.slot)
				}
			}
			s.pool.Close()
		}
	})
	return s.closeErr
}

// Drop removes the source's replication slot and, when tapline manages it
// (create_publication), its publication. A slot in use by a running reader
// is not dropped: stop that pipeline first.
func (s *Source) Drop(ctx context.Context) error {
	pool, err := pxpool(ctx, s.cfg.DSN.Reveal())
	if err != nil {
		return err
	}
	defer pool.Close()
	s.pool = pool
	defer func() { s.pool = nil }()
	st, err := s.waitSlotInactive(ctx)
	if err != nil {
		return fmt.Errorf("postgres: slot %q: %w", s.slot, err)
	}
	switch {
	case st.active:
		return fmt.Errorf("postgres: slot %q is in use by the process with PID %d; stop the pipeline that reads it first", s.slot, st.activePID)
	case st.exists:
		if _, err := pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.slot); err != nil {
			return fmt.Errorf("postgres: drop slot %q: %w", s.slot, err)
		}
		s.log.Info("dropped replication slot", "slot", s.slot)
	default:
		s.log.Info("no replication slot to drop", "slot", s.slot)
	}
	if s.cfg.CreatePublication {
		if _, err := pool.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{s.pub}.Sanitize()); err != nil {
			return fmt.Errorf("postgres: drop publication %q: %w", s.pub, err)
		}
		s.log.Info("dropped publication", "publication", s.pub)
	}
	return nil
}
