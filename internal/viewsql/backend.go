package viewsql

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"sort"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// Dialect is what a store says about its types and names. Its methods are
// pure: they do no I/O.
type Dialect interface {
	// ColumnType returns the SQL type to create for column c of events
	// made by the named source connector; key is set for primary-key
	// columns (some stores need bounded types there).
	ColumnType(c connectors.Column, key bool, connector string) string
	// Converter returns the function that turns a value of def's column
	// into what the driver writes. Its error means that the store cannot
	// hold the value; the event is then rejected. nil stays nil.
	Converter(def *ColumnDef) func(connectors.Value) (any, error)
	// CanTake reports whether an existing column of SQL type have (as
	// DescribeTable reports it) holds every value of a column that would
	// be created with type want, without loss.
	CanTake(have, want string) bool
	// TransactionalDDL reports whether CREATE, ALTER, DROP and RENAME run
	// inside a transaction (and roll back with it). When false, schema
	// changes run before the batch's transaction, each on its own.
	TransactionalDDL() bool
	// CaseInsensitive reports whether column names match regardless of
	// case.
	CaseInsensitive() bool
	// MaxIdentifier is the longest table name the store takes, in bytes.
	MaxIdentifier() int
}

// Backend is one store's half of a SQL view sink; Sink holds the other,
// shared half (planning, schema evolution, positions). Sink calls a
// Backend from one goroutine at a time. Methods other than Connect, Close
// and Check run while the connection is open; the data and offset methods
// run inside the transaction Begin started.
type Backend interface {
	Dialect

	// Connect opens the connection and creates the offsets table (see
	// OffsetsTable) if it is absent.
	Connect(ctx context.Context) error
	// Close closes the connection and forgets everything cached on it.
	// Connect may be called again after. A second Close is a no-op.
	Close() error
	// Check verifies connectivity, permissions and settings without
	// writing data; it opens and closes its own connection.
	Check(ctx context.Context) error

	// Begin starts a transaction.
	Begin(ctx context.Context) error
	// Commit commits it; when Commit returns nil the transaction is durable.
	Commit(ctx context.Context) error
	// Rollback abandons it, and forgets what the backend cached about
	// objects the transaction made (temporary tables, say). It never fails.
	Rollback(ctx context.Context)
	// Healthy reports whether the connection can be used after an error
	// and Rollback; if not, Sink closes it and connects again on next use.
	Healthy() bool

	// ReadOffset reads the row of key from the offsets table, nil if there
	// is none; forUpdate locks the row until the transaction ends.
	ReadOffset(ctx context.Context, key string, forUpdate bool) (*Offset, error)
	// WriteOffset inserts or replaces the row of key.
	WriteOffset(ctx context.Context, key string, o *Offset) error
	// AdvanceOffset sets the position and origins of key's row to o's,
	// and its updated_at, only if the row holds position from (never nil),
	// and reports whether it did: false, with nothing written, when the
	// row is missing or holds another position. It leaves tables and
	// promoting as they are. It is one statement, which locks the row
	// like ReadOffset with forUpdate, so that the sink needs no read when
	// it knows the stored position from its own last commit.
	AdvanceOffset(ctx context.Context, key string, from []byte, o *Offset) (bool, error)
	// DeleteOffset deletes the row of key, if any.
	DeleteOffset(ctx context.Context, key string) error

	// DescribeTable returns the table's columns and primary key, or nil
	// if there is no such table.
	DescribeTable(ctx context.Context, name string) (*TableInfo, error)
	// CreateTable creates a table with cols and, when key is not empty, a
	// primary key on those columns. A history table gets, before cols, a
	// column HistorySeq that numbers the rows in insert order and is its
	// primary key. Key columns are NOT NULL, every other column nullable.
	CreateTable(ctx context.Context, name string, cols []*ColumnDef, key []string, history bool) error
	// AddColumn adds a nullable column.
	AddColumn(ctx context.Context, table string, col *ColumnDef) error
	// DropColumn drops a column.
	DropColumn(ctx context.Context, table, column string) error
	// DropTable drops a table if it exists.
	DropTable(ctx context.Context, name string) error
	// RenameTables renames tables, all at once: with transactional DDL,
	// inside the transaction; otherwise in one atomic statement.
	RenameTables(ctx context.Context, renames []Rename) error

	// Apply writes one table's share of a batch: see TableBatch for the
	// order. tb and its rows are the sink's, reused for the next batch:
	// Apply must not keep them once it returns.
	Apply(ctx context.Context, tb *TableBatch) error
}

// OffsetsTable is the table, next to the view's tables, that holds each
// pipeline's position:
//
//	pipeline   the pipeline's name (Runtime.Pipeline), "#shadow" appended
//	           for a rebuild's shadow tables; the primary key
//	position   the position stored with the last batch (bytes)
//	origins    the origin positions applied, as a JSON object
//	           (connectors.OriginKey → position)
//	tables     the view's tables this pipeline wrote, as a JSON array of
//	           live names
//	promoting  set while a shadow is being promoted in a store without
//	           transactional DDL (MySQL), to finish or undo it on the next
//	           open
//	updated_at when the row was written
const OffsetsTable = "tapline_offsets"

// HistorySeq is the column that numbers the rows of a history table.
const HistorySeq = "__seq"

// The columns a history table holds before the source's columns.
const (
	HistoryOp             = "__op"              // c, u, d, r or t
	HistoryPosition       = "__position"        // the event's position in hex (0x...), ordered like the bytes
	HistorySourcePosition = "__source_position" // the origin position (SourceInfo.Position)
	HistorySourceTsMs     = "__source_ts_ms"    // commit time at the origin, ms since the epoch
	HistoryTsMs           = "__ts_ms"           // when tapline made the event, ms since the epoch
	HistoryUnchanged      = "__unchanged"       // JSON array of the columns whose value was not sent (TOAST), else NULL
)

// Offset is one row of the offsets table.
type Offset struct {
	Position  []byte
	Origins   map[string]string
	Tables    []string
	Promoting bool
}

// OriginsJSON returns Origins as a JSON object.
func (o *Offset) OriginsJSON() string {
	if len(o.Origins) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(o.Origins)
	return string(b)
}

// TablesJSON returns Tables as a sorted JSON array.
func (o *Offset) TablesJSON() string {
	t := append([]string(nil), o.Tables...)
	sort.Strings(t)
	if t == nil {
		t = []string{}
	}
	b, _ := json.Marshal(t)
	return string(b)
}

// ParseOffset builds an Offset from the columns of its row.
func ParseOffset(position []byte, origins, tables string, promoting bool) (*Offset, error) {
	o := &Offset{Position: position, Promoting: promoting}
	if origins != "" {
		if err := json.Unmarshal([]byte(origins), &o.Origins); err != nil {
			return nil, fmt.Errorf("%s.origins is not a JSON object: %w", OffsetsTable, err)
		}
	}
	if tables != "" {
		if err := json.Unmarshal([]byte(tables), &o.Tables); err != nil {
			return nil, fmt.Errorf("%s.tables is not a JSON array: %w", OffsetsTable, err)
		}
	}
	return o, nil
}

// Rename renames table From to To.
type Rename struct{ From, To string }

// ColumnDef is a target column as the sink writes it.
type ColumnDef struct {
	Name   string            // the target column's name
	Source connectors.Column // the source column it comes from (its Type, Native, Elem)
	Type   string            // the SQL type it is created with (Dialect.ColumnType)
	Key    bool              // part of the primary key (upsert mode)
	Meta   bool              // one of the history columns (__op, ...)
	// Convert turns a value into what the driver writes (Dialect.Converter).
	Convert func(connectors.Value) (any, error)
}

// TableInfo is a table as the store has it.
type TableInfo struct {
	Columns []ColumnInfo
	Key     []string // primary-key columns in key order

	fold bool // match names regardless of case
}

// ColumnInfo is one column of an existing table.
type ColumnInfo struct {
	Name     string
	Type     string // as the store reports it
	Nullable bool
}

// Column returns the named column. With fold set (a store whose names are
// case-insensitive), a name that differs only in case matches too.
func (t *TableInfo) Column(name string) (*ColumnInfo, bool) {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i], true
		}
	}
	if t.fold {
		for i := range t.Columns {
			if strings.EqualFold(t.Columns[i].Name, name) {
				return &t.Columns[i], true
			}
		}
	}
	return nil, false
}

// Mask is a set of column indexes. The zero value is empty; the first 64
// indexes need no allocation.
type Mask struct {
	w0   uint64
	more []uint64 // indexes 64 and up
}

// NewMask returns an empty mask for n columns.
func NewMask(n int) Mask {
	if n <= 64 {
		return Mask{}
	}
	return Mask{more: make([]uint64, (n-1)/64)}
}

func (m *Mask) word(i int) *uint64 {
	if i < 64 {
		return &m.w0
	}
	w := i/64 - 1
	for len(m.more) <= w {
		m.more = append(m.more, 0)
	}
	return &m.more[w]
}

// Set adds i.
func (m *Mask) Set(i int) { *m.word(i) |= 1 << (i % 64) }

// Clear removes i.
func (m *Mask) Clear(i int) {
	if i < 64 || i/64-1 < len(m.more) {
		*m.word(i) &^= 1 << (i % 64)
	}
}

// Has reports whether i is in the mask.
func (m Mask) Has(i int) bool {
	if i < 64 {
		return m.w0&(1<<i) != 0
	}
	w := i/64 - 1
	return w < len(m.more) && m.more[w]&(1<<(i%64)) != 0
}

// Empty reports whether the mask holds nothing.
func (m Mask) Empty() bool {
	if m.w0 != 0 {
		return false
	}
	for _, w := range m.more {
		if w != 0 {
			return false
		}
	}
	return true
}

// Count returns the number of indexes in the mask.
func (m Mask) Count() int {
	n := bits.OnesCount64(m.w0)
	for _, w := range m.more {
		n += bits.OnesCount64(w)
	}
	return n
}

// Indexes returns the indexes in the mask in increasing order.
func (m Mask) Indexes() []int {
	out := make([]int, 0, m.Count())
	add := func(base int, w uint64) {
		for w != 0 {
			b := bits.TrailingZeros64(w)
			out = append(out, base+b)
			w &^= 1 << b
		}
	}
	add(0, m.w0)
	for wi, w := range m.more {
		add(64*(wi+1), w)
	}
	return out
}

// key is a string that is equal for equal masks.
func (m Mask) key() string {
	n := len(m.more)
	for n > 0 && m.more[n-1] == 0 {
		n--
	}
	buf := make([]byte, 8*(n+1))
	binary.LittleEndian.PutUint64(buf, m.w0)
	for i, w := range m.more[:n] {
		binary.LittleEndian.PutUint64(buf[8*(i+1):], w)
	}
	return string(buf)
}

// sameMask reports whether two masks hold the same indexes.
func sameMask(a, b Mask) bool {
	if a.w0 != b.w0 {
		return false
	}
	n := max(len(a.more), len(b.more))
	for i := 0; i < n; i++ {
		var x, y uint64
		if i < len(a.more) {
			x = a.more[i]
		}
		if i < len(b.more) {
			y = b.more[i]
		}
		if x != y {
			return false
		}
	}
	return true
}

// Row is one row of a TableBatch: a value for each column of the batch
// whose index is in Set, nil elsewhere.
type Row struct {
	Vals []any
	Set  Mask
	// Event is the index in the batch of the last event that made the row.
	Event int
}

// TableBatch is one table's share of a batch, already coalesced. Apply
// writes it in this order: Truncate (empty the table); Deletes (by key);
// Upserts (insert, or update the columns in Set when the key exists);
// Updates (update the columns in Set of rows that must exist: the others
// were Unchanged; a missing row is an error, see MissingRowError);
// Appends (history mode: insert every row in order). Each key appears at
// most once among Upserts and Updates.
type TableBatch struct {
	Table    string
	History  bool
	Truncate bool
	// Columns are the columns the rows refer to, by index.
	Columns []*ColumnDef
	// Key holds the indexes in Columns of the primary-key columns, in key
	// order (empty in history mode).
	Key []int
	// Info is the table as it is, after the batch's schema changes.
	Info    *TableInfo
	Deletes []Row // only the key columns are set
	Upserts []Row
	Updates []Row
	Appends []Row
}

// Group is a run of rows that set the same columns.
type Group struct {
	Cols []int // indexes in the TableBatch's Columns, increasing
	Rows []Row
}

// Groups sorts rows into groups by the columns they set, in order of first
// appearance; rows keep their order within a group. When all rows set the
// same columns, the one group's Rows is rows itself.
func Groups(rows []Row) []Group {
	if len(rows) == 0 {
		return nil
	}
	same := true
	for i := 1; i < len(rows) && same; i++ {
		same = sameMask(rows[i].Set, rows[0].Set)
	}
	if same {
		return []Group{{Cols: rows[0].Set.Indexes(), Rows: rows}}
	}
	var out []Group
	idx := map[string]int{}
	last := -1
	for _, r := range rows {
		if last < 0 || !sameMask(r.Set, out[last].Rows[0].Set) {
			k := r.Set.key()
			i, ok := idx[k]
			if !ok {
				i = len(out)
				idx[k] = i
				out = append(out, Group{Cols: r.Set.Indexes()})
			}
			last = i
		}
		out[last].Rows = append(out[last].Rows, r)
	}
	return out
}

// Runs cuts rows into consecutive runs that set the same columns, keeping
// their order (for history tables).
func Runs(rows []Row) []Group {
	var out []Group
	for _, r := range rows {
		if len(out) == 0 || !sameMask(r.Set, out[len(out)-1].Rows[0].Set) {
			out = append(out, Group{Cols: r.Set.Indexes()})
		}
		g := &out[len(out)-1]
		g.Rows = append(g.Rows, r)
	}
	return out
}

// KeyString formats the key columns of r for error messages: "id=42".
func (tb *TableBatch) KeyString(r *Row) string {
	var b strings.Builder
	for i, ci := range tb.Key {
		if i > 0 {
			b.WriteString(", ")
		}
		v := r.Vals[ci]
		if bs, ok := v.([]byte); ok {
			fmt.Fprintf(&b, "%s=0x%x", tb.Columns[ci].Name, bs)
		} else {
			fmt.Fprintf(&b, "%s=%v", tb.Columns[ci].Name, v)
		}
	}
	return b.String()
}

// MissingRowError is returned when an update that left some columns
// Unchanged (Postgres TOAST) finds no row to update: the view never had
// the row, so the unchanged values cannot be known.
type MissingRowError struct {
	Table string
	Key   string // as TableBatch.KeyString formats it
	Event int    // the index in the batch of the update
}

func (e *MissingRowError) Error() string {
	return fmt.Sprintf("table %s has no row with %s to update: event %d of the batch leaves some columns unchanged (their values were not sent, Postgres TOAST) and the view never had the row; the view is missing data, rebuild it (tapline rebuild)",
		e.Table, e.Key, e.Event)
}
