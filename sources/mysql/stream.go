package mysql

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/go-mysql-org/go-mysql/client"
	gmysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/mysqlconv"
)

// receiver owns the replication connection and turns binlog events into
// items. Only its goroutine touches it.
type receiver struct {
	src   *Source
	log   *slog.Logger
	dec   *rowsDecoder
	cache *schemaCache
	hist  *schemaHistory // binlog_row_metadata=MINIMAL: the columns' names, enum values and keys

	syncer   *replication.BinlogSyncer
	streamer *replication.BinlogStreamer

	chunk []item // items not yet handed over
	now   int64  // ms since the epoch, read once per binlog event

	// pos is the last position handed over (an event or a boundary): a
	// reconnect continues strictly after it.
	pos streamPos
	// skip is set while re-reading a transaction part of which was handed
	// over before: its events up to skip.ev/skip.row are dropped.
	skip *streamPos

	// stream state between transactions
	state gtidPos // kindMaria: the GTID position after the last transaction
	set   *gmysql.MysqlGTIDSet
	file  string // the binlog file being read

	tx txState

	incr      *incremental // nil when the source has no data directory
	waitStart time.Time    // when the receiver began waiting for the next event; zero when not waiting
}

// txState is the transaction being read.
type txState struct {
	open       bool
	standalone bool // MariaDB: a single statement (DDL) without COMMIT
	sawBegin   bool
	skipping   bool
	posSet     bool // r.pos holds this transaction's resume fields

	commit  uint64
	ev, row uint32
	ordinal uint32
	start   uint32 // file offset of its first event
	gtid    gtid   // kindMaria
	gtidStr string // kindMySQL: "uuid:n"

	tail   []byte // the encoded position after the header: kind and payload
	srcPos string // SourceInfo.Position without the ordinal
	id     string
	txID   int64
	tsMs   int64
	extra  []connectors.Field
	endSet *gmysql.MysqlGTIDSet
}

func newReceiver(s *Source, start streamPos) *receiver {
	r := &receiver{src: s, log: s.log, pos: start, cache: newSchemaCache(s)}
	r.dec = newRowsDecoder(s.charsets, s.opts, s.filter)
	return r
}

// syncerConfig is the go-mysql configuration of one connection.
func (r *receiver) syncerConfig() replication.BinlogSyncerConfig {
	s := r.src
	flavor := gmysql.MySQLFlavor
	if s.flavor == flavorMariaDB {
		flavor = gmysql.MariaDBFlavor
	}
	return replication.BinlogSyncerConfig{
		ServerID:              s.serverID,
		Flavor:                flavor,
		Host:                  s.dsn.host,
		Port:                  s.dsn.port,
		User:                  s.dsn.cfg.User,
		Password:              s.dsn.cfg.Passwd,
		Localhost:             "tapline-" + s.rt.Pipeline,
		TLSConfig:             s.dsn.tls,
		HeartbeatPeriod:       s.cfg.Heartbeat,
		DisableRetrySync:      true, // reconnects are ours: they check the server first
		Dialer:                (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		RowsEventDecodeFunc:   r.dec.decode,
		RenderJSONAsMySQLText: true,
		EventCacheCount:       256,
		Logger:                slog.New(debugOnly{r.log.Handler()}).With("component", "go-mysql"),
		Option: func(c *client.Conn) error {
			// The server drops a replica that does not read for
			// net_write_timeout; tapline stops reading while the sink is
			// slow, and reconnects anyway, but not needlessly.
			_, err := c.Execute("SET SESSION net_write_timeout = 3600")
			return err
		},
	}
}

// connect starts reading the binlog after r.pos.
func (r *receiver) connect(ctx context.Context) error {
	r.close()
	p := r.pos
	r.skip = nil
	if !p.atBoundary() {
		r.skip = &p
	}
	r.tx = txState{}
	r.waitStart = time.Time{}
	syncer := replication.NewBinlogSyncer(r.syncerConfig())
	var streamer *replication.BinlogStreamer
	var err error
	switch p.kind {
	case kindMaria:
		r.state = p.before
		var set gmysql.GTIDSet
		if set, err = gmysql.ParseMariadbGTIDSet(p.before.String()); err == nil {
			streamer, err = syncer.StartSyncGTID(set)
		}
	case kindMySQL:
		if r.set, err = mysqlSet(p.setBefore); err == nil {
			streamer, err = syncer.StartSyncGTID(r.set.Clone())
		}
	case kindFile:
		r.file = p.file
		streamer, err = syncer.StartSync(gmysql.Position{Name: p.file, Pos: p.offset})
	}
	if err != nil {
		syncer.Close()
		return classify(fmt.Errorf("mysql: start reading the binlog after %s: %w", p.String(), err), p.String(), r.src.serverID, r.src.dsn.cfg.User)
	}
	r.syncer, r.streamer = syncer, streamer
	return nil
}

func (r *receiver) close() {
	if r.syncer != nil {
		r.syncer.Close()
		r.syncer, r.streamer = nil, nil
	}
}

// run reads until ctx is done or an error that reconnecting cannot fix.
func (r *receiver) run(ctx context.Context) error {
	for {
		err := r.stream(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !connectors.IsRetryable(err) {
			return err
		}
		if err := r.reconnect(ctx, err); err != nil {
			return err
		}
	}
}

// reconnect connects again after the last position handed over, checking
// the server first, with backoff, for at most reconnect_for.
func (r *receiver) reconnect(ctx context.Context, cause error) error {
	r.close()
	deadline := time.Now().Add(r.src.cfg.ReconnectFor)
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		r.src.metrics.reconnects.Inc()
		r.log.Warn("binlog connection lost; reconnecting", "error", connectors.RedactDSN(cause.Error()), "attempt", attempt, "after", r.pos.String())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		err := r.src.checkPosition(ctx, &r.pos)
		if err == nil {
			if err = r.connect(ctx); err == nil {
				return nil
			}
		}
		if !connectors.IsRetryable(err) || time.Now().After(deadline) {
			return err
		}
		cause = err
		wait = min(2*wait, 10*time.Second)
	}
}

var errSilent = errors.New("no binlog event or heartbeat for 3 heartbeat periods")

// next returns the next binlog event, or nil when it is time for the
// incremental snapshot machinery to look for requests. With heartbeats on,
// a connection that sends nothing for three heartbeat periods while the
// receiver waits is taken as dead.
func (r *receiver) next(ctx context.Context) (*replication.BinlogEvent, error) {
	if ev, err := r.streamer.GetEvent(doneCtx); err == nil {
		r.waitStart = time.Time{}
		return ev, nil
	}
	var deadline time.Time
	silent := false
	if hb := r.src.cfg.Heartbeat; hb > 0 {
		if r.waitStart.IsZero() {
			r.waitStart = time.Now()
		}
		deadline, silent = r.waitStart.Add(3*hb), true
	}
	if r.incr != nil {
		if poll := r.incr.nextPoll(); deadline.IsZero() || poll.Before(deadline) {
			deadline, silent = poll, false
		}
	}
	if deadline.IsZero() {
		return r.streamer.GetEvent(ctx)
	}
	tctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ev, err := r.streamer.GetEvent(tctx)
	if err == nil {
		r.waitStart = time.Time{}
		return ev, nil
	}
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		if silent {
			return nil, connectors.Retryable(errSilent)
		}
		return nil, nil
	}
	return nil, err
}

var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// stream handles events until an error.
func (r *receiver) stream(ctx context.Context) error {
	for {
		if r.incr != nil {
			read, err := r.incr.step(ctx)
			if err != nil {
				return err
			}
			if read {
				r.waitStart = time.Time{} // reading a chunk is not waiting for the server
			}
		}
		ev, err := r.next(ctx)
		if ev == nil && err == nil {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, replication.ErrNeedSyncAgain) || errors.Is(err, replication.ErrSyncClosed) {
				err = connectors.Retryable(err)
			}
			return classify(err, r.pos.String(), r.src.serverID, r.src.dsn.cfg.User)
		}
		r.now = time.Now().UnixMilli()
		if err := r.event(ctx, ev); err != nil {
			return err
		}
	}
}

// event handles one binlog event.
func (r *receiver) event(ctx context.Context, ev *replication.BinlogEvent) error {
	h := ev.Header
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		r.file = string(e.NextLogName)
	case *replication.MariadbGTIDEvent:
		if err := r.implicitEnd(ctx, h); err != nil {
			return err
		}
		g := gtid{Domain: e.GTID.DomainID, Server: e.GTID.ServerID, Seq: e.GTID.SequenceNumber}
		r.beginMaria(h, g, e.IsStandalone())
	case *replication.GTIDEvent:
		if err := r.implicitEnd(ctx, h); err != nil {
			return err
		}
		r.beginMySQL(h, e.SID, e.Tag.String(), e.GNO, e.ImmediateCommitTimestamp)
	case *replication.GtidTaggedLogEvent:
		if err := r.implicitEnd(ctx, h); err != nil {
			return err
		}
		r.beginMySQL(h, e.SID, e.Tag.String(), e.GNO, e.ImmediateCommitTimestamp)
	case *replication.QueryEvent:
		return r.query(ctx, h, e)
	case *replication.TableMapEvent:
		if r.src.filter.match(string(e.Schema), string(e.Table)) {
			if _, err := r.cache.tableMap(ctx, e); err != nil {
				return r.ddlErr(err)
			}
		}
	case *replication.RowsEvent:
		if !r.tx.open {
			if r.src.kind != kindFile {
				return fmt.Errorf("mysql: a rows event of %s.%s outside a transaction with a GTID at %s", e.Table.Schema, e.Table.Table, r.pos.String())
			}
			r.beginAnonymous(h)
		}
		return r.rows(ctx, h, e)
	case *replication.XIDEvent:
		return r.end(ctx, h.LogPos)
	case *replication.TransactionPayloadEvent:
		for _, inner := range e.Events {
			if err := r.event(ctx, inner); err != nil {
				return err
			}
		}
	case *replication.HeartbeatEvent:
		if !r.tx.open {
			r.src.metrics.setLag(0)
		}
	default:
		if h.EventType == replication.XA_PREPARE_LOG_EVENT && r.tx.open {
			// The changes of an XA transaction are written at XA PREPARE;
			// they are emitted then (a later XA ROLLBACK is not undone).
			return r.end(ctx, h.LogPos)
		}
	}
	return nil
}

// implicitEnd ends a transaction that is still open when the next one
// begins: MySQL writes a DDL statement (also CREATE TABLE ... SELECT with
// its rows) as a transaction without COMMIT or XID.
func (r *receiver) implicitEnd(ctx context.Context, h *replication.EventHeader) error {
	if !r.tx.open {
		return nil
	}
	return r.end(ctx, eventStart(h))
}

// eventStart is the file offset where an event begins.
func eventStart(h *replication.EventHeader) uint32 {
	if h.LogPos >= h.EventSize {
		return h.LogPos - h.EventSize
	}
	return 0
}

func (r *receiver) beginCommon(h *replication.EventHeader) {
	r.tx = txState{open: true, start: eventStart(h), tsMs: int64(h.Timestamp) * 1000}
	if h.Timestamp > 0 {
		// Binlog timestamps are whole seconds: the transaction began in
		// [ts, ts+1s), so the lag is at least now-(ts+1s). Reporting that
		// lower bound keeps a caught-up source at 0 on a busy server.
		r.src.metrics.setLag(time.Since(time.Unix(int64(h.Timestamp)+1, 0)).Seconds())
	}
}

func (r *receiver) beginMaria(h *replication.EventHeader, g gtid, standalone bool) {
	r.beginCommon(h)
	t := &r.tx
	t.standalone, t.gtid, t.id, t.txID = standalone, g, g.String(), int64(g.Seq)
	if r.src.kind != kindMaria {
		r.fileTx(h)
		t.extra = append(t.extra, connectors.Field{Name: "gtid", Value: t.id})
		return
	}
	after := r.state.with(g)
	if prev, ok := r.state.get(g.Domain); ok && g.Seq <= prev.Seq {
		r.log.Warn("GTID sequence went backwards in its domain (gtid_strict_mode is off?): positions stop following the stream's order", "gtid", t.id, "previous", prev.String())
	}
	p := streamPos{kind: kindMaria, commit: after.sum(), before: r.state, cur: &g}
	t.commit, t.tail = p.commit, p.payload()
	t.srcPos = after.String() + ":"
	t.extra = []connectors.Field{{Name: "gtid", Value: t.id}, {Name: "server_id", Value: int64(g.Server)}, {Name: "file", Value: r.file}, {Name: "pos", Value: int64(t.start)}}
	if r.skip != nil && r.skip.cur != nil && *r.skip.cur == g {
		t.skipping = true
	}
}

func (r *receiver) beginMySQL(h *replication.EventHeader, sid []byte, tag string, gno int64, commitUs uint64) {
	r.beginCommon(h)
	t := &r.tx
	if commitUs > 0 {
		t.tsMs = int64(commitUs / 1000)
	}
	u, err := uuid.FromBytes(sid)
	anonymous := err != nil || u == uuid.Nil || gno == 0
	if !anonymous {
		t.gtidStr = u.String() + ":" + strconv.FormatInt(gno, 10)
		if tag != "" {
			t.gtidStr = u.String() + ":" + tag + ":" + strconv.FormatInt(gno, 10)
		}
		t.id, t.txID = t.gtidStr, gno
	}
	if r.src.kind != kindMySQL || anonymous {
		r.fileTx(h)
		if !anonymous {
			t.extra = append(t.extra, connectors.Field{Name: "gtid", Value: t.gtidStr})
		}
		return
	}
	end := r.set.Clone().(*gmysql.MysqlGTIDSet)
	if tag != "" {
		end.AddGTIDWithTag(u, gmysql.NewTag(tag), gno)
	} else {
		end.AddGTID(u, gno)
	}
	p := streamPos{kind: kindMySQL, commit: mysqlCount(end), setBefore: r.set.String(), curGTID: t.gtidStr}
	t.commit, t.tail, t.endSet = p.commit, p.payload(), end
	t.srcPos = end.String() + "#"
	t.extra = []connectors.Field{{Name: "gtid", Value: t.gtidStr}, {Name: "server_id", Value: int64(h.ServerID)}, {Name: "file", Value: r.file}, {Name: "pos", Value: int64(t.start)}}
	if r.skip != nil && r.skip.curGTID == t.gtidStr {
		t.skipping = true
	}
}

// beginAnonymous starts a transaction that had no GTID event (a server
// without GTIDs writing a BEGIN query, or rows without one).
func (r *receiver) beginAnonymous(h *replication.EventHeader) {
	r.beginCommon(h)
	r.fileTx(h)
}

// fileTx sets the position fields of a transaction in file mode.
func (r *receiver) fileTx(h *replication.EventHeader) {
	t := &r.tx
	if r.src.kind != kindFile {
		return
	}
	p := fileBoundary(r.src.server.identity, r.file, t.start)
	p.ev = 1
	t.commit, t.tail = p.commit, p.payload()
	t.srcPos = p.server + "/" + p.file + ":" + strconv.FormatUint(uint64(t.start), 10) + "#"
	if t.id == "" {
		t.id = r.file + ":" + strconv.FormatUint(uint64(t.start), 10)
	}
	t.extra = append(t.extra, connectors.Field{Name: "server_id", Value: int64(h.ServerID)}, connectors.Field{Name: "file", Value: r.file}, connectors.Field{Name: "pos", Value: int64(t.start)})
	if r.skip != nil && r.skip.file == r.file && r.skip.offset == t.start {
		t.skipping = true
	}
}

var truncateRE = regexp.MustCompile("(?is)^\\s*(?:/\\*.*?\\*/\\s*)*truncate\\s+(?:table\\s+)?((?:`[^`]+`|[^\\s.;`]+)(?:\\s*\\.\\s*(?:`[^`]+`|[^\\s.;`]+))?)")

func (r *receiver) query(ctx context.Context, h *replication.EventHeader, e *replication.QueryEvent) error {
	q := strings.TrimSpace(string(e.Query))
	upper := strings.ToUpper(q)
	switch {
	case upper == "BEGIN" || strings.HasPrefix(upper, "XA START"):
		if !r.tx.open {
			r.beginAnonymous(h)
		}
		r.tx.sawBegin = true
		return nil
	case upper == "COMMIT" || upper == "ROLLBACK" || strings.HasPrefix(upper, "XA COMMIT") || strings.HasPrefix(upper, "XA ROLLBACK"):
		if !r.tx.open {
			return nil
		}
		return r.end(ctx, h.LogPos)
	case strings.HasPrefix(upper, "XA END"):
		return nil
	}
	// A statement: DDL, or DML logged as a statement.
	if !r.tx.open {
		r.beginAnonymous(h)
	}
	r.tx.ev++
	if r.incr != nil {
		r.incr.statement(q)
	}
	if m := truncateRE.FindStringSubmatch(q); m != nil {
		db, table := string(e.Schema), m[1]
		if d, t, ok := splitIdent(m[1]); ok {
			db, table = d, t
		} else {
			table = unquote(table)
		}
		if r.src.filter.match(db, table) {
			if err := r.truncate(ctx, connectors.TableID{Schema: db, Name: table}); err != nil {
				return err
			}
		}
	}
	if r.hist != nil {
		if err := r.historyDDL(ctx, string(e.Schema), q); err != nil {
			return err
		}
	}
	if r.tx.standalone {
		// MariaDB marks a statement that is its own transaction (DDL).
		// Others (MySQL's DDL, CREATE TABLE ... SELECT with its rows) end
		// at their XID or when the next transaction begins.
		return r.end(ctx, h.LogPos)
	}
	return nil
}

// splitIdent splits `db`.`t` (or db.t).
func splitIdent(s string) (string, string, bool) {
	if strings.HasPrefix(s, "`") {
		end := strings.Index(s[1:], "`")
		if end < 0 {
			return "", "", false
		}
		first, rest := s[1:end+1], strings.TrimSpace(s[end+2:])
		if !strings.HasPrefix(rest, ".") {
			return "", "", false
		}
		return first, unquote(strings.TrimSpace(rest[1:])), true
	}
	a, b, ok := strings.Cut(s, ".")
	if !ok {
		return "", "", false
	}
	return strings.TrimSpace(a), unquote(strings.TrimSpace(b)), true
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '`' && s[len(s)-1] == '`' {
		return strings.ReplaceAll(s[1:len(s)-1], "``", "`")
	}
	return s
}

// truncate emits a truncate event for a captured table.
func (r *receiver) truncate(ctx context.Context, id connectors.TableID) error {
	schema := r.cache.versions[id]
	if schema == nil {
		cols, err := r.src.infoColumns(ctx, r.src.db, id)
		if err != nil {
			return err
		}
		if schema, err = r.cache.version(id, cols); err != nil {
			return err
		}
	}
	r.tx.row = 1
	if r.tx.skipping && !r.afterSkip() {
		return nil
	}
	return r.emitEvent(ctx, connectors.OpTruncate, schema, nil, nil)
}

// afterSkip reports whether the current event (tx.ev, tx.row) comes after
// the part of the transaction handed over before.
func (r *receiver) afterSkip() bool {
	s := r.skip
	return r.tx.ev > s.ev || (r.tx.ev == s.ev && r.tx.row > s.row)
}

// rows emits the changes of a rows event.
func (r *receiver) rows(ctx context.Context, h *replication.EventHeader, e *replication.RowsEvent) error {
	r.tx.ev++
	r.tx.row = 0
	if r.src.filter.isSignal(string(e.Table.Schema), string(e.Table.Table)) {
		return r.signal(ctx, e)
	}
	if e.Rows == nil || !r.src.filter.match(string(e.Table.Schema), string(e.Table.Table)) {
		return nil
	}
	if err := rowsError(e); err != nil {
		return err
	}
	ti := r.cache.byID[e.TableID]
	if ti == nil || ti.tm != e.Table {
		var err error
		if ti, err = r.cache.tableMap(ctx, e.Table); err != nil {
			return r.ddlErr(err)
		}
	}
	if len(e.Rows) == 1 && len(e.Rows[0]) == 1 {
		if d, ok := e.Rows[0][0].(deferredRows); ok {
			rows, err := decodeWith(ti.dec, ti.binJSON, e, d.data, d.pos)
			if err != nil {
				return fmt.Errorf("mysql: table %s: %w", ti.id, err)
			}
			e.Rows = rows
		}
	}
	var op connectors.Op
	step := 1
	switch e.Type() {
	case replication.EnumRowsEventTypeInsert:
		op = connectors.OpCreate
	case replication.EnumRowsEventTypeUpdate:
		op, step = connectors.OpUpdate, 2
	case replication.EnumRowsEventTypeDelete:
		op = connectors.OpDelete
	default:
		return fmt.Errorf("mysql: rows event of unknown type %v", h.EventType)
	}
	// One allocation for the positions of all the event's changes, one for
	// their origin positions; the changes go over as one chunk.
	plen := headerLen + len(r.tx.tail)
	nrows := len(e.Rows) / step
	posBlock := make([]byte, nrows*plen)
	srcBuf := make([]byte, 0, nrows*(len(r.tx.srcPos)+4))
	first := len(r.chunk)
	if cap(r.chunk)-first < nrows {
		r.chunk = append(make([]item, 0, first+nrows), r.chunk...)
	}
	srcEnds := make([]int, 0, nrows)
	for i := 0; i+step <= len(e.Rows); i += step {
		r.tx.row++
		if r.tx.skipping && !r.afterSkip() {
			continue
		}
		var before, after []connectors.Value
		switch op {
		case connectors.OpCreate:
			after = e.Rows[i]
		case connectors.OpDelete:
			before = e.Rows[i]
		default:
			before, after = e.Rows[i], e.Rows[i+1]
		}
		for _, j := range ti.fixups {
			ti.fixup(before, j)
			ti.fixup(after, j)
		}
		if r.incr != nil && r.incr.win != nil {
			r.incr.change(ti.schema, before, after)
		}
		pos := posBlock[:plen:plen]
		posBlock = posBlock[plen:]
		r.tx.ordinal++
		srcBuf = append(srcBuf, r.tx.srcPos...)
		srcBuf = strconv.AppendUint(srcBuf, uint64(r.tx.ordinal), 10)
		srcEnds = append(srcEnds, len(srcBuf))
		r.addEvent(op, ti.schema, before, after, pos, "")
	}
	all := string(srcBuf)
	start := 0
	for k, end := range srcEnds {
		r.chunk[first+k].ev.Source.Position = all[start:end]
		start = end
	}
	return r.flush(ctx)
}

// fixup turns a decoded value of column i into what its MariaDB type
// shows: json text into connectors.JSON, uuid and inet bytes into text.
func (ti *tableInfo) fixup(row []connectors.Value, i int) {
	if row == nil {
		return
	}
	switch v := row[i].(type) {
	case string:
		if ti.cols[i].JSON {
			row[i] = mysqlconv.JSONValue(v)
		}
	case []byte:
		row[i] = ti.cols[i].FormatBytes(v)
	}
}

// addEvent adds one change, at (tx.commit, tx.ev, tx.row), to the chunk
// being built; pos has room for the position, srcPos is the origin
// position ("" when the caller fills it in). The ordinal is the caller's.
func (r *receiver) addEvent(op connectors.Op, schema *connectors.Schema, before, after []connectors.Value, pos []byte, srcPos string) {
	t := &r.tx
	pos[0] = streamTag
	binary.BigEndian.PutUint64(pos[1:], t.commit)
	binary.BigEndian.PutUint32(pos[9:], t.ev)
	binary.BigEndian.PutUint32(pos[13:], t.row)
	pos[17] = r.src.kind
	copy(pos[headerLen:], t.tail)
	ev := connectors.Event{
		Op:     op,
		Schema: schema,
		Before: before,
		After:  after,
		Source: connectors.SourceInfo{
			Connector: "mysql",
			DB:        schema.Table.Schema,
			Table:     schema.Table.Name,
			Position:  srcPos,
			TxID:      t.txID,
			TsMs:      t.tsMs,
			Extra:     t.extra,
		},
		Tx:       connectors.TxInfo{ID: t.id, TotalOrder: int64(t.ordinal)},
		TsMs:     r.now,
		Position: pos,
	}
	r.chunk = append(r.chunk, item{ev: ev, isEv: true, bytes: ev.Size()})
	if !t.posSet {
		r.setPosFromTx()
		t.posSet = true
	}
	r.pos.kind, r.pos.commit, r.pos.ev, r.pos.row = r.src.kind, t.commit, t.ev, t.row
}

// emitEvent hands one change over.
func (r *receiver) emitEvent(ctx context.Context, op connectors.Op, schema *connectors.Schema, before, after []connectors.Value) error {
	r.tx.ordinal++
	pos := make([]byte, headerLen+len(r.tx.tail))
	r.addEvent(op, schema, before, after, pos, r.tx.srcPos+strconv.FormatUint(uint64(r.tx.ordinal), 10))
	return r.flush(ctx)
}

// setPosFromTx fills r.pos's resume fields from the open transaction.
func (r *receiver) setPosFromTx() {
	t := &r.tx
	switch r.src.kind {
	case kindMaria:
		g := t.gtid
		r.pos.before, r.pos.cur = r.state, &g
	case kindMySQL:
		r.pos.setBefore, r.pos.curGTID = r.set.String(), t.gtidStr
	case kindFile:
		r.pos.server, r.pos.file, r.pos.offset = r.src.server.identity, r.file, t.start
	}
}

// end closes the transaction: the stream state moves past it and its end
// (for file positions: next, the offset after it) is handed over as a
// position.
func (r *receiver) end(ctx context.Context, next uint32) error {
	t := &r.tx
	if !t.open {
		return nil
	}
	var p streamPos
	switch r.src.kind {
	case kindMaria:
		if t.id == "" { // no GTID event: nothing to move
			r.tx = txState{}
			return nil
		}
		r.state = r.state.with(t.gtid)
		p = mariaBoundary(r.state)
	case kindMySQL:
		if t.endSet == nil {
			r.tx = txState{}
			return nil
		}
		r.set = t.endSet
		p = streamPos{kind: kindMySQL, commit: t.commit, ev: boundary, row: boundary, setBefore: r.set.String()}
	case kindFile:
		p = fileBoundary(r.src.server.identity, r.file, next)
	}
	if r.skip != nil && t.skipping {
		r.skip = nil
	}
	if r.incr != nil {
		if err := r.incr.passed(t.commit); err != nil {
			return err
		}
	}
	r.tx = txState{}
	if err := r.emit(ctx, item{last: p.encode()}); err != nil {
		return err
	}
	r.pos = p
	return nil
}

// emit hands an item (and the chunk before it) to ReadBatch.
func (r *receiver) emit(ctx context.Context, it item) error {
	r.chunk = append(r.chunk, it)
	return r.flush(ctx)
}

// flush hands the chunk built so far to ReadBatch, waiting while the
// channel is full: that wait is the backpressure on the binlog reader.
func (r *receiver) flush(ctx context.Context) error {
	if len(r.chunk) == 0 {
		return nil
	}
	c := r.chunk
	r.chunk = make([]item, 0, 32)
	select {
	case r.src.out <- c:
		return nil
	default:
	}
	select {
	case r.src.out <- c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// debugOnly logs go-mysql's messages at debug level: the source acts on
// (and reports) every error go-mysql returns, and its chatter (every
// connect, rotate and close) is not for the pipeline's log.
type debugOnly struct{ slog.Handler }

func (d debugOnly) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.Handler.Enabled(ctx, slog.LevelDebug)
}

func (d debugOnly) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return d.Handler.Handle(ctx, r)
}

func (d debugOnly) WithAttrs(a []slog.Attr) slog.Handler { return debugOnly{d.Handler.WithAttrs(a)} }
func (d debugOnly) WithGroup(g string) slog.Handler      { return debugOnly{d.Handler.WithGroup(g)} }

// historyDDL applies a statement to the schema history and, when it changed
// a captured table, stores the history before anything after it is
// emitted.
func (r *receiver) historyDDL(ctx context.Context, db, q string) error {
	changed, err := r.src.applyDDL(ctx, r.hist, db, q, r.pos.String()+" (transaction "+r.tx.id+")")
	if err != nil || len(changed) == 0 {
		return err
	}
	for k := range changed {
		d, t := splitHistKey(k)
		r.cache.forget(d, t)
	}
	r.log.Info("schema history: DDL applied", "statement", q, "tables", len(changed))
	return r.hist.record(posKey{Kind: r.src.kind, Commit: r.tx.commit}, q, r.src.acked.Load())
}

// ddlErr adds the position to a schema history error.
func (r *receiver) ddlErr(err error) error {
	var de *DDLError
	if errors.As(err, &de) && de.Position == "" {
		de.Position = r.pos.String()
	}
	return err
}
