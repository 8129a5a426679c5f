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
// The sink keeps its plans from batch to batch and resets them (see
// reset), so that their slices and maps are allocated once.
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

	// Upsert mode: the coalesced change of each key, in order of the
	// key's first appearance; rows[i] is the row of ents[i].
	ents    []entry
	rows    []Row
	byKey   map[string]int32 // index in ents by encoded key (see key)
	byInt   map[int64]int32  // index in ents by key, for keys of one int64
	appends []Row            // history mode

	info *TableInfo // the table after ensure

	// keyOnly: a key-only shape (see connectors.Schema.KeyOnly) is in the batch; weak
	// marks the columns only such shapes brought so far, which a full
	// shape's definitions replace.
	keyOnly bool
	weak    map[int]bool

	// Scratch space, so that planning an event allocates little: the
	// converted key values and their encodings of the after and before
	// images, the values of the rows, and what batch returns.
	keyVals, oldVals []any
	keyBuf, oldBuf   []byte
	arena            [][]any // chunks of values; arena[used] is being filled
	used             int
	out              TableBatch
	ups, upds, dels  []Row
}

// arenaChunk is how many rows of values an arena chunk holds at least.
const arenaChunk = 256

// newTablePlan returns an empty plan for sh's table.
func newTablePlan() *tablePlan {
	return &tablePlan{colIdx: map[string]int{}, shapeIdx: map[*shape][]int{},
		byKey: map[string]int32{}, byInt: map[int64]int32{}, weak: map[int]bool{}}
}

// reset empties the plan for a new batch, writing sh's table, keeping its
// memory (and dropping the values it held, for the garbage collector).
func (tp *tablePlan) reset(sh *shape) {
	tp.name, tp.live, tp.source, tp.history, tp.truncate = sh.name, sh.live, sh.source, sh.history, false
	clear(tp.shapes)
	tp.shapes = tp.shapes[:0]
	clear(tp.cols)
	tp.cols = tp.cols[:0]
	clear(tp.colIdx)
	clear(tp.shapeIdx)
	tp.keys, tp.keyNames = nil, nil
	tp.clearEntries()
	clear(tp.appends)
	tp.appends = tp.appends[:0]
	tp.info = nil
	tp.keyOnly = false
	clear(tp.weak)
	for i := 0; i <= tp.used && i < len(tp.arena); i++ {
		clear(tp.arena[i])
		tp.arena[i] = tp.arena[i][:0]
	}
	tp.used = 0
	tp.out = TableBatch{}
	clear(tp.ups)
	clear(tp.upds)
	clear(tp.dels)
}

// clearEntries forgets every coalesced change.
func (tp *tablePlan) clearEntries() {
	clear(tp.ents)
	tp.ents = tp.ents[:0]
	clear(tp.rows)
	tp.rows = tp.rows[:0]
	clear(tp.byKey)
	clear(tp.byInt)
}

// values returns n nil values from the arena; appending to them copies.
func (tp *tablePlan) values(n int) []any {
	for {
		if tp.used == len(tp.arena) {
			tp.arena = append(tp.arena, make([]any, 0, n*arenaChunk))
		}
		c := tp.arena[tp.used]
		if l := len(c); cap(c)-l >= n {
			tp.arena[tp.used] = c[:l+n]
			return c[l : l+n : l+n]
		}
		tp.used++
	}
}

// entry is the coalesced change of one key; its row is in tablePlan.rows.
type entry struct {
	unchanged Mask  // columns whose value is still the stored one
	keyVals   []any // the key, kept for deletes only (the rows hold it otherwise)
	deleted   bool  // the last change deleted the row
	// deleteFirst: the row was deleted earlier in the batch, so the stored
	// row (and any column this batch does not set) must go first.
	deleteFirst bool
	// fresh: the stored row is known to be gone (deleted or truncated
	// earlier in the batch), so the row must be written whole.
	fresh bool
}

// push adds a change of a key not seen yet and returns its index.
func (tp *tablePlan) push(r Row, e entry) int32 {
	tp.ents = append(tp.ents, e)
	tp.rows = append(tp.rows, r)
	return int32(len(tp.ents) - 1)
}

// plan coalesces a batch into per-table plans, in order of first
// appearance. Values the store cannot hold make a *connectors.RejectError
// naming every such event; nothing has been written then.
func (s *Sink) plan(events []connectors.Event) ([]*tablePlan, error) {
	var (
		plans   []*tablePlan
		byName  = map[string]*tablePlan{}
		rejects []connectors.EventError
		last    *tablePlan
	)
	if len(s.plans) > maxShapes {
		clear(s.plans)
	}
	get := func(sh *shape) *tablePlan {
		if last != nil && last.name == sh.name {
			return last
		}
		tp := byName[sh.name]
		if tp == nil {
			if tp = s.plans[sh.name]; tp == nil {
				tp = newTablePlan()
				s.plans[sh.name] = tp
			}
			tp.reset(sh)
			byName[sh.name] = tp
			plans = append(plans, tp)
		}
		last = tp
		return tp
	}
	for i := range events {
		ev := &events[i]
		if ev.Op == connectors.OpHeartbeat {
			continue // nothing to apply; its origin position is recorded (observe)
		}
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

// use adds sh's columns to the plan's, the first time sh is seen. A
// key-only shape is left out of tp.shapes, so that ensure neither creates
// nor evolves the table from it.
func (tp *tablePlan) use(sh *shape) error {
	if _, ok := tp.shapeIdx[sh]; ok {
		return nil
	}
	idx := make([]int, len(sh.cols))
	for j, c := range sh.cols {
		ci, ok := tp.colIdx[c.Name]
		switch {
		case !ok:
			ci = len(tp.cols)
			tp.cols = append(tp.cols, c)
			tp.colIdx[c.Name] = ci
			if sh.keyOnly {
				tp.weak[ci] = true
			}
		case tp.weak[ci] && !sh.keyOnly:
			tp.cols[ci] = c
			delete(tp.weak, ci)
		}
		idx[j] = ci
	}
	tp.shapeIdx[sh] = idx
	if sh.keyOnly {
		tp.keyOnly = true
	} else {
		tp.shapes = append(tp.shapes, sh)
	}
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

// checkKeyOnly checks, after ensure, that the key of the plan's key-only
// deletes is the existing table's key (a full shape in the batch was
// checked by ensure already).
func (tp *tablePlan) checkKeyOnly(sink string) error {
	if !tp.keyOnly || tp.history || tp.info == nil || sameNames(tp.info.Key, tp.keyNames, tp.info.fold) {
		return nil
	}
	return &KeyChangeError{Sink: sink, Table: tp.name, Have: tp.info.Key, Want: tp.keyNames, Source: tp.source.String()}
}

// truncateAll voids everything planned for the table so far.
func (tp *tablePlan) truncateAll() {
	tp.truncate = true
	tp.clearEntries()
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
		var err error
		if tp.keyVals, tp.keyBuf, err = tp.key(sh, img, nil, tp.keyVals, tp.keyBuf); err != nil {
			return err
		}
		tp.delete(i, tp.keyVals, tp.keyBuf)
		return nil
	case connectors.OpCreate, connectors.OpRead, connectors.OpUpdate:
	default:
		return fmt.Errorf("unknown op %v", ev.Op)
	}
	if ev.After == nil {
		return &valueError{table: sh.source.String(), column: "(row)", err: fmt.Errorf("a %q event without an after image", ev.Op)}
	}
	var err error
	if tp.keyVals, tp.keyBuf, err = tp.key(sh, ev.After, ev.Before, tp.keyVals, tp.keyBuf); err != nil {
		return err
	}
	keyVals := tp.keyVals
	if ev.Op == connectors.OpUpdate && ev.Before != nil {
		// An update that changes the key moves the row: delete the old key.
		whole := false
		if tp.oldVals, tp.oldBuf, whole, err = tp.beforeKey(sh, ev.Before, tp.oldVals, tp.oldBuf); err != nil {
			return err
		}
		if whole && !sameKey(tp.oldVals, tp.oldBuf, tp.keyVals, tp.keyBuf) {
			tp.delete(i, tp.oldVals, tp.oldBuf)
		}
	}
	row := Row{Vals: tp.values(len(tp.cols)), Set: NewMask(len(tp.cols)), Event: i}
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
	at, found := tp.lookup(keyVals, tp.keyBuf)
	if !found {
		at = tp.push(row, entry{unchanged: unchanged, fresh: tp.truncate})
		tp.store(keyVals, tp.keyBuf, at)
	}
	e, r := &tp.ents[at], &tp.rows[at]
	switch {
	case !found:
	case e.deleted:
		*r = row
		e.unchanged, e.deleted, e.deleteFirst, e.fresh = unchanged, false, true, true
	default:
		for _, ci := range row.Set.Indexes() {
			if ci >= len(r.Vals) {
				r.Vals = append(r.Vals, make([]any, ci+1-len(r.Vals))...)
			}
			r.Vals[ci] = row.Vals[ci]
			r.Set.Set(ci)
			e.unchanged.Clear(ci)
		}
		for _, ci := range unchanged.Indexes() {
			if !r.Set.Has(ci) {
				e.unchanged.Set(ci)
			}
		}
		r.Event = i
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

// delete plans the delete of the key with values keyVals, encoded as k
// (both are copied).
func (tp *tablePlan) delete(i int, keyVals []any, k []byte) {
	at, found := tp.lookup(keyVals, k)
	if !found {
		at = tp.push(Row{}, entry{})
		tp.store(keyVals, k, at)
	}
	e := &tp.ents[at]
	if e.keyVals == nil {
		e.keyVals = tp.values(len(keyVals))
		copy(e.keyVals, keyVals)
	}
	e.deleted, e.fresh = true, true
	e.unchanged = Mask{}
	tp.rows[at] = Row{Event: i}
}

// intKey returns the key when it is one int64, the common case, which
// needs no encoding.
func intKey(vals []any) (int64, bool) {
	if len(vals) != 1 {
		return 0, false
	}
	k, ok := vals[0].(int64)
	return k, ok
}

// lookup returns the index in ents of the key with values vals, encoded
// as enc.
func (tp *tablePlan) lookup(vals []any, enc []byte) (int32, bool) {
	var (
		at int32
		ok bool
	)
	if k, isInt := intKey(vals); isInt {
		at, ok = tp.byInt[k]
	} else {
		at, ok = tp.byKey[string(enc)]
	}
	return at, ok
}

// store records that index at in ents is the key with values vals,
// encoded as enc.
func (tp *tablePlan) store(vals []any, enc []byte, at int32) {
	if k, ok := intKey(vals); ok {
		tp.byInt[k] = at
		return
	}
	tp.byKey[string(enc)] = at
}

// sameKey reports whether two keys, as key returns them, are equal.
func sameKey(aVals []any, aEnc []byte, bVals []any, bEnc []byte) bool {
	a, aInt := intKey(aVals)
	b, bInt := intKey(bVals)
	if aInt || bInt {
		return aInt && bInt && a == b
	}
	return string(aEnc) == string(bEnc)
}

// key converts the key values of img (taking an Unchanged one from alt)
// into vals and, unless the key is one int64 (see intKey), encodes them
// into buf, so that equal keys give equal bytes. It reuses both slices
// (they are overwritten by the next call with the same ones).
func (tp *tablePlan) key(sh *shape, img, alt []connectors.Value, vals []any, buf []byte) ([]any, []byte, error) {
	vals = append(vals[:0], make([]any, len(sh.keys))...)
	for p, j := range sh.keys {
		si := sh.srcIdx[j]
		v := img[si]
		if connectors.IsUnchanged(v) && alt != nil {
			v = alt[si]
		}
		col := sh.schema.Columns[si].Name
		switch {
		case connectors.IsUnchanged(v):
			return vals, buf, &valueError{table: sh.source.String(), column: col, err: errors.New("a primary-key value is marked unchanged and the event has no before image holding it")}
		case v == nil:
			return vals, buf, &valueError{table: sh.source.String(), column: col, err: errors.New("a primary-key value is NULL")}
		}
		cv, err := sh.cols[j].Convert(v)
		if err != nil {
			return vals, buf, &valueError{table: sh.source.String(), column: col, err: err}
		}
		vals[p] = cv
	}
	buf = buf[:0]
	if _, ok := intKey(vals); ok {
		return vals, buf, nil
	}
	for _, v := range vals {
		buf = appendKeyValue(buf, v)
	}
	return vals, buf, nil
}

// beforeKey is key for an update's before image; whole is false, and
// nothing converted, when the image does not hold the whole key.
func (tp *tablePlan) beforeKey(sh *shape, img []connectors.Value, vals []any, buf []byte) (_ []any, _ []byte, whole bool, _ error) {
	for _, j := range sh.keys {
		if v := img[sh.srcIdx[j]]; v == nil || connectors.IsUnchanged(v) {
			return vals, buf, false, nil
		}
	}
	vals, buf, err := tp.key(sh, img, nil, vals, buf)
	return vals, buf, err == nil, err
}

// append plans event i of a history table.
func (tp *tablePlan) append(i int, ev *connectors.Event, sh *shape, idx []int) error {
	row := Row{Vals: tp.values(len(tp.cols)), Set: NewMask(len(tp.cols)), Event: i}
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
// left out. The TableBatch and its rows belong to the plan: they are valid
// until the plan is reset for the next batch.
func (tp *tablePlan) batch() *TableBatch {
	tb := &tp.out
	*tb = TableBatch{Table: tp.name, History: tp.history, Truncate: tp.truncate, Columns: tp.cols, Key: tp.keys, Info: tp.info}
	var gone []int
	if tp.info != nil {
		for ci, c := range tp.cols {
			if _, ok := tp.info.Column(c.Name); !ok {
				gone = append(gone, ci)
			}
		}
	}
	fix := func(r Row) Row {
		if len(gone) == 0 && len(r.Vals) >= len(tp.cols) {
			return r
		}
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
		tb.Appends = tp.appends
		for i, r := range tp.appends {
			tp.appends[i] = fix(r)
		}
		return tb
	}
	// The common case, only upserts of whole rows: the rows as they are.
	simple := len(gone) == 0
	for i := 0; simple && i < len(tp.ents); i++ {
		e := &tp.ents[i]
		simple = !e.deleted && !e.deleteFirst && e.unchanged.Empty() && len(tp.rows[i].Vals) >= len(tp.cols)
	}
	if simple {
		tb.Upserts = tp.rows
		return tb
	}
	tp.ups, tp.upds, tp.dels = tp.ups[:0], tp.upds[:0], tp.dels[:0]
	for i := range tp.ents {
		e := &tp.ents[i]
		if e.deleted || (e.deleteFirst && !tp.truncate) {
			tp.dels = append(tp.dels, fix(tp.keyRow(e, tp.rows[i].Event)))
		}
		if e.deleted {
			continue
		}
		if e.unchanged.Empty() {
			tp.ups = append(tp.ups, fix(tp.rows[i]))
		} else {
			tp.upds = append(tp.upds, fix(tp.rows[i]))
		}
	}
	tb.Upserts, tb.Updates, tb.Deletes = tp.ups, tp.upds, tp.dels
	if tp.truncate || len(tb.Deletes) == 0 {
		tb.Deletes = nil // the truncate removed every stored row already
	}
	if len(tb.Updates) == 0 {
		tb.Updates = nil
	}
	return tb
}

// keyRow is a row holding only e's key, made by event ev.
func (tp *tablePlan) keyRow(e *entry, ev int) Row {
	r := Row{Vals: tp.values(len(tp.cols)), Set: NewMask(len(tp.cols)), Event: ev}
	for p, ci := range tp.keys {
		r.Vals[ci] = e.keyVals[p]
		r.Set.Set(ci)
	}
	return r
}

// appendKeyValue appends an encoding of a converted key value to b, such
// that equal keys give equal bytes.
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
