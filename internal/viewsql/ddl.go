package viewsql

import (
	"context"
	"fmt"
	"strings"
)

// TypeChangeError is returned when the source changed a column's type to
// one the target column cannot take.
type TypeChangeError struct {
	Sink    string
	Table   string // the target table
	Column  string
	Old     string // the target column's type
	New     string // the type the new schema version needs
	Source  string // the source table
	Version int    // the source schema version that changed it
}

func (e *TypeChangeError) Error() string {
	return fmt.Sprintf("%s: table %s column %s: the source (%s, schema version %d) changed the column's type: the view's column is %s and cannot hold values of the new type (%s) without loss; rebuild the view so that its tables are created anew (tapline rebuild PIPELINE)",
		e.Sink, e.Table, e.Column, e.Source, e.Version, e.Old, e.New)
}

// KeyChangeError is returned when an existing table's primary key differs
// from the source's.
type KeyChangeError struct {
	Sink   string
	Table  string
	Have   []string
	Want   []string
	Source string
}

func (e *KeyChangeError) Error() string {
	have := "no primary key"
	if len(e.Have) > 0 {
		have = "primary key (" + strings.Join(e.Have, ", ") + ")"
	}
	return fmt.Sprintf("%s: table %s has %s, but the source %s has (%s); a view cannot follow a key change: rebuild it (tapline rebuild PIPELINE), or name another target table (tables.%s.name)",
		e.Sink, e.Table, have, e.Source, strings.Join(e.Want, ", "), e.Source)
}

// describe returns the table's info, from the cache when known.
func (s *Sink) describe(ctx context.Context, name string) (*TableInfo, error) {
	if info, ok := s.tables[name]; ok {
		return info, nil
	}
	info, err := s.b.DescribeTable(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("describe table %s: %w", name, err)
	}
	if info != nil {
		info.fold = s.b.CaseInsensitive()
	}
	s.tables[name] = info
	return info, nil
}

// ensure makes tp's table able to take the batch: creates it, adds the
// columns new schema versions brought, drops columns the source dropped
// (with drop_columns), and refuses type and key changes. It records the
// live names of the tables it creates in created.
func (s *Sink) ensure(ctx context.Context, tp *tablePlan, created map[string]bool) error {
	info, err := s.describe(ctx, tp.name)
	if err != nil {
		return err
	}
	for si, sh := range tp.shapes {
		if sh.schema == nil && len(sh.cols) == 0 {
			continue
		}
		if info == nil {
			if !s.b.TransactionalDDL() {
				// Record the table before making it, so that a crash cannot
				// leave a table that no offsets row knows of.
				if err := s.recordTables(ctx, []string{sh.live}); err != nil {
					return err
				}
			}
			if err := s.b.CreateTable(ctx, tp.name, sh.cols, sh.keyNames, sh.history); err != nil {
				return fmt.Errorf("create table %s: %w", tp.name, err)
			}
			s.log.Info("created table", "table", tp.name, "source", sh.source.String(), "columns", len(sh.cols))
			created[sh.live] = true
			if info, err = s.redescribe(ctx, tp.name); err != nil {
				return err
			}
			continue
		}
		if err := s.checkTable(tp, sh, info); err != nil {
			return err
		}
		changed := false
		for _, def := range sh.cols {
			have, ok := info.Column(def.Name)
			if !ok {
				if err := s.b.AddColumn(ctx, tp.name, def); err != nil {
					return fmt.Errorf("add column %s to %s: %w", def.Name, tp.name, err)
				}
				s.log.Info("added column", "table", tp.name, "column", def.Name, "type", def.Type, "schema_version", sh.version())
				changed = true
				continue
			}
			if !s.b.CanTake(have.Type, def.Type) {
				return &TypeChangeError{Sink: s.name, Table: tp.name, Column: def.Name, Old: have.Type, New: def.Type,
					Source: sh.source.String(), Version: sh.version()}
			}
		}
		if s.cfg.DropColumns && si == len(tp.shapes)-1 && sh.schema != nil {
			for _, c := range info.Columns {
				if isHistoryColumn(c.Name) || contains(info.Key, c.Name) || sh.has(c.Name, info.fold) {
					continue
				}
				if err := s.b.DropColumn(ctx, tp.name, c.Name); err != nil {
					return fmt.Errorf("drop column %s of %s: %w", c.Name, tp.name, err)
				}
				s.log.Info("dropped column (drop_columns)", "table", tp.name, "column", c.Name, "schema_version", sh.schema.Version)
				changed = true
			}
		}
		if changed {
			if info, err = s.redescribe(ctx, tp.name); err != nil {
				return err
			}
		}
	}
	tp.info = info
	return nil
}

func (s *Sink) redescribe(ctx context.Context, name string) (*TableInfo, error) {
	delete(s.tables, name)
	info, err := s.describe(ctx, name)
	if err == nil && info == nil {
		err = fmt.Errorf("table %s is missing right after it was changed", name)
	}
	return info, err
}

// checkTable checks that an existing table suits the shape's mode and key.
func (s *Sink) checkTable(tp *tablePlan, sh *shape, info *TableInfo) error {
	_, hasSeq := info.Column(HistorySeq)
	if sh.history {
		if !hasSeq {
			return fmt.Errorf("%s: table %s exists but is not a history table (it has no %s column); name the history table of %s differently (history_table, or tables.%s.name)",
				s.name, tp.name, HistorySeq, sh.source, sh.source)
		}
		return nil
	}
	if sh.schema == nil {
		return nil
	}
	if !sameNames(info.Key, sh.keyNames, info.fold) {
		return &KeyChangeError{Sink: s.name, Table: tp.name, Have: info.Key, Want: sh.keyNames, Source: sh.source.String()}
	}
	return nil
}

// version is the shape's schema version, 0 for a shape without a schema.
func (sh *shape) version() int {
	if sh.schema == nil {
		return 0
	}
	return sh.schema.Version
}

func (sh *shape) has(name string, fold bool) bool {
	for _, c := range sh.cols {
		if c.Name == name || fold && strings.EqualFold(c.Name, name) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sameNames compares two lists of names as sets.
func sameNames(a, b []string, fold bool) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			if x == y || fold && strings.EqualFold(x, y) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
