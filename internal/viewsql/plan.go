package viewsql

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// tablePlan is one target table's share of a batch while it is planned:
// in upsert mode the latest change per key, in history mode every event.
type tablePlan struct {
	name     string // the table written
	live     string
	source   connectors.TableID
	history  bool
	truncate bool // a truncate came first (everything before it in the batch is void)

	shapes   []*shape // in order of first use
	cols     []*ColumnDef
	colIdx   map[string]int   // target column name → index in cols
	shapeIdx map[*shape][]int // shape column → index in cols
	keys     []int            // indexes in cols of the key columns
	keyNames []string

	entries map[string]*entry // by encoded key
	order   []*entry          // in order of first appearance
	appends []Row             // history mode

	info *TableInfo // the table after ensure
}

// entry is the coalesced change of one key.
type entry struct {
	row       Row  // the row to write (Set: known columns)
	unchanged Mask // columns whose value is still the stored one
	keyVals   []any
	deleted   bool // the last change deleted the row
	// deleteFirst: the row was deleted earlier in the batch, so the stored
	// row (and any column this batch does not set) must go first.
	deleteFirst bool
	// fresh: the stored row is known to be gone (deleted or truncated
	// earlier in the batch), so the row must be written whole.
	fresh bool
}

// plan coalesces a batch into per-table plans, in order of first
// appearance. Values the store cannot hold make a *connectors.RejectError
// naming every such event; nothing has been written then.
func (s *Sink) plan(events []connectors.Event) ([]*tablePlan, error) {
	var (
		plans   []*tablePlan
		byName  = map[string]*tablePlan{}
		rejects []connectors.EventError
	)
	get := func(sh *shape) *tablePlan {
		tp := byName[sh.name]
		if tp == nil {
			tp = &tablePlan{name: sh.name, live: sh.live, source: sh.source, history: sh.history,
				colIdx: map[string]int{}, shapeIdx: map[*shape][]int{}, entries: map[string]*entry{}}
			byName[sh.name] = tp
			plans = append(plans, tp)
		}
		return tp
	}
	for i := range events {
		ev := &events[i]
		if ev.Op == connectors.OpTruncate && ev.Schema == nil {
			// A truncate needs no columns, only the target's name.
			live, history := s.cfg.target(ev.Table())
			if !history {
				tp := get(&shape{name: s.tableName(live), live: live, source: ev.Table()})
				tp.truncateAll()
				continue
			}
		}
		sh, err := s.shapeFor(ev)
		if err != nil {
			return nil, err
		}
		tp := get(sh)
		if err := tp.use(sh); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if err := tp.add(i, ev, sh); err != nil {
			var ve *valueError
			if errors.As(err, &ve) {
				rejects = append(rejects, connectors.EventError{Index: i, Err: err})
				continue
			}
			return nil, fmt.Errorf("%s: event %d (%s %s at %s): %w", s.name, i, ev.Op, ev.Table(), ev.Position, err)
		}
	}
	if len(rejects) > 0 {
		return nil, &connectors.RejectError{Events: rejects}
	}
	return plans, nil
}

// valueError is a value the store cannot hold.
type valueError struct {
	table, column string
	err           error
}

func (e *valueError) Error() string {
	return fmt.Sprintf("table %s column %s: %v", e.table, e.column, e.err)
}

func (e *valueError) Unwrap() error { return e.err }

// use adds sh's columns to the plan's, the first time sh is seen.
func (tp *tablePlan) use(sh *shape) error {
	if _, ok := tp.shapeIdx[sh]; ok {
		return nil
	}
	idx := make([]int, len(sh.cols))
	for j, c := range sh.cols {
		ci, ok := tp.colIdx[c.Name]
		if !ok {
			ci = len(tp.cols)
			tp.cols = append(tp.cols, c)
			tp.colIdx[c.Name] = ci
		}
		idx[j] = ci
	}
	tp.shapeIdx[sh] = idx
	tp.shapes = append(tp.shapes, sh)
	if tp.history || sh.schema == nil {
		return nil
	}
	keys := make([]int, len(sh.keys))
	for j, k := range sh.keys {
		keys[j] = idx[k]
	}
	if tp.keys == nil {
		tp.keys, tp.keyNames = keys, sh.keyNames
		return nil
	}
	if !equalInts(keys, tp.keys) {
		return fmt.Errorf("the primary key of %s changed from (%s) to (%s) at schema version %d; a view cannot follow a key change: rebuild it (tapline rebuild)",
			sh.source, strings.Join(tp.keyNames, ", "), strings.Join(sh.keyNames, ", "), sh.schema.Version)
	}
	return nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// truncateAll voids everything planned for the table so far.
func (tp *tablePlan) truncateAll() {
	tp.truncate = true
	clear(tp.entries)
	tp.order = tp.order[:0]
}

// add plans event i.
func (tp *tablePlan) add(i int, ev *connectors.Event, sh *shape) error {
	idx := tp.shapeIdx[sh]
	if tp.history {
		return tp.append(i, ev, sh, idx)
	}
	switch ev.Op {
	case connectors.OpTruncate:
		tp.truncateAll()
		return nil
	case connectors.OpDelete:
		img := ev.Before
		if img == nil {
			img = ev.After
		}
		if img == nil {
			return &valueError{table: sh.source.String(), column: "(key)", err: errors.New("a delete without a before image has no key")}
		}
		keyVals, k, err := tp.key(sh, img, nil)
		if err != nil {
			return err
		}
		tp.delete(i, k, keyVals)
		return nil
	case connectors.OpCreate, connectors.OpRead, connectors.OpUpdate:
	default:
		return fmt.Errorf("unknown op %v", ev.Op)
	}
	if ev.After == nil {
		return &valueError{table: sh.source.String(), column: "(row)", err: fmt.Errorf("a %q event without an after image", ev.Op)}
	}
	keyVals, k, err := tp.key(sh, ev.After, ev.Before)
	if err != nil {
		return err
	}
	if ev.Op == connectors.OpUpdate && ev.Before != nil {
		// An update that changes the key moves the row: delete the old key.
		oldVals, whole, err := tp.beforeKey(sh, ev.Before)
		if err != nil {
			return err
		}
		if whole {
			if oldKey := encodeKey(oldVals); oldKey != k {
				tp.delete(i, oldKey, oldVals)
			}
		}
	}
	row := Row{Vals: make([]any, len(tp.cols)), Set: NewMask(len(tp.cols)), Event: i}
	unchanged := NewMask(len(tp.cols))
	for j, def := range sh.cols {
		v := ev.After[sh.srcIdx[j]]
		ci := idx[j]
		if def.Key {
			row.Vals[ci] = keyVals[sh.keyAt[j]]
			row.Set.Set(ci)
			continue
		}
		if connectors.IsUnchanged(v) {
			unchanged.Set(ci)
			continue
		}
		cv, err := def.Convert(v)
		if err != nil {
			return &valueError{table: sh.source.String(), column: sh.schema.Columns[sh.srcIdx[j]].Name, err: err}
		}
		row.Vals[ci] = cv
		row.Set.Set(ci)
	}
	if (ev.Op == connectors.OpCreate || ev.Op == connectors.OpRead) && !unchanged.Empty() {
		return fmt.Errorf("an insert (%q) of %s with columns marked unchanged (%s): only updates can leave values out",
			ev.Op, sh.source, tp.names(unchanged))
	}
	e := tp.entries[k]
	switch {
	case e == nil:
		e = &entry{row: row, unchanged: unchanged, keyVals: keyVals, fresh: tp.truncate}
		tp.entries[k] = e
		tp.order = append(tp.order, e)
	case e.deleted:
		e.row, e.unchanged, e.deleted, e.deleteFirst, e.fresh = row, unchanged, false, true, true
	default:
		for _, ci := range row.Set.Indexes() {
			if ci >= len(e.row.Vals) {
				e.row.Vals = append(e.row.Vals, make([]any, ci+1-len(e.row.Vals))...)
			}
			e.row.Vals[ci] = row.Vals[ci]
			e.row.Set.Set(ci)
			e.unchanged.Clear(ci)
		}
		for _, ci := range unchanged.Indexes() {
			if !e.row.Set.Has(ci) {
				e.unchanged.Set(ci)
			}
		}
		e.row.Event = i
	}
	if e.fresh && !e.unchanged.Empty() {
		return fmt.Errorf("an update of %s leaves columns unchanged (%s) for a row deleted or truncated earlier in the batch, so their values are unknown; the source sent an inconsistent stream",
			sh.source, tp.names(e.unchanged))
	}
	return nil
}

func (tp *tablePlan) names(m Mask) string {
	var n []string
	for _, ci := range m.Indexes() {
		n = append(n, tp.cols[ci].Name)
	}
	return strings.Join(n, ", ")
}

func (tp *tablePlan) delete(i int, k string, keyVals []any) {
	e := tp.entries[k]
	if e == nil {
		e = &entry{keyVals: keyVals}
		tp.entries[k] = e
		tp.order = append(tp.order, e)
	}
	e.deleted, e.fresh = true, true
	e.row = Row{Event: i}
	e.unchanged = Mask{}
}

// key converts the key values of img (taking an Unchanged one from alt)
// and encodes them.
func (tp *tablePlan) key(sh *shape, img, alt []connectors.Value) ([]any, string, error) {
	vals := make([]any, len(sh.keys))
	for p, j := range sh.keys {
		si := sh.srcIdx[j]
		v := img[si]
		if connectors.IsUnchanged(v) && alt != nil {
			v = alt[si]
		}
		col := sh.schema.Columns[si].Name
		switch {
		case connectors.IsUnchanged(v):
			return nil, "", &valueError{table: sh.source.String(), column: col, err: errors.New("a primary-key value is marked unchanged and the event has no before image holding it")}
		case v == nil:
			return nil, "", &valueError{table: sh.source.String(), column: col, err: errors.New("a primary-key value is NULL")}
		}
		cv, err := sh.cols[j].Convert(v)
		if err != nil {
			return nil, "", &valueError{table: sh.source.String(), column: col, err: err}
		}
		vals[p] = cv
	}
	return vals, encodeKey(vals), nil
}

// beforeKey returns the key of an update's before image, when the image
// holds the whole key.
func (tp *tablePlan) beforeKey(sh *shape, img []connectors.Value) ([]any, bool, error) {
	for _, j := range sh.keys {
		if v := img[sh.srcIdx[j]]; v == nil || connectors.IsUnchanged(v) {
			return nil, false, nil
		}
	}
	vals, _, err := tp.key(sh, img, nil)
	return vals, err == nil, err
}

// append plans event i of a history table.
func (tp *tablePlan) append(i int, ev *connectors.Event, sh *shape, idx []int) error {
	row := Row{Vals: make([]any, len(tp.cols)), Set: NewMask(len(tp.cols)), Event: i}
	img := ev.After
	if ev.Op == connectors.OpDelete || img == nil {
		img = ev.Before
	}
	if ev.Op == connectors.OpTruncate {
		img = nil
	}
	var unchanged []byte
	for j, def := range sh.cols {
		ci := idx[j]
		row.Set.Set(ci)
		var v connectors.Value
		if def.Meta {
			v = historyValue(def.Name, ev)
		} else if img != nil {
			v = img[sh.srcIdx[j]]
			if connectors.IsUnchanged(v) {
				if unchanged == nil {
					unchanged = append(unchanged, '[')
				} else {
					unchanged = append(unchanged, ',')
				}
				unchanged = appendJSONString(unchanged, def.Name)
				continue
			}
		}
		if v == nil {
			continue
		}
		cv, err := def.Convert(v)
		if err != nil {
			return &valueError{table: sh.source.String(), column: def.Name, err: err}
		}
		row.Vals[ci] = cv
	}
	if unchanged != nil {
		ci := tp.colIdx[HistoryUnchanged]
		cv, err := tp.cols[ci].Convert(string(append(unchanged, ']')))
		if err != nil {
			return &valueError{table: sh.source.String(), column: HistoryUnchanged, err: err}
		}
		row.Vals[ci] = cv
	}
	tp.appends = append(tp.appends, row)
	return nil
}

func historyValue(name string, ev *connectors.Event) connectors.Value {
	switch name {
	case HistoryOp:
		return ev.Op.String()
	case HistoryPosition:
		if ev.Position == nil {
			return nil
		}
		return ev.Position.String()
	case HistorySourcePosition:
		if ev.Source.Position == "" {
			return nil
		}
		return ev.Source.Position
	case HistorySourceTsMs:
		if ev.Source.TsMs == 0 {
			return nil
		}
		return ev.Source.TsMs
	case HistoryTsMs:
		if ev.TsMs == 0 {
			return nil
		}
		return ev.TsMs
	}
	return nil
}

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = append(b, string(r)...)
		}
	}
	return append(b, '"')
}

// batch turns the plan into what Backend.Apply writes, against the table as
// it is after ensure (info): columns it no longer has (dropped by
// drop_columns while an older schema version's rows were in the batch) are
// left out.
func (tp *tablePlan) batch() *TableBatch {
	tb := &TableBatch{Table: tp.name, History: tp.history, Truncate: tp.truncate, Columns: tp.cols, Key: tp.keys, Info: tp.info}
	var gone []int
	if tp.info != nil {
		for ci, c := range tp.cols {
			if _, ok := tp.info.Column(c.Name); !ok {
				gone = append(gone, ci)
			}
		}
	}
	fix := func(r Row) Row {
		if len(r.Vals) < len(tp.cols) {
			r.Vals = append(r.Vals, make([]any, len(tp.cols)-len(r.Vals))...)
		}
		for _, ci := range gone {
			r.Set.Clear(ci)
			r.Vals[ci] = nil
		}
		return r
	}
	if tp.history {
		tb.Appends = make([]Row, len(tp.appends))
		for i, r := range tp.appends {
			tb.Appends[i] = fix(r)
		}
		return tb
	}
	for _, e := range tp.order {
		if e.deleted || (e.deleteFirst && !tp.truncate) {
			tb.Deletes = append(tb.Deletes, fix(tp.keyRow(e)))
		}
		if e.deleted {
			continue
		}
		if e.unchanged.Empty() {
			tb.Upserts = append(tb.Upserts, fix(e.row))
		} else {
			tb.Updates = append(tb.Updates, fix(e.row))
		}
	}
	if tp.truncate {
		tb.Deletes = nil // the truncate removed every stored row already
	}
	return tb
}

// keyRow is a row holding only e's key.
func (tp *tablePlan) keyRow(e *entry) Row {
	r := Row{Vals: make([]any, len(tp.cols)), Set: NewMask(len(tp.cols)), Event: e.row.Event}
	for p, ci := range tp.keys {
		r.Vals[ci] = e.keyVals[p]
		r.Set.Set(ci)
	}
	return r
}

// encodeKey encodes converted key values so that equal keys give equal
// strings.
func encodeKey(vals []any) string {
	var b []byte
	for _, v := range vals {
		b = appendKeyValue(b, v)
	}
	return string(b)
}

func appendKeyValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, 'n')
	case int64:
		b = append(b, 'i')
		return binary.BigEndian.AppendUint64(b, uint64(x))
	case uint64:
		b = append(b, 'u')
		return binary.BigEndian.AppendUint64(b, x)
	case bool:
		if x {
			return append(b, 'T')
		}
		return append(b, 'F')
	case float64:
		b = append(b, 'f')
		return binary.BigEndian.AppendUint64(b, math.Float64bits(x))
	case string:
		b = append(b, 's')
		b = binary.AppendUvarint(b, uint64(len(x)))
		return append(b, x...)
	case []byte:
		b = append(b, 'b')
		b = binary.AppendUvarint(b, uint64(len(x)))
		return append(b, x...)
	case connectors.JSON:
		b = append(b, 'j')
		b = binary.AppendUvarint(b, uint64(len(x)))
		return append(b, x...)
	case []connectors.Value:
		b = append(b, '[')
		b = binary.AppendUvarint(b, uint64(len(x)))
		for _, e := range x {
			b = appendKeyValue(b, e)
		}
		return b
	}
	s := fmt.Sprintf("%T:%v", v, v)
	b = append(b, '?')
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
