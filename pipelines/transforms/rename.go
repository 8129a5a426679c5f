package transforms

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// RenameConfig configures the rename transform. Keys name the tables and
// columns as they arrive at the transform (before this rename).
type RenameConfig struct {
	Tables  map[string]string `yaml:"tables" doc:"table renames: \"schema.table\" or \"table\" (any schema) to \"name\" (same schema) or \"schema.name\""`
	Columns map[string]string `yaml:"columns" doc:"column renames: \"schema.table.column\", \"table.column\" or \"*.column\" to the new column name"`
}

type rename struct {
	tables  map[connectors.TableID]string // exact "schema.table" keys
	names   map[string]string             // "table" keys, any schema
	columns map[string]string             // "schema.table.column", "table.column", "*.column"
	plans   schemaCache[*renamePlan]
}

type renamePlan struct {
	schema *connectors.Schema
	err    error
}

// NewRename builds the rename transform. It changes Event.Schema (a new,
// cached schema per input schema) and never Event.Source, which keeps
// naming the origin. Rows are not copied: columns keep their order.
func NewRename(cfg RenameConfig) (Transform, error) {
	if len(cfg.Tables) == 0 && len(cfg.Columns) == 0 {
		return nil, fmt.Errorf("give tables or columns to rename")
	}
	r := &rename{tables: map[connectors.TableID]string{}, names: map[string]string{}, columns: map[string]string{}}
	for _, from := range sortedKeys(cfg.Tables) {
		to := cfg.Tables[from]
		if strings.ContainsAny(from, "*?[") {
			return nil, keyError("tables", "%q: wildcards are not allowed in renames", from)
		}
		id := connectors.ParseTableID(from)
		tid := connectors.ParseTableID(to)
		if id.Name == "" || (strings.Contains(from, ".") && id.Schema == "") {
			return nil, keyError("tables", "%q: want \"schema.table\" or \"table\"", from)
		}
		if tid.Name == "" || (strings.Contains(to, ".") && tid.Schema == "") {
			return nil, keyError("tables", "%q: the new name must be \"name\" or \"schema.name\"", from)
		}
		if strings.Contains(from, ".") {
			r.tables[id] = to
		} else {
			r.names[from] = to
		}
	}
	for _, from := range sortedKeys(cfg.Columns) {
		to := cfg.Columns[from]
		sel, err := parseColumnSelector(from)
		if err != nil {
			return nil, &ConfigError{Key: "columns", Err: err}
		}
		if strings.ContainsAny(sel.column, "*?[") || (sel.table.String() != "*" && strings.ContainsAny(sel.table.String(), "*?[")) {
			return nil, keyError("columns", "%q: wildcards are not allowed in renames, except a whole \"*\" table", from)
		}
		if to == "" {
			return nil, keyError("columns", "%q: the new column name is empty", from)
		}
		r.columns[from] = to
	}
	return r, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// table returns the new name of t; ok is false when t is not renamed.
func (r *rename) table(t connectors.TableID) (connectors.TableID, bool) {
	to, ok := r.tables[t]
	if !ok {
		to, ok = r.names[t.Name]
	}
	if !ok {
		return t, false
	}
	if !strings.Contains(to, ".") {
		return connectors.TableID{Schema: t.Schema, Name: to}, true
	}
	return connectors.ParseTableID(to), true
}

// column returns the new name of a column of table t, most specific key
// first.
func (r *rename) column(t connectors.TableID, col string) (string, bool) {
	if t.Schema != "" {
		if to, ok := r.columns[t.Schema+"."+t.Name+"."+col]; ok {
			return to, true
		}
	}
	if to, ok := r.columns[t.Name+"."+col]; ok {
		return to, true
	}
	to, ok := r.columns["*."+col]
	return to, ok
}

func (r *rename) plan(s *connectors.Schema) *renamePlan {
	table, changed := r.table(s.Table)
	var cols []connectors.Column
	for i, c := range s.Columns {
		to, ok := r.column(s.Table, c.Name)
		if !ok || to == c.Name {
			continue
		}
		if cols == nil {
			cols = append([]connectors.Column(nil), s.Columns...)
		}
		cols[i].Name = to
	}
	if !changed && cols == nil {
		return &renamePlan{schema: s}
	}
	if cols == nil {
		cols = s.Columns // unchanged columns: share the slice, schemas are immutable
	}
	ns, err := connectors.NewSchema(table, s.Version, cols)
	if err != nil {
		return &renamePlan{err: fmt.Errorf("rename: table %s: %w", s.Table, err)}
	}
	return &renamePlan{schema: ns}
}

// Apply gives ev the renamed schema of its table.
func (r *rename) Apply(ev *connectors.Event) (bool, error) {
	if ev.Schema == nil {
		return true, nil
	}
	p := r.plans.get(ev.Schema, r.plan)
	if p.err != nil {
		return false, p.err
	}
	ev.Schema = p.schema
	return true, nil
}
