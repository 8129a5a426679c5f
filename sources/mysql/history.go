package mysql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"
	_ "github.com/pingcap/tidb/pkg/parser/test_driver" // value expressions of the parser

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/mysqlconv"
)

// The schema history, for servers that write binlog_row_metadata=MINIMAL:
// their TABLE_MAP events carry each column's type, signedness and charset
// but not its name, enum/set values or the primary key. Those come from
// here: the columns of each captured table as information_schema gave them
// when streaming started, changed by every DDL statement of the binlog in
// its order, and kept with the binlog position they apply from, so that a
// restart anywhere picks the columns in force there.

// histColumn is what the history knows of a column beyond the TABLE_MAP.
type histColumn struct {
	Name   string   `json:"name"`
	Labels []string `json:"labels,omitempty"` // enum and set values, UTF-8
	Key    int      `json:"key,omitempty"`    // 1-based position in the primary key
	// Special is what the binlog does not tell apart on MariaDB: "json"
	// (longtext with a json_valid check), "uuid", "inet6", "inet4".
	Special string `json:"special,omitempty"`
}

// histEntry is the columns of the captured tables from a position on.
type histEntry struct {
	At     posKey                  `json:"at"`
	DDL    string                  `json:"ddl,omitempty"` // the statement that made this entry
	Tables map[string][]histColumn `json:"tables"`        // "db\x00table"
}

// schemaHistory is owned by the receiver (and by Open before it starts).
type schemaHistory struct {
	path    string // "" keeps it in memory (tests of the parser only)
	entries []histEntry
	cur     map[string][]histColumn
}

// historyFile is the history's file in the data directory.
func historyFile(dataDir, pipeline string) string {
	return filepath.Join(dataDir, "mysql-schema-history", pipeline+".json")
}

func histKey(db, table string) string { return db + "\x00" + table }

func splitHistKey(k string) (string, string) {
	db, t, _ := strings.Cut(k, "\x00")
	return db, t
}

// loadHistory reads the history file (if any) and keeps the entries at or
// before at: later ones were written by a run that got further than the
// stored position and are made again when their DDL is read again.
func loadHistory(path string, at *posKey) (*schemaHistory, error) {
	h := &schemaHistory{path: path, cur: map[string][]histColumn{}}
	if path == "" {
		return h, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mysql: read the schema history: %w", err)
	}
	var file struct {
		Entries []histEntry `json:"entries"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		return nil, fmt.Errorf("mysql: schema history %s: %w", path, err)
	}
	if at == nil {
		return h, nil // a new start: the old history does not apply
	}
	for _, e := range file.Entries {
		if e.At.atOrBefore(*at) {
			h.entries = append(h.entries, e)
		}
	}
	if n := len(h.entries); n > 0 {
		h.cur = cloneTables(h.entries[n-1].Tables)
	}
	return h, nil
}

func cloneTables(m map[string][]histColumn) map[string][]histColumn {
	out := make(map[string][]histColumn, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// record adds an entry for the current columns at a position and writes
// the file (atomically, synced) before anything after it is emitted. Entries
// before the latest one at or before acked are dropped.
func (h *schemaHistory) record(at posKey, ddl string, acked *posKey) error {
	e := histEntry{At: at, DDL: ddl, Tables: cloneTables(h.cur)}
	if n := len(h.entries); n > 0 && h.entries[n-1].At == at {
		h.entries[n-1] = e
	} else {
		h.entries = append(h.entries, e)
	}
	if acked != nil {
		keep := 0
		for i, x := range h.entries {
			if x.At.atOrBefore(*acked) {
				keep = i
			}
		}
		h.entries = h.entries[keep:]
	}
	return h.save()
}

func (h *schemaHistory) save() error {
	if h.path == "" {
		return nil
	}
	b, err := json.Marshal(struct {
		Entries []histEntry `json:"entries"`
	}{h.entries})
	if err != nil {
		return err
	}
	if err := writeFileSync(h.path, b); err != nil {
		return fmt.Errorf("mysql: write the schema history: %w", err)
	}
	return nil
}

// writeFileSync replaces a file atomically: a synced temporary file renamed
// over it, and the directory synced.
func writeFileSync(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// seed fills in the tables the history does not know yet from
// information_schema.
func (s *Source) seedHistory(ctx context.Context, h *schemaHistory, tables []connectors.TableID) (added bool, err error) {
	for _, id := range tables {
		k := histKey(id.Schema, id.Name)
		if _, ok := h.cur[k]; ok {
			continue
		}
		cols, err := s.catalogHistColumns(ctx, id)
		if err != nil {
			return false, err
		}
		h.cur[k] = cols
		added = true
	}
	return added, nil
}

// catalogHistColumns reads a table's columns from information_schema.
func (s *Source) catalogHistColumns(ctx context.Context, id connectors.TableID) ([]histColumn, error) {
	cols, err := s.infoColumns(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	out := make([]histColumn, len(cols))
	for i, c := range cols {
		out[i] = histColumn{Name: c.Name, Labels: c.Labels, Key: c.Key}
		switch {
		case c.JSON:
			out[i].Special = "json"
		case c.Format == mysqlconv.FormatUUID:
			out[i].Special = "uuid"
		case c.Format == mysqlconv.FormatInet6:
			out[i].Special = "inet6"
		case c.Format == mysqlconv.FormatInet4:
			out[i].Special = "inet4"
		}
	}
	return out, nil
}

// DDLError says that a DDL statement touching a captured table could not
// be followed by the schema history (binlog_row_metadata=MINIMAL), or that
// a TABLE_MAP event disagrees with it: the source stops rather than map
// row values to the wrong columns.
type DDLError struct {
	Statement string // the statement (or the table, for a TABLE_MAP mismatch)
	Position  string // where in the binlog
	Reason    string
}

func (e *DDLError) Error() string {
	return fmt.Sprintf("mysql: schema history at %s: %s: %s (set binlog_row_metadata=FULL on the server to take the columns from the binlog instead)",
		e.Position, e.Reason, e.Statement)
}

// ddlApplier applies the statements of one binlog event to the history.
type ddlApplier struct {
	src     *Source
	ctx     context.Context
	h       *schemaHistory
	db      string // the statement's default database
	changed map[string]bool
}

// applyDDL applies a statement to the history. It reports the tables whose
// columns changed. Statements that touch no captured table are ignored;
// ones that do and cannot be followed are a *DDLError.
func (s *Source) applyDDL(ctx context.Context, h *schemaHistory, db, q, pos string) (map[string]bool, error) {
	if !isTableDDL(q) {
		return nil, nil
	}
	stmts, err := parseMariaDB(q)
	if err != nil {
		if s.mayTouchCaptured(db, q) {
			return nil, &DDLError{Statement: q, Position: pos, Reason: "cannot parse a statement that may change a captured table (" + firstLine(err.Error()) + ")"}
		}
		return nil, nil
	}
	a := &ddlApplier{src: s, ctx: ctx, h: h, db: db, changed: map[string]bool{}}
	for _, st := range stmts {
		if err := a.apply(st); err != nil {
			return nil, &DDLError{Statement: q, Position: pos, Reason: err.Error()}
		}
	}
	return a.changed, nil
}

// isTableDDL reports whether a statement is ALTER, CREATE, DROP or RENAME
// of a table (CREATE OR REPLACE TEMPORARY TABLE, ALTER ONLINE IGNORE TABLE,
// DROP TABLES ...): the statements that can change a table's columns.
// Others (triggers, procedures, views, indexes, grants) are not parsed.
func isTableDDL(q string) bool {
	q = strings.TrimSpace(q)
	for strings.HasPrefix(q, "/*") {
		end := strings.Index(q, "*/")
		if end < 0 {
			return false
		}
		q = strings.TrimSpace(q[end+2:])
	}
	words := strings.Fields(q)
	if len(words) < 2 {
		return false
	}
	switch strings.ToUpper(words[0]) {
	case "ALTER", "CREATE", "DROP", "RENAME":
	default:
		return false
	}
	for _, w := range words[1:min(len(words), 5)] {
		switch strings.ToUpper(w) {
		case "TABLE", "TABLES":
			return true
		case "OR", "REPLACE", "TEMPORARY", "ONLINE", "IGNORE":
		default:
			return false
		}
	}
	return false
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

var identRE = regexp.MustCompile("(`(?:[^`]|``)+`|[A-Za-z0-9_$]+)(?:\\s*\\.\\s*(`(?:[^`]|``)+`|[A-Za-z0-9_$]+))?")

// mayTouchCaptured reports whether a statement the parser cannot read
// names a captured table: any identifier (or db.identifier) of it that is
// one. It errs on the side of yes.
func (s *Source) mayTouchCaptured(db, q string) bool {
	for _, m := range identRE.FindAllStringSubmatch(q, -1) {
		d, t := db, unquote(m[1])
		if m[2] != "" {
			d, t = unquote(m[1]), unquote(m[2])
		}
		if s.filter.match(d, t) {
			return true
		}
	}
	return false
}

func (a *ddlApplier) name(t *ast.TableName) (string, string) {
	db := t.Schema.O
	if db == "" {
		db = a.db
	}
	return db, t.Name.O
}

func (a *ddlApplier) apply(st ast.StmtNode) error {
	switch n := st.(type) {
	case *ast.CreateTableStmt:
		db, t := a.name(n.Table)
		if !a.src.filter.match(db, t) {
			return nil
		}
		if _, exists := a.h.cur[histKey(db, t)]; exists && n.IfNotExists {
			return nil
		}
		var cols []histColumn
		switch {
		case n.ReferTable != nil:
			rdb, rt := a.name(n.ReferTable)
			src, ok := a.h.cur[histKey(rdb, rt)]
			if !ok {
				return a.fromCatalog(db, t, "CREATE TABLE ... LIKE a table the history does not hold")
			}
			cols = slices.Clone(src)
		case n.Select != nil:
			return a.fromCatalog(db, t, "CREATE TABLE ... SELECT")
		default:
			cols = columnsOf(n.Cols)
			for _, c := range n.Constraints {
				if c.Tp == ast.ConstraintPrimaryKey {
					setKey(cols, c)
				}
			}
		}
		a.set(db, t, cols)
	case *ast.DropTableStmt:
		for _, tn := range n.Tables {
			db, t := a.name(tn)
			if _, ok := a.h.cur[histKey(db, t)]; ok {
				delete(a.h.cur, histKey(db, t))
				a.changed[histKey(db, t)] = true
			}
		}
	case *ast.RenameTableStmt:
		for _, tt := range n.TableToTables {
			if err := a.rename(tt.OldTable, tt.NewTable); err != nil {
				return err
			}
		}
	case *ast.AlterTableStmt:
		db, t := a.name(n.Table)
		k := histKey(db, t)
		cols, known := a.h.cur[k]
		if !known {
			if !a.src.filter.match(db, t) {
				return nil
			}
			return fmt.Errorf("ALTER TABLE of captured table %s.%s, which the schema history does not hold", db, t)
		}
		cols = slices.Clone(cols)
		var renameTo *ast.TableName
		for _, spec := range n.Specs {
			var err error
			if cols, err = a.alter(cols, spec); err != nil {
				return err
			}
			if spec.Tp == ast.AlterTableRenameTable {
				renameTo = spec.NewTable
			}
		}
		a.set(db, t, cols)
		if renameTo != nil {
			return a.rename(n.Table, renameTo) // after the other clauses, as the server does
		}
	}
	return nil
}

// fromCatalog takes a table's columns from information_schema, for DDL
// whose columns the statement does not spell out. The catalog is today's:
// a later DDL would show here early; the TABLE_MAP column count check
// catches most such cases.
func (a *ddlApplier) fromCatalog(db, t, why string) error {
	cols, err := a.src.catalogHistColumns(a.ctx, connectors.TableID{Schema: db, Name: t})
	if err != nil {
		return fmt.Errorf("%s: read %s.%s from information_schema: %w", why, db, t, err)
	}
	a.src.log.Warn("schema history: columns taken from information_schema", "table", db+"."+t, "why", why)
	a.set(db, t, cols)
	return nil
}

func (a *ddlApplier) set(db, t string, cols []histColumn) {
	a.h.cur[histKey(db, t)] = cols
	a.changed[histKey(db, t)] = true
}

func (a *ddlApplier) rename(from, to *ast.TableName) error {
	odb, ot := a.name(from)
	ndb, nt := a.name(to)
	cols, known := a.h.cur[histKey(odb, ot)]
	if known {
		delete(a.h.cur, histKey(odb, ot))
		a.changed[histKey(odb, ot)] = true
	}
	if !a.src.filter.match(ndb, nt) {
		return nil
	}
	if !known {
		return a.fromCatalog(ndb, nt, "a table renamed into the captured tables")
	}
	a.set(ndb, nt, cols)
	return nil
}

// alter applies one ALTER TABLE clause.
func (a *ddlApplier) alter(cols []histColumn, spec *ast.AlterTableSpec) ([]histColumn, error) {
	find := func(name string) int {
		return slices.IndexFunc(cols, func(c histColumn) bool { return strings.EqualFold(c.Name, name) })
	}
	place := func(c histColumn, p *ast.ColumnPosition) ([]histColumn, error) {
		switch {
		case p == nil || p.Tp == ast.ColumnPositionNone:
			return append(cols, c), nil
		case p.Tp == ast.ColumnPositionFirst:
			return slices.Insert(cols, 0, c), nil
		default:
			i := find(p.RelativeColumn.Name.O)
			if i < 0 {
				return nil, fmt.Errorf("AFTER %s: no such column in the history", p.RelativeColumn.Name.O)
			}
			return slices.Insert(cols, i+1, c), nil
		}
	}
	switch spec.Tp {
	case ast.AlterTableAddColumns:
		for _, cd := range spec.NewColumns {
			if spec.IfNotExists && find(cd.Name.Name.O) >= 0 {
				continue
			}
			var err error
			if cols, err = place(columnsOf([]*ast.ColumnDef{cd})[0], spec.Position); err != nil {
				return nil, err
			}
			if hasPK(cd) {
				clearKeys(cols)
				cols[find(cd.Name.Name.O)].Key = 1
			}
		}
	case ast.AlterTableDropColumn:
		i := find(spec.OldColumnName.Name.O)
		if i < 0 {
			if spec.IfExists {
				return cols, nil
			}
			return nil, fmt.Errorf("DROP COLUMN %s: no such column in the history", spec.OldColumnName.Name.O)
		}
		cols = slices.Delete(cols, i, i+1)
	case ast.AlterTableModifyColumn, ast.AlterTableChangeColumn:
		old := spec.NewColumns[0].Name.Name.O
		if spec.Tp == ast.AlterTableChangeColumn {
			old = spec.OldColumnName.Name.O
		}
		i := find(old)
		if i < 0 {
			if spec.IfExists {
				return cols, nil
			}
			return nil, fmt.Errorf("MODIFY/CHANGE COLUMN %s: no such column in the history", old)
		}
		c := columnsOf(spec.NewColumns[:1])[0]
		c.Key = cols[i].Key
		if hasPK(spec.NewColumns[0]) {
			clearKeys(cols)
			c.Key = 1
		}
		cols = slices.Delete(cols, i, i+1)
		if spec.Position == nil || spec.Position.Tp == ast.ColumnPositionNone {
			cols = slices.Insert(cols, i, c)
		} else {
			var err error
			if cols, err = place(c, spec.Position); err != nil {
				return nil, err
			}
		}
	case ast.AlterTableRenameColumn:
		i := find(spec.OldColumnName.Name.O)
		if i < 0 {
			return nil, fmt.Errorf("RENAME COLUMN %s: no such column in the history", spec.OldColumnName.Name.O)
		}
		cols[i].Name = spec.NewColumnName.Name.O
	case ast.AlterTableAddConstraint:
		if spec.Constraint != nil && spec.Constraint.Tp == ast.ConstraintPrimaryKey {
			clearKeys(cols)
			setKey(cols, spec.Constraint)
		}
	case ast.AlterTableDropPrimaryKey:
		clearKeys(cols)
	case ast.AlterTableDropIndex:
		if strings.EqualFold(spec.Name, "PRIMARY") {
			clearKeys(cols)
		}
	case ast.AlterTableRenameTable:
		// handled by the caller
	case ast.AlterTableOption, ast.AlterTableDropForeignKey, ast.AlterTableAlterColumn, ast.AlterTableLock,
		ast.AlterTableWriteable, ast.AlterTableAlgorithm, ast.AlterTableRenameIndex, ast.AlterTableForce,
		ast.AlterTableAddPartitions, ast.AlterTableCoalescePartitions, ast.AlterTableDropPartition,
		ast.AlterTableTruncatePartition, ast.AlterTablePartition, ast.AlterTableEnableKeys, ast.AlterTableDisableKeys,
		ast.AlterTableRemovePartitioning, ast.AlterTableWithValidation, ast.AlterTableWithoutValidation,
		ast.AlterTableRebuildPartition, ast.AlterTableReorganizePartition, ast.AlterTableCheckPartitions,
		ast.AlterTableExchangePartition, ast.AlterTableOptimizePartition, ast.AlterTableRepairPartition,
		ast.AlterTableImportPartitionTablespace, ast.AlterTableDiscardPartitionTablespace, ast.AlterTableAlterCheck,
		ast.AlterTableDropCheck, ast.AlterTableImportTablespace, ast.AlterTableDiscardTablespace,
		ast.AlterTableIndexInvisible, ast.AlterTableOrderByColumns:
		// no change to the columns, their order, enum values or the key
	default:
		return nil, fmt.Errorf("an ALTER TABLE clause the schema history does not follow (type %d)", spec.Tp)
	}
	return cols, nil
}

func columnsOf(defs []*ast.ColumnDef) []histColumn {
	out := make([]histColumn, len(defs))
	for i, d := range defs {
		c := histColumn{Name: d.Name.Name.O}
		if d.Tp != nil {
			switch d.Tp.GetType() {
			case pmysql.TypeEnum, pmysql.TypeSet:
				c.Labels = slices.Clone(d.Tp.GetElems())
			case pmysql.TypeJSON:
				c.Special = "json"
			}
		}
		for _, o := range d.Options {
			// The stand-in parseMariaDB wrote for uuid, inet6 and inet4.
			if o.Tp == ast.ColumnOptionComment {
				if v, ok := o.Expr.(ast.ValueExpr); ok {
					if k, ok := strings.CutPrefix(fmt.Sprint(v.GetValue()), standInComment); ok {
						c.Special = k
					}
				}
			}
		}
		out[i] = c
	}
	for i, d := range defs {
		if hasPK(d) {
			out[i].Key = 1
		}
	}
	return out
}

func hasPK(d *ast.ColumnDef) bool {
	for _, o := range d.Options {
		if o.Tp == ast.ColumnOptionPrimaryKey {
			return true
		}
	}
	return false
}

func clearKeys(cols []histColumn) {
	for i := range cols {
		cols[i].Key = 0
	}
}

func setKey(cols []histColumn, c *ast.Constraint) {
	for n, k := range c.Keys {
		if k.Column == nil {
			continue
		}
		for i := range cols {
			if strings.EqualFold(cols[i].Name, k.Column.Name.O) {
				cols[i].Key = n + 1
			}
		}
	}
}

// mariaDBWords are words of MariaDB's DDL that the TiDB parser does not
// know, with a stand-in it does: types (the history needs no types) and
// column attributes that do not change the columns' order or names.
var mariaDBWords = map[string]string{
	"uuid": "binary(16) COMMENT '" + standInComment + "uuid'", "inet4": "binary(4) COMMENT '" + standInComment + "inet4'",
	"inet6": "binary(16) COMMENT '" + standInComment + "inet6'", "point": "blob", "geometry": "blob", "linestring": "blob",
	"polygon": "blob", "multipoint": "blob", "multilinestring": "blob", "multipolygon": "blob", "geometrycollection": "blob",
	"persistent": "STORED", "invisible": "", "compressed": "",
}

// standInComment marks the type a stand-in replaced.
const standInComment = "\x00tapline:"

// parseMariaDB parses a statement with the TiDB parser. If that fails, it
// tries again with MariaDB's additions rewritten: CREATE OR REPLACE, ALTER
// ONLINE/IGNORE, and each combination (fewest first) of the bare words of
// mariaDBWords replaced, since such a word can also be a column's name
// ("uuid uuid"); a stand-in in a name's place does not parse.
func parseMariaDB(q string) ([]ast.StmtNode, error) {
	parse := func(q string) ([]ast.StmtNode, error) {
		p := parser.New()
		p.SetSQLMode(pmysql.ModeNone)
		stmts, _, err := p.Parse(q, "", "")
		return stmts, err
	}
	stmts, first := parse(q)
	if first == nil {
		return stmts, nil
	}
	q = createOrReplaceRE.ReplaceAllString(q, "${1}CREATE TABLE")
	q = alterOnlineRE.ReplaceAllString(q, "${1}ALTER TABLE")
	type word struct{ start, end int }
	var words []word
	for i := 0; i < len(q); {
		switch c := q[i]; {
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for j < len(q) && q[j] != c {
				if q[j] == '\\' {
					j++
				}
				j++
			}
			i = j + 1
		case c == '/' && strings.HasPrefix(q[i:], "/*"):
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return nil, first
			}
			i += end + 4
		case isWordByte(c):
			j := i
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			next := strings.TrimLeft(q[j:], " \t\r\n")
			prev := strings.TrimRight(q[:i], " \t\r\n")
			_, known := mariaDBWords[strings.ToLower(q[i:j])]
			if known && !strings.HasPrefix(next, "(") && !strings.HasSuffix(prev, "=") && !strings.HasSuffix(prev, ".") {
				words = append(words, word{i, j})
			}
			i = j
		default:
			i++
		}
	}
	if len(words) == 0 || len(words) > 12 {
		if len(words) == 0 && q != "" {
			if stmts, err := parse(q); err == nil {
				return stmts, nil
			}
		}
		return nil, first
	}
	// Subsets by size, then in order.
	n := len(words)
	masks := make([]int, 0, 1<<n)
	for m := 0; m < 1<<n; m++ {
		masks = append(masks, m)
	}
	slices.SortStableFunc(masks, func(a, b int) int { return bitsOn(a) - bitsOn(b) })
	for _, m := range masks {
		var b strings.Builder
		last := 0
		for k, w := range words {
			if m&(1<<k) == 0 {
				continue
			}
			b.WriteString(q[last:w.start])
			b.WriteString(mariaDBWords[strings.ToLower(q[w.start:w.end])])
			last = w.end
		}
		b.WriteString(q[last:])
		if stmts, err := parse(b.String()); err == nil {
			return stmts, nil
		}
	}
	return nil, first
}

var (
	createOrReplaceRE = regexp.MustCompile(`(?is)^(\s*(?:/\*.*?\*/\s*)*)CREATE\s+OR\s+REPLACE\s+TABLE`)
	alterOnlineRE     = regexp.MustCompile(`(?is)^(\s*(?:/\*.*?\*/\s*)*)ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE`)
)

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func bitsOn(m int) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}
