package connectors

import (
	"fmt"
	"strings"
)

// Op is the kind of change an event records, with Debezium's letters.
type Op byte

// The operations. Their String forms are the letters used in event JSON.
const (
	OpCreate   Op = 'c' // a row was inserted
	OpUpdate   Op = 'u' // a row was updated
	OpDelete   Op = 'd' // a row was deleted
	OpRead     Op = 'r' // a row was read by a snapshot
	OpTruncate Op = 't' // a table was emptied
	// OpHeartbeat is no change: the source has emitted everything its
	// origin committed before the event's position. It has no table, no
	// rows and no schema, only Source and Position. Log sinks carry it
	// (to a heartbeat subject or topic), view sinks record its origin
	// position (read-your-writes) and apply nothing, other sinks skip it.
	OpHeartbeat Op = 'h'
)

// String returns the one-letter form ("c", "u", "d", "r", "t", "h").
func (o Op) String() string {
	switch o {
	case OpCreate, OpUpdate, OpDelete, OpRead, OpTruncate, OpHeartbeat:
		return string(rune(o))
	}
	return fmt.Sprintf("Op(%d)", byte(o))
}

// ParseOp parses the one-letter form of an operation. It also accepts the
// words insert, create, update, delete, read, snapshot, truncate and
// heartbeat.
func ParseOp(s string) (Op, error) {
	switch strings.ToLower(s) {
	case "c", "create", "insert":
		return OpCreate, nil
	case "u", "update":
		return OpUpdate, nil
	case "d", "delete":
		return OpDelete, nil
	case "r", "read", "snapshot":
		return OpRead, nil
	case "t", "truncate":
		return OpTruncate, nil
	case "h", "heartbeat":
		return OpHeartbeat, nil
	}
	return 0, fmt.Errorf("unknown op %q (want one of c, u, d, r, t, h)", s)
}

// Value is one column value. Its dynamic type is one of:
//
//	nil                 SQL NULL
//	bool
//	int64
//	uint64              only for unsigned values above math.MaxInt64; smaller
//	                    ones are int64, so that equal values compare equal
//	float64             NaN and ±Inf are allowed; a float32 column's value is
//	                    parsed from its text with 64 bits (0.1, not
//	                    0.10000000149011612)
//	string              text, and the lossless text form of decimals, dates,
//	                    times, timestamps (ISO 8601), uuids, intervals, etc.
//	[]byte              binary data; base64 in JSON
//	JSON                a JSON document (json/jsonb columns), embedded as is
//	[]Value             an array
//	UnchangedValue      the column did not change and its value was not sent
//	                    (Postgres TOAST); sinks keep the stored value
//
// Which of these a column uses is given by its Column.Type.
type Value = any

// JSON is a JSON document carried as a column value. It must be valid JSON.
type JSON []byte

// UnchangedValue is the type of Unchanged.
type UnchangedValue struct{}

// Unchanged marks a column whose value did not change and was not sent by the
// source (an unchanged TOASTed column in Postgres). Sinks keep the value they
// have stored; it is never data.
var Unchanged = UnchangedValue{}

// IsUnchanged reports whether v is the Unchanged marker.
func IsUnchanged(v Value) bool {
	_, ok := v.(UnchangedValue)
	return ok
}

// SourceInfo describes where an event came from. It is set by the source
// connector and never changed by transforms, so it always names the origin.
type SourceInfo struct {
	Connector string // "postgres", "mysql", "generate", ...
	Name      string // the logical server name (the pipeline's source name), optional
	DB        string // database name
	Schema    string // schema (Postgres) or empty
	Table     string // table name
	// Position is the human-readable form of the origin position of the
	// change (for Postgres the commit LSN and ordinal), which readers use for
	// read-your-writes.
	Position string
	TxID     int64 // the origin transaction id, 0 if unknown
	TsMs     int64 // commit time at the origin in ms since the Unix epoch
	Snapshot bool  // true for events read by a snapshot
	// Extra holds connector-specific fields (for example "lsn", "gtid",
	// "file", "pos"), written into the event's source block in order. The
	// slice may be shared by several events: copy it before changing it.
	Extra []Field
}

// Field is a named value.
type Field struct {
	Name  string
	Value Value
}

// TxInfo places an event in its origin transaction.
type TxInfo struct {
	ID         string // the transaction id; empty when the event has no transaction
	TotalOrder int64  // 1-based order of the event in its transaction
}

// Event is one row change. Before and After hold one value per column of
// Schema, in Schema.Columns order; a nil slice means the image is absent
// (inserts have no Before, deletes no After, truncates neither).
//
// Events are passed by value in batches, but Schema and the row slices are
// shared: a transform that changes a row must copy it first, and nobody may
// modify a Schema after an event referring to it has been emitted.
type Event struct {
	Op     Op
	Schema *Schema
	Before []Value
	After  []Value
	Source SourceInfo
	Tx     TxInfo
	// TsMs is when tapline produced the event, in ms since the Unix epoch.
	TsMs int64
	// Position is where this event sits in the stream this pipeline's source
	// reads; resuming from it continues with the next event.
	Position Position
	// Destination, when set (by the route transform), overrides the topic or
	// subject a log sink would choose for this event.
	Destination string
}

// Table returns the logical table the event belongs to: the schema's table,
// which transforms may have renamed.
func (e *Event) Table() TableID {
	if e.Schema != nil {
		return e.Schema.Table
	}
	return TableID{Schema: e.Source.Schema, Name: e.Source.Table}
}

// Row returns the image that identifies the row: After, or Before for
// deletes.
func (e *Event) Row() []Value {
	if e.After != nil {
		return e.After
	}
	return e.Before
}

// Key returns the primary key of the event's row as key fields in key order,
// or nil if the table has no primary key or the event has no row.
func (e *Event) Key() []Field {
	if e.Schema == nil {
		return nil
	}
	row := e.Row()
	if row == nil {
		return nil
	}
	keys := e.Schema.KeyColumns()
	if len(keys) == 0 {
		return nil
	}
	out := make([]Field, len(keys))
	for i, ci := range keys {
		var v Value
		if ci < len(row) {
			v = row[ci]
			// An unchanged key in After can happen only for TOASTed keys;
			// take it from Before, which then holds it.
			if IsUnchanged(v) && e.Before != nil && ci < len(e.Before) {
				v = e.Before[ci]
			}
		}
		out[i] = Field{Name: e.Schema.Columns[ci].Name, Value: v}
	}
	return out
}

// Size estimates the memory the event holds, in bytes. The engine uses it to
// bound batches; it is cheap and approximate, not exact.
func (e *Event) Size() int {
	n := 160 + len(e.Position) + len(e.Source.Position) + len(e.Tx.ID) + len(e.Destination)
	n += rowSize(e.Before) + rowSize(e.After)
	return n
}

func rowSize(row []Value) int {
	n := 24 + 16*len(row)
	for _, v := range row {
		n += valueSize(v)
	}
	return n
}

func valueSize(v Value) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case []byte:
		return len(x)
	case JSON:
		return len(x)
	case []Value:
		return rowSize(x)
	case nil, UnchangedValue:
		return 0
	default:
		return 8
	}
}
