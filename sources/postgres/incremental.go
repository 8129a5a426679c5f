package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tapline/tapline/connectors"
)

// Incremental snapshots re-read a table while streaming goes on, without
// locks, with the watermark technique of DBLog: the table is read in
// primary-key chunks; around each chunk's SELECT the source writes a low and
// a high watermark into the WAL (pg_logical_emit_message). When the stream
// reaches the low watermark, every change to a key of the chunk seen before
// the high watermark removes that key from the chunk (the stream's change
// is as new or newer); at the high watermark, the rest of the chunk is
// emitted as op "r" events, positioned in the high watermark's transaction.
// So snapshot rows never overwrite a newer change, in any order the view
// applies them.
//
// Requests come from connectors.RequestSnapshot; progress lives in
// <data-dir>/snapshots/<pipeline>/state.json: the tables queued and, per
// chunk emitted, the high watermark's commit LSN and the chunk's last key.
// After a restart, the chunks at or before the stored position are durable
// and the table goes on after the last of them; later ones are read again.

const snapshotPrefix = "tapline_snapshot"

// incrState is the persisted progress (see connectors.SnapshotProgress).
type incrState = connectors.SnapshotProgress[incrChunk]

type incrTable = connectors.SnapshotTable[incrChunk]

type incrChunk struct {
	HW    uint64   `json:"hw"`    // commit LSN of the high watermark's transaction
	Key   []string `json:"key"`   // the chunk's last key, as text
	Final bool     `json:"final"` // the table's last chunk
}

// IsFinal reports whether the chunk is its table's last.
func (c incrChunk) IsFinal() bool { return c.Final }

// window is a chunk between its watermarks.
type window struct {
	id      string
	table   snapTable
	keyCols []string // names of the key columns
	open    bool     // the low watermark has been seen
	rows    [][]connectors.Value
	keys    []string
	removed map[string]bool
	lastKey []string
	final   bool
	started time.Time
}

// incremental is the receiver's incremental snapshot machinery.
type incremental struct {
	src      *Source
	state    incrState
	win      *window
	lastPoll time.Time
	seq      int
	// afterChunk, when set (by tests), runs between a chunk's SELECT and
	// its high watermark, with the chunk's last key.
	afterChunk func(lastKey []string)
}

func (s *Source) newIncremental(stored connectors.TxPosition, hasStored bool) (*incremental, error) {
	in := &incremental{src: s}
	found, err := connectors.LoadSnapshotState(s.rt.DataDir, s.rt.Pipeline, &in.state)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if !found {
		return in, nil
	}
	// Chunks after the stored position were not made durable: read them
	// again. A chunk is durable when the stored position is past its high
	// watermark's transaction, not inside it.
	in.state.Resume(func(c incrChunk) bool { return hasStored && c.HW < stored.Commit })
	if cur := in.current(); cur != nil {
		s.log.Info("incremental snapshot goes on", "table", cur.Table, "after_key", in.resumeKey())
	}
	return in, in.save()
}

// current is the table being read, or nil.
func (in *incremental) current() *incrTable { return in.state.Current() }

func (in *incremental) resumeKey() []string {
	if c, ok := in.state.LastChunk(); ok {
		return c.Key
	}
	return nil
}

// prune forgets what is known durable: per table, the chunks before the
// last durable one, and tables whose final chunk is durable.
func (in *incremental) prune(acked uint64) {
	in.state.Prune(func(c incrChunk) bool { return c.HW < acked })
}

func (in *incremental) save() error {
	if err := connectors.SaveSnapshotState(in.src.rt.DataDir, in.src.rt.Pipeline, in.state); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// step runs between stream messages: it takes new requests, and when no
// chunk is in flight, reads the next chunk between two watermarks.
func (in *incremental) step(ctx context.Context) error {
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
	if in.win != nil || in.current() == nil {
		return nil
	}
	return in.readChunk(ctx)
}

// readChunk writes the low watermark, reads the next chunk of the first
// queued table and writes the high watermark.
func (in *incremental) readChunk(ctx context.Context) error {
	s := in.src
	cur := in.current()
	name := cur.Table
	id, err := parseTable(name)
	if err == nil {
		var t snapTable
		t, err = s.loadTable(ctx, s.pool, id)
		switch {
		case err != nil && !isUndefinedTable(err):
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classify(fmt.Errorf("postgres: incremental snapshot of %s: %w", name, err))
		case err == nil && len(t.keyCols) == 0:
			err = errors.New("it has no primary key, so it cannot be read in chunks")
		case err == nil:
			return in.chunk(ctx, t)
		}
	}
	// A request that can never be served (no such table, no key) is
	// dropped, loudly.
	s.log.Error("incremental snapshot of a table abandoned", "table", name, "error", err)
	in.state.Drop(name)
	return in.save()
}

func (in *incremental) chunk(ctx context.Context, t snapTable) error {
	s := in.src
	in.seq++
	w := &window{id: strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(in.seq), table: t,
		removed: map[string]bool{}, started: time.Now()}
	for _, ci := range t.keyCols {
		w.keyCols = append(w.keyCols, t.schema.Columns[ci].Name)
	}
	q, args := t.keysetQuery(in.resumeKey())
	q += fmt.Sprintf(" LIMIT %d", s.cfg.IncrementalChunk)

	if _, err := s.pool.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2)", snapshotPrefix, w.id+":low"); err != nil {
		return classify(fmt.Errorf("postgres: incremental snapshot: low watermark: %w", err))
	}
	rows, err := s.pool.Query(ctx, q, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	if err != nil {
		return classify(fmt.Errorf("postgres: incremental snapshot of %s: %w", t.id, err))
	}
	for rows.Next() {
		raw := rows.RawValues()
		vals := make([]connectors.Value, len(raw))
		for i, b := range raw {
			if b == nil {
				continue
			}
			if vals[i], err = t.cols[i].Decode(b); err != nil {
				rows.Close()
				return fmt.Errorf("postgres: incremental snapshot of %s column %s: %w", t.id, t.schema.Columns[i].Name, err)
			}
		}
		key := make([]string, len(t.keyCols))
		for i, ci := range t.keyCols {
			key[i] = string(raw[ci])
		}
		w.rows = append(w.rows, vals)
		w.keys = append(w.keys, keyString(vals, t.keyCols))
		w.lastKey = key
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return classify(fmt.Errorf("postgres: incremental snapshot of %s: %w", t.id, err))
	}
	w.final = len(w.rows) < s.cfg.IncrementalChunk
	if w.lastKey == nil {
		w.lastKey = in.resumeKey()
	}
	if in.afterChunk != nil {
		in.afterChunk(w.lastKey)
	}
	if _, err := s.pool.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2)", snapshotPrefix, w.id+":high"); err != nil {
		return classify(fmt.Errorf("postgres: incremental snapshot: high watermark: %w", err))
	}
	in.win = w
	return nil
}

// keyString is the canonical form of a row's key values.
func keyString(vals []connectors.Value, keyCols []int) string {
	var b strings.Builder
	for i, ci := range keyCols {
		if i > 0 {
			b.WriteByte(0)
		}
		fmt.Fprint(&b, vals[ci])
	}
	return b.String()
}

// change sees a streamed change: inside a chunk's window, a change to a key
// of the chunk removes that key (a truncate removes them all).
func (in *incremental) change(ev *connectors.Event) {
	w := in.win
	if w == nil || !w.open || ev.Schema.Table != w.table.id {
		return
	}
	if ev.Op == connectors.OpTruncate {
		for _, k := range w.keys {
			w.removed[k] = true
		}
		return
	}
	idx := make([]int, len(w.keyCols))
	for i, name := range w.keyCols {
		idx[i] = -1
		for j, c := range ev.Schema.Columns {
			if c.Name == name {
				idx[i] = j
			}
		}
		if idx[i] < 0 { // the key column is gone: the chunk is stale
			for _, k := range w.keys {
				w.removed[k] = true
			}
			return
		}
	}
	for _, row := range [][]connectors.Value{ev.Before, ev.After} {
		if row != nil {
			w.removed[keyString(row, idx)] = true
		}
	}
}

// message handles a watermark in the stream; r is in the watermark's
// transaction.
func (in *incremental) message(ctx context.Context, r *receiver, content string) error {
	w := in.win
	id, mark, _ := strings.Cut(content, ":")
	if w == nil || id != w.id {
		return nil // a watermark of a chunk read before a restart
	}
	if mark == "low" {
		w.open = true
		return nil
	}
	s := in.src
	schema := w.table.schema
	if rel := r.relationOf(w.table.id); rel != nil && rel.schema.SameShape(schema) {
		schema = rel.schema
	} else if rel != nil {
		// The table changed shape since the chunk was read: read it again.
		in.win = nil
		return nil
	} else {
		// No Relation message for the table yet: use the catalog's schema
		// under a version of its own.
		v := r.versions[w.table.id] + 1
		r.versions[w.table.id] = v
		var err error
		if schema, err = connectors.NewSchema(w.table.id, v, schema.Columns); err != nil {
			return fmt.Errorf("postgres: incremental snapshot of %s: %w", w.table.id, err)
		}
	}
	emitted := 0
	for i, vals := range w.rows {
		if w.removed[w.keys[i]] {
			continue
		}
		r.ordinal++
		pos := connectors.TxPosition{Commit: r.commit, Ordinal: r.ordinal}
		ev := connectors.Event{
			Op:     connectors.OpRead,
			Schema: schema,
			After:  vals,
			Source: connectors.SourceInfo{Connector: "postgres", DB: s.db, Schema: w.table.id.Schema, Table: w.table.id.Name,
				TxID: int64(r.xid), TsMs: r.commitTs.UnixMilli(), Snapshot: true, Extra: r.extra,
				Position: r.lsnStr + ":" + strconv.FormatUint(uint64(r.ordinal), 10)},
			Tx:       connectors.TxInfo{ID: r.xidStr, TotalOrder: int64(r.ordinal)},
			TsMs:     time.Now().UnixMilli(),
			Position: pos.Encode(),
		}
		if err := r.emit(ctx, item{ev: ev, isEv: true, bytes: ev.Size()}); err != nil {
			return err
		}
		emitted++
	}
	in.win = nil
	register(s.rt.Metrics, snapRows).WithLabelValues(s.rt.Pipeline, w.table.id.String()).Add(float64(emitted))
	cur := in.current()
	cur.Chunks = append(cur.Chunks, incrChunk{HW: r.commit, Key: w.lastKey, Final: w.final})
	if w.final {
		s.log.Info("incremental snapshot of table done", "table", w.table.id.String())
	}
	in.prune(s.acked.Load())
	return in.save()
}

// isUndefinedTable reports whether err says the table does not exist.
func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
}

// parseTable parses schema.name (public when the schema is left out).
func parseTable(s string) (connectors.TableID, error) {
	schema, name, ok := strings.Cut(s, ".")
	if !ok {
		schema, name = "public", s
	}
	if schema == "" || name == "" || strings.Contains(name, "*") {
		return connectors.TableID{}, fmt.Errorf("table %q: want schema.name", s)
	}
	return connectors.TableID{Schema: schema, Name: name}, nil
}
