package viewsql

import (
	"fmt"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// ShadowSuffix is appended to the name of each table a shadow sink (see
// connectors.ShadowSink) writes.
const ShadowSuffix = "__shadow"

// oldSuffix names the live tables a non-transactional Promote moves aside
// before dropping them.
const oldSuffix = "__old"

// shapeKey identifies a schema version of a table from one source.
type shapeKey struct {
	table     connectors.TableID
	version   int
	connector string
}

// maxShapes bounds the shape cache; past it the cache starts over.
const maxShapes = 4096

// shape is how the events of one schema version land in their target
// table: the projected columns with their SQL types and converters.
type shape struct {
	schema    *connectors.Schema // nil for a truncate without a schema
	connector string             // the source connector of its events
	source    connectors.TableID
	live      string // the target table's live name
	name      string // the table written: live, or live + ShadowSuffix
	history   bool
	cols      []*ColumnDef
	srcIdx    []int // per column: its index in schema.Columns, -1 for history columns
	keys      []int // indexes in cols of the key columns, in key order (upsert mode)
	keyAt     []int // per column: its position in the key, -1 if not a key column
	keyNames  []string
	// keyOnly: the schema holds only the key (see connectors.Schema.KeyOnly); its
	// events delete by key and never shape the table.
	keyOnly bool
}

// borrowKeyTypes returns the columns of key-only schema sch with the
// types of the same columns in a full schema of table t this sink has
// seen, when it has seen one, so that their values convert as the
// table's events do (and coalesce with them in a batch).
func (s *Sink) borrowKeyTypes(t connectors.TableID, sch *connectors.Schema) *connectors.Schema {
	var full *connectors.Schema
	for k, sh := range s.shapes {
		if k.table == t && sh.schema != nil && !sh.keyOnly && (full == nil || sh.schema.Version > full.Version) {
			full = sh.schema
		}
	}
	if full == nil {
		return sch
	}
	cols := append([]connectors.Column(nil), sch.Columns...)
	for i, c := range cols {
		if j := full.Index(c.Name); j >= 0 {
			fc := full.Columns[j]
			cols[i].Type, cols[i].Native, cols[i].Elem = fc.Type, fc.Native, fc.Elem
		}
	}
	out, err := connectors.NewSchema(sch.Table, sch.Version, cols)
	if err != nil {
		return sch
	}
	return out
}

// NoKeyError is returned for a table without a primary key in upsert mode.
type NoKeyError struct {
	Sink   string
	Source connectors.TableID
	Target string
}

func (e *NoKeyError) Error() string {
	return fmt.Sprintf("%s: table %s has no primary key, so its rows cannot be upserted into %s; materialize it in history mode (tables: {%q: {mode: history}}) or give the source table a primary key",
		e.Sink, e.Source, e.Target, e.Source.String())
}

// historyColumns are the columns a history table holds before the data.
var historyColumns = []connectors.Column{
	{Name: HistoryOp, Type: connectors.TypeString},
	{Name: HistoryPosition, Type: connectors.TypeString},
	{Name: HistorySourcePosition, Type: connectors.TypeString},
	{Name: HistorySourceTsMs, Type: connectors.TypeInt64},
	{Name: HistoryTsMs, Type: connectors.TypeInt64},
	{Name: HistoryUnchanged, Type: connectors.TypeString},
}

// shapeFor returns the shape of ev's schema version, building it on first
// use. Events without a schema get a shape with no data columns.
func (s *Sink) shapeFor(ev *connectors.Event) (*shape, error) {
	if sh := s.lastShape; sh != nil && ev.Schema != nil && sh.schema == ev.Schema && sh.connector == ev.Source.Connector {
		return sh, nil // the common case: a run of events of one schema
	}
	t := ev.Table()
	k := shapeKey{table: t, version: -1, connector: ev.Source.Connector}
	if ev.Schema != nil {
		k.version = ev.Schema.Version
	}
	if sh, ok := s.shapes[k]; ok && (sh.schema == ev.Schema || (sh.schema != nil && ev.Schema != nil && sh.schema.SameShape(ev.Schema))) {
		s.lastShape = sh
		return sh, nil
	}
	sh, err := s.buildShape(t, ev.Schema, ev.Source.Connector)
	if err != nil {
		return nil, err
	}
	if len(s.shapes) >= maxShapes {
		clear(s.shapes)
	}
	s.shapes[k] = sh
	s.lastShape = sh
	return sh, nil
}

func (s *Sink) buildShape(t connectors.TableID, sch *connectors.Schema, connector string) (*shape, error) {
	live, history := s.cfg.target(t)
	tc, cfgKey := s.cfg.tableConfig(t)
	sh := &shape{schema: sch, source: t, live: live, name: s.tableName(live), history: history, connector: connector}
	if live == "" {
		return nil, fmt.Errorf("%s: table %s maps to an empty target name (check table_name and tables.%s.name)", s.name, t, t)
	}
	if max := s.b.MaxIdentifier(); len(sh.name) > max || len(live)+len(oldSuffix) > max && !s.b.TransactionalDDL() {
		return nil, fmt.Errorf("%s: the target table name %q of %s is longer than the %d bytes the store takes (with the %s suffix of a rebuild); set a shorter one in tables.%s.name",
			s.name, live, t, max, ShadowSuffix, t)
	}
	if history {
		for _, c := range historyColumns {
			sh.addColumn(s.b, &ColumnDef{Name: c.Name, Source: c, Meta: true}, -1, connector)
		}
	}
	if sch == nil {
		return sh, nil
	}
	if !history && !sch.HasKey() {
		return nil, &NoKeyError{Sink: s.name, Source: t, Target: live}
	}
	if sch.KeyOnly() {
		sh.keyOnly = true
		sch = s.borrowKeyTypes(t, sch) // sh.schema stays the event's, for the shape cache
	}
	var keep map[string]bool
	if len(tc.Columns) > 0 {
		keep = make(map[string]bool, len(tc.Columns))
		for _, c := range tc.Columns {
			keep[c] = true
			if sch.Index(c) < 0 && !s.warned[cfgKey+"."+c] {
				s.warned[cfgKey+"."+c] = true
				s.log.Warn("a column listed in the sink's tables config is not in the source table", "table", t.String(),
					"column", c, "schema_version", sch.Version, "config", "tables."+cfgKey+".columns")
			}
		}
	}
	seen := map[string]string{}
	for _, c := range sh.cols {
		seen[strings.ToLower(c.Name)] = c.Name
	}
	if history {
		seen[HistorySeq] = HistorySeq
	}
	for i, c := range sch.Columns {
		if keep != nil && !keep[c.Name] {
			if c.Key > 0 && !history {
				return nil, fmt.Errorf("%s: tables.%s.columns leaves out %q, a primary-key column of %s; upserts need the whole key (add it, or use mode: history)",
					s.name, cfgKey, c.Name, t)
			}
			continue
		}
		name := c.Name
		if r, ok := tc.Rename[c.Name]; ok {
			name = r
		}
		fold := name
		if s.b.CaseInsensitive() {
			fold = strings.ToLower(name)
		}
		if other, dup := seen[fold]; dup {
			if history && isHistoryColumn(other) {
				return nil, fmt.Errorf("%s: column %q of %s clashes with the history column %q; rename it (tables.%s.rename)", s.name, c.Name, t, other, t)
			}
			return nil, fmt.Errorf("%s: two columns of %s would both be named %q in %s; fix tables.%s.rename", s.name, t, name, live, t)
		}
		seen[fold] = name
		key := c.Key > 0 && !history
		sh.addColumn(s.b, &ColumnDef{Name: name, Source: c, Key: key}, i, connector)
	}
	sh.keyAt = make([]int, len(sh.cols))
	for j := range sh.keyAt {
		sh.keyAt[j] = -1
	}
	if !history {
		for _, ki := range sch.KeyColumns() {
			for j, si := range sh.srcIdx {
				if si == ki {
					sh.keyAt[j] = len(sh.keys)
					sh.keys = append(sh.keys, j)
					sh.keyNames = append(sh.keyNames, sh.cols[j].Name)
				}
			}
		}
	}
	return sh, nil
}

func (sh *shape) addColumn(d Dialect, def *ColumnDef, srcIdx int, connector string) {
	def.Type = d.ColumnType(def.Source, def.Key, connector)
	def.Convert = d.Converter(def)
	sh.cols = append(sh.cols, def)
	sh.srcIdx = append(sh.srcIdx, srcIdx)
}

// tableName is the name written for live table name live.
func (s *Sink) tableName(live string) string {
	if s.shadow {
		return live + ShadowSuffix
	}
	return live
}

func isHistoryColumn(name string) bool {
	if name == HistorySeq {
		return true
	}
	for _, c := range historyColumns {
		if c.Name == name {
			return true
		}
	}
	return false
}
