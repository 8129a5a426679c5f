package viewsql

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/tapline/tapline/connectors"
)

// shadowKeySuffix is appended to the pipeline's name for the positions of
// its shadow tables.
const shadowKeySuffix = "#shadow"

// defaultPipeline keys the positions of a sink run without a pipeline name
// (one connector from the command line).
const defaultPipeline = "tapline"

// Hooks are called at fixed points of WriteBatch, for fault-injection
// tests.
type Hooks struct {
	// BeforeCommit runs when the batch is applied and its position
	// written, before the transaction commits; an error aborts the
	// transaction, as a failed commit or a crash would.
	BeforeCommit func() error
	// AfterCommit runs after the commit; its error is returned by
	// WriteBatch as if the commit's reply had been lost.
	AfterCommit func() error
}

// Sink is the shared half of a SQL view sink: it plans each batch
// (coalescing changes per key), evolves the target tables, and writes rows
// and the pipeline's position in one transaction through a Backend. It
// implements connectors.AtomicSink, connectors.ShadowSink,
// connectors.OriginTracker and connectors.Checker; a store's sink wraps it.
//
// WriteBatch, Close, CommittedPosition and Promote are serialized;
// AppliedOrigins may be called concurrently with any of them.
type Sink struct {
	name     string
	cfg      Config
	b        Backend
	log      *slog.Logger
	pipeline string

	mu        sync.Mutex
	hooks     Hooks
	shadow    bool
	opened    bool
	closed    bool
	connected bool
	committed connectors.Position // as stored by the last commit (or read at Open)
	tables    map[string]*TableInfo
	shapes    map[shapeKey]*shape
	lastShape *shape                // the shape of the last event planned
	plans     map[string]*tablePlan // by table name, reused from batch to batch
	warned    map[string]bool

	originsMu sync.RWMutex
	origins   map[string]string
}

// New builds the shared half of the sink called name ("sqlite") on b.
func New(name string, cfg Config, b Backend, rt connectors.Runtime) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	pipeline := rt.Pipeline
	if pipeline == "" {
		pipeline = defaultPipeline
	}
	return &Sink{
		name: name, cfg: cfg, b: b, log: rt.Log(), pipeline: pipeline,
		tables: map[string]*TableInfo{}, shapes: map[shapeKey]*shape{}, warned: map[string]bool{}, plans: map[string]*tablePlan{},
		origins: map[string]string{},
	}, nil
}

// SetHooks sets the fault-injection hooks.
func (s *Sink) SetHooks(h Hooks) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = h
}

func (s *Sink) liveKey() string   { return s.pipeline }
func (s *Sink) shadowKey() string { return s.pipeline + shadowKeySuffix }

func (s *Sink) key() string {
	if s.shadow {
		return s.shadowKey()
	}
	return s.liveKey()
}

// UseShadow makes the sink write every table as <name>__shadow and store
// its position under <pipeline>#shadow. It must be called before Open.
func (s *Sink) UseShadow() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shadow = true
}

// Open connects, finishes or undoes a promote that a crash interrupted,
// drops the shadow tables an abandoned rebuild left (when the sink uses
// shadow tables) and reads the stored position and origins.
func (s *Sink) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return connectors.ErrClosed
	case s.opened:
		return nil
	}
	err := s.open(ctx)
	if err != nil {
		s.disconnect()
		return fmt.Errorf("%s: open: %w", s.name, err)
	}
	s.opened = true
	return nil
}

func (s *Sink) open(ctx context.Context) error {
	if err := s.connect(ctx); err != nil {
		return err
	}
	if err := s.recoverPromote(ctx); err != nil {
		return err
	}
	if s.shadow {
		if err := s.clearShadow(ctx); err != nil {
			return err
		}
	}
	off, err := s.b.ReadOffset(ctx, s.key(), false)
	if err != nil {
		return fmt.Errorf("read the stored position: %w", err)
	}
	s.committed = nil
	origins := map[string]string{}
	if off != nil {
		s.committed = off.Position
		maps.Copy(origins, off.Origins)
	}
	s.setOrigins(origins)
	s.log.Info("view sink open", "pipeline_key", s.key(), "position", s.committed.String())
	return nil
}

func (s *Sink) connect(ctx context.Context) error {
	if s.connected {
		return nil
	}
	if err := s.b.Connect(ctx); err != nil {
		return err
	}
	s.connected = true
	return nil
}

// disconnect closes the connection and forgets what was cached on it:
// after a failed transaction the store may have rolled back DDL too.
func (s *Sink) disconnect() {
	if s.connected {
		if err := s.b.Close(); err != nil {
			s.log.Debug("close connection", "error", err)
		}
	}
	s.connected = false
	clear(s.tables)
}

// abort rolls back after an error and forgets the table descriptions (the
// transaction's DDL is undone); a connection the backend no longer trusts
// is closed, to be opened again by the next call.
func (s *Sink) abort(ctx context.Context) {
	s.b.Rollback(ctx)
	clear(s.tables)
	if !s.b.Healthy() {
		s.disconnect()
	}
}

// clearShadow drops the shadow tables of an earlier, abandoned rebuild.
func (s *Sink) clearShadow(ctx context.Context) error {
	off, err := s.b.ReadOffset(ctx, s.shadowKey(), false)
	if err != nil || off == nil {
		return err
	}
	s.log.Info("dropping the shadow tables of an abandoned rebuild", "tables", off.Tables)
	drop := func() error {
		for _, t := range off.Tables {
			if err := s.b.DropTable(ctx, t+ShadowSuffix); err != nil {
				return fmt.Errorf("drop %s: %w", t+ShadowSuffix, err)
			}
		}
		return nil
	}
	if !s.b.TransactionalDDL() {
		// Each DROP commits on its own; the row goes last, so that a crash
		// in between leaves it to name the tables still to drop.
		if err := drop(); err != nil {
			return err
		}
		return s.inTx(ctx, func() error { return s.b.DeleteOffset(ctx, s.shadowKey()) })
	}
	return s.inTx(ctx, func() error {
		if err := drop(); err != nil {
			return err
		}
		return s.b.DeleteOffset(ctx, s.shadowKey())
	})
}

// inTx runs f in a transaction. In a store without transactional DDL,
// DDL that f runs commits on its own.
func (s *Sink) inTx(ctx context.Context, f func() error) error {
	if err := s.b.Begin(ctx); err != nil {
		return err
	}
	if err := f(); err != nil {
		s.b.Rollback(ctx)
		return err
	}
	return s.b.Commit(ctx)
}

// WriteBatch applies b in one transaction with its position: upserts by
// primary key (or appends, in history mode), deletes, truncates, the
// schema changes the batch's events bring, and b.Last with the origin
// positions applied. A batch whose Last is at or before the stored position
// was applied already and is skipped.
func (s *Sink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return connectors.ErrClosed
	case !s.opened:
		return fmt.Errorf("%s: WriteBatch before Open", s.name)
	}
	last := b.Last
	if last == nil && len(b.Events) > 0 {
		last = b.Events[len(b.Events)-1].Position
	}
	if last == nil && len(b.Events) == 0 {
		return nil
	}
	if last != nil && s.committed != nil && last.Compare(s.committed) <= 0 {
		s.log.Debug("batch already applied; skipped", "position", last.String(), "stored", s.committed.String())
		return nil
	}
	started := time.Now()
	plans, err := s.plan(b.Events)
	if err != nil {
		return err
	}
	if err := s.connect(ctx); err != nil {
		return fmt.Errorf("%s: connect: %w", s.name, err)
	}
	applied, err := s.apply(ctx, last, plans, b.Events)
	if err != nil {
		s.abort(ctx)
		return fmt.Errorf("%s: write batch ending at %s: %w", s.name, last, err)
	}
	if !applied {
		return nil
	}
	s.log.Debug("batch applied", "batch_events", len(b.Events), "tables", len(plans), "position", last.String(), "duration", time.Since(started))
	if h := s.hooks.AfterCommit; h != nil {
		if err := h(); err != nil {
			return err
		}
	}
	return nil
}

// apply writes the planned batch and its position in one transaction. It
// reports false for a batch found applied already.
//
// The offsets row is locked first, as a fence against another writer of
// the same view. When the sink knows the stored position from its own last
// commit (or Open), one statement moves it (Backend.AdvanceOffset): it
// locks the row and succeeds only if the row is still where this sink left
// it. Otherwise, or when that fails, the row is read with a lock to tell a
// replayed batch (skipped) from another writer (an error), and written
// after the data.
func (s *Sink) apply(ctx context.Context, last connectors.Position, plans []*tablePlan, events []connectors.Event) (bool, error) {
	batchOrigins := observe(events)
	created := map[string]bool{}
	if !s.b.TransactionalDDL() {
		for _, tp := range plans {
			if err := s.ensure(ctx, tp, created); err != nil {
				return false, err
			}
		}
	}
	if err := s.b.Begin(ctx); err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	// s.origins is only written with s.mu held, as it is now: reading it
	// needs no originsMu.
	origins := connectors.Origins{}
	var off *Offset // the stored row, when it was read
	advanced := false
	if last != nil && s.committed != nil {
		origins.Merge(s.origins)
		origins.Merge(batchOrigins)
		ok, err := s.b.AdvanceOffset(ctx, s.key(), s.committed, &Offset{Position: last, Origins: origins})
		if err != nil {
			return false, fmt.Errorf("store the position: %w", err)
		}
		advanced = ok
	}
	if !advanced {
		var err error
		if off, err = s.lockOffset(ctx, last); off == nil || err != nil {
			return false, err
		}
		origins = connectors.Origins{}
		origins.Merge(off.Origins)
		origins.Merge(batchOrigins)
	}
	if s.b.TransactionalDDL() {
		for _, tp := range plans {
			if err := s.ensure(ctx, tp, created); err != nil {
				return false, err
			}
		}
	}
	for _, tp := range plans {
		if tp.info == nil {
			continue // a truncate, or deletes by key only, of a table that does not exist
		}
		if err := tp.checkKeyOnly(s.name); err != nil {
			return false, err
		}
		if err := s.b.Apply(ctx, tp.batch()); err != nil {
			var mr *MissingRowError
			if errors.As(err, &mr) {
				return false, err
			}
			return false, fmt.Errorf("table %s: %w", tp.name, err)
		}
	}
	position := s.committed
	if last != nil {
		position = last
	}
	if !advanced || len(created) > 0 {
		if advanced {
			// A table was created: add it to the row's tables.
			var err error
			if off, err = s.b.ReadOffset(ctx, s.key(), true); err != nil {
				return false, fmt.Errorf("read the stored position: %w", err)
			}
			if off == nil {
				return false, fmt.Errorf("the row of %q in %s vanished within the transaction", s.key(), OffsetsTable)
			}
		}
		next := &Offset{Position: off.Position, Origins: origins, Tables: mergeTables(off.Tables, created), Promoting: off.Promoting}
		if last != nil {
			next.Position = last
		}
		position = next.Position
		if err := s.b.WriteOffset(ctx, s.key(), next); err != nil {
			return false, fmt.Errorf("store the position: %w", err)
		}
	}
	if h := s.hooks.BeforeCommit; h != nil {
		if err := h(); err != nil {
			return false, err
		}
	}
	if err := s.b.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	s.committed = position
	s.setOrigins(origins)
	return true, nil
}

// lockOffset reads the stored row with a lock, inside the transaction, and
// checks it against the batch ending at last: a batch at or before the
// stored position was applied already (a commit whose reply was lost, then
// a replay), so the transaction is rolled back, the sink takes the stored
// position and origins, and lockOffset returns nil; a stored position
// other than the one this sink committed means another writer.
func (s *Sink) lockOffset(ctx context.Context, last connectors.Position) (*Offset, error) {
	off, err := s.b.ReadOffset(ctx, s.key(), true)
	if err != nil {
		return nil, fmt.Errorf("read the stored position: %w", err)
	}
	if off == nil {
		off = &Offset{}
	}
	if last != nil && off.Position != nil && last.Compare(off.Position) <= 0 {
		s.b.Rollback(ctx)
		s.committed = off.Position
		s.setOrigins(off.Origins)
		s.log.Debug("batch already applied; skipped", "position", last.String(), "stored", connectors.Position(off.Position).String())
		return nil, nil
	}
	if !bytes.Equal(off.Position, s.committed) {
		return nil, fmt.Errorf("the stored position of %q moved from %s to %s under this sink: another process writes this view with the same pipeline name, or a rebuild was promoted while it ran; stop the other writer and restart the pipeline",
			s.key(), s.committed, connectors.Position(off.Position))
	}
	return off, nil
}

func mergeTables(have []string, add map[string]bool) []string {
	out := append([]string(nil), have...)
	for t := range add {
		if !contains(out, t) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// recordTables adds live table names to the offsets row before the tables
// are created, for stores without transactional DDL.
func (s *Sink) recordTables(ctx context.Context, names []string) error {
	return s.inTx(ctx, func() error {
		off, err := s.b.ReadOffset(ctx, s.key(), true)
		if err != nil {
			return err
		}
		if off == nil {
			off = &Offset{}
		}
		add := map[string]bool{}
		for _, n := range names {
			add[n] = true
		}
		off.Tables = mergeTables(off.Tables, add)
		return s.b.WriteOffset(ctx, s.key(), off)
	})
}

// setOrigins sets the origins applied, as stored with the last commit. The
// sink keeps a map of its own: o is copied.
func (s *Sink) setOrigins(o map[string]string) {
	o = maps.Clone(o)
	if o == nil {
		o = map[string]string{}
	}
	s.originsMu.Lock()
	s.origins = o
	s.originsMu.Unlock()
}

// AppliedOrigins returns a copy of the origin positions applied and
// committed, per connectors.OriginKey. It is safe to call concurrently with
// WriteBatch.
func (s *Sink) AppliedOrigins(context.Context) (map[string]string, error) {
	s.originsMu.RLock()
	defer s.originsMu.RUnlock()
	return maps.Clone(s.origins), nil
}

// CommittedPosition reads the position stored with the last batch, nil if
// none was.
func (s *Sink) CommittedPosition(ctx context.Context) (connectors.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, connectors.ErrClosed
	case !s.opened:
		return nil, fmt.Errorf("%s: CommittedPosition before Open", s.name)
	}
	if err := s.connect(ctx); err != nil {
		return nil, fmt.Errorf("%s: connect: %w", s.name, err)
	}
	off, err := s.b.ReadOffset(ctx, s.key(), false)
	if err != nil {
		s.abort(ctx)
		return nil, fmt.Errorf("%s: read the stored position: %w", s.name, err)
	}
	if off == nil || off.Position == nil {
		return nil, nil
	}
	// The sink fences and merges origins with what it knows of the row:
	// keep position and origins together.
	s.committed = off.Position
	s.setOrigins(off.Origins)
	return off.Position, nil
}

// Check verifies that the store is reachable and writable.
func (s *Sink) Check(ctx context.Context) error {
	if err := s.b.Check(ctx); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// Close closes the connection. A second Close, or one without Open,
// returns nil.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeLocked()
}

func (s *Sink) closeLocked() error {
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.connected {
		err = s.b.Close()
	}
	s.connected = false
	if err != nil {
		return fmt.Errorf("%s: close: %w", s.name, err)
	}
	return nil
}

// Promote replaces the live tables and position with the shadow ones and
// closes the sink. With transactional DDL (SQLite, Postgres) it drops each
// live table and renames its shadow in one transaction that also moves the
// position. Otherwise (MySQL) it marks the shadow position as promoting,
// renames every table in one atomic RENAME TABLE (live to <name>__old,
// shadow to live), moves the position and drops the old tables; a crash in
// between is finished or undone by the next Open of either sink. Live
// tables the rebuild did not write are left as they are. Stop the live
// pipeline before promoting: it resumes from the promoted position.
func (s *Sink) Promote(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return connectors.ErrClosed
	case !s.opened:
		return fmt.Errorf("%s: Promote before Open", s.name)
	case !s.shadow:
		return fmt.Errorf("%s: Promote on a sink that writes the live tables (UseShadow was not called before Open)", s.name)
	}
	err := s.promote(ctx)
	if err != nil {
		s.abort(ctx)
		return fmt.Errorf("%s: promote: %w", s.name, err)
	}
	return s.closeLocked()
}

func (s *Sink) promote(ctx context.Context) error {
	if err := s.connect(ctx); err != nil {
		return err
	}
	if !s.b.TransactionalDDL() {
		return s.promoteInSteps(ctx)
	}
	if err := s.b.Begin(ctx); err != nil {
		return err
	}
	sh, err := s.b.ReadOffset(ctx, s.shadowKey(), true)
	if err != nil {
		return err
	}
	if sh == nil {
		return errors.New("nothing to promote: no shadow position is stored (did the rebuild write anything?)")
	}
	var renames []Rename
	for _, t := range sh.Tables {
		shadowInfo, err := s.b.DescribeTable(ctx, t+ShadowSuffix)
		if err != nil {
			return err
		}
		if shadowInfo == nil {
			continue
		}
		if err := s.b.DropTable(ctx, t); err != nil {
			return fmt.Errorf("drop %s: %w", t, err)
		}
		renames = append(renames, Rename{From: t + ShadowSuffix, To: t})
	}
	if err := s.b.RenameTables(ctx, renames); err != nil {
		return err
	}
	if err := s.moveOffset(ctx, sh); err != nil {
		return err
	}
	if err := s.b.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.log.Info("promoted the rebuilt view", "tables", sh.Tables, "position", connectors.Position(sh.Position).String())
	return nil
}

// moveOffset makes the shadow row the live one, inside a transaction.
func (s *Sink) moveOffset(ctx context.Context, sh *Offset) error {
	live, err := s.b.ReadOffset(ctx, s.liveKey(), true)
	if err != nil {
		return err
	}
	tables := map[string]bool{}
	for _, t := range sh.Tables {
		tables[t] = true
	}
	next := &Offset{Position: sh.Position, Origins: sh.Origins}
	if live != nil {
		next.Tables = mergeTables(live.Tables, tables)
	} else {
		next.Tables = mergeTables(nil, tables)
	}
	if err := s.b.WriteOffset(ctx, s.liveKey(), next); err != nil {
		return err
	}
	return s.b.DeleteOffset(ctx, s.shadowKey())
}

// promoteInSteps promotes in a store whose DDL commits on its own.
func (s *Sink) promoteInSteps(ctx context.Context) error {
	sh, err := s.b.ReadOffset(ctx, s.shadowKey(), false)
	if err != nil {
		return err
	}
	if sh == nil {
		return errors.New("nothing to promote: no shadow position is stored (did the rebuild write anything?)")
	}
	var renames []Rename
	for _, t := range sh.Tables {
		if err := s.b.DropTable(ctx, t+oldSuffix); err != nil {
			return fmt.Errorf("drop the leftover %s: %w", t+oldSuffix, err)
		}
		shadowInfo, err := s.b.DescribeTable(ctx, t+ShadowSuffix)
		if err != nil {
			return err
		}
		if shadowInfo == nil {
			continue
		}
		liveInfo, err := s.b.DescribeTable(ctx, t)
		if err != nil {
			return err
		}
		if liveInfo != nil {
			renames = append(renames, Rename{From: t, To: t + oldSuffix})
		}
		renames = append(renames, Rename{From: t + ShadowSuffix, To: t})
	}
	sh.Promoting = true
	if err := s.inTx(ctx, func() error { return s.b.WriteOffset(ctx, s.shadowKey(), sh) }); err != nil {
		return fmt.Errorf("mark the shadow position as promoting: %w", err)
	}
	if len(renames) > 0 {
		if err := s.b.RenameTables(ctx, renames); err != nil {
			return err
		}
	}
	return s.finishPromote(ctx, sh)
}

// finishPromote moves the position of a promote whose renames are done and
// drops the old live tables.
func (s *Sink) finishPromote(ctx context.Context, sh *Offset) error {
	sh.Promoting = false
	if err := s.inTx(ctx, func() error { return s.moveOffset(ctx, sh) }); err != nil {
		return fmt.Errorf("move the shadow position to the live one: %w", err)
	}
	for _, t := range sh.Tables {
		if err := s.b.DropTable(ctx, t+oldSuffix); err != nil {
			return fmt.Errorf("drop the old %s: %w", t+oldSuffix, err)
		}
	}
	s.log.Info("promoted the rebuilt view", "tables", sh.Tables, "position", connectors.Position(sh.Position).String())
	return nil
}

// recoverPromote finishes or undoes a promote that a crash interrupted
// (stores without transactional DDL only ever leave one behind). The
// renames are one atomic statement: they happened if and only if no shadow
// table is left.
func (s *Sink) recoverPromote(ctx context.Context) error {
	sh, err := s.b.ReadOffset(ctx, s.shadowKey(), false)
	if err != nil || sh == nil || !sh.Promoting {
		return err
	}
	for _, t := range sh.Tables {
		info, err := s.b.DescribeTable(ctx, t+ShadowSuffix)
		if err != nil {
			return err
		}
		if info != nil {
			s.log.Warn("a promote was interrupted before its renames; the rebuilt view stays in its shadow tables and can be promoted again", "tables", sh.Tables)
			sh.Promoting = false
			return s.inTx(ctx, func() error { return s.b.WriteOffset(ctx, s.shadowKey(), sh) })
		}
	}
	s.log.Warn("finishing a promote that was interrupted after its renames", "tables", sh.Tables)
	return s.finishPromote(ctx, sh)
}

// observe collects the furthest origin position of the events per origin,
// as connectors.Origins.Observe does. It works out each origin's key once
// per run of events from one origin, keeps the run's furthest position in
// a variable, and compares positions only when they differ (the events of
// one source transaction often share theirs).
func observe(events []connectors.Event) connectors.Origins {
	o := connectors.Origins{}
	var (
		last      *connectors.SourceInfo
		key, best string
	)
	flush := func() {
		if last == nil {
			return
		}
		if old, had := o[key]; !had || old != best && connectors.Later(last.Connector, best, old) {
			o[key] = best
		}
	}
	for i := range events {
		src := &events[i].Source
		if src.Position == "" || src.Connector == "" {
			continue
		}
		if last == nil || src.Connector != last.Connector || src.Name != last.Name || src.DB != last.DB {
			flush()
			key, last, best = connectors.OriginKey(*src), src, src.Position
			continue
		}
		if src.Position != best && connectors.Later(src.Connector, src.Position, best) {
			best = src.Position
		}
	}
	flush()
	return o
}
