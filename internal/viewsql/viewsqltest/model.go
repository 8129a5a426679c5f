package viewsqltest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// Model folds events one by one, the naive way, into the rows a view
// should hold: the expected state the suite compares the store with. It
// knows nothing of the sink's coalescing.
type Model struct {
	// Tables maps a source table name to its rows: key → column → text.
	Tables map[string]map[string]map[string]string
}

// NewModel returns an empty model.
func NewModel() *Model { return &Model{Tables: map[string]map[string]map[string]string{}} }

// Apply folds one event.
func (m *Model) Apply(ev *connectors.Event) {
	if ev.Op == connectors.OpHeartbeat {
		return // no change
	}
	t := ev.Table().Name
	rows := m.Tables[t]
	if rows == nil {
		rows = map[string]map[string]string{}
		m.Tables[t] = rows
	}
	switch ev.Op {
	case connectors.OpTruncate:
		clear(rows)
		return
	case connectors.OpDelete:
		delete(rows, modelKey(ev.Schema, ev.Before))
		return
	}
	if ev.Before != nil {
		if old := modelKey(ev.Schema, ev.Before); old != modelKey(ev.Schema, ev.After) && !hasUnset(ev.Schema, ev.Before) {
			delete(rows, old)
		}
	}
	k := modelKey(ev.Schema, ev.After)
	row := rows[k]
	if row == nil {
		row = map[string]string{}
		rows[k] = row
	}
	for i, c := range ev.Schema.Columns {
		v := ev.After[i]
		if connectors.IsUnchanged(v) {
			continue
		}
		row[c.Name] = Text(v)
	}
}

func hasUnset(s *connectors.Schema, row []connectors.Value) bool {
	for _, ki := range s.KeyColumns() {
		if row[ki] == nil || connectors.IsUnchanged(row[ki]) {
			return true
		}
	}
	return false
}

func modelKey(s *connectors.Schema, row []connectors.Value) string {
	var parts []string
	for _, ki := range s.KeyColumns() {
		parts = append(parts, Text(row[ki]))
	}
	return strings.Join(parts, "\x00")
}

// Text is the text the suite expects the store to give back for a value
// of the types the suite uses (integers, strings, decimals with the scale
// of their column).
func Text(v connectors.Value) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return fmt.Sprint(v)
}

// Rows returns the model's rows of a table as the suite reads the store's:
// the given columns, sorted by the first ones (the key), NULL for a
// column a row does not have.
func (m *Model) Rows(table string, cols []string, keyCols int) [][]string {
	var out [][]string
	for _, row := range m.Tables[table] {
		r := make([]string, len(cols))
		for i, c := range cols {
			v, ok := row[c]
			if !ok {
				v = "NULL"
			}
			r[i] = v
		}
		out = append(out, r)
	}
	SortRows(out, keyCols)
	return out
}

// SortRows sorts rows by their first keyCols columns, numerically where
// both are integers.
func SortRows(rows [][]string, keyCols int) {
	sort.Slice(rows, func(i, j int) bool {
		for c := 0; c < keyCols; c++ {
			a, b := rows[i][c], rows[j][c]
			if a == b {
				continue
			}
			x, err1 := strconv.ParseInt(a, 10, 64)
			y, err2 := strconv.ParseInt(b, 10, 64)
			if err1 == nil && err2 == nil {
				return x < y
			}
			return a < b
		}
		return false
	})
}
