package connectors

import (
	"fmt"
	"strings"
)

// Type is the portable type of a column: what its values look like in
// events, independent of the database that produced them. Sinks map it to
// their own column types; Column.Native keeps the origin's exact type.
type Type string

// The portable column types, with the Go type of their values (see Value).
const (
	TypeBool        Type = "bool"        // bool
	TypeInt16       Type = "int16"       // int64
	TypeInt32       Type = "int32"       // int64
	TypeInt64       Type = "int64"       // int64
	TypeUint64      Type = "uint64"      // uint64, or int64 when it fits
	TypeFloat32     Type = "float32"     // float64
	TypeFloat64     Type = "float64"     // float64
	TypeDecimal     Type = "decimal"     // string, e.g. "19.90", "NaN"
	TypeString      Type = "string"      // string
	TypeBytes       Type = "bytes"       // []byte
	TypeJSON        Type = "json"        // JSON
	TypeUUID        Type = "uuid"        // string
	TypeDate        Type = "date"        // string, ISO 8601 "2025-11-22"
	TypeTime        Type = "time"        // string, "15:04:05.999999" (optionally with offset)
	TypeTimestamp   Type = "timestamp"   // string, ISO 8601 without zone
	TypeTimestampTZ Type = "timestamptz" // string, ISO 8601 in UTC with "Z"
	TypeInterval    Type = "interval"    // string, ISO 8601 duration
	TypeArray       Type = "array"       // []Value
	TypeText        Type = "text"        // string: any other type, in its text form
)

// TableID names a table: an optional schema (or database) and a name.
type TableID struct {
	Schema string
	Name   string
}

// String returns "schema.name", or "name" when there is no schema.
func (t TableID) String() string {
	if t.Schema == "" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// ParseTableID splits "schema.name" at its first dot; a name with no dot has
// no schema.
func ParseTableID(s string) TableID {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return TableID{Schema: s[:i], Name: s[i+1:]}
	}
	return TableID{Name: s}
}

// Column describes one column of a table.
type Column struct {
	Name     string
	Type     Type
	Native   string // the origin database's type, e.g. "numeric(10,2)"
	Nullable bool
	// Key is the column's 1-based position in the primary key, 0 when the
	// column is not part of it.
	Key int
	// Elem is the element type of an array column.
	Elem Type
}

// Schema is one version of a table's shape. Version increases by one each
// time the source sees the table's columns change, so that sinks can tell
// which events carry which shape. A Schema is immutable once an event that
// refers to it has been emitted; share it between events of the same version.
type Schema struct {
	Table   TableID
	Version int
	Columns []Column

	keys []int // column indexes of the key, in key order; built lazily
}

// NewSchema builds a schema and checks that column names are unique and key
// positions are dense (1..n).
func NewSchema(table TableID, version int, cols []Column) (*Schema, error) {
	s := &Schema{Table: table, Version: version, Columns: cols}
	seen := make(map[string]bool, len(cols))
	var nkeys int
	for _, c := range cols {
		if c.Name == "" {
			return nil, fmt.Errorf("schema %s: a column has no name", table)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("schema %s: column %q appears twice", table, c.Name)
		}
		seen[c.Name] = true
		if c.Key > 0 {
			nkeys++
		}
	}
	keys := make([]int, nkeys)
	for i := range keys {
		keys[i] = -1
	}
	for i, c := range cols {
		if c.Key <= 0 {
			continue
		}
		if c.Key > nkeys || keys[c.Key-1] != -1 {
			return nil, fmt.Errorf("schema %s: key positions must be 1..%d, each once (column %q has %d)", table, nkeys, c.Name, c.Key)
		}
		keys[c.Key-1] = i
	}
	s.keys = keys
	return s, nil
}

// MustSchema is NewSchema for fixed schemas in tests and examples; it panics
// on error.
func MustSchema(table TableID, version int, cols []Column) *Schema {
	s, err := NewSchema(table, version, cols)
	if err != nil {
		panic(err)
	}
	return s
}

// KeyColumns returns the indexes of the primary-key columns in key order. The
// result must not be modified. Schemas built with NewSchema answer from a
// precomputed list.
func (s *Schema) KeyColumns() []int {
	if s.keys != nil {
		return s.keys
	}
	var keys []int
	for k := 1; ; k++ {
		found := false
		for i, c := range s.Columns {
			if c.Key == k {
				keys = append(keys, i)
				found = true
				break
			}
		}
		if !found {
			return keys
		}
	}
}

// HasKey reports whether the table has a primary key.
func (s *Schema) HasKey() bool { return len(s.KeyColumns()) > 0 }

// KeyOnlyVersion is the version of a key-only schema: one that holds only a
// table's key columns, as the kafka source makes of a tombstone (all that
// compaction leaves of a deleted row). Schemas inferred from events without
// a schema block are version 0 too, but have no key columns.
const KeyOnlyVersion = 0

// KeyOnly reports whether s is a key-only schema: version KeyOnlyVersion,
// at least one column, every column part of the key. An event with such a
// schema deletes by key; sinks never create, evolve or type-check a table
// from it.
func (s *Schema) KeyOnly() bool {
	if s == nil || s.Version != KeyOnlyVersion || len(s.Columns) == 0 {
		return false
	}
	for _, c := range s.Columns {
		if c.Key <= 0 {
			return false
		}
	}
	return true
}

// Index returns the index of the named column, or -1.
func (s *Schema) Index(name string) int {
	for i, c := range s.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// SameShape reports whether two schemas have the same columns with the same
// types, keys and nullability (versions and table names aside).
func (s *Schema) SameShape(o *Schema) bool {
	if len(s.Columns) != len(o.Columns) {
		return false
	}
	for i := range s.Columns {
		if s.Columns[i] != o.Columns[i] {
			return false
		}
	}
	return true
}
