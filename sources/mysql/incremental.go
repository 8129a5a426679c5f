package mysql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/tapline/tapline/connectors"
)

// Incremental snapshots re-read a table while streaming goes on, without
// locks, with the watermark technique of DBLog (the Postgres source's,
// with a table instead of pg_logical_emit_message): the table is read in
// primary-key chunks; around each chunk's SELECT the source writes a low
// and a high watermark, one autocommitted upsert each of its row in the
// signal table, which the binlog delivers in order with every other
// change. Between the two watermarks in the stream, every change to a key
// of the chunk drops that key from the chunk (the stream's change is as
// new or newer); at the high watermark the rest of the chunk is emitted as
// op "r" events, positioned in the high watermark's transaction after its
// signal row. A snapshot row therefore never overwrites a newer change, in
// any order a view applies them, and positions keep growing.
//
// Requests come from connectors.RequestSnapshot; progress lives in
// <data-dir>/snapshots/<pipeline>/state.json: the tables queued and, per
// chunk emitted, the position of its last event and its last key. After a
// restart the chunks at or before the stored position are durable and the
// table goes on after the last of them; later ones are read again.

// Watermark kinds, the signal table's kind column.
const (
	markLow  = "low"
	markHigh = "high"
)

// incrState is the persisted progress (see connectors.SnapshotProgress).
type incrState = connectors.SnapshotProgress[incrChunk]

type incrTable = connectors.SnapshotTable[incrChunk]

// incrChunk is a chunk emitted. Keys are kept as the bytes the server
// printed (base64 in JSON): a binary key is not valid UTF-8.
type incrChunk struct {
	End   posKey   `json:"end"`  // the position of its last event (its high watermark's row if it emitted none)
	Key   [][]byte `json:"key"`  // its last key; the next chunk starts after it
	Rows  int      `json:"rows"` // rows emitted
	Final bool     `json:"final"`
}

// IsFinal reports whether the chunk is its table's last.
func (c incrChunk) IsFinal() bool { return c.Final }

// posKey is the order-giving part of a stream position.
type posKey struct {
	Kind   byte   `json:"kind"`
	Commit uint64 `json:"commit"`
	Ev     uint32 `json:"ev"`
	Row    uint32 `json:"row"`
}

func keyOf(p streamPos) posKey {
	return posKey{Kind: p.kind, Commit: p.commit, Ev: p.ev, Row: p.row}
}

// atOrBefore reports whether p is at or before o in the stream (positions
// of different kinds are not comparable: false).
func (p posKey) atOrBefore(o posKey) bool {
	if p.Kind != o.Kind {
		return false
	}
	if p.Commit != o.Commit {
		return p.Commit < o.Commit
	}
	if p.Ev != o.Ev {
		return p.Ev < o.Ev
	}
	return p.Row <= o.Row
}

// window is a chunk between its watermarks.
type window struct {
	id      string
	table   snapTable
	keyCols []string // names of the key columns
	open    bool     // the low watermark has been seen
	rows    [][]connectors.Value
	index   map[string]int // key string -> row
	gone    []bool         // the stream changed the row's key inside the window
	idx     map[*connectors.Schema][]int
	lastKey [][]byte
	final   bool
	// bound is the server's binlog position (its transaction key) read
	// right after the high watermark: a stream past it without the
	// watermarks means they never reach the binlog. 0: unknown.
	bound   uint64
	started time.Time
}

// incremental is the receiver's incremental snapshot machinery. Only the
// receiver's goroutine uses it.
type incremental struct {
	src         *Source
	state       incrState
	win         *window
	lastPoll    time.Time
	run         string // random, so window ids of different runs differ
	seq         int
	signalReady bool
	// chunksRead counts chunk SELECTs (tests look at it).
	chunksRead int
	// afterChunk, when set (by tests), runs between a chunk's SELECT and
	// its high watermark, with the chunk's table and last key.
	afterChunk func(table connectors.TableID, lastKey [][]byte)
}

func (s *Source) newIncremental(stored *streamPos) (*incremental, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	in := &incremental{src: s, run: hex.EncodeToString(rnd[:])}
	found, err := connectors.LoadSnapshotState(s.rt.DataDir, s.rt.Pipeline, &in.state)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	if !found {
		return in, nil
	}
	// Chunks after the stored position were not made durable: read them
	// again.
	in.state.Resume(func(c incrChunk) bool { return stored != nil && c.End.atOrBefore(keyOf(*stored)) })
	if cur := in.current(); cur != nil {
		s.log.Info("incremental snapshot goes on", "table", cur.Table, "after_key", keyText(in.resumeKey()), "durable_chunks", len(cur.Chunks))
	}
	return in, in.save()
}

// current is the table being read, or nil.
func (in *incremental) current() *incrTable { return in.state.Current() }

// resumeKey is where the current table's next chunk starts after (nil:
// at its start).
func (in *incremental) resumeKey() [][]byte {
	if c, ok := in.state.LastChunk(); ok {
		return c.Key
	}
	return nil
}

// prune forgets what is known durable: per table, the chunks before the
// last durable one, and tables whose final chunk is durable.
func (in *incremental) prune(acked *posKey) {
	if acked == nil {
		return
	}
	in.state.Prune(func(c incrChunk) bool { return c.End.atOrBefore(*acked) })
}

func (in *incremental) save() error {
	if err := connectors.SaveSnapshotState(in.src.rt.DataDir, in.src.rt.Pipeline, in.state); err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	return nil
}

// nextPoll is when step next looks for requests.
func (in *incremental) nextPoll() time.Time { return in.lastPoll.Add(time.Second) }

// step runs between binlog events: it takes new requests (once a second),
// and when no chunk is in flight, reads the next chunk between two
// watermarks. It reports whether it read a chunk.
func (in *incremental) step(ctx context.Context) (bool, error) {
	if time.Since(in.lastPoll) >= time.Second {
		in.lastPoll = time.Now()
		err := connectors.TakeSnapshotRequests(in.src.rt.DataDir, in.src.rt.Pipeline, func(tables []string) error {
			for _, t := range tables {
				in.state.Tables = append(in.state.Tables, incrTable{Table: t})
				in.src.log.Info("incremental snapshot requested", "table", t)
			}
			return in.save()
		})
		if err != nil {
			in.src.log.Warn("incremental snapshot requests", "error", err)
		}
	}
	read := false
	for in.win == nil && in.current() != nil {
		// Each round either opens a window or drops the request.
		if err := in.readChunk(ctx); err != nil {
			return true, err
		}
		read = true
	}
	return read, nil
}

// refusal is why a requested table cannot be read.
type refusal struct{ error }

// readChunk checks the first queued table and reads its next chunk. A
// request that cannot be served (no such table, not captured, no primary
// key, no signal table) is dropped with an error in the log; connection
// errors are returned (retryable), and the chunk is read again after the
// restart.
func (in *incremental) readChunk(ctx context.Context) error {
	cur := in.current()
	t, err := in.prepare(ctx, cur.Table)
	if err == nil {
		err = in.chunk(ctx, t)
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // stopping: not a reason to refuse
	}
	var ref refusal
	if errors.As(err, &ref) {
		return in.abandon(cur.Table, ref.error)
	}
	return err
}

// prepare checks a requested table and describes it.
func (in *incremental) prepare(ctx context.Context, name string) (snapTable, error) {
	s := in.src
	db, tn, ok := strings.Cut(name, ".")
	if !ok || db == "" || tn == "" || strings.Contains(tn, "*") {
		return snapTable{}, refusal{fmt.Errorf("%q: name one table as db.table", name)}
	}
	id := connectors.TableID{Schema: db, Name: tn}
	if s.filter.isSignal(db, tn) {
		return snapTable{}, refusal{fmt.Errorf("%s is the signal table the watermarks go into, not data", id)}
	}
	t, err := s.loadTable(ctx, s.db, id)
	if err != nil {
		var nt *noTableError
		if errors.As(err, &nt) {
			return snapTable{}, refusal{fmt.Errorf("%w; it was dropped or renamed, or never existed", err)}
		}
		return snapTable{}, in.fail(fmt.Errorf("mysql: incremental snapshot of %s: %w", id, err))
	}
	if !s.filter.match(db, tn) {
		return snapTable{}, refusal{fmt.Errorf("%s is not among the tables this pipeline captures (%s): the stream would not keep its rows up to date; add it to tables first", id, strings.Join(s.cfg.Tables, ", "))}
	}
	if len(t.keyCols) == 0 {
		return snapTable{}, refusal{fmt.Errorf("%s has no primary key, so it cannot be read in chunks", id)}
	}
	if err := in.ensureSignal(ctx); err != nil {
		return snapTable{}, err
	}
	return t, nil
}

// fail returns a connection error as it is (retryable) and turns any other
// error into a refusal.
func (in *incremental) fail(err error) error {
	err = classify(err, "", 0, "")
	if connectors.IsRetryable(err) {
		return err
	}
	return refusal{err}
}

// abandon drops a request that cannot be served, loudly, and goes on
// streaming.
func (in *incremental) abandon(table string, why error) error {
	s := in.src
	s.log.Error("incremental snapshot of a table abandoned", "table", table, "error", why)
	in.state.Drop(table)
	if in.win != nil && in.win.table.id.String() == table {
		in.win = nil
	}
	return in.save()
}

// SignalTableError says that the signal table incremental snapshots write
// their watermarks into cannot be created or written.
type SignalTableError struct {
	Table connectors.TableID
	User  string
	Op    string // "create", "write" or "use"
	Err   error
}

func (e *SignalTableError) Error() string {
	t := quoteTable(e.Table)
	var fix string
	switch {
	case isReadOnly(e.Err):
		fix = "the server is read-only: incremental snapshots write their watermarks, so point the DSN at the writable primary"
	case e.Op == "create":
		fix = fmt.Sprintf("GRANT CREATE, INSERT, UPDATE ON %s TO %s, or create it yourself: %s; and GRANT INSERT, UPDATE ON %s TO %s", t, e.User, signalDDL(e.Table), t, e.User)
	case e.Op == "write":
		fix = fmt.Sprintf("GRANT INSERT, UPDATE ON %s TO %s", t, e.User)
	default:
		fix = fmt.Sprintf("drop it, or set signal_table to another name; the source creates it as: %s", signalDDL(e.Table))
	}
	return fmt.Sprintf("mysql: incremental snapshots write watermarks into the signal table %s and cannot %s it: %v; %s", t, e.Op, e.Err, fix)
}

func (e *SignalTableError) Unwrap() error { return e.Err }

func isReadOnly(err error) bool {
	var me *driver.MySQLError
	return errors.As(err, &me) && (me.Number == 1290 || me.Number == 1836)
}

func signalDDL(id connectors.TableID) string {
	return "CREATE TABLE " + quoteTable(id) + " (pipeline varchar(191) NOT NULL PRIMARY KEY, window_id varchar(64) NOT NULL, " +
		"kind varchar(8) NOT NULL, signalled_at datetime(6) NOT NULL) ENGINE=InnoDB COMMENT='tapline incremental snapshot watermarks'"
}

// ensureSignal creates the signal table if it does not exist, and checks
// its columns if it does. Creating it needs CREATE; an existing one only
// INSERT and UPDATE.
func (in *incremental) ensureSignal(ctx context.Context) error {
	if in.signalReady {
		return nil
	}
	s := in.src
	id := s.cfg.signalTable()
	serr := func(op string, err error) error {
		err = classify(err, "", 0, "")
		if connectors.IsRetryable(err) {
			return err
		}
		return refusal{&SignalTableError{Table: id, User: "'" + s.dsn.cfg.User + "'", Op: op, Err: err}}
	}
	if id.Schema == "" {
		return refusal{errors.New("signal_table: name it as db.table")}
	}
	rows, err := s.db.QueryContext(ctx, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", id.Schema, id.Name)
	if err != nil {
		return serr("use", err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return serr("use", err)
		}
		have[strings.ToLower(c)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return serr("use", err)
	}
	if len(have) == 0 {
		if _, err := s.db.ExecContext(ctx, strings.Replace(signalDDL(id), "CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)); err != nil {
			return serr("create", err)
		}
		s.log.Info("created the signal table for incremental snapshots", "table", id.String())
	} else {
		for _, c := range []string{"pipeline", "window_id", "kind", "signalled_at"} {
			if !have[c] {
				return serr("use", fmt.Errorf("it exists and has no column %s", c))
			}
		}
	}
	in.signalReady = true
	return nil
}

// mark writes a watermark.
func (in *incremental) mark(ctx context.Context, id, kind string) error {
	s := in.src
	t := s.cfg.signalTable()
	_, err := s.db.ExecContext(ctx, "INSERT INTO "+quoteTable(t)+" (pipeline, window_id, kind, signalled_at) VALUES (?, ?, ?, UTC_TIMESTAMP(6)) "+
		"ON DUPLICATE KEY UPDATE window_id = VALUES(window_id), kind = VALUES(kind), signalled_at = VALUES(signalled_at)", s.rt.Pipeline, id, kind)
	if err != nil {
		err = classify(err, "", 0, "")
		if connectors.IsRetryable(err) {
			return fmt.Errorf("mysql: incremental snapshot: %s watermark: %w", kind, err)
		}
		in.signalReady = false // check the table again next time
		return refusal{&SignalTableError{Table: t, User: "'" + s.dsn.cfg.User + "'", Op: "write", Err: err}}
	}
	return nil
}

// chunk writes the low watermark, reads the next chunk and writes the
// high watermark.
func (in *incremental) chunk(ctx context.Context, t snapTable) error {
	s := in.src
	in.seq++
	w := &window{id: in.run + "-" + strconv.Itoa(in.seq), table: t, index: map[string]int{},
		idx: map[*connectors.Schema][]int{}, started: time.Now()}
	for _, ci := range t.keyCols {
		w.keyCols = append(w.keyCols, t.cols[ci].Name)
	}
	q, args := t.keysetQuery(in.resumeKey(), s.cfg.IncrementalChunk)
	if err := in.mark(ctx, w.id, markLow); err != nil {
		return err
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		var me *driver.MySQLError
		if errors.As(err, &me) && me.Number == 1146 { // ER_NO_SUCH_TABLE
			return refusal{fmt.Errorf("%s no longer exists (dropped or renamed while it was read): %w", t.id, err)}
		}
		return in.fail(fmt.Errorf("mysql: incremental snapshot of %s: %w", t.id, err))
	}
	raw := make([]sql.RawBytes, len(t.cols))
	dest := make([]any, len(t.cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return in.fail(fmt.Errorf("mysql: incremental snapshot of %s: %w", t.id, err))
		}
		vals, err := t.decodeRow(raw, s.opts)
		if err != nil {
			rows.Close()
			return refusal{err}
		}
		w.index[keyString(vals, t.keyCols)] = len(w.rows)
		w.rows = append(w.rows, vals)
		w.lastKey = t.rawKey(raw)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return in.fail(fmt.Errorf("mysql: incremental snapshot of %s: %w", t.id, err))
	}
	in.chunksRead++
	w.gone = make([]bool, len(w.rows))
	w.final = len(w.rows) < s.cfg.IncrementalChunk
	if w.lastKey == nil {
		w.lastKey = in.resumeKey()
	}
	if in.afterChunk != nil {
		in.afterChunk(t.id, w.lastKey)
	}
	if err := in.mark(ctx, w.id, markHigh); err != nil {
		return err
	}
	if p, err := s.currentPosition(ctx); err == nil && p.kind == s.kind {
		w.bound = p.commit
	}
	in.win = w
	return nil
}

// keyString is the canonical form of a row's key values, the same for a
// row decoded from the binlog and one read by a chunk's SELECT (both
// decode to the same values): each value as text (integers in decimal,
// whatever their Go type; strings and bytes as they are), length-prefixed
// so that composite keys cannot run into each other.
func keyString(vals []connectors.Value, idx []int) string {
	var b []byte
	for _, i := range idx {
		b = appendKeyValue(b, vals[i])
	}
	return string(b)
}

func appendKeyValue(b []byte, v connectors.Value) []byte {
	var text []byte
	switch x := v.(type) {
	case nil:
		return append(b, 0)
	case int64:
		text = strconv.AppendInt(nil, x, 10)
	case uint64:
		text = strconv.AppendUint(nil, x, 10)
	case bool:
		text = strconv.AppendBool(nil, x)
	case float64:
		text = strconv.AppendFloat(nil, x, 'g', -1, 64)
	case float32:
		text = strconv.AppendFloat(nil, float64(x), 'g', -1, 32)
	case string:
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(x)))
		return append(b, x...)
	case []byte:
		text = x
	case connectors.JSON:
		text = x
	default:
		text = fmt.Append(nil, x)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(text)))
	return append(b, text...)
}

// keyText shows a raw key for logs.
func keyText(key [][]byte) string {
	parts := make([]string, len(key))
	for i, k := range key {
		parts[i] = strconv.Quote(string(k))
	}
	return strings.Join(parts, ",")
}

// change sees a streamed change of a captured table: inside a chunk's
// window, it drops the chunk's rows with the change's keys (before and
// after).
func (in *incremental) change(schema *connectors.Schema, before, after []connectors.Value) {
	w := in.win
	if w == nil || !w.open || schema.Table != w.table.id {
		return
	}
	idx, ok := w.idx[schema]
	if !ok {
		idx = make([]int, len(w.keyCols))
		for i, name := range w.keyCols {
			idx[i] = -1
			for j, c := range schema.Columns {
				if c.Name == name {
					idx[i] = j
				}
			}
			if idx[i] < 0 { // a key column is gone: the chunk is stale
				idx = nil
				break
			}
		}
		w.idx[schema] = idx
	}
	if idx == nil {
		clear(w.index)
		for i := range w.gone {
			w.gone[i] = true
		}
		return
	}
	for _, row := range [][]connectors.Value{before, after} {
		if row == nil {
			continue
		}
		if i, ok := w.index[keyString(row, idx)]; ok {
			w.gone[i] = true
		}
	}
}

// statement sees a statement (DDL, or DML logged as a statement) in the
// stream: one that names the window's table inside the window (ALTER,
// RENAME, DROP, TRUNCATE) makes the chunk stale, and it is read again
// (a table dropped or renamed is then refused with an error).
func (in *incremental) statement(q string) {
	w := in.win
	if w == nil || !w.open || !mentions(q, w.table.id.Name) {
		return
	}
	in.src.log.Info("a statement on the table inside a chunk's window: the chunk is read again", "table", w.table.id.String())
	in.win = nil
}

// mentions reports whether statement q names a table (as a whole word,
// in any case, quoted or not).
func mentions(q, name string) bool {
	lq, ln := strings.ToLower(q), strings.ToLower(name)
	ident := func(c byte) bool {
		return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 0x80
	}
	for off := 0; ; {
		i := strings.Index(lq[off:], ln)
		if i < 0 {
			return false
		}
		start, end := off+i, off+i+len(ln)
		if (start == 0 || !ident(lq[start-1])) && (end == len(lq) || !ident(lq[end])) {
			return true
		}
		off = start + 1
	}
}

// passed sees the end of a transaction: when the stream is past the
// server's position read right after the high watermark and has not seen
// the watermarks, they do not reach the binlog, and the request is
// dropped with the likely reason instead of waiting for ever.
func (in *incremental) passed(commit uint64) error {
	w := in.win
	if w == nil || w.bound == 0 {
		return nil
	}
	past := commit > w.bound
	if in.src.kind == kindFile {
		past = commit >= w.bound
	}
	if !past {
		return nil
	}
	return in.abandon(w.table.id.String(), fmt.Errorf("the stream went past the binlog position the server had after the high watermark, without the watermarks: "+
		"the signal table %s is not written to the binlog this source reads (binlog_ignore_db or binlog_do_db, or a proxy sending writes to another server?)", in.src.cfg.signalTable()))
}

// signal handles the rows of a signal-table rows event (r.tx.ev is the
// event's); they are never emitted.
func (r *receiver) signal(ctx context.Context, e *replication.RowsEvent) error {
	if e.Rows == nil || r.incr == nil {
		return nil
	}
	if err := rowsError(e); err != nil {
		return err
	}
	wi, ki := -1, -1
	for i, n := range e.Table.ColumnName {
		switch strings.ToLower(string(n)) {
		case "window_id":
			wi = i
		case "kind":
			ki = i
		}
	}
	if len(e.Table.ColumnName) == 0 && signalColumns(e.Table) != nil {
		wi, ki = 1, 2 // binlog_row_metadata=MINIMAL: the documented layout
	}
	if wi < 0 || ki < 0 {
		return nil
	}
	step := 1
	if e.Type() == replication.EnumRowsEventTypeUpdate {
		step = 2
	} else if e.Type() != replication.EnumRowsEventTypeInsert {
		return nil
	}
	for i := 0; i+step <= len(e.Rows); i += step {
		r.tx.row++
		if r.tx.skipping && !r.afterSkip() {
			continue
		}
		after := e.Rows[i+step-1]
		if wi >= len(after) || ki >= len(after) {
			continue
		}
		if err := r.watermark(ctx, text(after[wi]), text(after[ki])); err != nil {
			return err
		}
	}
	return nil
}

func text(v connectors.Value) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

// watermark handles a watermark of the window in flight (those of other
// pipelines and of chunks read before a restart are ignored). At the high
// watermark, the chunk's rows that the stream did not change inside the
// window are emitted in its transaction, after its signal row.
func (r *receiver) watermark(ctx context.Context, id, kind string) error {
	in := r.incr
	w := in.win
	if w == nil || id != w.id {
		return nil
	}
	switch kind {
	case markLow:
		w.open = true
		return nil
	case markHigh:
	default:
		return nil
	}
	in.win = nil
	if !w.open {
		return nil // cannot be: the low one was written first; read the chunk again
	}
	s := r.src
	schema, err := r.cache.version(w.table.id, w.table.cols)
	if err != nil {
		return err
	}
	emitted := 0
	for i, vals := range w.rows {
		if w.gone[i] {
			continue
		}
		r.tx.row++
		r.tx.ordinal++
		pos := make([]byte, headerLen+len(r.tx.tail))
		r.addEvent(connectors.OpRead, schema, nil, vals, pos, r.tx.srcPos+strconv.FormatUint(uint64(r.tx.ordinal), 10))
		r.chunk[len(r.chunk)-1].ev.Source.Snapshot = true
		emitted++
		if len(r.chunk) >= 256 {
			if err := r.flush(ctx); err != nil {
				return err
			}
		}
	}
	if err := r.flush(ctx); err != nil {
		return err
	}
	cur := in.current()
	if cur == nil || cur.Table != w.table.id.String() {
		return nil // abandoned meanwhile
	}
	s.metrics.snapRows.WithLabelValues(s.rt.Pipeline, w.table.id.String()).Add(float64(emitted))
	end := posKey{Kind: s.kind, Commit: r.tx.commit, Ev: r.tx.ev, Row: r.tx.row}
	cur.Chunks = append(cur.Chunks, incrChunk{End: end, Key: w.lastKey, Rows: emitted, Final: w.final})
	s.log.Debug("incremental snapshot chunk", "table", cur.Table, "rows", emitted, "changed_in_window", len(w.rows)-emitted,
		"last_key", keyText(w.lastKey), "duration", time.Since(w.started))
	if w.final {
		s.log.Info("incremental snapshot of table done", "table", cur.Table)
	}
	in.prune(s.acked.Load())
	return in.save()
}
