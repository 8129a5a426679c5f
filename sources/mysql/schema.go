package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/mysqlconv"
)

// tableFilter matches the configured tables: db.table, or db.* for every
// table of a database (including ones created later).
type tableFilter struct {
	exact  map[string]bool // "db\x00table"
	dbs    map[string]bool
	signal string // the signal table, "db\x00table": decoded, never captured
}

func newTableFilter(tables []string) *tableFilter {
	f := &tableFilter{exact: map[string]bool{}, dbs: map[string]bool{}}
	for _, t := range tables {
		db, name, _ := strings.Cut(t, ".")
		if name == "*" {
			f.dbs[db] = true
		} else {
			f.exact[db+"\x00"+name] = true
		}
	}
	return f
}

// match reports whether a table is captured. The signal table never is,
// also when a db.* entry covers it.
func (f *tableFilter) match(db, table string) bool {
	return (f.dbs[db] || f.exact[db+"\x00"+table]) && !f.isSignal(db, table)
}

// isSignal reports whether a table is the incremental snapshots' signal
// table.
func (f *tableFilter) isSignal(db, table string) bool {
	return f.signal != "" && len(f.signal) == len(db)+1+len(table) && f.signal[:len(db)] == db && f.signal[len(db)] == 0 && f.signal[len(db)+1:] == table
}

// decodes reports whether the rows of a table are decoded: captured
// tables and the signal table.
func (f *tableFilter) decodes(db, table string) bool {
	return f.dbs[db] || f.exact[db+"\x00"+table] || f.isSignal(db, table)
}

// tableInfo is a captured table as its latest TABLE_MAP event describes it.
type tableInfo struct {
	tm      *replication.TableMapEvent
	id      connectors.TableID
	schema  *connectors.Schema
	cols    []mysqlconv.Column
	dec     *mysqlconv.RowDecoder // schema history: decodes the rows the parser left (deferredRows)
	binJSON bool
	fixups  []int // columns whose decoded values change: MariaDB's json (strings become connectors.JSON), uuid and inet (bytes become text)
}

// schemaCache is the schema history of the stream: the table version each
// TABLE_MAP id stands for, and the latest schema of each table, whose
// version grows by one when the columns change. Owned by the receiver.
type schemaCache struct {
	src      *Source
	byID     map[uint64]*tableInfo
	versions map[connectors.TableID]*connectors.Schema
	hist     *schemaHistory // names, enum values and keys when the TABLE_MAP lacks them
}

// forget drops the cached TABLE_MAPs of a table (its columns changed in
// the schema history).
func (c *schemaCache) forget(db, table string) {
	for k, ti := range c.byID {
		if ti.id.Schema == db && ti.id.Name == table {
			delete(c.byID, k)
		}
	}
}

func newSchemaCache(s *Source) *schemaCache {
	return &schemaCache{src: s, byID: map[uint64]*tableInfo{}, versions: map[connectors.TableID]*connectors.Schema{}}
}

// tableMap records a TABLE_MAP event of a captured table.
func (c *schemaCache) tableMap(ctx context.Context, tm *replication.TableMapEvent) (*tableInfo, error) {
	if ti, ok := c.byID[tm.TableID]; ok && (ti.tm == tm || sameTableMap(ti.tm, tm)) {
		ti.tm = tm
		return ti, nil
	}
	id := connectors.TableID{Schema: string(tm.Schema), Name: string(tm.Table)}
	var hist []histColumn
	if c.hist != nil {
		k := histKey(id.Schema, id.Name)
		if hist = c.hist.cur[k]; hist == nil {
			var err error
			if hist, err = c.src.catalogHistColumns(ctx, id); err != nil {
				return nil, err
			}
			c.src.log.Warn("schema history: a captured table without history takes today's columns from information_schema", "table", id.String())
			c.hist.cur[k] = hist
		}
	}
	ctm := tm
	if c.src.testMinimal {
		// What a server with binlog_row_metadata=MINIMAL would have sent.
		cp := *tm
		cp.ColumnName, cp.EnumStrValue, cp.SetStrValue, cp.PrimaryKey, cp.PrimaryKeyPrefix, cp.VisibilityBitmap = nil, nil, nil, nil, nil, nil
		ctm = &cp
	}
	cols, err := binlogColumns(ctm, c.src.charsets, hist)
	if err != nil {
		return nil, err
	}
	ti := &tableInfo{tm: tm, id: id}
	if c.hist != nil {
		// The columns as the binlog gives them, as go-mysql's goroutine
		// would decode them: the fixups below apply to the decoded values.
		ti.dec = &mysqlconv.RowDecoder{Cols: slices.Clone(cols), Opts: c.src.opts}
		for _, col := range cols {
			if col.Kind == mysqlconv.KindJSON {
				ti.binJSON = true
			}
		}
	}
	if c.src.flavor == flavorMariaDB {
		// MariaDB's json is longtext with a json_valid check, and its
		// uuid, inet6 and inet4 are binary(16) and binary(4) in the
		// binlog: only the catalog tells. (The catalog is today's: a
		// column whose type changed since is taken with its new type; json
		// values are checked.)
		var candidates bool
		for _, col := range cols {
			switch {
			case col.Kind == mysqlconv.KindBlob && col.IsText():
				candidates = true
			case col.Kind == mysqlconv.KindChar && !col.IsText() && (col.Length == 16 || col.Length == 4):
				candidates = true
			}
		}
		if candidates {
			var special map[string]string
			if hist != nil {
				// The history's, as of this point of the binlog.
				special = map[string]string{}
				for _, hc := range hist {
					if hc.Special != "" {
						special[hc.Name] = hc.Special
					}
				}
			} else if special, err = c.src.specialColumns(ctx, id); err != nil {
				return nil, err
			}
			for i := range cols {
				col := &cols[i]
				switch kind := special[col.Name]; {
				case kind == "json" && col.Kind == mysqlconv.KindBlob && col.IsText():
					col.JSON = true
					ti.fixups = append(ti.fixups, i)
				case mysqlconv.FormatByName(kind) != mysqlconv.FormatNone && col.Kind == mysqlconv.KindChar && !col.IsText():
					col.Format = mysqlconv.FormatByName(kind)
					ti.fixups = append(ti.fixups, i)
				}
			}
		}
	}
	ti.cols = cols
	ti.schema, err = c.version(id, cols)
	if err != nil {
		return nil, err
	}
	if len(c.byID) > 10000 {
		clear(c.byID)
	}
	c.byID[tm.TableID] = ti
	return ti, nil
}

// version returns the schema for cols: the table's latest if it has the
// same shape, else a new version.
func (c *schemaCache) version(id connectors.TableID, cols []mysqlconv.Column) (*connectors.Schema, error) {
	cc := make([]connectors.Column, len(cols))
	for i := range cols {
		cc[i] = cols[i].Connector()
	}
	prev := c.versions[id]
	v := 1
	if prev != nil {
		cand, err := connectors.NewSchema(id, prev.Version, cc)
		if err != nil {
			return nil, fmt.Errorf("mysql: table %s: %w", id, err)
		}
		if cand.SameShape(prev) {
			return prev, nil
		}
		v = prev.Version + 1
	}
	s, err := connectors.NewSchema(id, v, cc)
	if err != nil {
		return nil, fmt.Errorf("mysql: table %s: %w", id, err)
	}
	c.versions[id] = s
	return s, nil
}

// specialColumns returns the columns of a MariaDB table that the binlog
// does not tell apart: "json" for text columns with a json_valid check,
// and "uuid", "inet6" or "inet4" for those types.
func (s *Source) specialColumns(ctx context.Context, id connectors.TableID) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT c.COLUMN_NAME, IF(c.DATA_TYPE IN ('uuid', 'inet6', 'inet4'), c.DATA_TYPE, 'json') "+
		"FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? AND (c.DATA_TYPE IN ('uuid', 'inet6', 'inet4') "+
		"OR EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA "+
		"AND k.TABLE_NAME = c.TABLE_NAME AND k.CHECK_CLAUSE = CONCAT('json_valid(`', c.COLUMN_NAME, '`)')))", id.Schema, id.Name)
	if err != nil {
		return nil, classify(fmt.Errorf("mysql: read the column types of %s: %w", id, err), "", 0, "")
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, kind string
		if err := rows.Scan(&n, &kind); err != nil {
			return nil, err
		}
		out[n] = kind
	}
	return out, rows.Err()
}

// infoColumns reads a table's columns from information_schema, for the
// snapshot: the same Columns a TABLE_MAP event of the table gives.
func (s *Source) infoColumns(ctx context.Context, q querier, id connectors.TableID) ([]mysqlconv.Column, error) {
	rows, err := q.QueryContext(ctx, `SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, IFNULL(c.CHARACTER_MAXIMUM_LENGTH, 0),
		IFNULL(c.NUMERIC_PRECISION, 0), IFNULL(c.NUMERIC_SCALE, 0), IFNULL(c.DATETIME_PRECISION, 0), IFNULL(c.CHARACTER_SET_NAME, ''),
		c.IS_NULLABLE = 'YES',
		IFNULL((SELECT st.SEQ_IN_INDEX FROM information_schema.STATISTICS st WHERE st.TABLE_SCHEMA = c.TABLE_SCHEMA
		        AND st.TABLE_NAME = c.TABLE_NAME AND st.INDEX_NAME = 'PRIMARY' AND st.COLUMN_NAME = c.COLUMN_NAME), 0)
		FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION`, id.Schema, id.Name)
	if err != nil {
		return nil, fmt.Errorf("mysql: read the columns of %s: %w", id, err)
	}
	var ics []mysqlconv.InfoColumn
	for rows.Next() {
		var ic mysqlconv.InfoColumn
		if err := rows.Scan(&ic.Name, &ic.DataType, &ic.ColumnType, &ic.CharMaxLen, &ic.Precision, &ic.Scale, &ic.FSP, &ic.Charset, &ic.Nullable, &ic.Key); err != nil {
			rows.Close()
			return nil, fmt.Errorf("mysql: read the columns of %s: %w", id, err)
		}
		ics = append(ics, ic)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ics) == 0 {
		return nil, &noTableError{id}
	}
	var special map[string]string
	if s.flavor == flavorMariaDB {
		if special, err = s.specialColumns(ctx, id); err != nil {
			return nil, err
		}
	}
	cols := make([]mysqlconv.Column, len(ics))
	for i, ic := range ics {
		ic.JSONCheck = special[ic.Name] == "json" && strings.HasSuffix(strings.ToLower(ic.DataType), "text")
		c, err := mysqlconv.ColumnFromInfo(ic, s.charsets.MaxLen)
		if err != nil {
			return nil, fmt.Errorf("mysql: table %s: %w", id, err)
		}
		cols[i] = c
	}
	return cols, nil
}

// noTableError says that a table is not in the catalog.
type noTableError struct{ id connectors.TableID }

func (e *noTableError) Error() string {
	return fmt.Sprintf("mysql: table %s does not exist (or the user cannot see it)", e.id)
}

// querier is a *sql.DB or *sql.Conn.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// loadCharsets reads the server's collations: which charset each
// collation id belongs to, and the charsets' longest characters.
func loadCharsets(ctx context.Context, db *sql.DB) (*mysqlconv.Charsets, error) {
	maxLen := map[string]int{}
	rows, err := db.QueryContext(ctx, "SELECT CHARACTER_SET_NAME, MAXLEN FROM information_schema.CHARACTER_SETS")
	if err != nil {
		return nil, fmt.Errorf("mysql: read information_schema.CHARACTER_SETS: %w", err)
	}
	for rows.Next() {
		var n string
		var l int
		if err := rows.Scan(&n, &l); err != nil {
			rows.Close()
			return nil, err
		}
		maxLen[n] = l
	}
	rows.Close()
	cs := mysqlconv.DefaultCharsets()
	add := func(q string) error {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id uint64
			var n string
			if err := rows.Scan(&id, &n); err != nil {
				return err
			}
			cs.Add(id, n, maxLen[n])
		}
		return rows.Err()
	}
	if err := add("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL"); err != nil {
		return nil, fmt.Errorf("mysql: read information_schema.COLLATIONS: %w", err)
	}
	// MariaDB 10.10+ gives the ids of its per-charset uca1400 collations here.
	_ = add("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY WHERE ID IS NOT NULL")
	return cs, nil
}
