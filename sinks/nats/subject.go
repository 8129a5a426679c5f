package nats

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
)

// Subjects are built from names (databases, schemas, tables, key values)
// that may hold characters a NATS subject token cannot: the separator ".",
// the wildcards "*" and ">", white space. Token escapes them so that every
// name maps to exactly one token and different names to different tokens:
//
//   - ".", "*", ">", "%", bytes below 0x21, DEL and bytes of invalid UTF-8
//     become %XX (upper-case hex of the byte), as in URLs;
//   - every other character, including non-ASCII letters, stays;
//   - the empty string becomes "%".
//
// "public.orders" becomes "public%2Eorders", "my table" "my%20table",
// "50%" "50%25". Names of ordinary identifiers come out unchanged.

// maxKeyToken is the longest escaped key value kept as it is; longer ones
// are replaced by a hash (see keyTokens).
const maxKeyToken = 128

// Token escapes s into one subject token (see the rules above).
func Token(s string) string {
	if s == "" {
		return "%"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '.' || c == '*' || c == '>' || c == '%' || c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return string(appendToken(make([]byte, 0, len(s)+8), s))
}

const hexDigits = "0123456789ABCDEF"

func appendToken(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, '%')
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || n > 1 {
				dst = append(dst, s[i:i+n]...)
				i += n
				continue
			}
		}
		if c <= ' ' || c == '.' || c == '*' || c == '>' || c == '%' || c >= 0x7f {
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
		} else {
			dst = append(dst, c)
		}
		i++
	}
	return dst
}

// keyTokens appends the subject tokens of an event's primary key, one per
// key column in key order, separated by dots: integers in decimal, strings
// escaped by Token, booleans as true/false, bytes as "%b" and unpadded
// base64url, NULL as "%N", other values (floats, JSON, arrays) as their
// event JSON text escaped by Token. A token longer than 128 bytes becomes
// "%h" and the hex SHA-256 of its text, so that subjects stay short; the
// message's tapline-key header keeps the key itself. None of these forms
// can be produced by escaping a string, so tokens of different values
// differ. ok is false when the event has no key.
func keyTokens(dst []byte, ev *connectors.Event) (_ []byte, ok bool, err error) {
	key := ev.Key()
	if len(key) == 0 {
		return dst, false, nil
	}
	for i, f := range key {
		if i > 0 {
			dst = append(dst, '.')
		}
		start := len(dst)
		switch v := f.Value.(type) {
		case nil:
			dst = append(dst, "%N"...)
		case int64:
			dst = strconv.AppendInt(dst, v, 10)
		case uint64:
			dst = strconv.AppendUint(dst, v, 10)
		case bool:
			dst = strconv.AppendBool(dst, v)
		case string:
			dst = appendToken(dst, v)
		case []byte:
			dst = append(dst, "%b"...)
			dst = base64.RawURLEncoding.AppendEncode(dst, v)
		default:
			text, err := eventjson.AppendValue(nil, v)
			if err != nil {
				return dst, false, fmt.Errorf("key column %s: %w", f.Name, err)
			}
			dst = appendToken(dst, string(text))
		}
		if len(dst)-start > maxKeyToken {
			sum := sha256.Sum256(dst[start:])
			dst = append(dst[:start], "%h"...)
			dst = hex.AppendEncode(dst, sum[:])
		}
	}
	return dst, true, nil
}

// template is a parsed subject template: dot-separated tokens, each a mix
// of literal text and placeholders.
type template struct {
	tokens [][]part
}

// part is literal text, or a placeholder when field is set.
type part struct {
	text  string
	field string // "prefix", "db", "schema" or "table"
}

var placeholders = []string{"prefix", "db", "schema", "table"}

// parseTemplate parses a subject template such as
// "{prefix}.{schema}.{table}". Literal text must be valid in a subject
// token (no white space or wildcards).
func parseTemplate(s string) (*template, error) {
	if s == "" {
		return nil, errors.New("empty template")
	}
	t := &template{}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return nil, fmt.Errorf("%q has an empty token (two dots, or a dot at an end)", s)
		}
		var parts []part
		for tok != "" {
			open := strings.IndexByte(tok, '{')
			if open < 0 {
				parts = append(parts, part{text: tok})
				break
			}
			if open > 0 {
				parts = append(parts, part{text: tok[:open]})
			}
			end := strings.IndexByte(tok[open:], '}')
			if end < 0 {
				return nil, fmt.Errorf("%q: unclosed {", s)
			}
			name := tok[open+1 : open+end]
			known := false
			for _, p := range placeholders {
				known = known || p == name
			}
			if !known {
				hint := ""
				if sug := connectors.Suggest(name, placeholders); sug != "" {
					hint = fmt.Sprintf(" (did you mean {%s}?)", sug)
				}
				return nil, fmt.Errorf("%q: unknown placeholder {%s}%s; known: {prefix} {db} {schema} {table}", s, name, hint)
			}
			parts = append(parts, part{field: name})
			tok = tok[open+end+1:]
		}
		for _, p := range parts {
			if p.field == "" && strings.ContainsAny(p.text, " \t\r\n*>{}") {
				return nil, fmt.Errorf("%q: %q cannot be part of a subject (no spaces, wildcards or braces)", s, p.text)
			}
		}
		t.tokens = append(t.tokens, parts)
	}
	return t, nil
}

// values are what a template's placeholders stand for. prefix is used as
// it is (it may hold several tokens); the others are escaped by Token.
type values struct {
	prefix, db, schema, table string
}

func (v *values) get(field string) string {
	switch field {
	case "prefix":
		return v.prefix
	case "db":
		return v.db
	case "schema":
		return v.schema
	}
	return v.table
}

// appendSubject appends the subject for v. A token made only of
// placeholders whose values are empty is left out with its dot, so that
// "{prefix}.{schema}.{table}" gives "tapline.orders" for a table with no
// schema.
func (t *template) appendSubject(dst []byte, v *values) []byte {
	start := len(dst)
	for _, tok := range t.tokens {
		mark := len(dst)
		if mark > start {
			dst = append(dst, '.')
		}
		wrote := false
		for _, p := range tok {
			switch {
			case p.field == "":
				dst = append(dst, p.text...)
				wrote = true
			case p.field == "prefix":
				dst = append(dst, v.prefix...)
				wrote = wrote || v.prefix != ""
			default:
				if s := v.get(p.field); s != "" {
					dst = appendToken(dst, s)
					wrote = true
				}
			}
		}
		if !wrote {
			dst = dst[:mark]
		}
	}
	return dst
}

// coverage returns the subject pattern that every subject of the template
// falls under: its leading literal tokens (with the prefix substituted)
// followed by ">". The default template gives "<prefix>.>".
func (t *template) coverage(prefix string) string {
	var toks []string
	for _, tok := range t.tokens {
		lit := true
		var b strings.Builder
		for _, p := range tok {
			switch p.field {
			case "":
				b.WriteString(p.text)
			case "prefix":
				b.WriteString(prefix)
			default:
				lit = false
			}
		}
		if !lit || b.Len() == 0 {
			break
		}
		toks = append(toks, b.String())
	}
	return strings.Join(append(toks, ">"), ".")
}

// validSubject reports whether s is a subject one can publish to: non-empty
// tokens, no wildcards, no white space.
func validSubject(s string) bool {
	if s == "" {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return false
		}
	}
	return true
}

// covers reports whether every subject matched by pattern is matched by
// filter (both may hold the wildcards * and >).
func covers(filter, pattern string) bool {
	f := strings.Split(filter, ".")
	p := strings.Split(pattern, ".")
	for i, ft := range f {
		if ft == ">" {
			return i < len(p)
		}
		if i >= len(p) {
			return false
		}
		switch {
		case p[i] == ">":
			return false
		case ft == "*":
		case ft != p[i]:
			return false
		}
	}
	return len(f) == len(p)
}

// coveredBy reports whether one of filters covers pattern.
func coveredBy(filters []string, pattern string) bool {
	for _, f := range filters {
		if covers(f, pattern) {
			return true
		}
	}
	return false
}

// streamName derives a stream name from a subject prefix: upper case, with
// characters a stream name cannot hold (. * > / \ and white space) made
// "_". "tapline" gives "TAPLINE", "legacy.cdc" "LEGACY_CDC".
func streamName(prefix string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' || r <= ' ':
			return '_'
		}
		return r
	}, strings.ToUpper(prefix))
}
