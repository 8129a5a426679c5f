package postgres

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/pgconv"
)

// Snapshot positions sort before every streaming position (their tag 'S' is
// below TxPosition's 'T') and hold what an interrupted snapshot needs to go
// on: the slot's consistent point, the table's index, the number of rows
// read so far and the last primary key read.
type snapPos struct {
	CP    uint64
	Table uint32
	Row   uint64
	Key   []string // the last row's key values, as text
}

const snapTag = 'S'

func (p snapPos) encode() connectors.Position {
	key, _ := json.Marshal(p.Key)
	b := make([]byte, 21, 21+len(key))
	b[0] = snapTag
	binary.BigEndian.PutUint64(b[1:], p.CP)
	binary.BigEndian.PutUint32(b[9:], p.Table)
	binary.BigEndian.PutUint64(b[13:], p.Row)
	return append(b, key...)
}

func isSnapPos(p connectors.Position) bool { return len(p) >= 21 && p[0] == snapTag }

func decodeSnapPos(p connectors.Position) (snapPos, error) {
	if !isSnapPos(p) {
		return snapPos{}, fmt.Errorf("position %s is not a snapshot position", p)
	}
	sp := snapPos{CP: binary.BigEndian.Uint64(p[1:]), Table: binary.BigEndian.Uint32(p[9:]), Row: binary.BigEndian.Uint64(p[13:])}
	if len(p) > 21 {
		if err := json.Unmarshal(p[21:], &sp.Key); err != nil {
			return snapPos{}, fmt.Errorf("snapshot position: bad key: %w", err)
		}
	}
	return sp, nil
}

// snapTable is one table to read, with its schema.
type snapTable struct {
	id       connectors.TableID
	schema   *connectors.Schema
	cols     []pgconv.Column
	keyCols  []int    // indexes of the key columns
	keyTypes []string // their SQL types, for casting resume values
	estimate int64
}

// snapshot reads every table at the snapshot tx holds, in key order, and
// emits op "r" events positioned so that an interruption can go on after the
// last row made durable.
type snapshot struct {
	src    *Source
	tx     pgx.Tx
	conn   *pgx.Conn
	tables []snapTable
	cp     uint64
	from   *snapPos // resume after this
	chunk  int
}

// loadTables reads the columns and keys of the tables, in the snapshot's
// transaction.
func (sn *snapshot) loadTables(ctx context.Context, ids []connectors.TableID) error {
	for _, id := range ids {
		t, err := sn.src.loadTable(ctx, sn.tx, id)
		if err != nil {
			return fmt.Errorf("postgres: snapshot: %w", err)
		}
		sn.tables = append(sn.tables, t)
	}
	return nil
}

// keysetQuery selects the table's rows in primary-key order, after the key
// values after (as text) when given; a table without a key is read whole,
// in no order.
func (t snapTable) keysetQuery(after []string) (string, []any) {
	cols := make([]string, len(t.schema.Columns))
	for i, c := range t.schema.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + quoteTable(t.id)
	if len(t.keyCols) == 0 {
		return q, nil
	}
	keys := make([]string, len(t.keyCols))
	for i, ci := range t.keyCols {
		keys[i] = cols[ci]
	}
	var args []any
	if len(after) == len(keys) {
		ph := make([]string, len(keys))
		for i := range keys {
			ph[i] = fmt.Sprintf("$%d::%s", i+1, t.keyTypes[i])
			args = append(args, after[i])
		}
		q += " WHERE (" + strings.Join(keys, ", ") + ") > (" + strings.Join(ph, ", ") + ")"
	}
	return q + " ORDER BY " + strings.Join(keys, ", "), args
}

// querier is what loadTable reads the catalog with: a pool, a connection
// or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// loadTable reads the columns and primary key of a table, with a schema of
// version 1.
func (s *Source) loadTable(ctx context.Context, q querier, id connectors.TableID) (snapTable, error) {
	rows, err := q.Query(ctx, `SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod),
	        coalesce((SELECT k.n FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, n)
	                  WHERE i.indrelid = a.attrelid AND i.indisprimary AND k.attnum = a.attnum), 0),
	        (SELECT greatest(c.reltuples, 0)::bigint FROM pg_class c WHERE c.oid = a.attrelid)
	   FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, quoteTable(id))
	if err != nil {
		return snapTable{}, fmt.Errorf("read the columns of %s: %w", id, err)
	}
	var rcs []*pglogrepl.RelationMessageColumn
	var keys []int
	var types []string
	t := snapTable{id: id}
	for rows.Next() {
		var rc pglogrepl.RelationMessageColumn
		var typ string
		var key int
		if err := rows.Scan(&rc.Name, &rc.DataType, &rc.TypeModifier, &typ, &key, &t.estimate); err != nil {
			rows.Close()
			return snapTable{}, err
		}
		rcs = append(rcs, &rc)
		keys = append(keys, key)
		types = append(types, typ)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return snapTable{}, err
	}
	decoders, err := s.columns(ctx, rcs)
	if err != nil {
		return snapTable{}, err
	}
	t.cols = decoders
	cols := make([]connectors.Column, len(decoders))
	for i := range decoders {
		cols[i] = decoders[i].Column
		cols[i].Key = keys[i]
	}
	schema, err := connectors.NewSchema(id, 1, cols)
	if err != nil {
		return snapTable{}, fmt.Errorf("table %s: %w", id, err)
	}
	t.schema = schema
	t.keyCols = schema.KeyColumns()
	for _, ci := range t.keyCols {
		t.keyTypes = append(t.keyTypes, types[ci])
	}
	return t, nil
}

// run reads the tables and emits their rows, then the end-of-snapshot
// position (the consistent point) from which streaming goes on.
func (sn *snapshot) run(ctx context.Context, r *receiver) error {
	s := sn.src
	for ti, t := range sn.tables {
		var after *snapPos
		if sn.from != nil {
			if uint32(ti) < sn.from.Table {
				continue
			}
			if uint32(ti) == sn.from.Table {
				after = sn.from
			}
		}
		if err := sn.table(ctx, r, uint32(ti), t, after); err != nil {
			return err
		}
	}
	if err := sn.tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: snapshot: commit: %w", err)
	}
	s.log.Info("snapshot done; streaming from the consistent point", "consistent_point", pglogrepl.LSN(sn.cp).String())
	return r.emit(ctx, item{last: connectors.TxPosition{Commit: sn.cp}.Encode()})
}

func (sn *snapshot) table(ctx context.Context, r *receiver, ti uint32, t snapTable, after *snapPos) error {
	s := sn.src
	var afterKey []string
	row := uint64(0)
	if after != nil && len(after.Key) == len(t.keyCols) {
		afterKey, row = after.Key, after.Row
	}
	q, args := t.keysetQuery(afterKey)
	cursor := fmt.Sprintf("tapline_snap_%d", ti)
	if _, err := sn.tx.Exec(ctx, "DECLARE "+cursor+" NO SCROLL CURSOR FOR "+q, args...); err != nil {
		return fmt.Errorf("postgres: snapshot of %s: %w", t.id, err)
	}
	s.log.Info("snapshot of table starting", "table", t.id.String(), "estimated_rows", t.estimate, "resume_after_rows", row)
	progress := register(s.rt.Metrics, snapRows).WithLabelValues(s.rt.Pipeline, t.id.String())
	register(s.rt.Metrics, snapEstimate).WithLabelValues(s.rt.Pipeline, t.id.String()).Set(float64(t.estimate))
	progress.Set(float64(row))
	lastLog := time.Now()
	for {
		rows, err := sn.tx.Query(ctx, fmt.Sprintf("FETCH %d FROM %s", sn.chunk, cursor), pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return fmt.Errorf("postgres: snapshot of %s: fetch: %w", t.id, err)
		}
		n := 0
		for rows.Next() {
			raw := rows.RawValues()
			n++
			row++
			vals := make([]connectors.Value, len(raw))
			for i, b := range raw {
				if b == nil {
					continue
				}
				v, err := t.cols[i].Decode(b)
				if err != nil {
					rows.Close()
					return fmt.Errorf("postgres: snapshot of %s column %s: %w", t.id, t.schema.Columns[i].Name, err)
				}
				vals[i] = v
			}
			key := make([]string, len(t.keyCols))
			for i, ci := range t.keyCols {
				key[i] = string(raw[ci])
			}
			pos := snapPos{CP: sn.cp, Table: ti, Row: row, Key: key}.encode()
			ev := connectors.Event{
				Op:     connectors.OpRead,
				Schema: t.schema,
				After:  vals,
				Source: connectors.SourceInfo{Connector: "postgres", DB: s.db, Schema: t.id.Schema, Table: t.id.Name,
					Snapshot: true, TsMs: time.Now().UnixMilli(), Position: fmt.Sprintf("snapshot:%s:%d", t.id, row)},
				TsMs:     time.Now().UnixMilli(),
				Position: pos,
			}
			if err := r.emit(ctx, item{ev: ev, isEv: true, bytes: ev.Size()}); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: snapshot of %s: %w", t.id, err)
		}
		progress.Set(float64(row))
		if time.Since(lastLog) > 10*time.Second {
			s.log.Info("snapshot progress", "table", t.id.String(), "rows", row, "estimated_rows", t.estimate)
			lastLog = time.Now()
		}
		if n < sn.chunk {
			break
		}
	}
	if _, err := sn.tx.Exec(ctx, "CLOSE "+cursor); err != nil {
		return fmt.Errorf("postgres: snapshot of %s: %w", t.id, err)
	}
	s.log.Info("snapshot of table done", "table", t.id.String(), "rows", row)
	return nil
}
