package transforms

import (
	"fmt"

	"github.com/tapline/tapline/connectors"
)

// DropColumnsConfig configures the drop_columns transform.
type DropColumnsConfig struct {
	Columns []string `yaml:"columns" required:"true" doc:"columns to remove: \"schema.table.column\", \"table.column\" or \"*.column\", with * wildcards"`
}

type dropColumns struct {
	sels  []columnSelector
	plans schemaCache[*dropPlan]
}

// dropPlan is what drop_columns does to the events of one input schema.
type dropPlan struct {
	schema *connectors.Schema // the output schema
	keep   []int              // input indexes of the kept columns; nil: nothing dropped
	err    error              // the selectors pick a key column
}

// NewDropColumns builds the drop_columns transform. Key columns cannot be
// dropped: the first event of a table whose key a selector picks stops the
// pipeline with an error naming the table and the column, since schemas are
// only known when events arrive.
func NewDropColumns(cfg DropColumnsConfig) (Transform, error) {
	sels, err := parseColumnSelectors("columns", cfg.Columns)
	if err != nil {
		return nil, err
	}
	return &dropColumns{sels: sels}, nil
}

func (d *dropColumns) plan(s *connectors.Schema) *dropPlan {
	picked := matchColumns(d.sels, s)
	if picked == nil {
		return &dropPlan{schema: s}
	}
	p := &dropPlan{keep: []int{}}
	cols := make([]connectors.Column, 0, len(s.Columns))
	for i, c := range s.Columns {
		if !picked[i] {
			p.keep = append(p.keep, i)
			cols = append(cols, c)
			continue
		}
		if c.Key > 0 {
			p.err = fmt.Errorf("drop_columns: table %s: column %q is part of the primary key and cannot be dropped", s.Table, c.Name)
			return p
		}
	}
	p.schema, p.err = connectors.NewSchema(s.Table, s.Version, cols)
	if p.err != nil {
		p.err = fmt.Errorf("drop_columns: %w", p.err)
	}
	return p
}

// Apply removes the selected columns from ev's schema and rows.
func (d *dropColumns) Apply(ev *connectors.Event) (bool, error) {
	if ev.Schema == nil {
		return true, nil
	}
	p := d.plans.get(ev.Schema, d.plan)
	if p.err != nil {
		return false, p.err
	}
	if p.keep == nil {
		return true, nil
	}
	ev.Schema = p.schema
	ev.Before = pick(ev.Before, p.keep)
	ev.After = pick(ev.After, p.keep)
	return true, nil
}

// pick returns a new row of row's values at the given indexes.
func pick(row []connectors.Value, idx []int) []connectors.Value {
	if row == nil {
		return nil
	}
	out := make([]connectors.Value, len(idx))
	for j, i := range idx {
		if i < len(row) {
			out[j] = row[i]
		}
	}
	return out
}
