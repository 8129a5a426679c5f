package eventjson

import (
	"bytes"
	"encoding/base64"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tapline/tapline/connectors"
)

// Decoder decodes events, remembering the schemas it has decoded: events
// whose schema blocks are the same bytes share one *connectors.Schema, so
// that a stream of events of one table holds one schema, not one per event.
// Schemas inferred for events without a schema block are shared the same
// way. The zero Decoder is ready to use. A Decoder is not safe for
// concurrent use.
//
// Decoded events never refer to the input: the caller may reuse it.
type Decoder struct {
	schemas  map[string]*connectors.Schema // by the bytes of the schema block
	inferred map[string]*connectors.Schema // by table, column names and types
	interned map[string]string
	// lastSchema was decoded from the bytes lastRaw: a stream of one
	// table's events finds its schema block without scanning it.
	lastRaw    []byte
	lastSchema *connectors.Schema

	sc      scanner
	buf     []byte // unquoting
	key     []byte // cache keys
	dec     decimal
	present []bool
	uflags  []bool
	unames  []string
	cols    []infCol
	names   []byte
}

// NewDecoder returns an empty Decoder.
func NewDecoder() *Decoder { return &Decoder{} }

// Unmarshal decodes one event with a fresh Decoder. To decode a stream,
// use one Decoder, which shares schemas between events.
func Unmarshal(data []byte) (connectors.Event, error) {
	var d Decoder
	return d.Decode(data)
}

// span is where a top-level value lies in the input.
type span struct {
	start, end int
	set        bool
}

// envelope holds the spans of the top-level fields of an event.
type envelope struct {
	op, before, after, source, transaction, tsMs, unchanged, schema, destination, payload span
}

// Decode decodes one event from data, which holds exactly one JSON object
// (surrounding white space aside).
//
// Values take their Go types from the schema block's column types (see
// connectors.Value); without a schema block the column types are inferred
// from the values (see the package documentation). A column listed in
// "unchanged" and absent from an image is connectors.Unchanged there; any
// other column absent from a present image is nil. The event's Position is
// left nil: it is the reader's to set. On error the event is zero, and the
// error is a *DecodeError.
//
// The envelope of Kafka Connect's JSON converter with schemas enabled,
// {"schema":{...},"payload":{...}}, is unwrapped; its schema is ignored.
func (d *Decoder) Decode(data []byte) (connectors.Event, error) {
	var env envelope
	if err := d.scanEnvelope(data, 0, len(data), &env); err != nil {
		return connectors.Event{}, err
	}
	if !env.op.set && env.payload.set && data[env.payload.start] == '{' {
		var inner envelope
		if err := d.scanEnvelope(data, env.payload.start, env.payload.end, &inner); err != nil {
			return connectors.Event{}, setField(err, "payload")
		}
		env = inner
	}
	ev, err := d.decodeEnvelope(data, &env)
	if err != nil {
		return connectors.Event{}, err
	}
	return ev, nil
}

// scanEnvelope finds the top-level fields of the object in data[start:end],
// validating every value.
func (d *Decoder) scanEnvelope(data []byte, start, end int, env *envelope) error {
	s := scanner{data: data[:end], i: start}
	if err := s.expect('{', "'{' starting an event"); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			if s.peek() != '"' {
				return s.unexpected("a string key")
			}
			raw, esc, err := s.scanString()
			if err != nil {
				return err
			}
			name := raw
			if esc {
				d.buf = appendUnquoted(d.buf[:0], raw)
				name = d.buf
			}
			if err := s.expect(':', "':' after a key"); err != nil {
				return err
			}
			var vstart int
			if s.skipWS(); string(name) == "schema" && d.lastRaw != nil && bytes.HasPrefix(s.data[s.i:], d.lastRaw) {
				// The bytes of a schema block validated before: an
				// object ends where its bytes do.
				vstart = s.i
				s.i += len(d.lastRaw)
			} else if vstart, err = s.skipValue(1); err != nil {
				return setField(err, string(name))
			}
			sp := span{start: vstart, end: s.i, set: true}
			switch string(name) {
			case "op":
				env.op = sp
			case "before":
				env.before = sp
			case "after":
				env.after = sp
			case "source":
				env.source = sp
			case "transaction":
				env.transaction = sp
			case "ts_ms":
				env.tsMs = sp
			case "unchanged":
				env.unchanged = sp
			case "schema":
				env.schema = sp
			case "destination":
				env.destination = sp
			case "payload":
				env.payload = sp
			}
			if s.peek() == ',' {
				s.i++
				continue
			}
			if err := s.expect('}', "',' or '}' after a field"); err != nil {
				return setField(err, string(name))
			}
			break
		}
	}
	s.skipWS()
	if s.i != end {
		return s.errorf(s.i, "unexpected data after the event: %s", quoteChar(data[s.i]))
	}
	return nil
}

// setField names the field an error occurred in, unless a deeper level
// already did.
func setField(err error, field string) error {
	if de, ok := err.(*DecodeError); ok && de.Field == "" {
		de.Field = field
	}
	return err
}

func fieldErr(field string, off int, msg string) error {
	return &DecodeError{Field: field, Offset: off, Msg: msg}
}

func (d *Decoder) decodeEnvelope(data []byte, env *envelope) (ev connectors.Event, err error) {
	if !env.op.set {
		return ev, fieldErr("op", 0, "missing: every event has an op")
	}
	s := scanner{data: data, i: env.op.start}
	if s.peek() != '"' {
		return ev, fieldErr("op", s.i, "want a string such as \"c\"")
	}
	raw, esc, _ := s.scanString()
	if len(raw) == 1 && !esc && isOpLetter(raw[0]) {
		ev.Op = connectors.Op(raw[0])
	} else if ev.Op, err = connectors.ParseOp(unquote(raw, esc, &d.buf)); err != nil {
		return ev, fieldErr("op", env.op.start, err.Error())
	}

	if env.source.set {
		if err := d.source(data, env.source.start, &ev.Source); err != nil {
			return ev, setField(err, "source")
		}
	}
	if ev.Op == connectors.OpHeartbeat {
		// No table, no rows: only the source block and the times.
		if isObject(data, env.before) || isObject(data, env.after) {
			return ev, fieldErr("op", env.op.start, "a heartbeat (op h) has no before or after image")
		}
		return ev, d.trailer(data, env, &ev)
	}
	if err := d.unchangedNames(data, env.unchanged); err != nil {
		return ev, setField(err, "unchanged")
	}
	var sch *connectors.Schema
	if env.schema.set && data[env.schema.start] != 'n' {
		if sch, err = d.schema(data, env.schema); err != nil {
			return ev, setField(err, "schema")
		}
	} else {
		table := connectors.TableID{Schema: ev.Source.Schema, Name: ev.Source.Table}
		if strings.IndexByte(table.Schema, '.') >= 0 {
			table = connectors.ParseTableID(table.String()) // as the schema block will read it back
		}
		if sch, err = d.inferSchema(data, env, table); err != nil {
			return ev, err
		}
	}
	ev.Schema = sch
	if err := d.unchangedFlags(sch, env.unchanged.start); err != nil {
		return ev, err
	}
	n := len(sch.Columns)
	hasBefore := isObject(data, env.before)
	hasAfter := isObject(data, env.after)
	var vals []connectors.Value
	if hasBefore || hasAfter {
		vals = make([]connectors.Value, n*(b2i(hasBefore)+b2i(hasAfter)))
	}
	if hasBefore {
		ev.Before = vals[:n:n]
		vals = vals[n:]
		if err := d.image(data, env.before, sch, ev.Before, "before"); err != nil {
			return ev, err
		}
	} else if err := nullOrAbsent(data, env.before, "before"); err != nil {
		return ev, err
	}
	if hasAfter {
		ev.After = vals[:n:n]
		if err := d.image(data, env.after, sch, ev.After, "after"); err != nil {
			return ev, err
		}
	} else if err := nullOrAbsent(data, env.after, "after"); err != nil {
		return ev, err
	}

	return ev, d.trailer(data, env, &ev)
}

// trailer decodes the envelope's transaction, ts_ms and destination.
func (d *Decoder) trailer(data []byte, env *envelope, ev *connectors.Event) (err error) {
	if env.transaction.set {
		if err := d.transaction(data, env.transaction.start, &ev.Tx); err != nil {
			return setField(err, "transaction")
		}
	}
	if env.tsMs.set {
		s := scanner{data: data, i: env.tsMs.start}
		if ev.TsMs, err = d.intField(&s); err != nil {
			return setField(err, "ts_ms")
		}
	}
	if env.destination.set {
		s := scanner{data: data, i: env.destination.start}
		if ev.Destination, err = d.stringField(&s); err != nil {
			return setField(err, "destination")
		}
	}
	return nil
}

func isOpLetter(c byte) bool {
	switch connectors.Op(c) {
	case connectors.OpCreate, connectors.OpUpdate, connectors.OpDelete, connectors.OpRead, connectors.OpTruncate, connectors.OpHeartbeat:
		return true
	}
	return false
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func isObject(data []byte, sp span) bool { return sp.set && data[sp.start] == '{' }

func nullOrAbsent(data []byte, sp span, field string) error {
	if sp.set && data[sp.start] != 'n' {
		return fieldErr(field, sp.start, "want an object or null")
	}
	return nil
}

// stringField reads a string, or null as "".
func (d *Decoder) stringField(s *scanner) (string, error) {
	switch s.peek() {
	case '"':
		raw, esc, err := s.scanString()
		if err != nil {
			return "", err
		}
		return unquote(raw, esc, &d.buf), nil
	case 'n':
		return "", s.literal("null")
	}
	return "", s.errorf(s.i, "want a string")
}

// scan returns the Decoder's scanner, at offset at of data. Scanners that
// go through object live in the Decoder, which is on the heap anyway: on the
// stack they would escape.
func (d *Decoder) scan(data []byte, at int) *scanner {
	d.sc = scanner{data: data, i: at}
	return &d.sc
}

// maxInterned bounds the strings a Decoder interns, and maxInternLen their
// length.
const (
	maxInterned  = 4096
	maxInternLen = 128
)

// internField reads a string, or null as "", as stringField does, sharing
// one copy of each short string between events: the names in the source
// block repeat in every event.
func (d *Decoder) internField(s *scanner) (string, error) {
	if s.peek() != '"' {
		return d.stringField(s)
	}
	raw, esc, err := s.scanString()
	if err != nil {
		return "", err
	}
	if esc || len(raw) > maxInternLen {
		return unquote(raw, esc, &d.buf), nil
	}
	if str, ok := d.interned[string(raw)]; ok {
		return str, nil
	}
	str := unquote(raw, esc, &d.buf)
	if d.interned == nil || len(d.interned) >= maxInterned {
		d.interned = make(map[string]string)
	}
	d.interned[str] = str
	return str, nil
}

// intField reads an integer (also written as a string), or null as 0.
func (d *Decoder) intField(s *scanner) (int64, error) {
	start := s.i
	var text []byte
	switch c := s.peek(); {
	case c == 'n':
		return 0, s.literal("null")
	case c == '"':
		raw, _, err := s.scanString()
		if err != nil {
			return 0, err
		}
		text = raw
	case c == '-' || ('0' <= c && c <= '9'):
		var err error
		if text, err = s.scanNumber(); err != nil {
			return 0, err
		}
	default:
		return 0, s.errorf(s.i, "want an integer")
	}
	i, _, isU, ok := d.intValue(text)
	if !ok || isU {
		return 0, s.errorf(start, "want an integer, have %.40s", text)
	}
	return i, nil
}

// intValue parses an integer given as a JSON number (whole, in any form:
// 42, 4.2e1) or its text, into an int64 or, above math.MaxInt64, a uint64
// (isU).
func (d *Decoder) intValue(text []byte) (i int64, u uint64, isU, ok bool) {
	if i, ok := parseInt(text); ok {
		return i, 0, false, true
	}
	if u, ok := parseUint(text); ok {
		return 0, u, true, true
	}
	sc := scanner{data: text}
	if _, err := sc.scanNumber(); err != nil || sc.i != len(text) {
		return 0, 0, false, false
	}
	if !d.dec.normalize(text) || !d.dec.integral() {
		return 0, 0, false, false
	}
	return d.dec.toInt()
}

func (d *Decoder) source(data []byte, at int, si *connectors.SourceInfo) error {
	s := d.scan(data, at)
	if s.peek() == 'n' {
		return s.literal("null")
	}
	return d.object(s, "", func(name []byte, s *scanner) error {
		var err error
		switch string(name) {
		case "connector":
			si.Connector, err = d.internField(s)
		case "name":
			si.Name, err = d.internField(s)
		case "db":
			si.DB, err = d.internField(s)
		case "schema":
			si.Schema, err = d.internField(s)
		case "table":
			si.Table, err = d.internField(s)
		case "position":
			si.Position, err = d.stringField(s)
		case "txId":
			si.TxID, err = d.intField(s)
		case "ts_ms":
			si.TsMs, err = d.intField(s)
		case "snapshot":
			// A bool here; Debezium writes "true", "last", "false", ...
			switch s.peek() {
			case 't':
				si.Snapshot, err = true, s.literal("true")
			case 'f':
				si.Snapshot, err = false, s.literal("false")
			case 'n':
				si.Snapshot, err = false, s.literal("null")
			default:
				var v string
				v, err = d.stringField(s)
				si.Snapshot = v != "" && v != "false"
			}
		default:
			f := connectors.Field{Name: string(name)}
			f.Value, err = d.infer(s, 2)
			si.Extra = append(si.Extra, f)
		}
		if err != nil {
			return setField(err, "source."+string(name))
		}
		return nil
	})
}

func (d *Decoder) transaction(data []byte, at int, tx *connectors.TxInfo) error {
	s := d.scan(data, at)
	if s.peek() == 'n' {
		return s.literal("null")
	}
	err := d.object(s, "", func(name []byte, s *scanner) error {
		var err error
		switch string(name) {
		case "id":
			if c := s.peek(); c == '-' || ('0' <= c && c <= '9') {
				var text []byte
				text, err = s.scanNumber()
				tx.ID = string(text)
			} else {
				tx.ID, err = d.stringField(s)
			}
		case "total_order":
			tx.TotalOrder, err = d.intField(s)
		default:
			_, err = s.skipValue(2)
		}
		if err != nil {
			return setField(err, "transaction."+string(name))
		}
		return nil
	})
	if tx.ID == "" {
		*tx = connectors.TxInfo{} // no transaction: what the encoder leaves out
	}
	return err
}

// object reads an object at s, calling field for each key with s at its
// value; field must consume the value.
func (d *Decoder) object(s *scanner, what string, field func(name []byte, s *scanner) error) error {
	if s.peek() != '{' {
		return s.unexpected("an object" + what)
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return nil
	}
	var keyBuf []byte
	for {
		if s.peek() != '"' {
			return s.unexpected("a string key")
		}
		raw, esc, err := s.scanString()
		if err != nil {
			return err
		}
		name := raw
		if esc || !utf8.Valid(raw) {
			keyBuf = appendUnquoted(keyBuf[:0], raw)
			name = keyBuf
		}
		if err := s.expect(':', "':' after a key"); err != nil {
			return err
		}
		if err := field(name, s); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.unexpected("',' or '}'")
		}
	}
}

// unchangedNames reads the "unchanged" list into d.unames.
func (d *Decoder) unchangedNames(data []byte, sp span) error {
	d.unames = d.unames[:0]
	if !sp.set {
		return nil
	}
	s := scanner{data: data, i: sp.start}
	if s.peek() == 'n' {
		return s.literal("null")
	}
	if err := s.expect('[', "a list of column names"); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		name, err := d.stringField(&s)
		if err != nil {
			return err
		}
		d.unames = append(d.unames, name)
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.unexpected("',' or ']'")
		}
	}
}

// unchangedFlags marks the columns of sch listed in d.unames.
func (d *Decoder) unchangedFlags(sch *connectors.Schema, at int) error {
	n := len(sch.Columns)
	d.uflags = grow(d.uflags, n)
	for _, name := range d.unames {
		i := sch.Index(name)
		if i < 0 {
			return fieldErr("unchanged", at, "no column "+strconv.Quote(name)+" in the schema of "+sch.Table.String())
		}
		d.uflags[i] = true
	}
	return nil
}

// grow returns b with length n, all false.
func grow(b []bool, n int) []bool {
	if cap(b) < n {
		return make([]bool, n)
	}
	b = b[:n]
	clear(b)
	return b
}

// image decodes the row object at sp into row, by sch's column types.
func (d *Decoder) image(data []byte, sp span, sch *connectors.Schema, row []connectors.Value, which string) error {
	cols := sch.Columns
	d.present = grow(d.present, len(cols))
	s := d.scan(data, sp.start)
	next := 0
	err := d.object(s, "", func(name []byte, s *scanner) error {
		i := -1
		if next < len(cols) && cols[next].Name == string(name) {
			i = next
		} else {
			for j := range cols {
				if cols[j].Name == string(name) {
					i = j
					break
				}
			}
		}
		if i < 0 {
			return fieldErr(which+"."+string(name), s.i, "no such column in the schema of "+sch.Table.String())
		}
		next = i + 1
		v, err := d.value(s, cols[i].Type, cols[i].Elem, 2)
		if err != nil {
			return setField(err, which+"."+cols[i].Name)
		}
		row[i] = v
		d.present[i] = true
		return nil
	})
	if err != nil {
		return setField(err, which)
	}
	for i := range row {
		if !d.present[i] && d.uflags[i] {
			row[i] = connectors.Unchanged
		}
	}
	return nil
}

// value decodes one value of a column of type t (elem for arrays).
func (d *Decoder) value(s *scanner, t, elem connectors.Type, depth int) (connectors.Value, error) {
	c := s.peek()
	if c == 'n' {
		return nil, s.literal("null")
	}
	start := s.i
	switch t {
	case connectors.TypeBool:
		switch c {
		case 't':
			return true, s.literal("true")
		case 'f':
			return false, s.literal("false")
		}
		return nil, s.errorf(start, "want true, false or null for a %s column", t)

	case connectors.TypeInt16, connectors.TypeInt32, connectors.TypeInt64, connectors.TypeUint64:
		text, err := d.numberOrString(s, t)
		if err != nil {
			return nil, err
		}
		i, u, isU, ok := d.intValue(text)
		switch {
		case ok && !isU:
			return i, nil
		case ok && t == connectors.TypeUint64:
			return u, nil
		}
		return nil, s.errorf(start, "want an integer for a %s column, have %.40s", t, text)

	case connectors.TypeFloat32, connectors.TypeFloat64:
		if c == '"' {
			raw, esc, err := s.scanString()
			if err != nil {
				return nil, err
			}
			str := unquote(raw, esc, &d.buf)
			switch str {
			case "NaN":
				return math.NaN(), nil
			case "Infinity":
				return math.Inf(1), nil
			case "-Infinity":
				return math.Inf(-1), nil
			}
			f, err := strconv.ParseFloat(str, 64)
			if err != nil {
				return nil, s.errorf(start, "want a number, \"NaN\", \"Infinity\" or \"-Infinity\" for a %s column", t)
			}
			return f, nil
		}
		text, err := d.numberOrString(s, t)
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(string(text), 64)
		if err != nil {
			return nil, s.errorf(start, "%.40s is out of range for a %s column", text, t)
		}
		return f, nil

	case connectors.TypeDecimal, connectors.TypeString, connectors.TypeUUID, connectors.TypeDate,
		connectors.TypeTime, connectors.TypeTimestamp, connectors.TypeTimestampTZ,
		connectors.TypeInterval, connectors.TypeText:
		switch {
		case c == '"':
			raw, esc, err := s.scanString()
			if err != nil {
				return nil, err
			}
			return unquote(raw, esc, &d.buf), nil
		case c == '-' || ('0' <= c && c <= '9'):
			text, err := s.scanNumber()
			return string(text), err
		case c == 't':
			return "true", s.literal("true")
		case c == 'f':
			return "false", s.literal("false")
		}
		return nil, s.errorf(start, "want a string for a %s column", t)

	case connectors.TypeBytes:
		if c != '"' {
			return nil, s.errorf(start, "want a base64 string for a bytes column")
		}
		raw, esc, err := s.scanString()
		if err != nil {
			return nil, err
		}
		if esc {
			d.buf = appendUnquoted(d.buf[:0], raw)
			raw = d.buf
		}
		b := make([]byte, base64.StdEncoding.DecodedLen(len(raw)))
		n, err := base64.StdEncoding.Decode(b, raw)
		if err != nil {
			return nil, s.errorf(start, "invalid base64: %v", err)
		}
		return b[:n:n], nil

	case connectors.TypeJSON:
		return d.rawJSON(s, depth)

	case connectors.TypeArray:
		if c != '[' {
			return nil, s.errorf(start, "want an array for an array column")
		}
		if depth >= maxDepth {
			return nil, s.errorf(start, "values nested more than %d deep", maxDepth)
		}
		s.i++
		arr := []connectors.Value{}
		if s.peek() == ']' {
			s.i++
			return arr, nil
		}
		for {
			var v connectors.Value
			var err error
			if s.peek() == '[' && elem != connectors.TypeJSON {
				v, err = d.value(s, connectors.TypeArray, elem, depth+1) // a multi-dimensional array
			} else {
				v, err = d.value(s, elem, "", depth+1)
			}
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return arr, nil
			default:
				return nil, s.unexpected("',' or ']'")
			}
		}
	}
	return d.infer(s, depth)
}

// numberOrString returns the text of a number, or of a string holding one.
func (d *Decoder) numberOrString(s *scanner, t connectors.Type) ([]byte, error) {
	switch c := s.peek(); {
	case c == '"':
		raw, _, err := s.scanString()
		return raw, err
	case c == '-' || ('0' <= c && c <= '9'):
		return s.scanNumber()
	}
	return nil, s.errorf(s.i, "want a number for a %s column", t)
}

// rawJSON copies the value at s as a JSON document. Line breaks become
// spaces, as the encoder makes them.
func (d *Decoder) rawJSON(s *scanner, depth int) (connectors.Value, error) {
	start, err := s.skipValue(depth)
	if err != nil {
		return nil, err
	}
	raw := append(connectors.JSON(nil), s.data[start:s.i]...)
	for i, c := range raw {
		if c == '\n' || c == '\r' {
			raw[i] = ' '
		}
	}
	return raw, nil
}

// infer decodes a value of unknown type: null, bool, string, a number as
// int64, uint64, float64 or (when no float64 holds it exactly) its text,
// and objects and arrays as connectors.JSON.
func (d *Decoder) infer(s *scanner, depth int) (connectors.Value, error) {
	switch c := s.peek(); {
	case c == 'n':
		return nil, s.literal("null")
	case c == 't':
		return true, s.literal("true")
	case c == 'f':
		return false, s.literal("false")
	case c == '"':
		raw, esc, err := s.scanString()
		if err != nil {
			return nil, err
		}
		return unquote(raw, esc, &d.buf), nil
	case c == '-' || ('0' <= c && c <= '9'):
		text, err := s.scanNumber()
		if err != nil {
			return nil, err
		}
		ni := classifyNumber(text, &d.dec)
		switch ni.kind {
		case kInt:
			return ni.i, nil
		case kUint:
			return ni.u, nil
		case kFloat:
			return ni.f, nil
		}
		return string(text), nil
	case c == '{' || c == '[':
		return d.rawJSON(s, depth)
	}
	return nil, s.unexpected("a value")
}

// schema decodes the schema block at sp, or returns the schema decoded
// earlier from the same bytes.
func (d *Decoder) schema(data []byte, sp span) (*connectors.Schema, error) {
	raw := data[sp.start:sp.end]
	if d.lastSchema != nil && string(raw) == string(d.lastRaw) {
		return d.lastSchema, nil
	}
	if sch, ok := d.schemas[string(raw)]; ok {
		d.lastRaw, d.lastSchema = append(d.lastRaw[:0], raw...), sch
		return sch, nil
	}
	var (
		table   string
		version int64
		cols    []connectors.Column
		colsAt  = -1
	)
	s := d.scan(data, sp.start)
	err := d.object(s, " (the schema block)", func(name []byte, s *scanner) error {
		var err error
		switch string(name) {
		case "table":
			table, err = d.stringField(s)
		case "version":
			version, err = d.intField(s)
			if err == nil && (version < math.MinInt32 || version > math.MaxInt32) {
				err = s.errorf(s.i, "version %d out of range", version)
			}
		case "columns":
			colsAt = s.i
			cols, err = d.columns(s)
			return err
		default:
			_, err = s.skipValue(2)
		}
		if err != nil {
			return setField(err, "schema."+string(name))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if colsAt < 0 {
		return nil, fieldErr("schema.columns", sp.start, "missing")
	}
	sch, err := connectors.NewSchema(connectors.ParseTableID(table), int(version), cols)
	if err != nil {
		return nil, fieldErr("schema.columns", colsAt, err.Error())
	}
	if d.schemas == nil || len(d.schemas) >= maxCachedSchemas {
		d.schemas = make(map[string]*connectors.Schema)
	}
	d.schemas[string(raw)] = sch
	d.lastRaw, d.lastSchema = append(d.lastRaw[:0], raw...), sch
	return sch, nil
}

func (d *Decoder) columns(s *scanner) ([]connectors.Column, error) {
	if s.peek() == 'n' {
		return nil, s.literal("null")
	}
	if err := s.expect('[', "a list of columns"); err != nil {
		return nil, err
	}
	cols := []connectors.Column{}
	if s.peek() == ']' {
		s.i++
		return cols, nil
	}
	for {
		var c connectors.Column
		field := "schema.columns[" + strconv.Itoa(len(cols)) + "]"
		err := d.object(s, " (a column)", func(name []byte, s *scanner) error {
			var err error
			switch string(name) {
			case "name":
				c.Name, err = d.stringField(s)
			case "type":
				var t string
				t, err = d.stringField(s)
				c.Type = connectors.Type(t)
			case "native":
				c.Native, err = d.stringField(s)
			case "nullable":
				switch s.peek() {
				case 't':
					c.Nullable, err = true, s.literal("true")
				case 'f':
					err = s.literal("false")
				default:
					err = s.errorf(s.i, "want true or false")
				}
			case "key":
				var k int64
				k, err = d.intField(s)
				if err == nil && (k < 0 || k > math.MaxInt32) {
					err = s.errorf(s.i, "key position %d out of range", k)
				}
				c.Key = int(k)
			case "elem":
				var t string
				t, err = d.stringField(s)
				c.Elem = connectors.Type(t)
			default:
				_, err = s.skipValue(3)
			}
			if err != nil {
				return setField(err, field+"."+string(name))
			}
			return nil
		})
		if err != nil {
			return nil, setField(err, field)
		}
		cols = append(cols, c)
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return cols, nil
		default:
			return nil, s.unexpected("',' or ']'")
		}
	}
}

// kind is a set of the kinds of JSON value an inferred column holds.
type kind uint16

const (
	kBool        kind = 1 << iota
	kInt              // a whole number that fits an int64
	kUint             // a whole number above math.MaxInt64 that fits a uint64
	kFloat            // a number a float64 holds exactly
	kInexact          // a number no int64, uint64 or float64 holds exactly
	kString           // a string
	kJSON             // an object or an array
	kIntNotFloat      // a kInt or kUint that a float64 does not hold exactly

	kNumbers = kInt | kUint | kFloat | kInexact | kIntNotFloat
)

// infCol is a column of an inferred schema.
type infCol struct {
	start, end int // the name, in Decoder.names
	kinds      kind
}

// inferSchema builds the schema of an event without a schema block from its
// images: the columns in the order they appear (before's, then after's new
// ones, then unchanged ones), typed by the values they hold, no key,
// version 0.
func (d *Decoder) inferSchema(data []byte, env *envelope, table connectors.TableID) (*connectors.Schema, error) {
	d.cols, d.names = d.cols[:0], d.names[:0]
	colName := func(c infCol) []byte { return d.names[c.start:c.end] }
	for _, img := range []struct {
		sp   span
		name string
	}{{env.before, "before"}, {env.after, "after"}} {
		if !isObject(data, img.sp) {
			if err := nullOrAbsent(data, img.sp, img.name); err != nil {
				return nil, err
			}
			continue
		}
		s := d.scan(data, img.sp.start)
		next := 0
		err := d.object(s, "", func(name []byte, s *scanner) error {
			i := -1
			if next < len(d.cols) && bytes.Equal(colName(d.cols[next]), name) {
				i = next
			} else {
				for j := range d.cols {
					if bytes.Equal(colName(d.cols[j]), name) {
						i = j
						break
					}
				}
			}
			if i < 0 {
				if len(name) == 0 {
					return fieldErr(img.name, s.i, "a column has an empty name")
				}
				i = len(d.cols)
				d.names = append(d.names, name...)
				d.cols = append(d.cols, infCol{start: len(d.names) - len(name), end: len(d.names)})
			}
			next = i + 1
			k, err := d.kindOf(s)
			d.cols[i].kinds |= k
			if err != nil {
				return setField(err, img.name+"."+string(name))
			}
			return nil
		})
		if err != nil {
			return nil, setField(err, img.name)
		}
	}
	for _, u := range d.unames {
		found := false
		for j := range d.cols {
			if string(colName(d.cols[j])) == u {
				found = true
				break
			}
		}
		if !found {
			if u == "" {
				return nil, fieldErr("unchanged", env.unchanged.start, "a column has an empty name")
			}
			d.names = append(d.names, u...)
			d.cols = append(d.cols, infCol{start: len(d.names) - len(u), end: len(d.names)})
		}
	}

	d.key = append(d.key[:0], table.Schema...)
	d.key = append(d.key, 0)
	d.key = append(d.key, table.Name...)
	for _, c := range d.cols {
		d.key = append(d.key, 0)
		d.key = append(d.key, colName(c)...)
		d.key = append(d.key, 0)
		d.key = append(d.key, inferredType(c.kinds)...)
	}
	if sch, ok := d.inferred[string(d.key)]; ok {
		return sch, nil
	}
	cols := make([]connectors.Column, len(d.cols))
	for i, c := range d.cols {
		cols[i] = connectors.Column{Name: string(colName(c)), Type: inferredType(c.kinds), Nullable: true}
	}
	sch, err := connectors.NewSchema(table, 0, cols)
	if err != nil {
		return nil, fieldErr("after", 0, err.Error())
	}
	if d.inferred == nil || len(d.inferred) >= maxCachedSchemas {
		d.inferred = make(map[string]*connectors.Schema)
	}
	d.inferred[string(d.key)] = sch
	return sch, nil
}

// kindOf reads a value and tells its kind (0 for null).
func (d *Decoder) kindOf(s *scanner) (kind, error) {
	switch c := s.peek(); {
	case c == '-' || ('0' <= c && c <= '9'):
		text, err := s.scanNumber()
		if err != nil {
			return 0, err
		}
		ni := classifyNumber(text, &d.dec)
		k := ni.kind
		if (k == kInt || k == kUint) && !ni.floatExact {
			k |= kIntNotFloat
		}
		return k, nil
	case c == 'n':
		return 0, s.literal("null")
	case c == 't' || c == 'f':
		_, err := s.skipValue(2)
		return kBool, err
	case c == '"':
		_, err := s.skipValue(2)
		return kString, err
	default:
		_, err := s.skipValue(2)
		return kJSON, err
	}
}

// inferredType is the column type that holds every kind of value in k
// exactly, decoding each as infer would where it can.
func inferredType(k kind) connectors.Type {
	switch {
	case k == 0, k == kString:
		return connectors.TypeText
	case k == kBool:
		return connectors.TypeBool
	case k == kJSON:
		return connectors.TypeJSON
	case k&^kNumbers != 0:
		return connectors.TypeJSON // mixed kinds: each value as its JSON
	case k&^(kInt|kIntNotFloat) == 0:
		return connectors.TypeInt64
	case k&^(kInt|kUint|kIntNotFloat) == 0:
		return connectors.TypeUint64
	case k&(kInexact|kIntNotFloat) == 0:
		return connectors.TypeFloat64
	}
	return connectors.TypeDecimal
}
