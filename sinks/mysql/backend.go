package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

// backend is the MySQL half of the sink, on one connection.
//
// A statement text the sink runs again (the multi-row INSERT of a full
// batch, the position's UPDATE, ...) is prepared on the server the second
// time it is seen and kept: it then runs without being parsed again, its
// values sent in binary. Other statements have their parameters
// interpolated by the driver, which saves the round trip of a prepare.
//
// The session runs with autocommit off, so that a transaction starts with
// its first statement, without a round trip of its own; a statement run
// outside Begin and Commit is committed right after it. Transactions are
// thus not database/sql Txs, which would also prepare every kept statement
// again in each transaction.
type backend struct {
	dialect
	mc *mysql.Config

	db        *sql.DB
	conn      *sql.Conn
	inTx      bool
	broken    bool
	packet    int    // the bytes one statement may take: half of max_allowed_packet
	collation string // of the view's tables: binary, without pad where the server has it

	stmts map[string]*sql.Stmt // prepared on conn, by text
	seen  map[string]bool      // texts run once, interpolated
}

// maxRows bounds the rows of one statement.
const maxRows = 1000

// maxPlaceholders is the most parameters a prepared statement takes.
const maxPlaceholders = 65535

// maxStmts bounds the statements kept prepared, and the texts remembered
// as seen once; past it each starts over.
const maxStmts = 64

func newBackend(cfg Config) (*backend, error) {
	mc, err := mysql.ParseDSN(cfg.DSN.Reveal())
	if err != nil {
		return nil, fmt.Errorf("dsn: %s", connectors.RedactDSN(err.Error()))
	}
	// The driver interpolates parameters itself (as the server would, with
	// the connection's escaping rules), counts matched rather than changed
	// rows (an update that changes nothing still finds its row), and leaves
	// dates as text.
	mc.InterpolateParams = true
	mc.ClientFoundRows = true
	mc.ParseTime = false
	mc.MultiStatements = false
	// utf8mb4 on the connection, whatever the server's default.
	mc.Collation = "utf8mb4_general_ci"
	if mc.Timeout == 0 {
		mc.Timeout = 10 * time.Second
	}
	return &backend{mc: mc}, nil
}

// quote quotes an identifier.
func quote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}

// redacted is an error whose message has no password in it; it unwraps to
// the driver's error for classification.
type redacted struct{ err error }

func (e *redacted) Error() string { return connectors.RedactDSN(e.err.Error()) }
func (e *redacted) Unwrap() error { return e.err }

func (b *backend) open(ctx context.Context) (*sql.DB, *sql.Conn, error) {
	connector, err := mysql.NewConnector(b.mc)
	if err != nil {
		return nil, nil, &redacted{err}
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, nil, classify(&redacted{err})
	}
	return db, conn, nil
}

// Connect connects, sets the session up, reads max_allowed_packet, picks
// the tables' collation and creates the offsets table.
func (b *backend) Connect(ctx context.Context) error {
	db, conn, err := b.open(ctx)
	if err != nil {
		return fmt.Errorf("connect to %s/%s: %w", b.mc.Addr, b.mc.DBName, err)
	}
	b.db, b.conn, b.broken, b.inTx = db, conn, false, false
	b.stmts, b.seen = map[string]*sql.Stmt{}, map[string]bool{}
	if err := b.setup(ctx); err != nil {
		b.Close()
		return err
	}
	return nil
}

func (b *backend) setup(ctx context.Context) error {
	// Strict mode: a value the column cannot hold is an error, never a
	// silently cut or zeroed one.
	if _, err := b.conn.ExecContext(ctx, "SET SESSION sql_mode = CONCAT_WS(',', @@sql_mode, 'STRICT_ALL_TABLES', 'NO_ENGINE_SUBSTITUTION'), time_zone = '+00:00'"); err != nil {
		return fmt.Errorf("set the session up: %w", classify(err))
	}
	var packet int64
	if err := b.conn.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&packet); err != nil {
		return fmt.Errorf("read max_allowed_packet: %w", classify(err))
	}
	b.packet = int(packet / 2)
	b.collation = "utf8mb4_bin"
	rows, err := b.conn.QueryContext(ctx, "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN ('utf8mb4_0900_bin', 'utf8mb4_nopad_bin')")
	if err != nil {
		return fmt.Errorf("read the collations: %w", classify(err))
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err == nil {
			b.collation = c
		}
	}
	rows.Close()
	_, err = b.conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+quote(viewsql.OffsetsTable)+` (
	pipeline   VARCHAR(255) NOT NULL PRIMARY KEY,
	position   VARBINARY(1024) NULL,
	origins    LONGTEXT NOT NULL,
	tables     LONGTEXT NOT NULL,
	promoting  BOOLEAN NOT NULL DEFAULT FALSE,
	updated_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=`+b.collation)
	if err != nil {
		return fmt.Errorf("create %s: %w", viewsql.OffsetsTable, classify(err))
	}
	if _, err := b.conn.ExecContext(ctx, "SET SESSION autocommit = 0"); err != nil {
		return fmt.Errorf("set the session up: %w", classify(err))
	}
	return nil
}

// Close closes the connection.
func (b *backend) Close() error {
	if b.db == nil {
		return nil
	}
	b.Rollback(context.Background())
	b.forget()
	b.conn.Close()
	err := b.db.Close()
	b.db, b.conn = nil, nil
	return err
}

// Check connects and checks that the server accepts writes.
func (b *backend) Check(ctx context.Context) error {
	db, conn, err := b.open(ctx)
	if err != nil {
		return fmt.Errorf("connect to %s/%s: %w", b.mc.Addr, b.mc.DBName, err)
	}
	defer db.Close()
	defer conn.Close()
	var readOnly int
	if err := conn.QueryRowContext(ctx, "SELECT @@read_only").Scan(&readOnly); err != nil {
		return classify(err)
	}
	if readOnly != 0 {
		return errors.New("the server is read-only (read_only=ON, a replica?); point dsn at the primary")
	}
	var engine string
	if err := conn.QueryRowContext(ctx, "SELECT ENGINE FROM information_schema.ENGINES WHERE ENGINE = 'InnoDB' AND SUPPORT IN ('YES', 'DEFAULT')").Scan(&engine); err != nil {
		return fmt.Errorf("InnoDB is not available (the view needs transactions): %w", classify(err))
	}
	return nil
}

// Begin starts a transaction: with autocommit off, the next statement
// starts it on the server.
func (b *backend) Begin(ctx context.Context) error {
	if b.inTx {
		return errors.New("begin within a transaction")
	}
	b.inTx = true
	return nil
}

// Commit commits the transaction.
func (b *backend) Commit(ctx context.Context) error {
	if !b.inTx {
		return errors.New("commit without a transaction")
	}
	b.inTx = false
	_, err := b.conn.ExecContext(ctx, "COMMIT")
	if err != nil {
		// Whether it committed is unknown; the connection is not to be
		// trusted with the next transaction either.
		b.broken = true
	}
	return b.fail(err)
}

// Rollback abandons the transaction, if any. It runs even when ctx is
// done, so that the connection is left outside a transaction.
func (b *backend) Rollback(ctx context.Context) {
	if !b.inTx {
		return
	}
	b.inTx = false
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.mc.Timeout)
	defer cancel()
	if _, err := b.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		b.broken = true
	}
}

// settle commits the implicit transaction of a statement that ran outside
// Begin and Commit, and returns err, the statement's.
func (b *backend) settle(ctx context.Context, err error) error {
	if b.inTx {
		return err
	}
	if _, cerr := b.conn.ExecContext(ctx, "COMMIT"); cerr != nil {
		b.broken = true
		if err == nil {
			err = b.fail(cerr)
		}
	}
	return err
}

// Healthy reports whether no connection error happened.
func (b *backend) Healthy() bool { return b.conn != nil && !b.broken }

// fail classifies err and notes a broken connection.
func (b *backend) fail(err error) error {
	err = classify(err)
	if connectors.IsRetryable(err) {
		b.broken = true
	}
	return err
}

// q is what statements run on: the connection (inside or outside the
// transaction Begin started).
func (b *backend) q() *sql.Conn { return b.conn }

// exec runs query with its parameters interpolated.
func (b *backend) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := b.conn.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, b.settle(ctx, b.fail(err))
	}
	n, err := res.RowsAffected()
	return n, b.settle(ctx, err)
}

// run runs query: prepared on the server if the text was seen before, else
// with its parameters interpolated.
func (b *backend) run(ctx context.Context, query string, args ...any) (int64, error) {
	st, ok := b.stmts[query]
	if !ok {
		if !b.seen[query] {
			if len(b.seen) >= maxStmts {
				clear(b.seen)
			}
			b.seen[query] = true
			return b.exec(ctx, query, args...)
		}
		if len(b.stmts) >= maxStmts {
			b.forget()
		}
		var err error
		if st, err = b.conn.PrepareContext(ctx, query); err != nil {
			return 0, b.settle(ctx, b.fail(err))
		}
		b.stmts[query] = st
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, b.settle(ctx, b.fail(err))
	}
	n, err := res.RowsAffected()
	return n, b.settle(ctx, err)
}

// forget closes the prepared statements.
func (b *backend) forget() {
	for q, st := range b.stmts {
		st.Close()
		delete(b.stmts, q)
	}
	clear(b.seen)
}

// ReadOffset reads key's row, locking it with forUpdate.
func (b *backend) ReadOffset(ctx context.Context, key string, forUpdate bool) (*viewsql.Offset, error) {
	q := "SELECT position, origins, tables, promoting FROM " + quote(viewsql.OffsetsTable) + " WHERE pipeline = ?"
	if forUpdate {
		q += " FOR UPDATE"
	}
	var (
		pos             []byte
		origins, tables string
		promoting       bool
	)
	err := b.q().QueryRowContext(ctx, q, key).Scan(&pos, &origins, &tables, &promoting)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, b.settle(ctx, nil)
	}
	if err != nil {
		return nil, b.settle(ctx, b.fail(err))
	}
	if err := b.settle(ctx, nil); err != nil {
		return nil, err
	}
	return viewsql.ParseOffset(pos, origins, tables, promoting)
}

// WriteOffset inserts or replaces key's row.
func (b *backend) WriteOffset(ctx context.Context, key string, o *viewsql.Offset) error {
	var pos any
	if o.Position != nil {
		pos = []byte(o.Position)
	}
	_, err := b.exec(ctx, "INSERT INTO "+quote(viewsql.OffsetsTable)+` (pipeline, position, origins, tables, promoting, updated_at)
VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE position = VALUES(position), origins = VALUES(origins), tables = VALUES(tables),
	promoting = VALUES(promoting), updated_at = VALUES(updated_at)`,
		key, pos, o.OriginsJSON(), o.TablesJSON(), o.Promoting)
	return err
}

// AdvanceOffset moves key's row from position from to o's position and
// origins, in one UPDATE; it reports whether the row was at from (the
// connection counts matched rows, so a row already so reports 1).
func (b *backend) AdvanceOffset(ctx context.Context, key string, from []byte, o *viewsql.Offset) (bool, error) {
	var pos any
	if o.Position != nil {
		pos = []byte(o.Position)
	}
	n, err := b.run(ctx, "UPDATE "+quote(viewsql.OffsetsTable)+` SET position = ?, origins = ?, updated_at = UTC_TIMESTAMP(6)
WHERE pipeline = ? AND position = ?`, pos, o.OriginsJSON(), key, from)
	return n == 1, err
}

// DeleteOffset deletes key's row.
func (b *backend) DeleteOffset(ctx context.Context, key string) error {
	_, err := b.exec(ctx, "DELETE FROM "+quote(viewsql.OffsetsTable)+" WHERE pipeline = ?", key)
	return err
}

// DescribeTable reads the table's columns and primary key from
// information_schema.
func (b *backend) DescribeTable(ctx context.Context, name string) (*viewsql.TableInfo, error) {
	info, err := b.describe(ctx, name)
	return info, b.settle(ctx, err)
}

func (b *backend) describe(ctx context.Context, name string) (*viewsql.TableInfo, error) {
	rows, err := b.q().QueryContext(ctx, `SELECT c.COLUMN_NAME, c.COLUMN_TYPE, c.IS_NULLABLE = 'YES', COALESCE(k.ORDINAL_POSITION, 0)
FROM information_schema.COLUMNS c
LEFT JOIN information_schema.KEY_COLUMN_USAGE k ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME
	AND k.COLUMN_NAME = c.COLUMN_NAME AND k.CONSTRAINT_NAME = 'PRIMARY'
WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME = ?
ORDER BY c.ORDINAL_POSITION`, name)
	if err != nil {
		return nil, b.fail(err)
	}
	defer rows.Close()
	var info viewsql.TableInfo
	keys := map[int]string{}
	for rows.Next() {
		var c viewsql.ColumnInfo
		var pos int
		if err := rows.Scan(&c.Name, &c.Type, &c.Nullable, &pos); err != nil {
			return nil, err
		}
		if pos > 0 {
			keys[pos] = c.Name
		}
		info.Columns = append(info.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, b.fail(err)
	}
	if len(info.Columns) == 0 {
		return nil, nil
	}
	for i := 1; i <= len(keys); i++ {
		info.Key = append(info.Key, keys[i])
	}
	return &info, nil
}

// CreateTable creates an InnoDB table; a history table's __seq is an
// AUTO_INCREMENT key. Strings compare as binary, as in the source.
func (b *backend) CreateTable(ctx context.Context, name string, cols []*viewsql.ColumnDef, key []string, history bool) error {
	var s strings.Builder
	s.WriteString("CREATE TABLE IF NOT EXISTS " + quote(name) + " (")
	if history {
		s.WriteString(quote(viewsql.HistorySeq) + " BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, ")
	}
	for i, c := range cols {
		if i > 0 {
			s.WriteString(", ")
		}
		s.WriteString(quote(c.Name) + " " + c.Type)
		if c.Key {
			s.WriteString(" NOT NULL")
		} else {
			s.WriteString(" NULL")
		}
	}
	if len(key) > 0 {
		s.WriteString(", PRIMARY KEY (" + quoteList(key) + ")")
	}
	s.WriteString(") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=" + b.collation)
	_, err := b.exec(ctx, s.String())
	return err
}

// AddColumn adds a nullable column.
func (b *backend) AddColumn(ctx context.Context, table string, col *viewsql.ColumnDef) error {
	_, err := b.exec(ctx, "ALTER TABLE "+quote(table)+" ADD COLUMN "+quote(col.Name)+" "+col.Type+" NULL")
	return err
}

// DropColumn drops a column.
func (b *backend) DropColumn(ctx context.Context, table, column string) error {
	_, err := b.exec(ctx, "ALTER TABLE "+quote(table)+" DROP COLUMN "+quote(column))
	return err
}

// DropTable drops a table if it exists.
func (b *backend) DropTable(ctx context.Context, name string) error {
	_, err := b.exec(ctx, "DROP TABLE IF EXISTS "+quote(name))
	return err
}

// RenameTables renames all tables in one RENAME TABLE, which is atomic.
func (b *backend) RenameTables(ctx context.Context, renames []viewsql.Rename) error {
	if len(renames) == 0 {
		return nil
	}
	parts := make([]string, len(renames))
	for i, r := range renames {
		parts[i] = quote(r.From) + " TO " + quote(r.To)
	}
	_, err := b.exec(ctx, "RENAME TABLE "+strings.Join(parts, ", "))
	return err
}

// Apply writes one table's share of a batch.
func (b *backend) Apply(ctx context.Context, tb *viewsql.TableBatch) error {
	t := quote(tb.Table)
	if tb.Truncate {
		// TRUNCATE would commit the transaction: DELETE keeps it whole.
		if _, err := b.exec(ctx, "DELETE FROM "+t); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
	}
	if len(tb.Deletes) > 0 {
		if err := b.deletes(ctx, tb); err != nil {
			return fmt.Errorf("delete: %w", err)
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

// size estimates the bytes a value takes in an interpolated statement
// (escaping can double a string).
func size(v any) int {
	switch x := v.(type) {
	case string:
		return 2*len(x) + 3
	case []byte:
		return 2*len(x) + 10
	case nil:
		return 4
	}
	return 24
}

// chunks cuts rows into runs that fit one statement: at most maxRows rows,
// maxPlaceholders parameters and packet bytes (a single larger row goes
// alone, and the server judges).
func (b *backend) chunks(rows []viewsql.Row, cols []int, fixed int, f func([]viewsql.Row) error) error {
	most := min(maxRows, max(1, maxPlaceholders/len(cols)))
	start, bytes := 0, fixed
	for i := range rows {
		n := 8
		for _, ci := range cols {
			n += size(rows[i].Vals[ci])
		}
		if i > start && (i-start >= most || bytes+n > b.packet) {
			if err := f(rows[start:i]); err != nil {
				return err
			}
			start, bytes = i, fixed
		}
		bytes += n
	}
	return f(rows[start:])
}

// insert writes a group with multi-row INSERTs, as upserts by key when
// upsert is set.
func (b *backend) insert(ctx context.Context, tb *viewsql.TableBatch, g viewsql.Group, upsert bool) error {
	var head, tail strings.Builder
	head.WriteString("INSERT INTO " + quote(tb.Table) + " (")
	for i, ci := range g.Cols {
		if i > 0 {
			head.WriteString(", ")
		}
		head.WriteString(quote(tb.Columns[ci].Name))
	}
	head.WriteString(") VALUES ")
	if upsert {
		tail.WriteString(" ON DUPLICATE KEY UPDATE ")
		n := 0
		for _, ci := range g.Cols {
			if tb.Columns[ci].Key {
				continue
			}
			if n > 0 {
				tail.WriteString(", ")
			}
			n++
			c := quote(tb.Columns[ci].Name)
			tail.WriteString(c + " = VALUES(" + c + ")")
		}
		if n == 0 {
			c := quote(tb.Columns[tb.Key[0]].Name)
			tail.WriteString(c + " = " + c)
		}
	}
	row := "(" + strings.Repeat("?, ", len(g.Cols)-1) + "?)"
	h, tl := head.String(), tail.String()
	var args []any
	var q strings.Builder
	return b.chunks(g.Rows, g.Cols, len(h)+len(tl), func(rows []viewsql.Row) error {
		q.Reset()
		q.WriteString(h)
		args = args[:0]
		for i := range rows {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(row)
			for _, ci := range g.Cols {
				args = append(args, rows[i].Vals[ci])
			}
		}
		q.WriteString(tl)
		_, err := b.run(ctx, q.String(), args...)
		return err
	})
}

// deletes deletes rows by lists of keys.
func (b *backend) deletes(ctx context.Context, tb *viewsql.TableBatch) error {
	names := make([]string, len(tb.Key))
	for i, ci := range tb.Key {
		names[i] = quote(tb.Columns[ci].Name)
	}
	head := "DELETE FROM " + quote(tb.Table) + " WHERE "
	one := "?"
	if len(names) == 1 {
		head += names[0] + " IN ("
	} else {
		head += "(" + strings.Join(names, ", ") + ") IN ("
		one = "(" + strings.Repeat("?, ", len(names)-1) + "?)"
	}
	var args []any
	var q strings.Builder
	return b.chunks(tb.Deletes, tb.Key, len(head)+1, func(rows []viewsql.Row) error {
		q.Reset()
		q.WriteString(head)
		args = args[:0]
		for i := range rows {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(one)
			for _, ci := range tb.Key {
				args = append(args, rows[i].Vals[ci])
			}
		}
		q.WriteString(")")
		_, err := b.run(ctx, q.String(), args...)
		return err
	})
}

// update writes rows that left columns unchanged, one UPDATE each; a row
// that is not there is a MissingRowError.
func (b *backend) update(ctx context.Context, tb *viewsql.TableBatch, g viewsql.Group) error {
	var set []int
	for _, ci := range g.Cols {
		if !tb.Columns[ci].Key {
			set = append(set, ci)
		}
	}
	if len(set) == 0 {
		set = tb.Key[:1]
	}
	var q strings.Builder
	q.WriteString("UPDATE " + quote(tb.Table) + " SET ")
	for i, ci := range set {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(quote(tb.Columns[ci].Name) + " = ?")
	}
	q.WriteString(" WHERE ")
	for i, ci := range tb.Key {
		if i > 0 {
			q.WriteString(" AND ")
		}
		q.WriteString(quote(tb.Columns[ci].Name) + " = ?")
	}
	sql := q.String()
	for i := range g.Rows {
		r := &g.Rows[i]
		args := make([]any, 0, len(set)+len(tb.Key))
		for _, ci := range set {
			args = append(args, r.Vals[ci])
		}
		for _, ci := range tb.Key {
			args = append(args, r.Vals[ci])
		}
		n, err := b.run(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		if n == 0 {
			return &viewsql.MissingRowError{Table: tb.Table, Key: tb.KeyString(r), Event: r.Event}
		}
	}
	return nil
}

// classify marks the errors a retry may cure as retryable: a lost or
// refused connection, a deadlock or lock wait timeout, a server shutting
// down or out of connections.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1205, 1213, 1040, 1053, 2006, 2013, 1927:
			return connectors.Retryable(err)
		}
		return err
	}
	var ne net.Error
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
		return connectors.Retryable(err)
	}
	return err
}

var _ viewsql.Backend = (*backend)(nil)
