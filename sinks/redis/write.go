package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
)

// How a batch is written (WriteBatch):
//
//  1. prepare: every event is checked and encoded (its key, its fields or
//     document); an event that cannot be written makes a RejectError and
//     nothing of the batch is written.
//  2. readKeys: the keys whose stored row the batch needs (old index
//     values; the kept columns of a json row whose update left some
//     Unchanged) and that the batch has not itself written or truncated
//     before needing them.
//  3. read: those rows are read (HGETALL or GET), in one pipeline.
//  4. plan: the batch becomes one list of Redis commands, simulating the
//     batch's effect on the rows read (the overlay), with checks that the
//     rows read are still as read. Whole-row writes and deletes of
//     distinct keys go in groups (rowGroup): one DEL and one SADD (or
//     ZADD) for a whole group instead of one per row.
//  5. batchScript runs the checks and the commands, and stores the
//     position, atomically. If a row changed since it was read (a TTL
//     expiry, another writer), the script writes nothing and the sink goes
//     back to 3, up to maxAttempts times.

const (
	maxAttempts = 5
	// maxPairs bounds the field-value pairs of one HSET, so that no
	// command exceeds what Lua's unpack takes.
	maxPairs = 1000
	// trackSlack is how long past its expiry a key stays in its table's
	// key list, to allow for clock skew between tapline and Redis.
	trackSlack = time.Minute
	// maxTables bounds the per-table and per-schema caches.
	maxTables = 4096
)

// tableIdent identifies a table: its origin database and its logical
// schema and name.
type tableIdent struct{ db, schema, name string }

func (id tableIdent) String() string {
	s := connectors.TableID{Schema: id.schema, Name: id.name}.String()
	if id.db != "" {
		return id.db + "/" + s
	}
	return s
}

// tableInfo is what the sink derives from a table.
type tableInfo struct {
	ident      tableIdent
	head, tail string   // a row's key is head + pk + tail
	track      string   // the key list: the set (zset with a TTL) of the table's keys
	indexes    []string // the indexed columns
}

func (t *tableInfo) rowKey(pk string) string { return t.head + pk + t.tail }

func (t *tableInfo) indexKey(col, val string) string {
	return t.head + "by:" + escape(col) + ":" + escape(val) + t.tail
}

type schemaKey struct {
	s *connectors.Schema
	t *tableInfo
}

// schemaInfo is what the sink derives from one schema version.
type schemaInfo struct {
	keys     []int
	jsonKeys []string // per column, `"name":`
}

// table returns the sink's view of the event's table, building it on
// first use.
func (s *Sink) table(ev *connectors.Event) *tableInfo {
	id := ev.Table()
	ident := tableIdent{db: ev.Source.DB, schema: id.Schema, name: id.Name}
	if t, ok := s.tables[ident]; ok {
		return t
	}
	if len(s.tables) >= maxTables {
		clear(s.tables)
		clear(s.spaces)
		clear(s.schemas)
	}
	head, tail := s.tmpl.split(tableVars{prefix: s.cfg.KeyPrefix, db: escape(ident.db), schema: escape(ident.schema), table: escape(ident.name)})
	// Tables whose keys look alike share them (and their key list): the
	// template says what tells rows apart.
	space := head + "{pk}" + tail
	if other, ok := s.spaces[space]; ok && other != ident {
		s.log.Warn("redis: two tables share their keys under key_template; add {schema} or {db} to it to keep them apart",
			"table", ident.String(), "other_table", other.String(), "keys", space)
	}
	t := &tableInfo{
		ident: ident,
		head:  s.keyPrefix + head,
		tail:  tail,
		track: s.meta.trackPrefix + space,
	}
	for _, ix := range s.cfg.Indexes {
		want := connectors.ParseTableID(ix.Table)
		if want.Name != ident.name || (want.Schema != "" && want.Schema != ident.schema) {
			continue
		}
		dup := false
		for _, c := range t.indexes {
			dup = dup || c == ix.Column
		}
		if !dup {
			t.indexes = append(t.indexes, ix.Column)
		}
	}
	s.tables[ident] = t
	s.spaces[space] = ident
	return t
}

// schema returns what the sink derives from sch for table t.
func (s *Sink) schema(sch *connectors.Schema, t *tableInfo) (*schemaInfo, error) {
	k := schemaKey{sch, t}
	if si, ok := s.schemas[k]; ok {
		return si, nil
	}
	for _, c := range t.indexes {
		// A key-only schema (a Kafka tombstone) only deletes, and a delete
		// takes the indexed values from the stored row.
		if sch.Index(c) < 0 && !keyOnlySchema(sch) {
			names := make([]string, len(sch.Columns))
			for i, col := range sch.Columns {
				names[i] = col.Name
			}
			return nil, fmt.Errorf("redis: indexes: table %s has no column %q (its columns: %s)", t.ident, c, strings.Join(names, ", "))
		}
	}
	si := &schemaInfo{keys: sch.KeyColumns(), jsonKeys: make([]string, len(sch.Columns))}
	for i, c := range sch.Columns {
		si.jsonKeys[i] = string(append(appendJSONString(nil, c.Name), ':'))
	}
	s.schemas[k] = si
	return si, nil
}

// prepared is one event, checked and encoded.
type prepared struct {
	ev      *connectors.Event
	idx     int // in the batch
	op      connectors.Op
	t       *tableInfo
	si      *schemaInfo
	key, pk string
	// oldKey and oldPK are set when an update moved the row to another
	// primary key (Before's key differs from After's).
	oldKey, oldPK string
	partial       bool     // some columns are Unchanged: keep their stored values
	fields        []string // hash: column, text pairs of the values set
	nulls         []string // hash: the columns that are NULL
	doc           []byte   // json: the row, when it has no Unchanged column
	raws          []string // json: per column raw JSON ("" for Unchanged); see rawValues
}

// rawValues returns the JSON form of each column value, "" for Unchanged.
func (p *prepared) rawValues() []string {
	if p.raws != nil {
		return p.raws
	}
	p.raws = make([]string, len(p.ev.After))
	var buf []byte
	for i, v := range p.ev.After {
		if connectors.IsUnchanged(v) {
			continue
		}
		buf, _ = eventjson.AppendValue(buf[:0], v) // checked in prepare
		p.raws[i] = string(buf)
	}
	return p.raws
}

// prepare checks and encodes the events. Events that can never be written
// make a *connectors.RejectError; a problem with the configuration (a
// missing indexed column, two tables sharing keys) is a plain error.
func (s *Sink) prepare(evs []connectors.Event) ([]prepared, error) {
	out := make([]prepared, 0, len(evs))
	// One array holds the hash fields of all the rows.
	n := 0
	for i := range evs {
		n += 2 * len(evs[i].After)
	}
	fields := make([]string, 0, n)
	var rejected []connectors.EventError
	for i := range evs {
		if evs[i].Op == connectors.OpHeartbeat {
			continue // nothing to write; its origin is observed (heartbeats)
		}
		p, err := s.prepareOne(&evs[i], i, &fields)
		if err != nil {
			var rerr *rejectErr
			if !errors.As(err, &rerr) {
				return nil, err
			}
			rejected = append(rejected, connectors.EventError{Index: i, Err: rerr.err})
			continue
		}
		out = append(out, p)
	}
	if rejected != nil {
		return nil, &connectors.RejectError{Events: rejected}
	}
	return out, nil
}

// rejectErr marks an error as the event's own.
type rejectErr struct{ err error }

func (e *rejectErr) Error() string { return e.err.Error() }

func reject(format string, args ...any) error {
	return &rejectErr{fmt.Errorf("redis: "+format, args...)}
}

// prepareOne prepares one event; a hash row's fields are appended to
// fields (so that one array holds those of the whole batch).
func (s *Sink) prepareOne(ev *connectors.Event, i int, fields *[]string) (prepared, error) {
	p := prepared{ev: ev, idx: i, op: ev.Op}
	t := s.table(ev)
	p.t = t
	switch ev.Op {
	case connectors.OpTruncate:
		return p, nil
	case connectors.OpCreate, connectors.OpRead, connectors.OpUpdate, connectors.OpDelete:
	default:
		return p, reject("event of %s has op %v, which the sink does not know", t.ident, ev.Op)
	}
	sch := ev.Schema
	if sch == nil {
		return p, reject("%s event of %s has no schema", ev.Op, t.ident)
	}
	if ev.Op == connectors.OpDelete && ev.Source.DB == "" && keyOnlySchema(sch) && s.templateUses("db") {
		// A tombstone read back from Kafka (a key-only schema) carries no
		// origin database: its key would render with an empty {db} and
		// delete nothing.
		return p, reject("delete of %s by key only (a Kafka tombstone) has no origin database for {db} in key_template %q; drop {db} from the template, or read the topic before compaction removes the delete events", t.ident, s.cfg.KeyTemplate)
	}
	var err error
	if p.si, err = s.schema(sch, t); err != nil {
		return p, err
	}
	if len(p.si.keys) == 0 {
		return p, reject("table %s has no primary key; the redis sink keys each row by it", t.ident)
	}
	for _, row := range [][]connectors.Value{ev.Before, ev.After} {
		if row != nil && len(row) != len(sch.Columns) {
			return p, reject("%s event of %s has %d values for %d columns", ev.Op, t.ident, len(row), len(sch.Columns))
		}
	}
	row := ev.After
	if ev.Op == connectors.OpDelete {
		row = ev.Before
	}
	if row == nil {
		return p, reject("%s event of %s has no row image", ev.Op, t.ident)
	}
	pk, err := pkText(sch, p.si, row, ev.Before)
	if err != nil {
		return p, reject("%s", err)
	}
	if len(t.indexes) > 0 && len(p.si.keys) == 3 {
		if parts := strings.SplitN(pk, ":", 3); parts[0] == "by" {
			for _, c := range t.indexes {
				if escape(c) == parts[1] {
					return p, reject("row %s of %s has the key of its index set on %s (a 3-column key starting with \"by\"); drop that index", pk, t.ident, c)
				}
			}
		}
	}
	p.pk, p.key = pk, t.rowKey(pk)
	if ev.Op == connectors.OpDelete {
		return p, nil
	}
	if ev.Op == connectors.OpUpdate && ev.Before != nil {
		if old, err := pkText(sch, p.si, ev.Before, nil); err == nil && old != pk {
			p.oldPK, p.oldKey = old, t.rowKey(old)
		}
	}
	for _, v := range ev.After {
		if connectors.IsUnchanged(v) {
			p.partial = true
			break
		}
	}
	if s.cfg.Format == FormatJSON {
		if !p.partial {
			if p.doc, err = eventjson.AppendRow(nil, sch, ev.After); err != nil {
				return p, reject("%s", err)
			}
			return p, nil
		}
		for ci, v := range ev.After {
			if _, err := eventjson.AppendValue(nil, v); err != nil && !connectors.IsUnchanged(v) {
				return p, reject("column %s of %s: %v", sch.Columns[ci].Name, t.ident, err)
			}
		}
		p.rawValues()
		return p, nil
	}
	start := len(*fields)
	for ci, v := range ev.After {
		if connectors.IsUnchanged(v) {
			continue
		}
		txt, ok, err := text(v)
		if err != nil {
			return p, reject("column %s of %s: %v", sch.Columns[ci].Name, t.ident, err)
		}
		if !ok {
			p.nulls = append(p.nulls, sch.Columns[ci].Name)
			continue
		}
		*fields = append(*fields, sch.Columns[ci].Name, txt)
	}
	end := len(*fields)
	p.fields = (*fields)[start:end:end]
	return p, nil
}

// pkText is {pk}: the key column values' string forms, escaped, joined with
// ':'. An Unchanged key value is taken from before when given.
func pkText(sch *connectors.Schema, si *schemaInfo, row, before []connectors.Value) (string, error) {
	if len(si.keys) == 1 {
		txt, err := keyText(sch, si.keys[0], row, before)
		if err != nil {
			return "", err
		}
		return escape(txt), nil
	}
	var b strings.Builder
	for i, ci := range si.keys {
		txt, err := keyText(sch, ci, row, before)
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(escape(txt))
	}
	return b.String(), nil
}

// keyText is the string form of key column ci of row (of before when
// row's is Unchanged and before is given).
func keyText(sch *connectors.Schema, ci int, row, before []connectors.Value) (string, error) {
	v := row[ci]
	if connectors.IsUnchanged(v) && before != nil {
		v = before[ci]
	}
	txt, ok, err := text(v)
	if err != nil {
		return "", fmt.Errorf("key column %s: %v", sch.Columns[ci].Name, err)
	}
	if !ok {
		return "", fmt.Errorf("key column %s is NULL", sch.Columns[ci].Name)
	}
	return txt, nil
}

// needs reports whether p needs the current state of its row's key and of
// the key it moved from.
func (s *Sink) needs(p *prepared) (key, old bool) {
	indexed := len(p.t.indexes) > 0
	switch p.op {
	case connectors.OpTruncate:
		return false, false
	case connectors.OpDelete:
		return indexed, false
	}
	if p.oldKey != "" {
		return indexed, indexed || p.partial
	}
	return indexed || (s.cfg.Format == FormatJSON && p.partial), false
}

// readKeys returns the keys to read before the batch (in order, with the
// first event that needs each) and whether any event needs a row's state.
func (s *Sink) readKeys(rows []prepared) (keys []string, first map[string]int, stateful bool) {
	known := map[string]bool{} // written or deleted earlier in the batch
	truncated := map[*tableInfo]bool{}
	first = map[string]int{}
	need := func(k string, p *prepared) {
		if known[k] || truncated[p.t] {
			return
		}
		if _, ok := first[k]; !ok {
			first[k] = p.idx
			keys = append(keys, k)
		}
	}
	for i := range rows {
		p := &rows[i]
		if p.op == connectors.OpTruncate {
			truncated[p.t] = true
			continue
		}
		nk, no := s.needs(p)
		stateful = stateful || nk || no
		if no {
			need(p.oldKey, p)
		}
		if nk {
			need(p.key, p)
		}
		if p.oldKey != "" {
			known[p.oldKey] = true
		}
		if p.op == connectors.OpDelete || !p.partial || p.oldKey != "" {
			known[p.key] = true
		}
	}
	return keys, first, stateful
}

// rowState is a stored row: column → string form (hash) or raw JSON
// (json). nil means the row does not exist.
type rowState map[string]string

// readResult is a row as read before the batch.
type readResult struct {
	st  rowState
	raw string // json: the document as read
}

// read reads the rows at keys.
func (s *Sink) read(ctx context.Context, keys []string, first map[string]int) (map[string]readResult, error) {
	out := make(map[string]readResult, len(keys))
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), 1000)]
		keys = keys[len(chunk):]
		pipe := s.rdb.Pipeline()
		cmds := make([]redis.Cmder, len(chunk))
		for i, k := range chunk {
			if s.cfg.Format == FormatJSON {
				cmds[i] = pipe.Get(ctx, k)
			} else {
				cmds[i] = pipe.HGetAll(ctx, k)
			}
		}
		_, _ = pipe.Exec(ctx) // errors are looked at per command
		for i, k := range chunk {
			switch c := cmds[i].(type) {
			case *redis.MapStringStringCmd:
				m, err := c.Result()
				if err != nil {
					return nil, s.readErr(k, first[k], "hash", err)
				}
				if len(m) > 0 {
					out[k] = readResult{st: m}
				} else {
					out[k] = readResult{}
				}
			case *redis.StringCmd:
				doc, err := c.Result()
				if errors.Is(err, redis.Nil) {
					out[k] = readResult{}
					continue
				}
				if err != nil {
					return nil, s.readErr(k, first[k], "JSON string", err)
				}
				st, err := parseDoc(doc)
				if err != nil {
					return nil, &connectors.RejectError{Events: []connectors.EventError{{Index: first[k],
						Err: fmt.Errorf("redis: key %q does not hold a JSON object (%v); is another application writing it?", k, err)}}}
				}
				out[k] = readResult{st: st, raw: doc}
			}
		}
	}
	return out, nil
}

func (s *Sink) readErr(key string, idx int, want string, err error) error {
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return &connectors.RejectError{Events: []connectors.EventError{{Index: idx,
			Err: fmt.Errorf("redis: key %q does not hold a %s, which format %s writes there (format changed? another application?); delete it or rebuild", key, want, s.cfg.Format)}}}
	}
	return s.wrap("read "+key, err)
}

// parseDoc splits a stored JSON object into its members' raw values.
func parseDoc(doc string) (rowState, error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(doc))
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("null")
	}
	st := make(rowState, len(m))
	for k, v := range m {
		st[k] = string(v)
	}
	return st, nil
}

// overlay is the batch's effect on the rows it needs, as planned so far.
type overlay struct {
	entries   map[string]*overlayEntry
	truncated map[*tableInfo]bool
	reads     map[string]readResult
}

type overlayEntry struct {
	t     *tableInfo
	st    rowState
	known bool
}

// lookup returns the row at k as the batch has left it so far, and whether
// that is known.
func (o *overlay) lookup(k string, t *tableInfo) (rowState, bool) {
	if e, ok := o.entries[k]; ok {
		return e.st, e.known
	}
	if o.truncated[t] {
		return nil, true
	}
	if r, ok := o.reads[k]; ok {
		return r.st, true
	}
	return nil, false
}

func (o *overlay) set(k string, t *tableInfo, st rowState, known bool) {
	o.entries[k] = &overlayEntry{t: t, st: st, known: known}
}

func (o *overlay) truncate(t *tableInfo) {
	o.truncated[t] = true
	for _, e := range o.entries {
		if e.t == t {
			e.st, e.known = nil, true
		}
	}
}

// plan is the script's arguments being built.
type plan struct {
	s          *Sink
	args       []any // the header, then the writes (see batchScript)
	checks     []any // T checks
	ncheck     int
	content    []any // G and H checks
	ncontent   int
	group      rowGroup
	typed      map[string]bool
	registered map[*tableInfo]bool
	score      string // the score of a row key in a zset key list
	ttl        string
}

// rowGroup is a run of whole-row writes and deletes of distinct keys that
// becomes one R op of the script: one DEL for all its keys, one HSET (or
// SET) per row written, one SADD or ZADD (SREM or ZREM) per key list. The
// commands planned while a group is open go before it; they touch none of
// its keys (index sets, key lists and rows of other keys), so that order
// changes nothing, and a command that would touch one closes the group
// first (flushFor).
type rowGroup struct {
	lists []string       // the key lists of its rows
	index map[string]int // key list → 1-based index in lists
	keys  map[string]bool
	rows  []groupRow
}

// groupRow is a row of a rowGroup. It points at strings that stay put
// until the script has run: go-redis writes a *string as the string, which
// saves boxing every string in an interface.
type groupRow struct {
	list   int // 1-based, in lists
	key    *string
	values []string // nil: delete the row
}

func (pl *plan) cmd(args ...string) {
	pl.args = append(pl.args, len(args))
	for _, a := range args {
		pl.args = append(pl.args, a)
	}
}

// cmdKV appends name key pairs..., split into commands of at most
// maxPairs pairs.
func (pl *plan) cmdKV(name, key string, kv []string, step int) {
	for len(kv) > 0 {
		n := min(len(kv), step*maxPairs)
		pl.args = append(pl.args, 2+n, name, key)
		for _, a := range kv[:n] {
			pl.args = append(pl.args, a)
		}
		kv = kv[n:]
	}
}

// groupRow adds a row to the open group: values nil deletes key; for the
// hash format values are its field-value pairs, for json its document.
// A key already in the group closes it first.
func (pl *plan) groupRow(t *tableInfo, key *string, values []string) {
	g := &pl.group
	if g.keys[*key] {
		pl.flush()
	}
	li, ok := g.index[t.track]
	if !ok {
		g.lists = append(g.lists, t.track)
		li = len(g.lists)
		g.index[t.track] = li
	}
	g.keys[*key] = true
	g.rows = append(g.rows, groupRow{list: li, key: key, values: values})
}

// flushFor closes the open group if it holds key.
func (pl *plan) flushFor(key string) {
	if pl.group.keys[key] {
		pl.flush()
	}
}

// flush closes the open group: it becomes an R op.
func (pl *plan) flush() {
	g := &pl.group
	if len(g.rows) == 0 {
		return
	}
	format := "H"
	if pl.s.cfg.Format == FormatJSON {
		format = "J"
	}
	// When every row has as many values, m is given once, in the header;
	// with one key list, rows do not name it.
	m := len(g.rows[0].values)
	for _, r := range g.rows[1:] {
		if len(r.values) != m {
			m = -1
			break
		}
	}
	pl.args = append(pl.args, "R", format, len(g.rows), len(g.lists))
	for i := range g.lists {
		pl.args = append(pl.args, &g.lists[i])
	}
	pl.args = append(pl.args, m)
	for _, r := range g.rows {
		if len(g.lists) > 1 {
			pl.args = append(pl.args, r.list)
		}
		pl.args = append(pl.args, r.key)
		if m < 0 {
			pl.args = append(pl.args, len(r.values))
		}
		for i := range r.values {
			pl.args = append(pl.args, &r.values[i])
		}
	}
	// The args point into lists: the next group takes a new one.
	g.lists, g.rows = nil, g.rows[:0]
	clear(g.index)
	clear(g.keys)
}

func (pl *plan) typeCheck(key, want string, idx int) {
	if pl.typed[key] {
		return
	}
	pl.typed[key] = true
	pl.checks = append(pl.checks, "T", key, want, strconv.Itoa(idx))
	pl.ncheck++
}

// register makes sure t's key list is listed and, with a TTL, trimmed.
func (pl *plan) register(t *tableInfo) {
	if pl.registered[t] {
		return
	}
	pl.registered[t] = true
	pl.typeCheck(t.track, "keys", -1)
	pl.typeCheck(pl.s.meta.tables, "set", -1)
	pl.cmd("REGISTER", t.track)
}

// buildArgs plans the batch and returns the script's ARGV.
func (s *Sink) buildArgs(rows []prepared, reads map[string]readResult, readOrder []string, first map[string]int,
	track bool, last connectors.Position, origins []string) []any {
	expectSet, expect := "0", ""
	if s.committed != nil {
		expectSet, expect = "1", string(s.committed)
	}
	now := time.Now()
	pl := &plan{s: s, typed: map[string]bool{}, registered: map[*tableInfo]bool{}, score: "0",
		group: rowGroup{index: map[string]int{}, keys: make(map[string]bool, len(rows)), rows: make([]groupRow, 0, len(rows))}}
	listType, trimBelow := "set", ""
	if s.cfg.TTL > 0 {
		listType = "zset"
		pl.ttl = strconv.FormatInt(s.cfg.TTL.Milliseconds(), 10)
		pl.score = strconv.FormatInt(now.Add(s.cfg.TTL).UnixMilli(), 10)
		trimBelow = strconv.FormatInt(now.Add(-trackSlack).UnixMilli(), 10)
	}
	pl.args = make([]any, 0, 16+len(origins)+14*len(rows))
	pl.args = append(pl.args, string(last), expectSet, expect, listType, pl.score, pl.ttl, trimBelow, len(origins))
	for _, o := range origins {
		pl.args = append(pl.args, o)
	}
	nops := len(pl.args)
	pl.args = append(pl.args, 0) // the number of op arguments, set below
	if len(origins) > 0 {
		pl.typeCheck(s.meta.origins, "hash", -1)
	}
	for _, k := range readOrder {
		r := reads[k]
		idx := strconv.Itoa(first[k])
		if s.cfg.Format == FormatJSON {
			pl.typeCheck(k, "string", first[k])
			if r.st == nil {
				pl.content = append(pl.content, "G", k, "0", "", idx)
			} else {
				pl.content = append(pl.content, "G", k, "1", r.raw, idx)
			}
		} else {
			pl.typeCheck(k, "hash", first[k])
			if r.st == nil {
				pl.content = append(pl.content, "H", k, "-1", idx)
			} else {
				pl.content = append(pl.content, "H", k, strconv.Itoa(len(r.st)))
				for f, v := range r.st {
					pl.content = append(pl.content, f, v)
				}
				pl.content = append(pl.content, idx)
			}
		}
		pl.ncontent++
	}
	o := &overlay{entries: map[string]*overlayEntry{}, truncated: map[*tableInfo]bool{}, reads: reads}
	for i := range rows {
		s.planEvent(pl, o, &rows[i], track)
	}
	pl.flush()
	if s.applyLog != "" && len(rows) > 0 {
		applied := make([]string, len(rows))
		for i := range rows {
			applied[i] = string(rows[i].ev.Position)
		}
		pl.cmdKV("RPUSH", s.applyLog, applied, 1)
	}
	args := pl.args
	args[nops] = len(args) - nops - 1
	args = append(args, pl.ncheck+pl.ncontent)
	args = append(args, pl.checks...)
	return append(args, pl.content...)
}

// planEvent appends the commands of one event. When track is set it keeps
// the overlay up to date.
func (s *Sink) planEvent(pl *plan, o *overlay, p *prepared, track bool) {
	t := p.t
	if p.op == connectors.OpTruncate {
		pl.flush()
		pl.typeCheck(t.track, "keys", -1)
		pl.typeCheck(s.meta.tables, "set", -1)
		pl.cmd("TRUNCATE", t.track)
		delete(pl.registered, t)
		if track {
			o.truncate(t)
		}
		return
	}
	pl.register(t)
	var moved rowState // the row the update moved away from
	if p.oldKey != "" {
		var known bool
		if track {
			moved, known = o.lookup(p.oldKey, t)
		}
		pl.groupRow(t, &p.oldKey, nil)
		if track {
			if known {
				s.reindex(pl, p, p.oldPK, moved, nil)
			}
			o.set(p.oldKey, t, nil, true)
		}
	}
	var old rowState
	oldKnown := false
	if track {
		old, oldKnown = o.lookup(p.key, t)
	}
	if p.op == connectors.OpDelete {
		pl.groupRow(t, &p.key, nil)
		if track {
			if oldKnown {
				s.reindex(pl, p, p.pk, old, nil)
			}
			o.set(p.key, t, nil, true)
		}
		return
	}

	var st rowState
	stKnown := true
	cols := p.ev.Schema.Columns
	if s.cfg.Format == FormatJSON {
		doc := p.doc
		switch {
		case !p.partial:
			if track {
				raws := p.rawValues()
				st = make(rowState, len(raws))
				for i, r := range raws {
					st[cols[i].Name] = r
				}
			}
		default:
			base := old
			if p.oldKey != "" {
				base = moved
			}
			raws := p.rawValues()
			st = make(rowState, len(raws))
			buf := []byte{'{'}
			for i, r := range raws {
				name := cols[i].Name
				if r == "" { // Unchanged: keep the stored value, if any
					var ok bool
					if r, ok = base[name]; !ok {
						continue
					}
				}
				st[name] = r
				if len(buf) > 1 {
					buf = append(buf, ',')
				}
				buf = append(buf, p.si.jsonKeys[i]...)
				buf = append(buf, r...)
			}
			doc = append(buf, '}')
		}
		pl.groupRow(t, &p.key, []string{string(doc)})
	} else {
		switch {
		case !p.partial || p.oldKey != "":
			pairs := p.fields
			if p.partial { // moved: the Unchanged values are those of the old row
				pairs = append([]string(nil), p.fields...)
				for i, v := range p.ev.After {
					if connectors.IsUnchanged(v) {
						if val, ok := moved[cols[i].Name]; ok {
							pairs = append(pairs, cols[i].Name, val)
						}
					}
				}
			}
			if len(pairs) <= 2*maxPairs {
				pl.groupRow(t, &p.key, pairs)
			} else {
				pl.flushFor(p.key)
				pl.cmd("DEL", p.key)
				pl.cmdKV("HSET", p.key, pairs, 2)
				pl.expireAndTrack(t, p.key)
			}
			if track {
				st = make(rowState, len(pairs)/2)
				for i := 0; i < len(pairs); i += 2 {
					st[pairs[i]] = pairs[i+1]
				}
			}
		default: // Unchanged columns: leave their fields alone
			pl.flushFor(p.key)
			pl.typeCheck(p.key, "hash", p.idx)
			pl.cmdKV("HSET", p.key, p.fields, 2)
			pl.cmdKV("HDEL", p.key, p.nulls, 1)
			pl.expireAndTrack(t, p.key)
			stKnown = oldKnown
			if track && oldKnown {
				st = make(rowState, len(old)+len(p.fields)/2)
				for k, v := range old {
					st[k] = v
				}
				for i := 0; i < len(p.fields); i += 2 {
					st[p.fields[i]] = p.fields[i+1]
				}
				for _, c := range p.nulls {
					delete(st, c)
				}
			}
		}
	}
	if track {
		if oldKnown && stKnown {
			s.reindex(pl, p, p.pk, old, st)
		}
		o.set(p.key, t, st, stKnown)
	}
}

// expireAndTrack sets the TTL of a hash row written outside a group, and
// adds it to its table's key list.
func (pl *plan) expireAndTrack(t *tableInfo, key string) {
	if pl.ttl != "" {
		pl.cmd("PEXPIRE", key, pl.ttl)
	}
	pl.cmd("TRACK", t.track, pl.score, key)
}

// reindex moves pk between the index sets of its table, from the values in
// old to those in cur (nil: no row).
func (s *Sink) reindex(pl *plan, p *prepared, pk string, old, cur rowState) {
	t := p.t
	for _, c := range t.indexes {
		ov, ook := s.indexValue(old, c)
		nv, nok := s.indexValue(cur, c)
		if ook && nok && ov == nv {
			continue
		}
		if ook {
			k := t.indexKey(c, ov)
			pl.typeCheck(k, "set", p.idx)
			pl.cmd("SREMX", k, pk, t.track)
		}
		if nok {
			k := t.indexKey(c, nv)
			pl.typeCheck(k, "set", p.idx)
			pl.cmd("SADD", k, pk)
			pl.cmd("TRACK", t.track, "0", k)
		}
	}
}

// indexValue is the string form of column c in st, as index sets use it.
func (s *Sink) indexValue(st rowState, c string) (string, bool) {
	v, ok := st[c]
	if !ok {
		return "", false
	}
	if s.cfg.Format == FormatJSON {
		return rawText(v)
	}
	return v, true
}

// WriteBatch applies the batch and stores b.Last with it, in one Lua
// script: atomically, and not at all when b.Last is at or before the
// position this sink committed last (a batch already applied). A batch
// with no events still stores its position. Events that can never be
// written (no primary key, a NULL key, a value of an unknown type, a key
// holding another type) make a *connectors.RejectError, and nothing of the
// batch is written.
//
// Events at or before the stored position are left out (positions
// compared with bytes.Compare), so that no event is applied twice even
// when batches are cut differently after a restart. The script applies
// the batch only if the stored position is still the one this sink last
// saw. When it is not, another writer has moved it (the script of a batch
// whose reply was lost, arriving late; or a second process running the
// pipeline): the sink takes the stored position as its own and tries
// again, leaving out the events it covers. A stored position that went
// back (Redis lost writes) is an error.
func (s *Sink) WriteBatch(ctx context.Context, b connectors.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	last := b.Last
	if last == nil && len(b.Events) > 0 {
		last = b.Events[len(b.Events)-1].Position
	}
	if last == nil {
		if len(b.Events) == 0 {
			return nil
		}
		return errors.New("redis: a batch with events but no position (neither Last nor the events'): the sink stores the position with the rows")
	}
	all, err := s.prepare(b.Events)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		if s.committed != nil && last.Compare(s.committed) <= 0 {
			s.log.Info("redis: batch already applied (it ends at or before the stored position); skipped",
				"position", last.String(), "stored", s.committed.String())
			return nil
		}
		rows := after(all, s.committed)
		origins, pairs := s.mergeOrigins(rows, heartbeats(b.Events, s.committed))
		readOrder, first, track := s.readKeys(rows)
		reads, err := s.read(ctx, readOrder, first)
		if err != nil {
			return err
		}
		args := s.buildArgs(rows, reads, readOrder, first, track, last, pairs)
		res, err := batchScript.Run(ctx, s.rdb, []string{s.meta.pos, s.meta.origins, s.meta.tables}, args...).StringSlice()
		if err != nil {
			return s.wrap(fmt.Sprintf("apply a batch of %d events ending at %s", len(rows), last), err)
		}
		if len(res) == 0 {
			return errors.New("redis: the batch script returned nothing")
		}
		switch res[0] {
		case "ok":
			s.committed = last
			s.omu.Lock()
			s.origins = origins
			s.omu.Unlock()
			s.log.Debug("redis: batch applied", "batch_events", len(rows), "position", last.String(), "reads", len(readOrder))
			return nil
		case "moved":
			var stored connectors.Position
			if len(res) > 1 {
				stored = connectors.Position(res[1])
			}
			if stored.Compare(s.committed) < 0 {
				return fmt.Errorf("redis: the position stored at %s went back from %s to %s: Redis lost writes (a restart without appendonly? a FLUSH?) and the view misses the events in between; rebuild it (tapline rebuild)",
					s.meta.pos, s.committed, stored)
			}
			s.log.Warn("redis: the stored position is ahead of this sink's: a batch whose reply was lost was applied, or another process writes this pipeline; continuing after it",
				"expected", s.committed.String(), "stored", stored.String())
			s.committed = stored
			if err := s.loadOrigins(ctx); err != nil {
				return err
			}
		case "conflict":
			if attempt < maxAttempts {
				continue
			}
			return connectors.Retryable(fmt.Errorf("redis: key %q changed between reading it and applying the batch, %d times (expiring keys, or another writer of the same keys?)", at(res, 2), attempt))
		case "wrongtype":
			want := at(res, 4)
			if want == "keys" {
				want = "set or zset (a key list)"
			}
			err := fmt.Errorf("redis: key %q holds a %s where the sink writes a %s (format changed? another application writing these keys?); delete it, change key_prefix, or rebuild", at(res, 2), at(res, 3), want)
			if idx, perr := strconv.Atoi(at(res, 1)); perr == nil && idx >= 0 && idx < len(b.Events) {
				return &connectors.RejectError{Events: []connectors.EventError{{Index: idx, Err: err}}}
			}
			return err
		default:
			return fmt.Errorf("redis: the batch script returned %q", strings.Join(res, " "))
		}
		if attempt >= 2*maxAttempts {
			return connectors.Retryable(errors.New("redis: the stored position keeps moving under this sink: is the pipeline running twice?"))
		}
	}
}

// after returns the rows whose event is after pos (or has no position).
func after(rows []prepared, pos connectors.Position) []prepared {
	if pos == nil || len(rows) == 0 || rows[0].ev.Position.Compare(pos) > 0 {
		return rows
	}
	var out []prepared
	for _, p := range rows {
		if p.ev.Position == nil || p.ev.Position.Compare(pos) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// heartbeats returns the heartbeat events (op h) of evs after pos: they
// write nothing but move the origin positions (read-your-writes).
func heartbeats(evs []connectors.Event, pos connectors.Position) []*connectors.Event {
	var out []*connectors.Event
	for i := range evs {
		if ev := &evs[i]; ev.Op == connectors.OpHeartbeat && (pos == nil || ev.Position.Compare(pos) > 0) {
			out = append(out, ev)
		}
	}
	return out
}

// mergeOrigins returns the committed origins merged with those of rows and
// beats, and the (key, position) pairs that changed.
func (s *Sink) mergeOrigins(rows []prepared, beats []*connectors.Event) (connectors.Origins, []string) {
	obs := connectors.Origins{}
	for i := range rows {
		obs.Observe(rows[i].ev)
	}
	for _, ev := range beats {
		obs.Observe(ev)
	}
	s.omu.Lock()
	merged := make(connectors.Origins, len(s.origins)+len(obs))
	for k, v := range s.origins {
		merged[k] = v
	}
	s.omu.Unlock()
	before := make(map[string]string, len(merged))
	for k, v := range merged {
		before[k] = v
	}
	merged.Merge(obs)
	var pairs []string
	for k, v := range merged {
		if old, had := before[k]; !had || old != v {
			pairs = append(pairs, k, v)
		}
	}
	return merged, pairs
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

// keyOnlySchema reports whether sch holds only a table's key, as the Kafka
// source makes of a tombstone: version 0 with every column a key column.
// Deleting by such a schema needs nothing but the key columns.
func keyOnlySchema(sch *connectors.Schema) bool {
	if sch.Version != 0 || len(sch.Columns) == 0 {
		return false
	}
	for _, c := range sch.Columns {
		if c.Key <= 0 {
			return false
		}
	}
	return true
}

// templateUses reports whether key_template has the placeholder ph.
func (s *Sink) templateUses(ph string) bool {
	for _, p := range s.tmpl.parts {
		if p.ph == ph {
			return true
		}
	}
	return false
}
