package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
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
	rt   Runtime
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

	pending   *item // an item read but not yet returned (it did not fit the batch)
	closeOnce sync.Once
	closeErr  error
}

// Runtime is connectors.Runtime; an alias keeps signatures short.
type Runtime = connectors.Runtime

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
	if pos != nil {
		tp, err := connectors.DecodeTxPosition(pos)
		if err != nil {
			return fmt.Errorf("postgres: stored position %s is not a Postgres position: %w", pos, err)
		}
		stored = tp
	}
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
	rcfg, err := replicationConfig(s.cfg.DSN.Reveal())
	if err != nil {
		return err
	}
	rconn, err := pgconn.ConnectConfig(ctx, rcfg)
	if err != nil {
		return fmt.Errorf("postgres: open a replication connection: %s", connectors.RedactDSN(err.Error()))
	}
	s.rconn = rconn
	switch {
	case !st.exists && pos != nil:
		return &SlotMissingError{Slot: s.slot, Position: s.format(pos)}
	case !st.exists:
		res, err := pglogrepl.CreateReplicationSlot(ctx, rconn, s.slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
		if err != nil {
			return classify(fmt.Errorf("postgres: create replication slot %q: %w", s.slot, err))
		}
		s.log.Info("created replication slot", "slot", s.slot, "consistent_point", res.ConsistentPoint)
	case st.wrongKind || st.plugin != "pgoutput":
		return fmt.Errorf("postgres: replication slot %q exists but is not a logical pgoutput slot (plugin %q); choose another slot name", s.slot, st.plugin)
	case st.wrongDB:
		return fmt.Errorf("postgres: replication slot %q belongs to database %q, not %q", s.slot, st.slotDB, st.currentDB)
	case st.active:
		return connectors.Retryable(fmt.Errorf("postgres: replication slot %q is in use by another process (pid %d); only one reader per slot", s.slot, st.activePID))
	}
	if pos != nil {
		s.acked.Store(stored.Commit)
	}
	err = pglogrepl.StartReplication(ctx, rconn, s.slot, 0, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			fmt.Sprintf("publication_names '%s'", s.pub),
			"messages 'true'",
		},
	})
	if err != nil {
		return classify(fmt.Errorf("postgres: start replication on slot %q: %w", s.slot, err))
	}
	s.log.Info("streaming", "slot", s.slot, "publication", s.pub, "tables", len(tables), "after", s.format(pos))

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.out = make(chan item, 1024)
	s.done = make(chan struct{})
	r := &receiver{src: s, conn: rconn, stored: stored, hasStored: pos != nil, relations: map[uint32]*relation{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		err := r.run(rctx)
		if rctx.Err() == nil {
			s.err = err
		}
		cancel() // stops the heartbeat too
	})
	if s.cfg.Heartbeat > 0 {
		wg.Go(func() { s.heartbeat(rctx) })
	}
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
			return b, nil // what is read is returned; the error comes next call
		case <-ctx.Done():
			return b, nil
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
				if _, err := s.pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.slot); err != nil {
					s.closeErr = fmt.Errorf("postgres: drop slot %q: %w", s.slot, err)
				}
			}
			s.pool.Close()
		}
	})
	return s.closeErr
}
