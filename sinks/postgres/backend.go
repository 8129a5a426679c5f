package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

// backend is the Postgres half of the sink, on one connection. Statements
// are prepared once per connection and text (pgx's statement cache).
//
// A group of rows (see viewsql.Groups) of up to copyThreshold rows is
// written with one statement that reads its rows from arrays, one per
// column, sent as binary parameters: INSERT ... SELECT ... FROM unnest($1,
// $2, ...) ON CONFLICT DO UPDATE, DELETE ... USING unnest(...), UPDATE ...
// FROM unnest(...). A larger group is copied (COPY, binary) into a
// temporary table and merged from there, which is faster for big groups.
// The temporary tables are made once per connection and shape; each merge
// statement empties its table as it reads it (WITH d AS (DELETE ...
// RETURNING *)): ON COMMIT DELETE ROWS would truncate every such table at
// every commit, which costs milliseconds per table.
type backend struct {
	dialect
	cfg Config

	conn    *pgx.Conn
	tx      pgx.Tx
	begin   bool              // Begin was called; the BEGIN is not sent yet
	temps   map[string]*temp  // shape → temporary table
	sqls    map[string]string // shape → merge statement (both ways)
	made    []string          // shapes whose temporary table this transaction made
	counter int               // numbers temporary tables
	copyMin int               // the smallest group copied: copyThreshold (tests change it)
}

// temp is a temporary table and how often it was filled since it was last
// truncated: deleted rows stay in it as dead tuples (nothing vacuums
// temporary tables), so it is truncated every truncateEvery uses.
type temp struct {
	name string
	uses int
}

const truncateEvery = 64

// copyThreshold is the size of the smallest group copied into a temporary
// table; smaller ones go in one statement with array parameters. Measured
// on Postgres 15 with 5-column rows: arrays beat COPY up to about 8,000
// rows, COPY wins above (by a third at 20,000).
const copyThreshold = 8192

// maxCached bounds the temporary tables and statements kept per connection.
const maxCached = 256

func newBackend(cfg Config) *backend { return &backend{cfg: cfg, copyMin: copyThreshold} }

// table is the qualified, quoted name of a table of the view.
func (b *backend) table(name string) string { return pgx.Identifier{b.cfg.Schema, name}.Sanitize() }

func quote(name string) string { return pgx.Identifier{name}.Sanitize() }

// redacted is an error whose message has no password in it; it unwraps to
// the driver's error for classification.
type redacted struct{ err error }

func (e *redacted) Error() string { return connectors.RedactDSN(e.err.Error()) }
func (e *redacted) Unwrap() error { return e.err }

func (b *backend) connect(ctx context.Context) (*pgx.Conn, error) {
	pc, err := pgx.ParseConfig(b.cfg.DSN.Reveal())
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", &redacted{err})
	}
	if _, ok := pc.RuntimeParams["application_name"]; !ok {
		pc.RuntimeParams["application_name"] = "tapline"
	}
	c, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, classify(&redacted{err})
	}
	return c, nil
}

// Connect connects and creates the schema and the offsets table.
func (b *backend) Connect(ctx context.Context) error {
	c, err := b.connect(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	b.conn, b.temps, b.sqls, b.made = c, map[string]*temp{}, map[string]string{}, nil
	var exists bool
	if err := c.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", b.table(viewsql.OffsetsTable)).Scan(&exists); err != nil {
		b.Close()
		return classify(err)
	}
	if exists {
		return nil
	}
	ddl := []string{
		"CREATE SCHEMA IF NOT EXISTS " + quote(b.cfg.Schema),
		"CREATE TABLE IF NOT EXISTS " + b.table(viewsql.OffsetsTable) + ` (
	pipeline   text PRIMARY KEY,
	position   bytea,
	origins    jsonb NOT NULL DEFAULT '{}',
	tables     jsonb NOT NULL DEFAULT '[]',
	promoting  boolean NOT NULL DEFAULT false,
	updated_at timestamptz NOT NULL DEFAULT now()
)`,
	}
	for _, q := range ddl {
		for attempt := 0; ; attempt++ {
			_, err := c.Exec(ctx, q)
			var pe *pgconn.PgError
			// Two sinks creating the same object at once: one loses on
			// the catalog's unique index; the object exists then.
			if err != nil && attempt == 0 && errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P06" || pe.Code == "42P07") {
				continue
			}
			if err != nil {
				b.Close()
				return fmt.Errorf("%s: %w", strings.SplitN(q, " (", 2)[0], classify(err))
			}
			break
		}
	}
	return nil
}

// Close closes the connection.
func (b *backend) Close() error {
	if b.conn == nil {
		return nil
	}
	ctx := context.Background()
	b.begin = false
	if b.tx != nil {
		b.tx.Rollback(ctx)
		b.tx = nil
	}
	err := b.conn.Close(ctx)
	b.conn, b.temps, b.sqls = nil, nil, nil
	return err
}

// Check connects and checks that the server is writable and that the user
// may create the view's tables.
func (b *backend) Check(ctx context.Context) error {
	c, err := b.connect(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close(ctx)
	var readOnly string
	if err := c.QueryRow(ctx, "SHOW transaction_read_only").Scan(&readOnly); err != nil {
		return classify(err)
	}
	if readOnly == "on" {
		return errors.New("the server is read-only (a standby?); point dsn at the primary")
	}
	var exists, may bool
	err = c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
		CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) THEN has_schema_privilege($1, 'CREATE')
		ELSE has_database_privilege(current_database(), 'CREATE') END`, b.cfg.Schema).Scan(&exists, &may)
	if err != nil {
		return classify(err)
	}
	if !may {
		if exists {
			return fmt.Errorf("the user may not create tables in schema %q (GRANT CREATE ON SCHEMA %s TO the user)", b.cfg.Schema, quote(b.cfg.Schema))
		}
		return fmt.Errorf("schema %q does not exist and the user may not create it (create it, or GRANT CREATE ON DATABASE)", b.cfg.Schema)
	}
	return nil
}

// Begin starts a transaction. The BEGIN goes with the transaction's first
// statement when that is an Exec (one round trip for both; see exec).
func (b *backend) Begin(ctx context.Context) error {
	if b.tx != nil || b.begin {
		return errors.New("begin within a transaction")
	}
	b.begin = true
	return nil
}

// started sends a BEGIN still pending, before a statement that cannot go
// in one round trip with it.
func (b *backend) started(ctx context.Context) error {
	if !b.begin {
		return nil
	}
	b.begin = false
	tx, err := b.conn.Begin(ctx)
	if err != nil {
		return classify(err)
	}
	b.tx = tx
	return nil
}

// Commit commits the transaction.
func (b *backend) Commit(ctx context.Context) error {
	if b.begin {
		// Nothing ran in it.
		b.begin = false
		b.made = b.made[:0]
		return nil
	}
	if b.tx == nil {
		return errors.New("commit without a transaction")
	}
	err := b.tx.Commit(ctx)
	b.tx = nil
	if err != nil {
		b.forgetMade()
		return classify(err)
	}
	b.made = b.made[:0]
	return nil
}

// Rollback abandons the transaction, if any, and forgets the temporary
// tables it made.
func (b *backend) Rollback(ctx context.Context) {
	b.begin = false
	if b.tx != nil {
		b.tx.Rollback(ctx)
		b.tx = nil
	}
	b.forgetMade()
}

func (b *backend) forgetMade() {
	for _, k := range b.made {
		delete(b.temps, k)
		delete(b.sqls, k)
	}
	b.made = b.made[:0]
}

// Healthy reports whether the connection is still open: pgx closes it on
// network errors and cancelled contexts.
func (b *backend) Healthy() bool { return b.conn != nil && !b.conn.IsClosed() }

// q is what statements run on: the transaction, or the connection.
type q interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

func (b *backend) q() q {
	if b.tx != nil {
		return b.tx
	}
	return b.conn
}

// exec runs a statement; the first of a transaction goes in one batch
// (one round trip) with the BEGIN.
func (b *backend) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	if b.begin {
		b.begin = false
		batch := &pgx.Batch{}
		batch.BeginTx(pgx.TxOptions{})
		batch.Queue(sql, args...)
		br := b.conn.SendBatch(ctx, batch)
		b.tx = br.Tx()
		_, err := br.Exec()
		var tag pgconn.CommandTag
		if err == nil {
			tag, err = br.Exec()
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if b.conn.PgConn().TxStatus() == 'I' {
			b.tx = nil // the BEGIN failed
		}
		if err != nil {
			return 0, classify(err)
		}
		return tag.RowsAffected(), nil
	}
	tag, err := b.q().Exec(ctx, sql, args...)
	if err != nil {
		return 0, classify(err)
	}
	return tag.RowsAffected(), nil
}

// ReadOffset reads key's row, locking it with forUpdate.
func (b *backend) ReadOffset(ctx context.Context, key string, forUpdate bool) (*viewsql.Offset, error) {
	sql := "SELECT position, origins::text, tables::text, promoting FROM " + b.table(viewsql.OffsetsTable) + " WHERE pipeline = $1"
	if forUpdate {
		sql += " FOR UPDATE"
	}
	var (
		pos             []byte
		origins, tables string
		promoting       bool
	)
	if err := b.started(ctx); err != nil {
		return nil, err
	}
	err := b.q().QueryRow(ctx, sql, key).Scan(&pos, &origins, &tables, &promoting)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(err)
	}
	return viewsql.ParseOffset(pos, origins, tables, promoting)
}

// WriteOffset inserts or replaces key's row.
func (b *backend) WriteOffset(ctx context.Context, key string, o *viewsql.Offset) error {
	var pos []byte
	if o.Position != nil {
		pos = o.Position
	}
	_, err := b.exec(ctx, "INSERT INTO "+b.table(viewsql.OffsetsTable)+` (pipeline, position, origins, tables, promoting, updated_at)
VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, now())
ON CONFLICT (pipeline) DO UPDATE SET position = EXCLUDED.position, origins = EXCLUDED.origins, tables = EXCLUDED.tables,
	promoting = EXCLUDED.promoting, updated_at = EXCLUDED.updated_at`,
		key, pos, o.OriginsJSON(), o.TablesJSON(), o.Promoting)
	return err
}

// AdvanceOffset moves key's row from position from to o's position and
// origins, in one UPDATE; it reports whether the row was at from.
func (b *backend) AdvanceOffset(ctx context.Context, key string, from []byte, o *viewsql.Offset) (bool, error) {
	var pos []byte
	if o.Position != nil {
		pos = o.Position
	}
	n, err := b.exec(ctx, "UPDATE "+b.table(viewsql.OffsetsTable)+` SET position = $1, origins = $2::jsonb, updated_at = now()
WHERE pipeline = $3 AND position = $4`, pos, o.OriginsJSON(), key, from)
	return n == 1, err
}

// DeleteOffset deletes key's row.
func (b *backend) DeleteOffset(ctx context.Context, key string) error {
	_, err := b.exec(ctx, "DELETE FROM "+b.table(viewsql.OffsetsTable)+" WHERE pipeline = $1", key)
	return err
}

// DescribeTable reads the table's columns and primary key from the catalog.
func (b *backend) DescribeTable(ctx context.Context, name string) (*viewsql.TableInfo, error) {
	if err := b.started(ctx); err != nil {
		return nil, err
	}
	rows, err := b.q().Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
	COALESCE(array_position(string_to_array(i.indkey::text, ' ')::int2[], a.attnum), 0)
FROM pg_attribute a
LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, b.table(name))
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var info viewsql.TableInfo
	keys := map[int32]string{}
	for rows.Next() {
		var c viewsql.ColumnInfo
		var pos int32
		if err := rows.Scan(&c.Name, &c.Type, &c.Nullable, &pos); err != nil {
			return nil, err
		}
		if pos > 0 {
			keys[pos] = c.Name
		}
		info.Columns = append(info.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(err)
	}
	if len(info.Columns) == 0 {
		return nil, nil
	}
	for i := int32(1); i <= int32(len(keys)); i++ {
		info.Key = append(info.Key, keys[i])
	}
	return &info, nil
}

// CreateTable creates a table; a history table's __seq is an identity.
func (b *backend) CreateTable(ctx context.Context, name string, cols []*viewsql.ColumnDef, key []string, history bool) error {
	var s strings.Builder
	s.WriteString("CREATE TABLE " + b.table(name) + " (")
	if history {
		s.WriteString(quote(viewsql.HistorySeq) + " bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ")
	}
	for i, c := range cols {
		if i > 0 {
			s.WriteString(", ")
		}
		s.WriteString(quote(c.Name) + " " + c.Type)
		if c.Key {
			s.WriteString(" NOT NULL")
		}
	}
	if len(key) > 0 {
		s.WriteString(", PRIMARY KEY (" + quoteList(key) + ")")
	}
	s.WriteString(")")
	_, err := b.exec(ctx, s.String())
	return err
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}

// AddColumn adds a nullable column.
func (b *backend) AddColumn(ctx context.Context, table string, col *viewsql.ColumnDef) error {
	_, err := b.exec(ctx, "ALTER TABLE "+b.table(table)+" ADD COLUMN IF NOT EXISTS "+quote(col.Name)+" "+col.Type)
	return err
}

// DropColumn drops a column.
func (b *backend) DropColumn(ctx context.Context, table, column string) error {
	_, err := b.exec(ctx, "ALTER TABLE "+b.table(table)+" DROP COLUMN IF EXISTS "+quote(column))
	return err
}

// DropTable drops a table if it exists.
func (b *backend) DropTable(ctx context.Context, name string) error {
	_, err := b.exec(ctx, "DROP TABLE IF EXISTS "+b.table(name))
	return err
}

// RenameTables renames inside the transaction, and renames each primary
// key constraint that has its table's default name along.
func (b *backend) RenameTables(ctx context.Context, renames []viewsql.Rename) error {
	for _, r := range renames {
		if _, err := b.exec(ctx, "ALTER TABLE "+b.table(r.From)+" RENAME TO "+quote(r.To)); err != nil {
			return fmt.Errorf("rename %s to %s: %w", r.From, r.To, err)
		}
		var con string
		if err := b.started(ctx); err != nil {
			return err
		}
		err := b.q().QueryRow(ctx, "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'", b.table(r.To)).Scan(&con)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return classify(err)
		}
		if con == r.From+"_pkey" && len(r.To+"_pkey") <= 63 {
			if _, err := b.exec(ctx, "ALTER TABLE "+b.table(r.To)+" RENAME CONSTRAINT "+quote(con)+" TO "+quote(r.To+"_pkey")); err != nil {
				return fmt.Errorf("rename the primary key of %s: %w", r.To, err)
			}
		}
	}
	return nil
}

// Apply writes one table's share of a batch, each group of rows with one
// statement reading arrays, or (big groups) copied into a temporary table
// and merged from there.
func (b *backend) Apply(ctx context.Context, tb *viewsql.TableBatch) error {
	t := b.table(tb.Table)
	if tb.Truncate {
		if _, err := b.exec(ctx, "TRUNCATE "+t); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
	}
	if len(tb.Deletes) > 0 {
		g := viewsql.Group{Cols: tb.Key, Rows: tb.Deletes}
		if err := b.merge(ctx, tb, g, "delete"); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
	}
	for _, g := range viewsql.Groups(tb.Upserts) {
		if err := b.merge(ctx, tb, g, "upsert"); err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
	}
	for _, g := range viewsql.Groups(tb.Updates) {
		if err := b.merge(ctx, tb, g, "update"); err != nil {
			var mr *viewsql.MissingRowError
			if errors.As(err, &mr) {
				return err
			}
			return fmt.Errorf("update: %w", err)
		}
	}
	for _, g := range viewsql.Runs(tb.Appends) {
		if err := b.merge(ctx, tb, g, "append"); err != nil {
			return fmt.Errorf("append: %w", err)
		}
	}
	return nil
}

// shape names a group's columns and kind: what its temporary table and
// merge statement depend on.
func shape(tb *viewsql.TableBatch, g viewsql.Group, kind string) string {
	var s strings.Builder
	s.WriteString(kind + "\x00" + tb.Table)
	for _, ci := range g.Cols {
		c := tb.Columns[ci]
		info, _ := tb.Info.Column(c.Name)
		s.WriteString("\x00" + c.Name + "\x01" + tempType(c) + "\x01" + info.Type)
	}
	return s.String()
}

// merge writes a group with the kind's statement: from arrays, or for a
// big group, from its temporary table after copying it there.
func (b *backend) merge(ctx context.Context, tb *viewsql.TableBatch, g viewsql.Group, kind string) error {
	if len(g.Rows) >= b.copyMin {
		return b.mergeCopy(ctx, tb, g, kind)
	}
	key := "unnest\x00" + shape(tb, g, kind)
	sql, ok := b.sqls[key]
	if !ok {
		sql = b.mergeSQL(tb, g, kind, "")
		if len(b.sqls) >= maxCached {
			clear(b.sqls)
		}
		b.sqls[key] = sql
	}
	args := make([]any, len(g.Cols))
	for i, ci := range g.Cols {
		args[i] = column{rows: g.Rows, ci: ci}
	}
	affected, err := b.exec(ctx, sql, args...)
	if err != nil {
		return err
	}
	if kind == "update" && int(affected) < len(g.Rows) {
		return b.missing(ctx, tb, g)
	}
	return nil
}

// column is one column of a group's rows as an array parameter: pgx
// encodes it element by element (binary), with nil as NULL.
type column struct {
	rows []viewsql.Row
	ci   int
}

// Dimensions is the array's one dimension.
func (c column) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(c.rows)), LowerBound: 1}}
}

// Index returns row i's value.
func (c column) Index(i int) any { return c.rows[i].Vals[c.ci] }

// IndexType is nil: each element's own type picks its encoding.
func (c column) IndexType() any { return nil }

// mergeCopy copies the group into its temporary table and runs the kind's
// statement from there.
func (b *backend) mergeCopy(ctx context.Context, tb *viewsql.TableBatch, g viewsql.Group, kind string) error {
	key := shape(tb, g, kind)
	tmp, err := b.temp(ctx, tb, g, kind, key)
	if err != nil {
		return err
	}
	if tmp.uses++; tmp.uses > truncateEvery {
		if _, err := b.exec(ctx, "TRUNCATE pg_temp."+quote(tmp.name)); err != nil {
			return err
		}
		tmp.uses = 1
	}
	cols := make([]string, len(g.Cols))
	for i := range cols {
		cols[i] = "c" + strconv.Itoa(i)
	}
	src := &groupSource{g: g, i: -1, ord: kind == "append"}
	if src.ord {
		cols = append(cols, "ord")
	}
	if err := b.started(ctx); err != nil {
		return err
	}
	n, err := b.q().CopyFrom(ctx, pgx.Identifier{"pg_temp", tmp.name}, cols, src)
	if err != nil {
		return fmt.Errorf("copy %d rows: %w", len(g.Rows), classify(err))
	}
	if int(n) != len(g.Rows) {
		return fmt.Errorf("copied %d rows of %d", n, len(g.Rows))
	}
	sql, ok := b.sqls[key]
	if !ok {
		sql = b.mergeSQL(tb, g, kind, tmp.name)
		if len(b.sqls) >= maxCached {
			clear(b.sqls)
		}
		b.sqls[key] = sql
	}
	affected, err := b.exec(ctx, sql)
	if err != nil {
		return err
	}
	if kind == "update" && int(affected) < len(g.Rows) {
		return b.missing(ctx, tb, g)
	}
	return nil
}

// temp returns the temporary table of a group's shape, creating it.
func (b *backend) temp(ctx context.Context, tb *viewsql.TableBatch, g viewsql.Group, kind, key string) (*temp, error) {
	if t, ok := b.temps[key]; ok {
		return t, nil
	}
	if len(b.temps) >= maxCached {
		// Drop them all: a long-lived connection with ever new shapes.
		for _, t := range b.temps {
			if _, err := b.exec(ctx, "DROP TABLE IF EXISTS pg_temp."+quote(t.name)); err != nil {
				return nil, err
			}
		}
		clear(b.temps)
		clear(b.sqls)
	}
	b.counter++
	t := &temp{name: "tapline_" + strconv.Itoa(b.counter)}
	var s strings.Builder
	s.WriteString("CREATE TEMPORARY TABLE " + quote(t.name) + " (")
	for i, ci := range g.Cols {
		if i > 0 {
			s.WriteString(", ")
		}
		s.WriteString("c" + strconv.Itoa(i) + " " + tempType(tb.Columns[ci]))
	}
	if kind == "append" {
		s.WriteString(", ord bigint")
	}
	s.WriteString(")")
	if _, err := b.exec(ctx, s.String()); err != nil {
		return nil, fmt.Errorf("create a temporary table: %w", err)
	}
	b.temps[key] = t
	b.made = append(b.made, key)
	return t, nil
}

// value is the expression that reads column i of the temporary table d as
// target column c: cast to the target's type unless it is the same, or the
// target is a string type (then the assignment checks lengths instead of
// cutting values short, as a cast would).
func value(tb *viewsql.TableBatch, ci, i int) string {
	c := tb.Columns[ci]
	src := "d.c" + strconv.Itoa(i)
	info, _ := tb.Info.Column(c.Name)
	tt, target := tempType(c), info.Type
	switch {
	case tt == target:
		return src
	case tt == "text" && (target == "text" || strings.HasPrefix(target, "character")):
		return src
	}
	return src + "::" + target
}

// mergeSQL is the statement that writes a group of the kind: from the
// temporary table tmp, or with tmp empty, from the arrays $1, $2, ... (one
// per column of the group, typed as tempType says).
func (b *backend) mergeSQL(tb *viewsql.TableBatch, g viewsql.Group, kind, tmp string) string {
	t := b.table(tb.Table)
	// The statement empties the temporary table as it reads it.
	with := "WITH d AS (DELETE FROM pg_temp." + quote(tmp) + " RETURNING *) "
	from := " FROM d"
	using := " USING d"
	if tmp == "" {
		var u strings.Builder
		u.WriteString("unnest(")
		for i, ci := range g.Cols {
			if i > 0 {
				u.WriteString(", ")
			}
			u.WriteString("$" + strconv.Itoa(i+1) + "::" + tempType(tb.Columns[ci]) + "[]")
		}
		u.WriteString(")")
		if kind == "append" {
			u.WriteString(" WITH ORDINALITY")
		}
		u.WriteString(" AS d(")
		for i := range g.Cols {
			if i > 0 {
				u.WriteString(", ")
			}
			u.WriteString("c" + strconv.Itoa(i))
		}
		if kind == "append" {
			u.WriteString(", ord")
		}
		u.WriteString(")")
		with, from, using = "", " FROM "+u.String(), " USING "+u.String()
	}
	pos := map[int]int{} // column index → position in the group
	for i, ci := range g.Cols {
		pos[ci] = i
	}
	keyMatch := func() string {
		parts := make([]string, len(tb.Key))
		for j, ci := range tb.Key {
			parts[j] = "t." + quote(tb.Columns[ci].Name) + " = " + value(tb, ci, pos[ci])
		}
		return strings.Join(parts, " AND ")
	}
	var s strings.Builder
	switch kind {
	case "delete":
		s.WriteString(with + "DELETE FROM " + t + " t" + using + " WHERE " + keyMatch())
	case "update":
		s.WriteString(with + "UPDATE " + t + " t SET ")
		n := 0
		for i, ci := range g.Cols {
			if tb.Columns[ci].Key {
				continue
			}
			if n > 0 {
				s.WriteString(", ")
			}
			n++
			s.WriteString(quote(tb.Columns[ci].Name) + " = " + value(tb, ci, i))
		}
		if n == 0 {
			k := tb.Columns[tb.Key[0]].Name
			s.WriteString(quote(k) + " = t." + quote(k))
		}
		s.WriteString(from + " WHERE " + keyMatch())
	default: // upsert, append
		s.WriteString(with + "INSERT INTO " + t + " (")
		for i, ci := range g.Cols {
			if i > 0 {
				s.WriteString(", ")
			}
			s.WriteString(quote(tb.Columns[ci].Name))
		}
		s.WriteString(") SELECT ")
		for i, ci := range g.Cols {
			if i > 0 {
				s.WriteString(", ")
			}
			s.WriteString(value(tb, ci, i))
		}
		s.WriteString(from)
		if kind == "append" {
			s.WriteString(" ORDER BY d.ord")
			break
		}
		s.WriteString(" ON CONFLICT (")
		for j, ci := range tb.Key {
			if j > 0 {
				s.WriteString(", ")
			}
			s.WriteString(quote(tb.Columns[ci].Name))
		}
		s.WriteString(")")
		n := 0
		for _, ci := range g.Cols {
			if tb.Columns[ci].Key {
				continue
			}
			if n == 0 {
				s.WriteString(" DO UPDATE SET ")
			} else {
				s.WriteString(", ")
			}
			n++
			c := quote(tb.Columns[ci].Name)
			s.WriteString(c + " = EXCLUDED." + c)
		}
		if n == 0 {
			s.WriteString(" DO NOTHING")
		}
	}
	return s.String()
}

// missing finds a row of an update group that the table does not have.
func (b *backend) missing(ctx context.Context, tb *viewsql.TableBatch, g viewsql.Group) error {
	var match []string
	for i, ci := range tb.Key {
		info, _ := tb.Info.Column(tb.Columns[ci].Name)
		match = append(match, quote(tb.Columns[ci].Name)+" = $"+strconv.Itoa(i+1)+"::"+tempType(tb.Columns[ci])+"::"+info.Type)
	}
	sql := "SELECT EXISTS (SELECT 1 FROM " + b.table(tb.Table) + " WHERE " + strings.Join(match, " AND ") + ")"
	for i := range g.Rows {
		r := &g.Rows[i]
		args := make([]any, len(tb.Key))
		for j, ci := range tb.Key {
			args[j] = r.Vals[ci]
		}
		var found bool
		if err := b.started(ctx); err != nil {
			return err
		}
		if err := b.q().QueryRow(ctx, sql, args...).Scan(&found); err != nil {
			return fmt.Errorf("rows to update are missing (finding which: %w)", classify(err))
		}
		if !found {
			return &viewsql.MissingRowError{Table: tb.Table, Key: tb.KeyString(r), Event: r.Event}
		}
	}
	return fmt.Errorf("updated fewer rows than the %d of the batch, yet each is there", len(g.Rows))
}

// groupSource feeds a group's rows to CopyFrom, reusing one slice.
type groupSource struct {
	g   viewsql.Group
	i   int
	ord bool
	buf []any
}

func (s *groupSource) Next() bool {
	s.i++
	return s.i < len(s.g.Rows)
}

func (s *groupSource) Values() ([]any, error) {
	s.buf = s.buf[:0]
	r := &s.g.Rows[s.i]
	for _, ci := range s.g.Cols {
		s.buf = append(s.buf, r.Vals[ci])
	}
	if s.ord {
		s.buf = append(s.buf, int64(s.i))
	}
	return s.buf, nil
}

func (s *groupSource) Err() error { return nil }

// classify marks the errors a retry may cure as retryable: a lost or
// refused connection, a serialization failure or deadlock, a server
// shutting down or out of connections.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), pe.Code == "40001", pe.Code == "40P01", pe.Code == "55P03",
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", pe.Code == "53300":
			return connectors.Retryable(err)
		}
		return err
	}
	var ne net.Error
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
		return connectors.Retryable(err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return connectors.Retryable(err)
	}
	return err
}

var _ viewsql.Backend = (*backend)(nil)
