package eventjson

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tapline/tapline/connectors"
)

// Options adjust how events are encoded.
type Options struct {
	// OmitSchema leaves the "schema" block out. The events get smaller, and
	// a decoder infers the column types from the values, which loses some
	// of them (bytes come back as base64 strings, integral floats as
	// integers).
	OmitSchema bool
	// ValidateJSON checks every connectors.JSON value with json.Valid
	// before embedding it. It costs a scan of each document and is meant
	// for tests and debugging; without it, an invalid document makes an
	// invalid line.
	ValidateJSON bool
}

// Encoder encodes events, remembering the encoded schema block and column
// keys of the schemas it has seen (keyed by the *connectors.Schema, which is
// immutable once emitted) so that a stream of events of one table pays for
// them once. The zero Encoder is ready to use. An Encoder is not safe for
// concurrent use.
type Encoder struct {
	// Options apply to every event.
	Options Options

	cache map[*connectors.Schema]*schemaEnc
}

// maxCachedSchemas bounds the schemas an Encoder or Decoder remembers; when
// the cache is full it is emptied and refilled.
const maxCachedSchemas = 1024

// schemaEnc is what an Encoder remembers of a schema.
type schemaEnc struct {
	block []byte   // the encoded "schema" value
	keys  [][]byte // per column, `"name":`
}

// NewEncoder returns an Encoder with the given options.
func NewEncoder(opt Options) *Encoder { return &Encoder{Options: opt} }

// AppendEvent appends the JSON envelope of ev to dst (see the package
// documentation for its shape). It does not allocate beyond growing dst,
// apart from the first event of each schema. On error (a value of a type
// event JSON does not know, a row of the wrong length) dst comes back with
// nothing appended.
func (e *Encoder) AppendEvent(dst []byte, ev *connectors.Event) ([]byte, error) {
	var se *schemaEnc
	if ev.Schema != nil {
		se = e.cache[ev.Schema]
		if se == nil {
			se = newSchemaEnc(ev.Schema)
			if e.cache == nil || len(e.cache) >= maxCachedSchemas {
				e.cache = make(map[*connectors.Schema]*schemaEnc)
			}
			e.cache[ev.Schema] = se
		}
	}
	return keepOnError(dst)(appendEvent(dst, ev, se, e.Options))
}

// keepOnError returns a function giving back dst as it was when an append
// to it failed, so that a failed append leaves no partial JSON behind.
func keepOnError(dst []byte) func([]byte, error) ([]byte, error) {
	n := len(dst)
	return func(out []byte, err error) ([]byte, error) {
		if err != nil {
			return out[:n], err
		}
		return out, nil
	}
}

// AppendEvent appends the JSON envelope of ev to dst, or nothing on error.
// It encodes the schema block afresh for every event; an Encoder remembers
// it.
func AppendEvent(dst []byte, ev *connectors.Event, opt Options) ([]byte, error) {
	return keepOnError(dst)(appendEvent(dst, ev, nil, opt))
}

// Marshal returns the JSON envelope of ev, with the schema block.
func Marshal(ev *connectors.Event) ([]byte, error) {
	return AppendEvent(make([]byte, 0, 512), ev, Options{})
}

func newSchemaEnc(s *connectors.Schema) *schemaEnc {
	se := &schemaEnc{block: appendSchema(nil, s), keys: make([][]byte, len(s.Columns))}
	for i, c := range s.Columns {
		se.keys[i] = append(appendString(nil, c.Name), ':')
	}
	return se
}

func appendEvent(dst []byte, ev *connectors.Event, se *schemaEnc, opt Options) ([]byte, error) {
	s := ev.Schema
	if s == nil && (ev.Before != nil || ev.After != nil) {
		return dst, fmt.Errorf("eventjson: %s event of %s has rows but no schema", ev.Op, ev.Table())
	}
	switch ev.Op {
	case connectors.OpCreate, connectors.OpUpdate, connectors.OpDelete, connectors.OpRead, connectors.OpTruncate, connectors.OpHeartbeat:
	default:
		return dst, fmt.Errorf("eventjson: event of %s has an invalid op %v", ev.Table(), ev.Op)
	}
	dst = append(dst, `{"op":"`...)
	dst = append(dst, byte(ev.Op), '"')

	var err error
	unchanged := false
	dst = append(dst, `,"before":`...)
	if dst, unchanged, err = appendImage(dst, s, se, ev.Before, "before", opt); err != nil {
		return dst, err
	}
	dst = append(dst, `,"after":`...)
	u2 := false
	if dst, u2, err = appendImage(dst, s, se, ev.After, "after", opt); err != nil {
		return dst, err
	}
	unchanged = unchanged || u2

	if dst, err = appendSource(dst, &ev.Source, opt); err != nil {
		return dst, err
	}
	if ev.Tx.ID != "" {
		dst = append(dst, `,"transaction":{"id":`...)
		dst = appendString(dst, ev.Tx.ID)
		dst = append(dst, `,"total_order":`...)
		dst = strconv.AppendInt(dst, ev.Tx.TotalOrder, 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, ev.TsMs, 10)
	if unchanged {
		dst = append(dst, `,"unchanged":[`...)
		first := true
		for i := range s.Columns {
			if (i < len(ev.Before) && connectors.IsUnchanged(ev.Before[i])) ||
				(i < len(ev.After) && connectors.IsUnchanged(ev.After[i])) {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				dst = appendString(dst, s.Columns[i].Name)
			}
		}
		dst = append(dst, ']')
	}
	if !opt.OmitSchema && s != nil {
		dst = append(dst, `,"schema":`...)
		if se != nil {
			dst = append(dst, se.block...)
		} else {
			dst = appendSchema(dst, s)
		}
	}
	if ev.Destination != "" {
		dst = append(dst, `,"destination":`...)
		dst = appendString(dst, ev.Destination)
	}
	return append(dst, '}'), nil
}

// appendImage appends a row as an object, or null for a nil row, and
// reports whether it left out Unchanged columns.
func appendImage(dst []byte, s *connectors.Schema, se *schemaEnc, row []connectors.Value, which string, opt Options) ([]byte, bool, error) {
	if row == nil {
		return append(dst, "null"...), false, nil
	}
	if len(row) != len(s.Columns) {
		return dst, false, fmt.Errorf("eventjson: %s of %s has %d values for %d columns", which, s.Table, len(row), len(s.Columns))
	}
	unchanged := false
	dst = append(dst, '{')
	first := true
	for i, v := range row {
		if _, ok := v.(connectors.UnchangedValue); ok {
			unchanged = true
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		if se != nil {
			dst = append(dst, se.keys[i]...)
		} else {
			dst = appendString(dst, s.Columns[i].Name)
			dst = append(dst, ':')
		}
		var err error
		if dst, err = appendValue(dst, v, opt); err != nil {
			return dst, false, fmt.Errorf("eventjson: %s.%s of %s: %w", which, s.Columns[i].Name, s.Table, err)
		}
	}
	return append(dst, '}'), unchanged, nil
}

// standardSource are the keys of the source block that Extra fields may not
// use.
var standardSource = map[string]bool{
	"connector": true, "name": true, "db": true, "schema": true, "table": true,
	"position": true, "txId": true, "ts_ms": true, "snapshot": true,
}

func appendSource(dst []byte, si *connectors.SourceInfo, opt Options) ([]byte, error) {
	dst = append(dst, `,"source":{"connector":`...)
	dst = appendString(dst, si.Connector)
	if si.Name != "" {
		dst = append(dst, `,"name":`...)
		dst = appendString(dst, si.Name)
	}
	dst = append(dst, `,"db":`...)
	dst = appendString(dst, si.DB)
	dst = append(dst, `,"schema":`...)
	dst = appendString(dst, si.Schema)
	dst = append(dst, `,"table":`...)
	dst = appendString(dst, si.Table)
	dst = append(dst, `,"position":`...)
	dst = appendString(dst, si.Position)
	dst = append(dst, `,"txId":`...)
	dst = strconv.AppendInt(dst, si.TxID, 10)
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, si.TsMs, 10)
	dst = append(dst, `,"snapshot":`...)
	dst = strconv.AppendBool(dst, si.Snapshot)
	for _, f := range si.Extra {
		if standardSource[f.Name] {
			return dst, fmt.Errorf("eventjson: source field %q of connector %q clashes with a standard field", f.Name, si.Connector)
		}
		dst = append(dst, ',')
		dst = appendString(dst, f.Name)
		dst = append(dst, ':')
		var err error
		if dst, err = appendValue(dst, f.Value, opt); err != nil {
			return dst, fmt.Errorf("eventjson: source.%s: %w", f.Name, err)
		}
	}
	return append(dst, '}'), nil
}

// appendSchema appends the "schema" block of s.
func appendSchema(dst []byte, s *connectors.Schema) []byte {
	dst = append(dst, `{"table":"`...)
	if t := s.Table; t.Schema != "" || strings.IndexByte(t.Name, '.') >= 0 {
		dst = appendStringContent(dst, t.Schema)
		dst = append(dst, '.')
	}
	dst = appendStringContent(dst, s.Table.Name)
	dst = append(dst, '"')
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, int64(s.Version), 10)
	dst = append(dst, `,"columns":[`...)
	for i, c := range s.Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendString(dst, c.Name)
		dst = append(dst, `,"type":`...)
		dst = appendString(dst, string(c.Type))
		if c.Native != "" {
			dst = append(dst, `,"native":`...)
			dst = appendString(dst, c.Native)
		}
		if c.Nullable {
			dst = append(dst, `,"nullable":true`...)
		}
		if c.Key != 0 {
			dst = append(dst, `,"key":`...)
			dst = strconv.AppendInt(dst, int64(c.Key), 10)
		}
		if c.Elem != "" {
			dst = append(dst, `,"elem":`...)
			dst = appendString(dst, string(c.Elem))
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// AppendKey appends the message key of ev, the primary key as an object of
// key columns in key order ({"id":42}), and reports whether there is one:
// with no schema, no primary key or no row, it returns dst unchanged and
// false. An Unchanged key value in After is taken from Before, as
// connectors.Event.Key does. On error dst comes back with nothing appended.
func AppendKey(dst []byte, ev *connectors.Event) ([]byte, bool, error) {
	if ev.Schema == nil {
		return dst, false, nil
	}
	row := ev.Row()
	keys := ev.Schema.KeyColumns()
	if row == nil || len(keys) == 0 {
		return dst, false, nil
	}
	start := len(dst)
	dst = append(dst, '{')
	for i, ci := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		col := ev.Schema.Columns[ci].Name
		dst = appendString(dst, col)
		dst = append(dst, ':')
		var v connectors.Value
		if ci < len(row) {
			v = row[ci]
			if connectors.IsUnchanged(v) && ev.Before != nil && ci < len(ev.Before) {
				v = ev.Before[ci]
			}
		}
		if connectors.IsUnchanged(v) {
			return dst[:start], false, fmt.Errorf("eventjson: key column %s of %s is unchanged and not in before", col, ev.Table())
		}
		var err error
		if dst, err = appendValue(dst, v, Options{}); err != nil {
			return dst[:start], false, fmt.Errorf("eventjson: key column %s of %s: %w", col, ev.Table(), err)
		}
	}
	return append(dst, '}'), true, nil
}

// MarshalKey returns the message key of ev (see AppendKey), or nil when the
// event has none.
func MarshalKey(ev *connectors.Event) ([]byte, error) {
	b, ok, err := AppendKey(nil, ev)
	if err != nil || !ok {
		return nil, err
	}
	return b, nil
}

// AppendRow appends row, one value per column of s, as a JSON object in
// column order, leaving out Unchanged columns; a nil row is null. Sinks
// that store rows as JSON documents use it.
func AppendRow(dst []byte, s *connectors.Schema, row []connectors.Value) ([]byte, error) {
	out, _, err := appendImage(dst, s, nil, row, "row", Options{})
	return keepOnError(dst)(out, err)
}

// AppendValue appends the JSON form of one column value (see
// connectors.Value): nil as null, numbers exactly, NaN and ±Inf as the
// strings "NaN", "Infinity" and "-Infinity", bytes in standard base64,
// connectors.JSON as is and arrays element by element. Other types are an
// error, and so is Unchanged, which is not a value.
func AppendValue(dst []byte, v connectors.Value) ([]byte, error) {
	return keepOnError(dst)(appendValue(dst, v, Options{}))
}

func appendValue(dst []byte, v connectors.Value, opt Options) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, x), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case float64:
		return appendFloat(dst, x), nil
	case connectors.JSON:
		return appendJSON(dst, x, opt)
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case []byte:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x)
		return append(dst, '"'), nil
	case []connectors.Value:
		if x == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, e, opt); err != nil {
				return dst, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return append(dst, ']'), nil
	case connectors.UnchangedValue:
		return dst, fmt.Errorf("the Unchanged marker is not a value here")
	}
	return dst, fmt.Errorf("unsupported value type %T (see connectors.Value)", v)
}

// appendJSON embeds a JSON document. Line breaks, which valid JSON can hold
// only as white space between tokens, become spaces so that an event stays
// on one line.
func appendJSON(dst []byte, x connectors.JSON, opt Options) ([]byte, error) {
	if len(x) == 0 {
		return dst, fmt.Errorf("empty JSON document")
	}
	if opt.ValidateJSON && !json.Valid(x) {
		return dst, fmt.Errorf("invalid JSON document %.40q", x)
	}
	start := len(dst)
	dst = append(dst, x...)
	for i := start; i < len(dst); i++ {
		if c := dst[i]; c == '\n' || c == '\r' {
			dst[i] = ' '
		}
	}
	return dst, nil
}

// appendFloat appends f in the shortest form that parses back to f; NaN and
// the infinities, which JSON has no numbers for, as strings.
func appendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	// 'g' with the shortest precision always makes a valid JSON number for
	// finite values ("1e+21", "1.5e-07", "-0").
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

// safe marks the ASCII bytes a JSON string holds as they are.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and everything else
// (including <, > and &) as is.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendStringContent(dst, s)
	return append(dst, '"')
}

// appendStringContent appends s escaped, without the quotes.
func appendStringContent(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}
