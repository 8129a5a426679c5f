package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/pgconv"
)

// relation is a table as the latest Relation message described it.
type relation struct {
	id     uint32
	schema *connectors.Schema
	cols   []pgconv.Column
}

// receiver owns the replication connection.
type receiver struct {
	src       *Source
	conn      *pgconn.PgConn
	stored    connectors.TxPosition // events at or before it were delivered before a restart
	hasStored bool
	relations map[uint32]*relation
	versions  map[connectors.TableID]int

	// the transaction being decoded
	commit   uint64
	xid      uint32
	commitTs time.Time
	ordinal  uint32
	xidStr   string // the transaction's id and commit LSN as text, made once per transaction
	lsnStr   string
	extra    []connectors.Field // shared, read-only, by the transaction's events

	lastStatus time.Time

	incr *incremental // nil when the source has no data directory

	// pgoutput v2 streaming of in-progress transactions
	inStream  bool
	streamXid uint32
	spills    map[uint32]*spill
}

// discardSpills removes the spill files of transactions still open.
func (r *receiver) discardSpills() {
	for xid, sp := range r.spills {
		sp.discard()
		delete(r.spills, xid)
	}
}

func (r *receiver) run(ctx context.Context) error {
	s := r.src
	r.versions = map[connectors.TableID]int{}
	r.spills = map[uint32]*spill{}
	defer r.discardSpills()
	for {
		if err := r.maybeStatus(ctx, false); err != nil {
			return err
		}
		deadline := r.lastStatus.Add(s.cfg.StatusInterval)
		if r.incr != nil {
			if err := r.incr.step(ctx); err != nil {
				return err
			}
			if soon := time.Now().Add(time.Second); soon.Before(deadline) {
				deadline = soon // look for snapshot requests every second
			}
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		raw, err := r.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return classify(fmt.Errorf("postgres: receive from slot %q: %w", s.slot, err))
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("postgres: replication on slot %q: %w", s.slot, pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyData:
			if err := r.copyData(ctx, msg.Data); err != nil {
				return err
			}
		}
	}
}

func (r *receiver) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("postgres: keepalive: %w", err)
		}
		if ka.ReplyRequested {
			return r.maybeStatus(ctx, true)
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("postgres: xlog data: %w", err)
		}
		return r.message(ctx, xld.WALData)
	}
	return nil
}

// maybeStatus sends a standby status update when the interval has passed
// (or force): write, flush and apply are all the acknowledged LSN, so the
// server keeps every WAL record that is not durable downstream.
func (r *receiver) maybeStatus(ctx context.Context, force bool) error {
	if !force && time.Since(r.lastStatus) < r.src.cfg.StatusInterval {
		return nil
	}
	lsn := pglogrepl.LSN(r.src.acked.Load())
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn, WALFlushPosition: lsn, WALApplyPosition: lsn})
	if err != nil {
		return classify(fmt.Errorf("postgres: send status update: %w", err))
	}
	r.lastStatus = time.Now()
	return nil
}

// emit hands an item to ReadBatch, sending status updates while it waits.
func (r *receiver) emit(ctx context.Context, it item) error {
	select { // the usual case: room in the channel, no timer needed
	case r.src.out <- it:
		return nil
	default:
	}
	for {
		wait := time.Until(r.lastStatus.Add(r.src.cfg.StatusInterval))
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case r.src.out <- it:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
			if err := r.maybeStatus(ctx, true); err != nil {
				return err
			}
		}
	}
}

func (r *receiver) message(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeStreamStart:
		msg, err := pglogrepl.ParseV2(data, false)
		if err != nil {
			return fmt.Errorf("postgres: decode stream start: %w", err)
		}
		r.inStream, r.streamXid = true, msg.(*pglogrepl.StreamStartMessageV2).Xid
		if r.spills[r.streamXid] == nil {
			sp, err := newSpill(r.src.spillDir(), r.streamXid)
			if err != nil {
				return err
			}
			r.spills[r.streamXid] = sp
		}
		return nil
	case pglogrepl.MessageTypeStreamStop:
		r.inStream = false
		return nil
	case pglogrepl.MessageTypeStreamAbort:
		msg, err := pglogrepl.ParseV2(data, false)
		if err != nil {
			return fmt.Errorf("postgres: decode stream abort: %w", err)
		}
		m := msg.(*pglogrepl.StreamAbortMessageV2)
		if sp := r.spills[m.Xid]; sp != nil {
			if m.SubXid == m.Xid || m.SubXid == 0 {
				r.src.streamAborted.Add(1)
				sp.discard()
				delete(r.spills, m.Xid)
			} else {
				sp.aborted[m.SubXid] = true
			}
		}
		return nil
	case pglogrepl.MessageTypeStreamCommit:
		msg, err := pglogrepl.ParseV2(data, false)
		if err != nil {
			return fmt.Errorf("postgres: decode stream commit: %w", err)
		}
		return r.streamCommit(ctx, msg.(*pglogrepl.StreamCommitMessageV2))
	}
	if r.inStream {
		// A change of a transaction still in progress: keep it until its
		// commit, on disk. In a stream every message carries its
		// (sub)transaction id right after the type byte.
		if len(data) < 5 {
			return fmt.Errorf("postgres: streamed message %q too short", data[0])
		}
		return r.spills[r.streamXid].add(binary.BigEndian.Uint32(data[1:5]), data)
	}
	return r.decoded(ctx, data, false)
}

// streamCommit emits the changes of a streamed transaction, now committed,
// as one transaction at its commit position.
func (r *receiver) streamCommit(ctx context.Context, m *pglogrepl.StreamCommitMessageV2) error {
	sp := r.spills[m.Xid]
	delete(r.spills, m.Xid)
	r.src.streamed.Add(1)
	r.begin(uint64(m.CommitLSN), m.Xid, m.CommitTime)
	if sp != nil {
		defer sp.discard()
		if err := sp.replay(func(msg []byte) error { return r.decoded(ctx, msg, true) }); err != nil {
			return err
		}
	}
	end := connectors.TxPosition{Commit: uint64(m.TransactionEndLSN)}
	if r.skip(end) {
		return nil
	}
	return r.emit(ctx, item{last: end.Encode()})
}

// decoded handles one pgoutput message; inStream says whether it was
// written inside a stream (and so carries a transaction id).
func (r *receiver) decoded(ctx context.Context, data []byte, inStream bool) error {
	msg, err := pglogrepl.ParseV2(data, inStream)
	if err != nil {
		return fmt.Errorf("postgres: decode pgoutput message %q: %w", data[0], err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessageV2:
		return r.relation(&m.RelationMessage)
	case *pglogrepl.InsertMessageV2:
		return r.change(ctx, connectors.OpCreate, m.RelationID, nil, m.Tuple)
	case *pglogrepl.UpdateMessageV2:
		return r.change(ctx, connectors.OpUpdate, m.RelationID, m.OldTuple, m.NewTuple)
	case *pglogrepl.DeleteMessageV2:
		return r.change(ctx, connectors.OpDelete, m.RelationID, m.OldTuple, nil)
	case *pglogrepl.TruncateMessageV2:
		for _, id := range m.RelationIDs {
			if err := r.change(ctx, connectors.OpTruncate, id, nil, nil); err != nil {
				return err
			}
		}
		return nil
	case *pglogrepl.LogicalDecodingMessageV2:
		if m.Transactional && m.Prefix == snapshotPrefix && r.incr != nil {
			return r.incr.message(ctx, r, string(m.Content))
		}
		if !m.Transactional && m.Prefix == heartbeatPrefix {
			hb := connectors.TxPosition{Commit: uint64(m.LSN)}
			if r.skip(hb) {
				return nil
			}
			if !r.src.cfg.HeartbeatEvents {
				return r.emit(ctx, item{last: hb.Encode()})
			}
			return r.emit(ctx, item{ev: r.heartbeatEvent(m.LSN, hb), isEv: true, bytes: 128})
		}
		return nil
	case *pglogrepl.BeginMessage:
		r.begin(uint64(m.FinalLSN), m.Xid, m.CommitTime)
	case *pglogrepl.CommitMessage:
		// Everything that committed before the end of this transaction is
		// done: acknowledging (end, 0) lets the server skip it on restart.
		end := connectors.TxPosition{Commit: uint64(m.TransactionEndLSN)}
		if r.skip(end) {
			return nil
		}
		return r.emit(ctx, item{last: end.Encode()})
	}
	return nil
}

// relationOf returns the latest relation of a table, or nil.
func (r *receiver) relationOf(t connectors.TableID) *relation {
	for _, rel := range r.relations {
		if rel.schema.Table == t {
			return rel
		}
	}
	return nil
}

// begin starts a transaction that commits at commit.
func (r *receiver) begin(commit uint64, xid uint32, ts time.Time) {
	r.commit, r.xid, r.commitTs, r.ordinal = commit, xid, ts, 0
	r.xidStr = strconv.FormatUint(uint64(xid), 10)
	r.lsnStr = pglogrepl.LSN(commit).String()
	r.extra = []connectors.Field{{Name: "lsn", Value: r.lsnStr}}
}

// skip reports whether p was delivered before the restart.
func (r *receiver) skip(p connectors.TxPosition) bool {
	return r.hasStored && !r.stored.Less(p)
}

func (r *receiver) relation(m *pglogrepl.RelationMessage) error {
	table := connectors.TableID{Schema: m.Namespace, Name: m.RelationName}
	decoders, err := r.src.columns(context.Background(), m.Columns)
	if err != nil {
		return err
	}
	cols := make([]connectors.Column, len(m.Columns))
	key := 0
	for i, c := range m.Columns {
		cols[i] = decoders[i].Column
		if c.Flags&1 != 0 && m.ReplicaIdentity != 'f' {
			key++
			cols[i].Key = key
		}
	}
	if m.ReplicaIdentity == 'f' {
		// Under REPLICA IDENTITY FULL every column is flagged; the primary
		// key is what identifies the row.
		pk, err := r.src.primaryKey(context.Background(), m.RelationID)
		if err != nil {
			return err
		}
		for i := range cols {
			for k, name := range pk {
				if cols[i].Name == name {
					cols[i].Key = k + 1
				}
			}
		}
	}
	prev := r.relations[m.RelationID]
	version := r.versions[table]
	if prev != nil && prev.schema.Table == table {
		cand, err := connectors.NewSchema(table, prev.schema.Version, cols)
		if err != nil {
			return fmt.Errorf("postgres: table %s: %w", table, err)
		}
		if cand.SameShape(prev.schema) {
			prev.cols = decoders
			return nil
		}
	}
	version++
	r.versions[table] = version
	schema, err := connectors.NewSchema(table, version, cols)
	if err != nil {
		return fmt.Errorf("postgres: table %s: %w", table, err)
	}
	r.relations[m.RelationID] = &relation{id: m.RelationID, schema: schema, cols: decoders}
	return nil
}

func (r *receiver) change(ctx context.Context, op connectors.Op, relID uint32, old, new *pglogrepl.TupleData) error {
	rel := r.relations[relID]
	if rel == nil {
		return fmt.Errorf("postgres: change to relation %d before its Relation message", relID)
	}
	r.ordinal++
	pos := connectors.TxPosition{Commit: r.commit, Ordinal: r.ordinal}
	if r.skip(pos) {
		return nil
	}
	ev := connectors.Event{
		Op:     op,
		Schema: rel.schema,
		Source: connectors.SourceInfo{
			Connector: "postgres",
			DB:        r.src.db,
			Schema:    rel.schema.Table.Schema,
			Table:     rel.schema.Table.Name,
			TxID:      int64(r.xid),
			TsMs:      r.commitTs.UnixMilli(),
			Extra:     r.extra,
			Position:  r.lsnStr + ":" + strconv.FormatUint(uint64(r.ordinal), 10),
		},
		Tx:       connectors.TxInfo{ID: r.xidStr, TotalOrder: int64(r.ordinal)},
		TsMs:     time.Now().UnixMilli(),
		Position: pos.Encode(),
	}
	var err error
	if old != nil {
		if ev.Before, err = r.row(rel, old, nil); err != nil {
			return err
		}
	}
	if new != nil {
		if ev.After, err = r.row(rel, new, ev.Before); err != nil {
			return err
		}
	}
	if r.incr != nil {
		r.incr.change(&ev)
	}
	return r.emit(ctx, item{ev: ev, isEv: true, bytes: ev.Size()})
}

// row decodes a tuple. An unchanged TOASTed column takes its value from the
// old tuple when that holds it (REPLICA IDENTITY FULL), and is otherwise
// marked connectors.Unchanged.
func (r *receiver) row(rel *relation, t *pglogrepl.TupleData, before []connectors.Value) ([]connectors.Value, error) {
	if int(t.ColumnNum) != len(rel.schema.Columns) {
		return nil, fmt.Errorf("postgres: table %s: a row has %d columns, its relation %d", rel.schema.Table, t.ColumnNum, len(rel.schema.Columns))
	}
	vals := make([]connectors.Value, len(t.Columns))
	for i, c := range t.Columns {
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
		case pglogrepl.TupleDataTypeToast:
			if before != nil && before[i] != nil && !connectors.IsUnchanged(before[i]) {
				vals[i] = before[i]
			} else {
				vals[i] = connectors.Unchanged
			}
		case pglogrepl.TupleDataTypeText:
			v, err := rel.cols[i].Decode(c.Data)
			if err != nil {
				return nil, fmt.Errorf("postgres: table %s column %s: %w", rel.schema.Table, rel.schema.Columns[i].Name, err)
			}
			vals[i] = v
		default:
			return nil, fmt.Errorf("postgres: table %s column %s: unexpected tuple data type %q", rel.schema.Table, rel.schema.Columns[i].Name, c.DataType)
		}
	}
	return vals, nil
}

// heartbeatEvent is the heartbeat event (op h) for a heartbeat message at
// lsn: everything committed before lsn has been emitted. Its origin
// position, "lsn:0", is what a read-your-writes wait compares; a caller
// that writes its own heartbeat message after its commit gets exactly that
// LSN back from pg_logical_emit_message.
func (r *receiver) heartbeatEvent(lsn pglogrepl.LSN, pos connectors.TxPosition) connectors.Event {
	now := time.Now().UnixMilli()
	ls := lsn.String()
	return connectors.Event{
		Op: connectors.OpHeartbeat,
		Source: connectors.SourceInfo{
			Connector: "postgres",
			DB:        r.src.db,
			TsMs:      now,
			Extra:     []connectors.Field{{Name: "lsn", Value: ls}},
			Position:  ls + ":0",
		},
		TsMs:     now,
		Position: pos.Encode(),
	}
}
