package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mattn/go-sqlite3"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

// backend is the SQLite half of the sink. It drives the go-sqlite3 driver
// directly (one driver.Conn, no database/sql pool): the view has one
// writer, and its prepared statements then live as long as the connection,
// across transactions.
type backend struct {
	dialect
	cfg Config

	conn  *sqlite3.SQLiteConn
	tx    driver.Tx
	stmts map[string]driver.Stmt // by SQL text
	texts map[string]string      // multi-row INSERTs, by textKey
	args  []driver.NamedValue    // reused for each statement's parameters
	key   []byte                 // reused for textKey
}

// maxStmts bounds the statement cache; past it the cache starts over.
const maxStmts = 512

// maxVars is SQLite's default limit on the parameters of one statement.
const maxVars = 32766

// bigChunk is the most rows one multi-row INSERT carries.
const bigChunk = 256

func newBackend(cfg Config) *backend { return &backend{cfg: cfg} }

// dsn is a file: URI with the path escaped, so that no character of the
// path ('?', '#', '%') is taken for part of the query. The parameters
// starting with _ are go-sqlite3's, applied on open; _synchronous must come
// after WAL, which would otherwise lower it.
func (b *backend) dsn(abs string) string {
	q := url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {strings.ToUpper(b.cfg.Synchronous)},
		"_busy_timeout": {strconv.FormatInt(b.cfg.BusyTimeout.Milliseconds(), 10)},
		"_txlock":       {"immediate"},
	}
	return (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()
}

func (b *backend) open() (*sqlite3.SQLiteConn, error) {
	abs, err := filepath.Abs(b.cfg.Path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, err
	}
	c, err := (&sqlite3.SQLiteDriver{}).Open(b.dsn(abs))
	if err != nil {
		return nil, classify(err)
	}
	return c.(*sqlite3.SQLiteConn), nil
}

// Connect opens the file, checks the pragmas the guarantees rest on and
// creates the offsets table.
func (b *backend) Connect(ctx context.Context) error {
	c, err := b.open()
	if err != nil {
		return fmt.Errorf("open %s: %w", b.cfg.Path, err)
	}
	b.conn, b.stmts, b.texts = c, map[string]driver.Stmt{}, map[string]string{}
	if err := b.checkPragmas(ctx); err != nil {
		b.Close()
		return fmt.Errorf("%s: %w", b.cfg.Path, err)
	}
	if _, err := b.conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+quote(viewsql.OffsetsTable)+` (
	pipeline   TEXT PRIMARY KEY,
	position   BLOB,
	origins    TEXT NOT NULL DEFAULT '{}',
	tables     TEXT NOT NULL DEFAULT '[]',
	promoting  INTEGER NOT NULL DEFAULT 0,
	updated_at TEXT NOT NULL
)`, nil); err != nil {
		b.Close()
		return fmt.Errorf("create %s in %s: %w", viewsql.OffsetsTable, b.cfg.Path, classify(err))
	}
	return nil
}

func (b *backend) checkPragmas(ctx context.Context) error {
	mode, err := b.queryString(ctx, "PRAGMA journal_mode")
	if err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal_mode is %q, not wal (is the file on a file system without shared memory, such as a network share?)", mode)
	}
	sync, err := b.queryString(ctx, "PRAGMA synchronous")
	if err != nil {
		return fmt.Errorf("read synchronous: %w", err)
	}
	want := map[string]string{"full": "2", "normal": "1"}[strings.ToLower(b.cfg.Synchronous)]
	if sync != want {
		return fmt.Errorf("synchronous is %s, not %s (%s)", sync, want, b.cfg.Synchronous)
	}
	return nil
}

func (b *backend) queryString(ctx context.Context, q string) (string, error) {
	var out string
	err := b.query(ctx, q, nil, func(row []driver.Value) error {
		out = fmt.Sprint(asString(row[0]))
		return nil
	})
	return out, err
}

// Close closes the connection and its statements.
func (b *backend) Close() error {
	if b.conn == nil {
		return nil
	}
	if b.tx != nil {
		b.tx.Rollback()
		b.tx = nil
	}
	for _, st := range b.stmts {
		st.Close()
	}
	b.stmts = nil
	err := b.conn.Close()
	b.conn = nil
	return err
}

// Check opens the file (creating it and its directory) and takes the write
// lock for a moment, without writing anything.
func (b *backend) Check(ctx context.Context) error {
	c, err := b.open()
	if err != nil {
		return fmt.Errorf("open %s: %w", b.cfg.Path, err)
	}
	defer c.Close()
	tx, err := c.BeginTx(ctx, driver.TxOptions{})
	if err != nil {
		return fmt.Errorf("%s: take the write lock: %w", b.cfg.Path, classify(err))
	}
	return tx.Rollback()
}

// Begin starts an IMMEDIATE transaction: it takes the write lock, waiting
// up to busy_timeout for another writer.
func (b *backend) Begin(ctx context.Context) error {
	tx, err := b.conn.BeginTx(ctx, driver.TxOptions{})
	if err != nil {
		return classify(err)
	}
	b.tx = tx
	return nil
}

// Commit commits; with synchronous=FULL the WAL is fsync'ed first.
func (b *backend) Commit(context.Context) error {
	if b.tx == nil {
		return errors.New("commit without a transaction")
	}
	err := b.tx.Commit()
	b.tx = nil
	return classify(err)
}

// Rollback abandons the transaction, if any.
func (b *backend) Rollback(context.Context) {
	if b.tx != nil {
		b.tx.Rollback()
		b.tx = nil
	}
}

// Healthy reports whether the connection is open; SQLite's errors leave
// it usable.
func (b *backend) Healthy() bool { return b.conn != nil }

// stmt returns the prepared statement for q.
func (b *backend) stmt(ctx context.Context, q string) (driver.Stmt, error) {
	if st, ok := b.stmts[q]; ok {
		return st, nil
	}
	if len(b.stmts) >= maxStmts {
		for k, st := range b.stmts {
			st.Close()
			delete(b.stmts, k)
		}
	}
	st, err := b.conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("prepare %.200s: %w", q, classify(err))
	}
	b.stmts[q] = st
	return st, nil
}

// exec runs q with args. Statements run without ctx: go-sqlite3 starts a
// goroutine per statement to watch a cancellable context; callers check
// ctx between statements instead, and every statement is bounded by the
// batch.
func (b *backend) exec(ctx context.Context, q string, args []driver.NamedValue) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	st, err := b.stmt(ctx, q)
	if err != nil {
		return 0, err
	}
	res, err := st.(driver.StmtExecContext).ExecContext(context.Background(), args)
	if err != nil {
		return 0, classify(err)
	}
	return res.RowsAffected()
}

// query runs q and calls f for each row.
func (b *backend) query(ctx context.Context, q string, args []driver.NamedValue, f func([]driver.Value) error) error {
	rows, err := b.conn.QueryContext(ctx, q, args)
	if err != nil {
		return classify(err)
	}
	defer rows.Close()
	dest := make([]driver.Value, len(rows.Columns()))
	for {
		if err := rows.Next(dest); err != nil {
			if err == io.EOF {
				return nil
			}
			return classify(err)
		}
		if err := f(dest); err != nil {
			return err
		}
	}
}

func named(vals ...any) []driver.NamedValue {
	out := make([]driver.NamedValue, len(vals))
	for i, v := range vals {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return out
}

func asString(v driver.Value) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// ReadOffset reads key's row. SQLite has no row locks: the IMMEDIATE
// transaction holds the database's write lock already.
func (b *backend) ReadOffset(ctx context.Context, key string, _ bool) (*viewsql.Offset, error) {
	var off *viewsql.Offset
	err := b.query(ctx, `SELECT position, origins, tables, promoting FROM `+quote(viewsql.OffsetsTable)+` WHERE pipeline = ?`, named(key),
		func(row []driver.Value) error {
			var pos []byte
			if p, ok := row[0].([]byte); ok {
				pos = append([]byte(nil), p...)
			}
			promoting, _ := row[3].(int64)
			var err error
			off, err = viewsql.ParseOffset(pos, asString(row[1]), asString(row[2]), promoting != 0)
			return err
		})
	return off, err
}

// WriteOffset inserts or replaces key's row.
func (b *backend) WriteOffset(ctx context.Context, key string, o *viewsql.Offset) error {
	var pos any
	if o.Position != nil {
		pos = []byte(o.Position)
	}
	promoting := int64(0)
	if o.Promoting {
		promoting = 1
	}
	_, err := b.exec(ctx, `INSERT INTO `+quote(viewsql.OffsetsTable)+` (pipeline, position, origins, tables, promoting, updated_at)
VALUES (?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
ON CONFLICT (pipeline) DO UPDATE SET position = excluded.position, origins = excluded.origins, tables = excluded.tables,
	promoting = excluded.promoting, updated_at = excluded.updated_at`,
		named(key, pos, o.OriginsJSON(), o.TablesJSON(), promoting))
	return err
}

// AdvanceOffset moves key's row from position from to o's position and
// origins, in one UPDATE; it reports whether the row was at from.
func (b *backend) AdvanceOffset(ctx context.Context, key string, from []byte, o *viewsql.Offset) (bool, error) {
	var pos any
	if o.Position != nil {
		pos = []byte(o.Position)
	}
	n, err := b.exec(ctx, `UPDATE `+quote(viewsql.OffsetsTable)+` SET position = ?, origins = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE pipeline = ? AND position = ?`, named(pos, o.OriginsJSON(), key, from))
	return n == 1, err
}

// DeleteOffset deletes key's row.
func (b *backend) DeleteOffset(ctx context.Context, key string) error {
	_, err := b.exec(ctx, `DELETE FROM `+quote(viewsql.OffsetsTable)+` WHERE pipeline = ?`, named(key))
	return err
}

// DescribeTable reads the table's columns with pragma_table_info.
func (b *backend) DescribeTable(ctx context.Context, name string) (*viewsql.TableInfo, error) {
	var info viewsql.TableInfo
	type keyCol struct {
		name string
		pos  int64
	}
	var keys []keyCol
	err := b.query(ctx, `SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid`, named(name),
		func(row []driver.Value) error {
			col := viewsql.ColumnInfo{Name: asString(row[0]), Type: asString(row[1])}
			nn, _ := row[2].(int64)
			col.Nullable = nn == 0
			if pk, _ := row[3].(int64); pk > 0 {
				keys = append(keys, keyCol{col.Name, pk})
			}
			info.Columns = append(info.Columns, col)
			return nil
		})
	if err != nil || len(info.Columns) == 0 {
		return nil, err
	}
	info.Key = make([]string, len(keys))
	for _, k := range keys {
		if int(k.pos) <= len(keys) {
			info.Key[k.pos-1] = k.name
		}
	}
	return &info, nil
}

// CreateTable creates a table; a history table's __seq is its rowid.
func (b *backend) CreateTable(ctx context.Context, name string, cols []*viewsql.ColumnDef, key []string, history bool) error {
	var q strings.Builder
	q.WriteString("CREATE TABLE " + quote(name) + " (")
	if history {
		q.WriteString(quote(viewsql.HistorySeq) + " INTEGER PRIMARY KEY, ")
	}
	for i, c := range cols {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(quote(c.Name) + " " + c.Type)
		if c.Key {
			q.WriteString(" NOT NULL")
		}
	}
	if len(key) > 0 {
		q.WriteString(", PRIMARY KEY (" + quoteList(key) + ")")
	}
	q.WriteString(")")
	_, err := b.conn.ExecContext(ctx, q.String(), nil)
	return classify(err)
}

// AddColumn adds a nullable column.
func (b *backend) AddColumn(ctx context.Context, table string, col *viewsql.ColumnDef) error {
	_, err := b.conn.ExecContext(ctx, "ALTER TABLE "+quote(table)+" ADD COLUMN "+quote(col.Name)+" "+col.Type, nil)
	return classify(err)
}

// DropColumn drops a column.
func (b *backend) DropColumn(ctx context.Context, table, column string) error {
	_, err := b.conn.ExecContext(ctx, "ALTER TABLE "+quote(table)+" DROP COLUMN "+quote(column), nil)
	return classify(err)
}

// DropTable drops a table if it exists.
func (b *backend) DropTable(ctx context.Context, name string) error {
	_, err := b.conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+quote(name), nil)
	return classify(err)
}

// RenameTables renames inside the transaction, with legacy_alter_table on:
// views and triggers the user defined on a live table name keep that name
// and so read the renamed shadow table, instead of being rewritten (or
// refused, as SQLite does when the live table was just dropped).
func (b *backend) RenameTables(ctx context.Context, renames []viewsql.Rename) error {
	if len(renames) == 0 {
		return nil
	}
	if _, err := b.conn.ExecContext(ctx, "PRAGMA legacy_alter_table = ON", nil); err != nil {
		return classify(err)
	}
	defer b.conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA legacy_alter_table = OFF", nil)
	for _, r := range renames {
		if _, err := b.conn.ExecContext(ctx, "ALTER TABLE "+quote(r.From)+" RENAME TO "+quote(r.To), nil); err != nil {
			return fmt.Errorf("rename %s to %s: %w", r.From, r.To, classify(err))
		}
	}
	return nil
}

// Apply writes one table's share of a batch.
func (b *backend) Apply(ctx context.Context, tb *viewsql.TableBatch) error {
	t := quote(tb.Table)
	if tb.Truncate {
		if _, err := b.exec(ctx, "DELETE FROM "+t, nil); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
	}
	if len(tb.Deletes) > 0 {
		q := "DELETE FROM " + t + " WHERE " + b.keyMatch(tb)
		for i := range tb.Deletes {
			if _, err := b.exec(ctx, q, keyArgs(tb, &tb.Deletes[i])); err != nil {
				return fmt.Errorf("delete: %w", err)
			}
		}
	}
	for _, g := range viewsql.Groups(tb.Upserts) {
		if err := b.insert(ctx, tb, g, true); err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
	}
	for _, g := range viewsql.Groups(tb.Updates) {
		if err := b.update(ctx, tb, g); err != nil {
			return err
		}
	}
	for _, g := range viewsql.Runs(tb.Appends) {
		if err := b.insert(ctx, tb, g, false); err != nil {
			return fmt.Errorf("append: %w", err)
		}
	}
	return nil
}

func (b *backend) keyMatch(tb *viewsql.TableBatch) string {
	parts := make([]string, len(tb.Key))
	for i, ci := range tb.Key {
		parts[i] = quote(tb.Columns[ci].Name) + " = ?"
	}
	return strings.Join(parts, " AND ")
}

func keyArgs(tb *viewsql.TableBatch, r *viewsql.Row) []driver.NamedValue {
	args := make([]driver.NamedValue, len(tb.Key))
	for i, ci := range tb.Key {
		args[i] = driver.NamedValue{Ordinal: i + 1, Value: r.Vals[ci]}
	}
	return args
}

// insert writes a group with multi-row INSERTs of up to bigChunk rows (16
// and 1 for the rest, so that few statement shapes are prepared), as
// upserts by key when upsert is set.
func (b *backend) insert(ctx context.Context, tb *viewsql.TableBatch, g viewsql.Group, upsert bool) error {
	big := max(1, min(bigChunk, maxVars/len(g.Cols)))
	rows := g.Rows
	defer func() {
		clear(b.args) // let the values go
		b.args = b.args[:0]
	}()
	for len(rows) > 0 {
		n := 1
		switch {
		case len(rows) >= big:
			n = big
		case len(rows) >= 16 && big >= 16:
			n = 16
		}
		args := b.args[:0]
		for _, r := range rows[:n] {
			for _, ci := range g.Cols {
				args = append(args, driver.NamedValue{Ordinal: len(args) + 1, Value: r.Vals[ci]})
			}
		}
		b.args = args
		if _, err := b.exec(ctx, b.insertText(tb, g.Cols, n, upsert), args); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// insertText returns insertSQL's statement, built once per table,
// columns, rows and kind.
func (b *backend) insertText(tb *viewsql.TableBatch, cols []int, n int, upsert bool) string {
	b.key = textKey(b.key[:0], tb, cols, n, upsert)
	if q, ok := b.texts[string(b.key)]; ok {
		return q
	}
	if len(b.texts) >= maxStmts {
		clear(b.texts)
	}
	q := insertSQL(tb, cols, n, upsert)
	b.texts[string(b.key)] = q
	return q
}

// textKey appends to k what insertSQL's statement depends on.
func textKey(k []byte, tb *viewsql.TableBatch, cols []int, n int, upsert bool) []byte {
	k = append(k, tb.Table...)
	for _, ci := range cols {
		k = append(k, 0)
		if tb.Columns[ci].Key {
			k = append(k, 1)
		}
		k = append(k, tb.Columns[ci].Name...)
	}
	k = append(k, 0, 2)
	for _, ci := range tb.Key {
		k = append(k, 0)
		k = append(k, tb.Columns[ci].Name...)
	}
	k = append(k, 0, 3)
	if upsert {
		k = append(k, 1)
	}
	return strconv.AppendInt(k, int64(n), 10)
}

func insertSQL(tb *viewsql.TableBatch, cols []int, n int, upsert bool) string {
	var q strings.Builder
	q.WriteString("INSERT INTO " + quote(tb.Table) + " (")
	for i, ci := range cols {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(quote(tb.Columns[ci].Name))
	}
	q.WriteString(") VALUES ")
	row := "(" + strings.Repeat("?, ", len(cols)-1) + "?)"
	for i := 0; i < n; i++ {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(row)
	}
	if upsert {
		q.WriteString(" ON CONFLICT (")
		for i, ci := range tb.Key {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(quote(tb.Columns[ci].Name))
		}
		q.WriteString(")")
		first := true
		for _, ci := range cols {
			if tb.Columns[ci].Key {
				continue
			}
			if first {
				q.WriteString(" DO UPDATE SET ")
				first = false
			} else {
				q.WriteString(", ")
			}
			c := quote(tb.Columns[ci].Name)
			q.WriteString(c + " = excluded." + c)
		}
		if first {
			q.WriteString(" DO NOTHING")
		}
	}
	return q.String()
}

// update writes rows that left columns unchanged, one UPDATE each; a row
// that is not there is a MissingRowError.
func (b *backend) update(ctx context.Context, tb *viewsql.TableBatch, g viewsql.Group) error {
	var q strings.Builder
	q.WriteString("UPDATE " + quote(tb.Table) + " SET ")
	var set []int
	for _, ci := range g.Cols {
		if !tb.Columns[ci].Key {
			set = append(set, ci)
		}
	}
	if len(set) == 0 {
		// Only the key is known: the row must exist, nothing changes.
		set = tb.Key[:1]
	}
	for i, ci := range set {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(quote(tb.Columns[ci].Name) + " = ?")
	}
	q.WriteString(" WHERE " + b.keyMatch(tb))
	for i := range g.Rows {
		r := &g.Rows[i]
		args := make([]driver.NamedValue, 0, len(set)+len(tb.Key))
		for _, ci := range set {
			args = append(args, driver.NamedValue{Ordinal: len(args) + 1, Value: r.Vals[ci]})
		}
		for _, ci := range tb.Key {
			args = append(args, driver.NamedValue{Ordinal: len(args) + 1, Value: r.Vals[ci]})
		}
		n, err := b.exec(ctx, q.String(), args)
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		if n == 0 {
			return &viewsql.MissingRowError{Table: tb.Table, Key: tb.KeyString(r), Event: r.Event}
		}
	}
	return nil
}

// quote quotes an identifier.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}

// classify marks the errors a retry may cure (another writer holding the
// lock past busy_timeout) as retryable.
func classify(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked) {
		return connectors.Retryable(fmt.Errorf("%w (another writer holds the file; busy_timeout passed)", err))
	}
	return err
}

var _ viewsql.Backend = (*backend)(nil)
