package redis

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
)

// This file holds the pure part of the sink: key templates, the escaping of
// key parts and the string form of values. It does no I/O.

// The placeholders a key template may use.
var placeholders = []string{"prefix", "db", "schema", "table", "pk"}

// keyTemplate is a parsed key_template: literal text and placeholders, with
// {pk} exactly once.
type keyTemplate struct {
	src       string
	parts     []tmplPart
	hasPrefix bool
}

type tmplPart struct {
	lit string // literal text, when name is empty
	ph  string // the placeholder's name
}

// parseTemplate parses a key template such as "{table}:{pk}".
func parseTemplate(s string) (*keyTemplate, error) {
	t := &keyTemplate{src: s}
	pks := 0
	for rest := s; rest != ""; {
		open := strings.IndexByte(rest, '{')
		if close := strings.IndexByte(rest, '}'); close >= 0 && (open < 0 || close < open) {
			return nil, fmt.Errorf("key_template %q: a } without its {", s)
		}
		if open < 0 {
			t.parts = append(t.parts, tmplPart{lit: rest})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, tmplPart{lit: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("key_template %q: a { without its }", s)
		}
		name := rest[open+1 : open+end]
		known := false
		for _, p := range placeholders {
			known = known || p == name
		}
		if !known {
			msg := fmt.Sprintf("key_template %q: unknown placeholder {%s}", s, name)
			if sug := connectors.Suggest(name, placeholders); sug != "" {
				msg += fmt.Sprintf(" (did you mean {%s}?)", sug)
			}
			return nil, fmt.Errorf("%s; the placeholders are {prefix} {db} {schema} {table} {pk}", msg)
		}
		switch name {
		case "pk":
			pks++
		case "prefix":
			t.hasPrefix = true
		}
		t.parts = append(t.parts, tmplPart{ph: name})
		rest = rest[open+end+1:]
	}
	if pks != 1 {
		return nil, fmt.Errorf("key_template %q: needs {pk} exactly once (it has it %d times), so that every row has its own key", s, pks)
	}
	if err := t.delimited(); err != nil {
		return nil, err
	}
	return t, nil
}

// delimited checks that a ':' separates {pk} from the nearest {db},
// {schema} or {table} on each side. Those placeholders and {pk} never hold
// a ':' of their own (see escape), so then the keys of two tables that do
// not share all their keys never match each other's pattern (see
// tableInfo.pattern): truncate and rebuild find a table's keys by it.
func (t *keyTemplate) delimited() error {
	pk := 0
	for i, p := range t.parts {
		if p.ph == "pk" {
			pk = i
		}
	}
	varies := func(p tmplPart) bool { return p.ph == "db" || p.ph == "schema" || p.ph == "table" }
	check := func(i, step int) error {
		colon := false
		for ; i >= 0 && i < len(t.parts); i += step {
			p := t.parts[i]
			if varies(p) {
				if !colon {
					return fmt.Errorf("key_template %q: put a ':' between {%s} and {pk} (e.g. {table}:{pk}); the sink finds a table's keys by the text around {pk}, which must tell tables apart", t.src, p.ph)
				}
				return nil
			}
			colon = colon || strings.Contains(p.lit, ":")
		}
		return nil
	}
	if err := check(pk-1, -1); err != nil {
		return err
	}
	return check(pk+1, 1)
}

// tableVars are the values of a table's placeholders, escaped.
type tableVars struct {
	prefix string // key_prefix, not escaped: it is the user's own text
	db     string
	schema string
	table  string
}

// split renders the template for one table and returns the text before and
// after {pk}. When the template has no {prefix}, key_prefix goes first.
func (t *keyTemplate) split(v tableVars) (head, tail string) {
	var b strings.Builder
	if !t.hasPrefix {
		b.WriteString(v.prefix)
	}
	for _, p := range t.parts {
		switch p.ph {
		case "":
			b.WriteString(p.lit)
		case "prefix":
			b.WriteString(v.prefix)
		case "db":
			b.WriteString(v.db)
		case "schema":
			b.WriteString(v.schema)
		case "table":
			b.WriteString(v.table)
		case "pk":
			head = b.String()
			b.Reset()
		}
	}
	return head, b.String()
}

// globEscape escapes the characters that are special in a Redis glob
// pattern (SCAN MATCH), so that s matches only itself.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// escape makes a value safe to use as one part of a key: '%' becomes "%25"
// and ':' becomes "%3A", so that the parts of a composite key, joined with
// ':', can be told apart, and different values never make the same key.
// Everything else is kept as it is (Redis keys are binary-safe).
func escape(s string) string {
	if !strings.ContainsAny(s, "%:") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			b.WriteString("%25")
		case ':':
			b.WriteString("%3A")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// text returns the string form of a column value, as stored in hash fields,
// index set names and {pk}: strings as they are; integers in decimal;
// booleans as true and false; floats in the shortest form that parses back
// exactly, NaN and ±Inf as "NaN", "Infinity" and "-Infinity"; bytes in
// standard base64; JSON documents as their text; arrays as JSON arrays
// (event JSON's form). ok is false for NULL. Unchanged and unknown types are
// errors.
func text(v connectors.Value) (s string, ok bool, err error) {
	switch x := v.(type) {
	case nil:
		return "", false, nil
	case string:
		return x, true, nil
	case int64:
		return strconv.FormatInt(x, 10), true, nil
	case uint64:
		return strconv.FormatUint(x, 10), true, nil
	case bool:
		return strconv.FormatBool(x), true, nil
	case float64:
		switch {
		case math.IsNaN(x):
			return "NaN", true, nil
		case math.IsInf(x, 1):
			return "Infinity", true, nil
		case math.IsInf(x, -1):
			return "-Infinity", true, nil
		}
		return strconv.FormatFloat(x, 'g', -1, 64), true, nil
	case []byte:
		return base64.StdEncoding.EncodeToString(x), true, nil
	case connectors.JSON:
		if len(x) == 0 {
			return "", false, fmt.Errorf("empty JSON document")
		}
		return string(x), true, nil
	case []connectors.Value:
		b, err := eventjson.AppendValue(nil, x)
		if err != nil {
			return "", false, err
		}
		return string(b), true, nil
	case connectors.UnchangedValue:
		return "", false, fmt.Errorf("the Unchanged marker is not a value here")
	}
	return "", false, fmt.Errorf("unsupported value type %T (see connectors.Value)", v)
}

// rawText is the string form of a value held as raw JSON in a stored
// document (json format): a JSON string unquoted, null absent, anything
// else its JSON text. It is what index sets use in the json format, for new
// values (encoded first) and stored ones alike.
func rawText(raw string) (string, bool) {
	switch {
	case raw == "" || raw == "null":
		return "", false
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal([]byte(raw), &s); err == nil {
			return s, true
		}
	}
	return raw, true
}

// appendJSONString appends s as a JSON string, as event JSON writes it.
func appendJSONString(dst []byte, s string) []byte {
	out, err := eventjson.AppendValue(dst, s)
	if err != nil { // a string always encodes
		panic(err)
	}
	return out
}
