package redis

import (
	"bytes"
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
//  3. On one connection, in one round trip: WATCH the position key (and,
//     with a TTL, those rows), GET the position, read the rows (GET,
//     HGETALL, or HMGET of the indexed columns). A position other than
//     the one this sink last stored stops here (see WriteBatch).
//  4. plan: the batch becomes a list of Redis commands, simulating its
//     effect on the rows read (the overlay) to move index entries.
//  5. MULTI, the commands, SET of the position, HSET of the origins, EXEC:
//     Redis runs them with nothing in between, and not at all when a
//     WATCHed key changed since step 3 (another writer of the position, a
//     row read that expired); then the sink goes back to 3, up to
//     maxAttempts times.
//
// A transaction, unlike a script, does not stop at a failing command. The
// only command of a batch that can fail once queued is one on a key of
// another type (WRONGTYPE: another application wrote a string where the
// sink keeps a hash, say); apply says what the sink does then.

const (
	maxAttempts = 5
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
	pattern    string   // the glob pattern of its keys: its rows and index sets
	space      string   // pattern without a shadow's key prefix: its entry in the table list
	indexes    []string // the indexed columns
	err        error    // why none of its rows can be written, if so
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
	// Tables whose keys look alike share them: the template says what
	// tells rows apart.
	space := globEscape(head) + "*" + globEscape(tail)
	if other, ok := s.spaces[space]; ok && other != ident {
		s.log.Warn("redis: two tables share their keys under key_template; add {schema} or {db} to it to keep them apart",
			"table", ident.String(), "other_table", other.String(), "keys", head+"{pk}"+tail)
	}
	t := &tableInfo{
		ident:   ident,
		head:    s.keyPrefix + head,
		tail:    tail,
		pattern: globEscape(s.keyPrefix) + space,
		space:   space,
	}
	// Truncate and promote delete every key matching a table's pattern:
	// it must not reach the sink's own keys.
	for _, own := range []struct{ field, prefix string }{{"offsets_prefix", s.cfg.OffsetsPrefix}, {"shadow_prefix", s.cfg.ShadowPrefix}} {
		if strings.HasPrefix(head, own.prefix) || strings.HasPrefix(own.prefix, head) {
			t.err = fmt.Errorf("redis: the keys of table %s (%s{pk}%s) could be taken for the sink's own keys under %s %q; change key_prefix or %s",
				ident, head, tail, own.field, own.prefix, own.field)
		}
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
		if sch.Index(c) < 0 && !sch.KeyOnly() {
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
	if t.err != nil {
		return p, t.err // the configuration's fault, not the event's
	}
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
	if ev.Op == connectors.OpDelete && ev.Source.DB == "" && sch.KeyOnly() && s.templateUses("db") {
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

// reading is what readKeys finds the batch must read.
type reading struct {
	keys  []string              // in order
	first map[string]int        // the first event that needs each key
	table map[string]*tableInfo // the table of each key
	// full marks the keys whose whole row is needed: the json format's,
	// and in the hash format those an update moves to another key with
	// Unchanged columns (which take the old row's values). For the others
	// only the indexed columns are read (HMGET).
	full map[string]bool
	// stateful is set when any event needs a row's state.
	stateful bool
}

// readKeys returns the keys to read before the batch: those whose stored
// row some event needs and that the batch has not itself written or
// truncated before needing them.
func (s *Sink) readKeys(rows []prepared) reading {
	known := map[string]bool{} // written or deleted earlier in the batch
	truncated := map[*tableInfo]bool{}
	r := reading{first: map[string]int{}, table: map[string]*tableInfo{}, full: map[string]bool{}}
	need := func(k string, p *prepared, full bool) {
		if known[k] || truncated[p.t] {
			return
		}
		if _, ok := r.first[k]; !ok {
			r.first[k] = p.idx
			r.table[k] = p.t
			r.keys = append(r.keys, k)
		}
		if full || s.cfg.Format == FormatJSON {
			r.full[k] = true
		}
	}
	for i := range rows {
		p := &rows[i]
		if p.op == connectors.OpTruncate {
			truncated[p.t] = true
			continue
		}
		nk, no := s.needs(p)
		r.stateful = r.stateful || nk || no
		if no {
			need(p.oldKey, p, p.partial)
		}
		if nk {
			need(p.key, p, false)
		}
		if p.oldKey != "" {
			known[p.oldKey] = true
		}
		if p.op == connectors.OpDelete || !p.partial || p.oldKey != "" {
			known[p.key] = true
		}
	}
	return r
}

// rowState is a stored row: column → string form (hash) or raw JSON
// (json). nil means the row does not exist.
type rowState map[string]string

// readResult is a row as read before the batch.
type readResult struct {
	st rowState
}

// queueReads queues the reads of the rows r needs on p: GET (json),
// HGETALL (a whole hash row) or HMGET of the indexed columns.
func (s *Sink) queueReads(ctx context.Context, p redis.Pipeliner, r *reading) []redis.Cmder {
	cmds := make([]redis.Cmder, len(r.keys))
	for i, k := range r.keys {
		switch {
		case s.cfg.Format == FormatJSON:
			cmds[i] = p.Get(ctx, k)
		case r.full[k]:
			cmds[i] = p.HGetAll(ctx, k)
		default:
			cmds[i] = p.HMGet(ctx, k, r.table[k].indexes...)
		}
	}
	return cmds
}

// reads returns the rows that queueReads read; a row read with HMGET holds
// only its indexed columns. A key of another type, or a json row that is
// not a JSON object, rejects the first event that needs it.
func (s *Sink) reads(r *reading, cmds []redis.Cmder) (map[string]readResult, error) {
	out := make(map[string]readResult, len(r.keys))
	for i, k := range r.keys {
		switch c := cmds[i].(type) {
		case *redis.MapStringStringCmd:
			m, err := c.Result()
			if err != nil {
				return nil, s.readErr(k, r.first[k], "hash", err)
			}
			if len(m) > 0 {
				out[k] = readResult{st: m}
			} else {
				out[k] = readResult{}
			}
		case *redis.SliceCmd:
			vals, err := c.Result()
			if err != nil {
				return nil, s.readErr(k, r.first[k], "hash", err)
			}
			var st rowState
			for j, v := range vals {
				if str, ok := v.(string); ok {
					if st == nil {
						st = make(rowState, len(vals))
					}
					st[r.table[k].indexes[j]] = str
				}
			}
			out[k] = readResult{st: st}
		case *redis.StringCmd:
			doc, err := c.Result()
			if errors.Is(err, redis.Nil) {
				out[k] = readResult{}
				continue
			}
			if err != nil {
				return nil, s.readErr(k, r.first[k], "JSON string", err)
			}
			st, err := parseDoc(doc)
			if err != nil {
				return nil, &connectors.RejectError{Events: []connectors.EventError{{Index: r.first[k],
					Err: fmt.Errorf("redis: key %q does not hold a JSON object (%v); is another application writing it?", k, err)}}}
			}
			out[k] = readResult{st: st}
		}
	}
	return out, nil
}

func (s *Sink) readErr(key string, idx int, want string, err error) error {
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return &connectors.RejectError{Events: []connectors.EventError{{Index: idx,
			Err: fmt.Errorf("redis: key %q holds another type than the %s that format %s keeps there (format changed? another application writing these keys?); delete it, change key_prefix, or rebuild", key, want, s.cfg.Format)}}}
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

// plan is the batch as the commands of one transaction. Each command's
// arguments are a slice of one array (arena), and strings that stay put
// until the transaction has run are given as *string: go-redis writes a
// *string as the string, which saves boxing every one in an interface.
type plan struct {
	cmds  [][]any
	owner []int // per command: the index in the batch of the event it writes, -1 for the sink's own
	arena []any
	ttl   string // the TTL in ms, "" for none
	// spaces are the table list entries the transaction adds.
	spaces []string
}

// start begins a command of the event at idx; end ends it.
func (pl *plan) start(name string) int {
	n := len(pl.arena)
	pl.arena = append(pl.arena, name)
	return n
}

func (pl *plan) end(from, idx int) {
	pl.cmds = append(pl.cmds, pl.arena[from:len(pl.arena):len(pl.arena)])
	pl.owner = append(pl.owner, idx)
}

// keyCmd appends name key values... as one command of the event at idx.
func (pl *plan) keyCmd(idx int, name string, key *string, values []string) {
	from := pl.start(name)
	pl.arena = append(pl.arena, key)
	for i := range values {
		pl.arena = append(pl.arena, &values[i])
	}
	pl.end(from, idx)
}

// cmd appends one command of the event at idx (-1: the sink's own).
func (pl *plan) cmd(idx int, name string, args ...any) {
	from := pl.start(name)
	pl.arena = append(pl.arena, args...)
	pl.end(from, idx)
}

// writeHash writes a hash row: its non-NULL fields set, its NULL ones
// deleted, its TTL set again. Fields of columns the event does not have
// (a dropped column, an Unchanged one) keep their stored value.
func (pl *plan) writeHash(idx int, key *string, pairs, nulls []string) {
	if len(pairs) > 0 {
		pl.keyCmd(idx, "HSET", key, pairs)
	}
	if len(nulls) > 0 {
		pl.keyCmd(idx, "HDEL", key, nulls)
	}
	if pl.ttl != "" {
		pl.cmd(idx, "PEXPIRE", key, pl.ttl)
	}
}

// writeJSON writes a json row.
func (pl *plan) writeJSON(idx int, key *string, doc []byte) {
	if pl.ttl != "" {
		pl.cmd(idx, "SET", key, doc, "PX", pl.ttl)
		return
	}
	pl.cmd(idx, "SET", key, doc)
}

// buildPlan plans the batch's writes, then the position and the origins.
func (s *Sink) buildPlan(rows []prepared, reads map[string]readResult, track bool, last connectors.Position, origins []string) *plan {
	size := 8 + len(origins)
	for i := range rows {
		size += 8 + len(rows[i].fields) + len(rows[i].nulls)
	}
	pl := &plan{cmds: make([][]any, 0, 2*len(rows)+4), owner: make([]int, 0, 2*len(rows)+4), arena: make([]any, 0, size)}
	if s.cfg.TTL > 0 {
		pl.ttl = strconv.FormatInt(s.cfg.TTL.Milliseconds(), 10)
	}
	o := &overlay{entries: map[string]*overlayEntry{}, truncated: map[*tableInfo]bool{}, reads: reads}
	seen := map[*tableInfo]bool{}
	for i := range rows {
		p := &rows[i]
		if !s.listed[p.t.space] && !seen[p.t] {
			seen[p.t] = true
			pl.spaces = append(pl.spaces, p.t.space)
		}
		s.planEvent(pl, o, p, track)
	}
	if s.applyLog != "" && len(rows) > 0 {
		from := pl.start("RPUSH")
		pl.arena = append(pl.arena, s.applyLog)
		for i := range rows {
			pl.arena = append(pl.arena, []byte(rows[i].ev.Position))
		}
		pl.end(from, -1)
	}
	if len(pl.spaces) > 0 {
		from := pl.start("SADD")
		pl.arena = append(pl.arena, s.meta.tables)
		for i := range pl.spaces {
			pl.arena = append(pl.arena, &pl.spaces[i])
		}
		pl.end(from, -1)
	}
	if !s.formatStored {
		pl.cmd(-1, "SET", s.meta.format, s.cfg.Format)
	}
	if len(origins) > 0 {
		from := pl.start("HSET")
		pl.arena = append(pl.arena, s.meta.origins)
		for i := range origins {
			pl.arena = append(pl.arena, &origins[i])
		}
		pl.end(from, -1)
	}
	pl.cmd(-1, "SET", s.meta.pos, []byte(last)) // last: apply looks for it
	return pl
}

// planEvent appends the commands of one event. When track is set it keeps
// the overlay up to date, and moves the row between index sets.
func (s *Sink) planEvent(pl *plan, o *overlay, p *prepared, track bool) {
	t := p.t
	if p.op == connectors.OpTruncate {
		pl.cmd(p.idx, "EVAL", truncateSrc, 0, t.pattern)
		if track {
			o.truncate(t)
		}
		return
	}
	var moved rowState // the row the update moved away from
	if p.oldKey != "" {
		var known bool
		if track {
			moved, known = o.lookup(p.oldKey, t)
		}
		pl.keyCmd(p.idx, "DEL", &p.oldKey, nil)
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
		pl.keyCmd(p.idx, "DEL", &p.key, nil)
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
		pl.writeJSON(p.idx, &p.key, doc)
	} else {
		pairs := p.fields
		if p.partial && p.oldKey != "" { // moved: the Unchanged values are those of the old row
			pairs = append([]string(nil), p.fields...)
			for i, v := range p.ev.After {
				if connectors.IsUnchanged(v) {
					if val, ok := moved[cols[i].Name]; ok {
						pairs = append(pairs, cols[i].Name, val)
					}
				}
			}
		}
		pl.writeHash(p.idx, &p.key, pairs, p.nulls)
		if track {
			switch {
			case !p.partial || p.oldKey != "":
				st = make(rowState, len(pairs)/2)
				for i := 0; i < len(pairs); i += 2 {
					st[pairs[i]] = pairs[i+1]
				}
			case oldKnown: // Unchanged columns keep their stored values
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
			default:
				stKnown = false
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

// reindex moves pk between the index sets of its table, from the values in
// old to those in cur (nil: no row). An emptied set disappears.
func (s *Sink) reindex(pl *plan, p *prepared, pk string, old, cur rowState) {
	t := p.t
	for _, c := range t.indexes {
		ov, ook := s.indexValue(old, c)
		nv, nok := s.indexValue(cur, c)
		if ook && nok && ov == nv {
			continue
		}
		if ook {
			pl.cmd(p.idx, "SREM", t.indexKey(c, ov), pk)
		}
		if nok {
			pl.cmd(p.idx, "SADD", t.indexKey(c, nv), pk)
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

// WriteBatch applies the batch and stores b.Last with it, in one MULTI/EXEC
// transaction: atomically, and not at all when b.Last is at or before the
// position this sink committed last (a batch already applied). A batch
// with no events still stores its position. Events that can never be
// written (no primary key, a NULL key, a value of an unknown type, a row
// it must read held in a key of another type) make a
// *connectors.RejectError, and nothing of the batch is written. A key of
// another type that the batch only writes is found as it is written: see
// apply.
//
// Events at or before the stored position are left out (positions
// compared with bytes.Compare), so that no event is applied twice even
// when batches are cut differently after a restart. The transaction runs
// only if the stored position is still the one this sink last saw (WATCH).
// When it is not, another writer has moved it (a batch whose reply was
// lost; a second process running the pipeline): the sink takes the stored
// position as its own and tries again, leaving out the events it covers.
// A stored position that went back (Redis lost writes) is an error.
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
	conflicts := 0
	for attempt := 1; ; attempt++ {
		if s.committed != nil && last.Compare(s.committed) <= 0 {
			s.log.Info("redis: batch already applied (it ends at or before the stored position); skipped",
				"position", last.String(), "stored", s.committed.String())
			return nil
		}
		rows := after(all, s.committed)
		origins, pairs := s.mergeOrigins(rows, heartbeats(b.Events, s.committed))
		out, stored, err := s.apply(ctx, rows, last, pairs)
		if err != nil {
			return err
		}
		switch out {
		case applied:
			s.committed = last
			s.omu.Lock()
			s.origins = origins
			s.omu.Unlock()
			s.log.Debug("redis: batch applied", "batch_events", len(rows), "position", last.String())
			return nil
		case moved:
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
		case conflict:
			if conflicts++; conflicts >= maxAttempts {
				return connectors.Retryable(fmt.Errorf("redis: a row the batch reads changed between reading it and applying the batch, %d times (expiring keys, or another writer of the same keys?)", conflicts))
			}
		}
		if attempt >= 2*maxAttempts {
			return connectors.Retryable(errors.New("redis: the stored position keeps moving under this sink: is the pipeline running twice?"))
		}
	}
}

// outcome is how an attempt to apply a batch ended.
type outcome int

const (
	applied  outcome = iota
	moved            // the stored position is not the one expected: nothing written
	conflict         // a row read changed before EXEC: nothing written
)

// apply makes one attempt to apply rows and store last (steps 2 to 5 at
// the top of this file). When it returns moved, stored is the position
// found.
//
// When EXEC ran but some of its commands failed (WRONGTYPE: a key of
// another type where the sink writes a hash or an index set), the other
// commands are applied, position included: Redis has no rollback. The sink
// then puts the position and the origins back as they were, and rejects
// the events whose commands failed (*connectors.RejectError), so that the
// pipeline's on_error decides and nothing is reported applied that is
// not. The writes of the batch that did succeed stay: they are what the
// batch writes again when it is retried (every write of a batch sets a
// value, so applying it again leaves the same rows), but readers may see
// them before the position says so. Should the process die between the
// EXEC and that restore, the stored position covers the rejected events:
// a window of one round trip, on a key space another application writes.
func (s *Sink) apply(ctx context.Context, rows []prepared, last connectors.Position, origins []string) (outcome, connectors.Position, error) {
	rd := s.readKeys(rows)
	conn := s.rdb.Conn()
	defer conn.Close()
	watching := true
	defer func() {
		if watching { // leave no WATCH on a connection that goes back to the pool
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = conn.Do(uctx, "UNWATCH").Err()
			cancel()
		}
	}()

	var watch *redis.Cmd
	var get *redis.StringCmd
	var rcmds []redis.Cmder
	_, _ = conn.Pipelined(ctx, func(p redis.Pipeliner) error { // errors are looked at per command
		args := make([]any, 0, 2+len(rd.keys))
		args = append(args, "WATCH", s.meta.pos)
		if s.cfg.TTL > 0 {
			// A row read may expire before EXEC. Without a TTL nothing
			// but this sink writes its keys (the sink owns its key
			// space), and a WATCH of every row read would cost 40% of
			// the speed of an indexed table.
			for _, k := range rd.keys {
				args = append(args, k)
			}
		}
		watch = p.Do(ctx, args...)
		get = p.Get(ctx, s.meta.pos)
		rcmds = s.queueReads(ctx, p, &rd)
		return nil
	})
	if err := watch.Err(); err != nil {
		return 0, nil, s.wrap("WATCH the position at "+s.meta.pos, err)
	}
	stored, err := get.Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		stored = nil
	case err != nil:
		return 0, nil, s.wrap("read the position at "+s.meta.pos, err)
	}
	if !bytes.Equal(stored, s.committed) || (stored == nil) != (s.committed == nil) {
		return moved, stored, nil
	}
	reads, err := s.reads(&rd, rcmds)
	if err != nil {
		return 0, nil, err
	}

	pl := s.buildPlan(rows, reads, rd.stateful, last, origins)
	cmds, err := conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range pl.cmds {
			p.Do(ctx, c...)
		}
		return nil
	})
	switch {
	case err == nil:
		watching = false
		for _, sp := range pl.spaces {
			s.listed[sp] = true
		}
		s.formatStored = true
		return applied, nil, nil
	case errors.Is(err, redis.TxFailedErr):
		watching = false
		return conflict, nil, nil
	}
	what := fmt.Sprintf("apply a batch of %d events ending at %s", len(rows), last)
	if cmds[len(cmds)-1].Err() != nil { // the SET of the position: EXEC did not run, or its reply was lost
		if redis.IsExecAbortError(err) {
			watching = false
		} else {
			// Maybe still inside MULTI: DISCARD, then UNWATCH (above).
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = conn.Do(dctx, "DISCARD").Err()
			cancel()
		}
		return 0, nil, s.wrap(what+" (when the connection failed after EXEC, the batch may be applied: the next attempt finds it from the position)", err)
	}
	watching = false
	return 0, nil, s.partlyApplied(ctx, conn, pl, cmds, last)
}

// partlyApplied handles an EXEC some of whose commands failed (see apply):
// it puts the position and origins back and returns what to report.
func (s *Sink) partlyApplied(ctx context.Context, conn *redis.Conn, pl *plan, cmds []redis.Cmder, last connectors.Position) error {
	var rejected []connectors.EventError
	var other []error
	seen := map[int]bool{}
	for i, c := range cmds {
		err := c.Err()
		if err == nil {
			continue
		}
		key := ""
		if args := c.Args(); len(args) > 1 {
			key = argText(args[1])
		}
		idx := pl.owner[i]
		switch {
		case redis.HasErrorPrefix(err, "WRONGTYPE") && idx >= 0:
			if !seen[idx] {
				seen[idx] = true
				rejected = append(rejected, connectors.EventError{Index: idx, Err: fmt.Errorf(
					"redis: %s %q: the key holds another type than the sink writes there (another application writing these keys? format changed?); delete it, change key_prefix, or rebuild: %v",
					c.Name(), key, err)})
			}
		default:
			other = append(other, fmt.Errorf("%s %q: %w", c.Name(), key, err))
		}
	}
	if err := s.restore(ctx, conn, last); err != nil {
		return fmt.Errorf("redis: the batch ending at %s was applied but for some commands (%v), and its position could not be put back (%v): the view misses those events; fix the keys, then rebuild the view (tapline rebuild)",
			last, errors.Join(append(other, rejectedErrs(rejected)...)...), err)
	}
	if len(other) > 0 {
		return fmt.Errorf("redis: the batch ending at %s failed: %w (its other writes are applied, its position is not: it is written again)", last, errors.Join(other...))
	}
	return &connectors.RejectError{Events: rejected}
}

func rejectedErrs(evs []connectors.EventError) []error {
	out := make([]error, len(evs))
	for i, e := range evs {
		out[i] = e.Err
	}
	return out
}

// restore puts the position (this sink's, before the batch ending at
// applied) and the origins back, if the stored position is still applied.
func (s *Sink) restore(ctx context.Context, conn *redis.Conn, applied connectors.Position) error {
	s.omu.Lock()
	prev := make([]any, 0, 2*len(s.origins))
	for k, v := range s.origins {
		prev = append(prev, k, v)
	}
	s.omu.Unlock()
	var get *redis.StringCmd
	if _, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "WATCH", s.meta.pos)
		get = p.Get(ctx, s.meta.pos)
		return nil
	}); err != nil {
		return err
	}
	if got, _ := get.Bytes(); !bytes.Equal(got, applied) {
		_ = conn.Do(ctx, "UNWATCH").Err()
		return fmt.Errorf("the position at %s moved on to %q meanwhile", s.meta.pos, got)
	}
	_, err := conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if s.committed == nil {
			p.Del(ctx, s.meta.pos)
		} else {
			p.Set(ctx, s.meta.pos, []byte(s.committed), 0)
		}
		p.Del(ctx, s.meta.origins)
		if len(prev) > 0 {
			p.HSet(ctx, s.meta.origins, prev...)
		}
		return nil
	})
	return err
}

// argText is a command argument as text, for messages.
func argText(a any) string {
	switch v := a.(type) {
	case *string:
		return *v
	case string:
		return v
	case []byte:
		return string(v)
	}
	return fmt.Sprint(a)
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

// templateUses reports whether key_template has the placeholder ph.
func (s *Sink) templateUses(ph string) bool {
	for _, p := range s.tmpl.parts {
		if p.ph == ph {
			return true
		}
	}
	return false
}
