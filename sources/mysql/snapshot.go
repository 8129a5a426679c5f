package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/mysqlconv"
)

// snapshot reads every captured table inside one consistent-snapshot
// transaction, in primary-key order and in chunks, and emits the rows as
// op "r" events positioned so that an interrupted snapshot goes on after
// the last row made durable. start is the binlog position the snapshot is
// consistent with: streaming continues from it.
type snapshot struct {
	src      *Source
	conn     *sql.Conn
	tables   []snapTable
	start    streamPos
	startEnc []byte
	from     *snapPos // resume after this
}

// snapTable is one table to read.
type snapTable struct {
	id       connectors.TableID
	schema   *connectors.Schema
	cols     []mysqlconv.Column
	keyCols  []int
	selects  string // the select list
	estimate int64
}

// quoteIdent quotes a MySQL identifier.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func quoteTable(id connectors.TableID) string {
	return quoteIdent(id.Schema) + "." + quoteIdent(id.Name)
}

// beginSnapshot opens the snapshot's connection and its transaction and
// finds the binlog position it is consistent with.
//
// MariaDB needs no lock: START TRANSACTION WITH CONSISTENT SNAPSHOT makes
// the binlog position of the snapshot available as the session status
// binlog_snapshot_file/binlog_snapshot_position, and BINLOG_GTID_POS turns
// it into a GTID position. MySQL has no such status: the source holds FLUSH
// TABLES WITH READ LOCK (the RELOAD privilege) for as long as it takes to
// start the transaction and read the position, and releases it before
// reading any row.
//
// When an interrupted snapshot goes on (from != nil), the new snapshot is
// later than the original one; streaming still starts at the original
// position, so the changes in between are applied again over the rows read
// after the restart, and an upserting view ends up equal to the tables.
func (s *Source) beginSnapshot(ctx context.Context, ids []connectors.TableID, from *snapPos) (*snapshot, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, classify(fmt.Errorf("mysql: snapshot connection: %w", err), "", 0, "")
	}
	sn := &snapshot{src: s, conn: conn, from: from}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	exec := func(q string) error {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("mysql: snapshot: %s: %w", q, err)
		}
		return nil
	}
	for _, q := range []string{"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SET SESSION net_write_timeout = 3600", "SET SESSION net_read_timeout = 3600"} {
		if err := exec(q); err != nil {
			return nil, err
		}
	}
	if s.flavor == flavorMariaDB {
		if err := exec("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
			return nil, err
		}
		var file string
		var off uint32
		rows, err := conn.QueryContext(ctx, "SHOW SESSION STATUS WHERE Variable_name IN ('binlog_snapshot_file', 'binlog_snapshot_position')")
		if err != nil {
			return nil, fmt.Errorf("mysql: snapshot: read binlog_snapshot_file: %w", err)
		}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return nil, err
			}
			switch strings.ToLower(k) {
			case "binlog_snapshot_file":
				file = v
			case "binlog_snapshot_position":
				n, _ := strconv.ParseUint(v, 10, 32)
				off = uint32(n)
			}
		}
		rows.Close()
		if file == "" {
			return nil, fmt.Errorf("mysql: snapshot: the server reports no binlog_snapshot_file (is log_bin on?)")
		}
		if s.kind == kindMaria {
			var pos sql.NullString
			if err := conn.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", file, off).Scan(&pos); err != nil {
				return nil, fmt.Errorf("mysql: snapshot: BINLOG_GTID_POS(%s, %d): %w", file, off, err)
			}
			if !pos.Valid {
				return nil, fmt.Errorf("mysql: snapshot: BINLOG_GTID_POS(%s, %d) is NULL: the binlog position of the snapshot has no GTID position", file, off)
			}
			state, err := parseGTIDPos(pos.String)
			if err != nil {
				return nil, err
			}
			sn.start = mariaBoundary(state)
		} else {
			sn.start = fileBoundary(s.server.identity, file, off)
		}
	} else {
		if err := exec("FLUSH TABLES WITH READ LOCK"); err != nil {
			return nil, fmt.Errorf("%w (MySQL has no lock-free consistent binlog position: the snapshot needs RELOAD to hold the global read lock briefly)", err)
		}
		err := func() error {
			if err := exec("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
				return err
			}
			if s.kind == kindMySQL {
				var set string
				if err := conn.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_executed").Scan(&set); err != nil {
					return fmt.Errorf("mysql: snapshot: read @@gtid_executed: %w", err)
				}
				var err error
				sn.start, err = mysqlBoundary(set)
				return err
			}
			file, off, err := s.masterStatus(ctx)
			sn.start = fileBoundary(s.server.identity, file, off)
			return err
		}()
		if uerr := exec("UNLOCK TABLES"); err == nil {
			err = uerr
		}
		if err != nil {
			return nil, err
		}
	}
	if from != nil {
		sn.start = from.Start
	}
	sn.startEnc = sn.start.encode()
	for _, id := range ids {
		t, err := s.loadTable(ctx, conn, id)
		if err != nil {
			return nil, err
		}
		_ = conn.QueryRowContext(ctx, "SELECT IFNULL(TABLE_ROWS, 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", id.Schema, id.Name).Scan(&t.estimate)
		if len(t.keyCols) == 0 {
			s.log.Warn("table has no primary key: the snapshot reads it in one query, and an interrupted snapshot reads it again from its start", "table", id.String())
		}
		sn.tables = append(sn.tables, t)
	}
	ok = true
	s.log.Info("snapshot started", "consistent_with", sn.start.String(), "tables", len(ids))
	return sn, nil
}

// run reads the tables and emits their rows, then the position the
// snapshot is consistent with, from which streaming goes on.
func (sn *snapshot) run(ctx context.Context, r *receiver) error {
	defer sn.conn.Close()
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
		if err := sn.table(ctx, r, uint32(ti), &t, after); err != nil {
			return err
		}
	}
	if _, err := sn.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("mysql: snapshot: commit: %w", err)
	}
	sn.src.log.Info("snapshot done; streaming from its binlog position", "position", sn.start.String())
	return r.emit(ctx, item{last: sn.start.encode()})
}

// loadTable describes a table to read from its catalog entry.
func (s *Source) loadTable(ctx context.Context, q querier, id connectors.TableID) (snapTable, error) {
	cols, err := s.infoColumns(ctx, q, id)
	if err != nil {
		return snapTable{}, err
	}
	t := snapTable{id: id, cols: cols}
	cc := make([]connectors.Column, len(cols))
	sel := make([]string, len(cols))
	for i := range cols {
		cc[i] = cols[i].Connector()
		sel[i] = cols[i].SelectExpr(quoteIdent(cols[i].Name))
	}
	if t.schema, err = connectors.NewSchema(id, 1, cc); err != nil {
		return snapTable{}, fmt.Errorf("mysql: snapshot: table %s: %w", id, err)
	}
	t.keyCols = t.schema.KeyColumns()
	t.selects = strings.Join(sel, ", ")
	return t, nil
}

// keysetQuery is the SELECT of the rows after key (all rows when key is
// nil) in primary-key order, at most limit of them (0: no limit; also no
// order for a table without a key). Both snapshots read with it.
func (t *snapTable) keysetQuery(key [][]byte, limit int) (string, []any) {
	q := "SELECT " + t.selects + " FROM " + quoteTable(t.id)
	var args []any
	if key != nil {
		// (k1 > ?) OR (k1 = ? AND k2 > ?) OR ...: the rows after the
		// last one read, in a form every optimizer turns into a range.
		var ors []string
		for i := range t.keyCols {
			var ands []string
			for j := 0; j <= i; j++ {
				c := &t.cols[t.keyCols[j]]
				op := " = "
				if j == i {
					op = " > "
				}
				ands = append(ands, quoteIdent(c.Name)+op+placeholder(c))
				args = append(args, keyArg(c, key[j]))
			}
			ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		}
		q += " WHERE " + strings.Join(ors, " OR ")
	}
	if len(t.keyCols) > 0 {
		names := make([]string, len(t.keyCols))
		for i, ci := range t.keyCols {
			names[i] = quoteIdent(t.cols[ci].Name)
		}
		q += " ORDER BY " + strings.Join(names, ", ")
		if limit > 0 {
			q += " LIMIT " + strconv.Itoa(limit)
		}
	}
	return q, args
}

// decodeRow decodes a row read with keysetQuery.
func (t *snapTable) decodeRow(raw []sql.RawBytes, opts mysqlconv.Options) ([]connectors.Value, error) {
	vals := make([]connectors.Value, len(raw))
	for i, b := range raw {
		if b == nil {
			continue
		}
		v, err := t.cols[i].DecodeText(b, opts)
		if err != nil {
			return nil, fmt.Errorf("mysql: snapshot of %s column %s: %w", t.id, t.cols[i].Name, err)
		}
		vals[i] = v
	}
	return vals, nil
}

// rawKey copies a row's key values as the server printed them: where a
// keyset query goes on from.
func (t *snapTable) rawKey(raw []sql.RawBytes) [][]byte {
	key := make([][]byte, len(t.keyCols))
	for i, ci := range t.keyCols {
		key[i] = append([]byte{}, raw[ci]...)
	}
	return key
}

// keyArg turns a key value, as the server printed it, into a query
// argument of the column's type.
func keyArg(c *mysqlconv.Column, raw []byte) any {
	switch c.Kind {
	case mysqlconv.KindInt, mysqlconv.KindYear:
		if c.Unsigned {
			if u, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
				return u
			}
		} else if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return i
		}
	case mysqlconv.KindFloat, mysqlconv.KindDouble:
		if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
			return f
		}
	case mysqlconv.KindChar, mysqlconv.KindVarchar, mysqlconv.KindBlob, mysqlconv.KindBit, mysqlconv.KindGeometry, mysqlconv.KindVector:
		if !c.IsText() {
			return append([]byte(nil), raw...)
		}
	}
	return string(raw)
}

// placeholder is the parameter for a key column: decimals are compared as
// decimals, not as doubles.
func placeholder(c *mysqlconv.Column) string {
	if c.Kind == mysqlconv.KindDecimal {
		return fmt.Sprintf("CAST(? AS DECIMAL(%d,%d))", c.Precision, c.Scale)
	}
	return "?"
}

func (sn *snapshot) table(ctx context.Context, r *receiver, ti uint32, t *snapTable, after *snapPos) error {
	s := sn.src
	var key [][]byte
	row := uint64(0)
	if after != nil && len(after.Key) == len(t.keyCols) && len(t.keyCols) > 0 {
		key, row = after.Key, after.Row
	}
	s.log.Info("snapshot of table starting", "table", t.id.String(), "estimated_rows", t.estimate, "resume_after_rows", row)
	gauge := s.metrics.snapRows.WithLabelValues(s.rt.Pipeline, t.id.String())
	lastLog := time.Now()
	raw := make([]sql.RawBytes, len(t.cols))
	dest := make([]any, len(t.cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	for {
		q, args := t.keysetQuery(key, s.cfg.SnapshotChunk)
		rows, err := sn.conn.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("mysql: snapshot of %s: %w", t.id, err)
		}
		n := 0
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return fmt.Errorf("mysql: snapshot of %s: %w", t.id, err)
			}
			n++
			row++
			vals, err := t.decodeRow(raw, s.opts)
			if err != nil {
				rows.Close()
				return err
			}
			key = t.rawKey(raw)
			pos := (&snapPos{Table: ti, Row: row, Start: sn.start, Key: key}).encode()
			now := time.Now().UnixMilli()
			ev := connectors.Event{
				Op:     connectors.OpRead,
				Schema: t.schema,
				After:  vals,
				Source: connectors.SourceInfo{Connector: "mysql", DB: t.id.Schema, Table: t.id.Name,
					Snapshot: true, TsMs: now, Position: "snapshot:" + t.id.String() + ":" + strconv.FormatUint(row, 10)},
				TsMs:     now,
				Position: pos,
			}
			r.chunk = append(r.chunk, item{ev: ev, isEv: true, bytes: ev.Size()})
			if len(r.chunk) >= 256 {
				if err := r.flush(ctx); err != nil {
					rows.Close()
					return err
				}
			}
		}
		rows.Close()
		if err := r.flush(ctx); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("mysql: snapshot of %s: %w", t.id, err)
		}
		gauge.Set(float64(row))
		if time.Since(lastLog) > 10*time.Second {
			s.log.Info("snapshot progress", "table", t.id.String(), "rows", row, "estimated_rows", t.estimate)
			lastLog = time.Now()
		}
		if len(t.keyCols) == 0 || n < s.cfg.SnapshotChunk {
			break
		}
	}
	s.log.Info("snapshot of table done", "table", t.id.String(), "rows", row)
	return nil
}
