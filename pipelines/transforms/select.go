package transforms

import (
	"fmt"
	"path"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// tablePattern matches tables. "schema.table" matches that schema and
// table; "table" (no dot) matches the table in any schema. Both parts may
// hold the wildcards of path.Match ("*", "?", "[a-z]").
type tablePattern struct {
	schema    string
	name      string
	anySchema bool
}

func parseTablePattern(s string) (tablePattern, error) {
	id := connectors.ParseTableID(s)
	p := tablePattern{schema: id.Schema, name: id.Name, anySchema: !strings.Contains(s, ".")}
	if p.name == "" || (!p.anySchema && p.schema == "") {
		return p, fmt.Errorf("table %q: want \"schema.table\" or \"table\"", s)
	}
	for _, part := range []string{p.schema, p.name} {
		if _, err := path.Match(part, ""); err != nil {
			return p, fmt.Errorf("table %q: bad wildcard pattern", s)
		}
	}
	return p, nil
}

func (p tablePattern) match(t connectors.TableID) bool {
	if !p.anySchema {
		if ok, _ := path.Match(p.schema, t.Schema); !ok {
			return false
		}
	}
	ok, _ := path.Match(p.name, t.Name)
	return ok
}

// String returns the pattern as written.
func (p tablePattern) String() string {
	if p.anySchema {
		return p.name
	}
	return p.schema + "." + p.name
}

// tableSet is a list of patterns; an empty set matches every table.
type tableSet []tablePattern

func parseTableSet(key string, list []string) (tableSet, error) {
	var set tableSet
	for _, s := range list {
		p, err := parseTablePattern(s)
		if err != nil {
			return nil, &ConfigError{Key: key, Err: err}
		}
		set = append(set, p)
	}
	return set, nil
}

func (s tableSet) match(t connectors.TableID) bool {
	if len(s) == 0 {
		return true
	}
	for _, p := range s {
		if p.match(t) {
			return true
		}
	}
	return false
}

// columnSelector picks columns of tables: "schema.table.column",
// "table.column" (any schema) or "*.column" (any table). Each part may hold
// path.Match wildcards.
type columnSelector struct {
	table  tablePattern
	column string
}

const selectorForms = `want "schema.table.column", "table.column" or "*.column"`

func parseColumnSelector(s string) (columnSelector, error) {
	i := strings.LastIndexByte(s, '.')
	if i <= 0 || i == len(s)-1 {
		return columnSelector{}, fmt.Errorf("column %q: %s", s, selectorForms)
	}
	tp, err := parseTablePattern(s[:i])
	if err != nil {
		return columnSelector{}, fmt.Errorf("column %q: %s", s, selectorForms)
	}
	col := s[i+1:]
	if _, err := path.Match(col, ""); err != nil {
		return columnSelector{}, fmt.Errorf("column %q: bad wildcard pattern", s)
	}
	return columnSelector{table: tp, column: col}, nil
}

func parseColumnSelectors(key string, list []string) ([]columnSelector, error) {
	if len(list) == 0 {
		return nil, keyError(key, "list at least one column (%s)", selectorForms)
	}
	out := make([]columnSelector, 0, len(list))
	for _, s := range list {
		sel, err := parseColumnSelector(s)
		if err != nil {
			return nil, &ConfigError{Key: key, Err: err}
		}
		out = append(out, sel)
	}
	return out, nil
}

// String returns the selector as written.
func (c columnSelector) String() string { return c.table.String() + "." + c.column }

// matchColumns returns, for each column of s, whether a selector picks it.
// It returns nil when none is picked.
func matchColumns(sels []columnSelector, s *connectors.Schema) []bool {
	var picked []bool
	for _, sel := range sels {
		if !sel.table.match(s.Table) {
			continue
		}
		for i, c := range s.Columns {
			if ok, _ := path.Match(sel.column, c.Name); ok {
				if picked == nil {
					picked = make([]bool, len(s.Columns))
				}
				picked[i] = true
			}
		}
	}
	return picked
}

// maxCached bounds the per-schema caches. Schemas are shared by all events
// of one table version, so a pipeline sees few; the bound only guards
// against a source that makes a new *Schema per event.
const maxCached = 4096

// schemaCache remembers what a transform derived from each input schema.
// Transforms are applied from one goroutine, so it needs no lock.
type schemaCache[T any] struct {
	m map[*connectors.Schema]T
}

func (c *schemaCache[T]) get(s *connectors.Schema, derive func(*connectors.Schema) T) T {
	if v, ok := c.m[s]; ok {
		return v
	}
	if c.m == nil || len(c.m) >= maxCached {
		c.m = make(map[*connectors.Schema]T)
	}
	v := derive(s)
	c.m[s] = v
	return v
}

// copyRow returns a copy of row, or nil for a nil row.
func copyRow(row []connectors.Value) []connectors.Value {
	if row == nil {
		return nil
	}
	return append([]connectors.Value(nil), row...)
}
