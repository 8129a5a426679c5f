package pgconv

import (
	"github.com/tapline/tapline/connectors"
)

// maxDims is the most dimensions a Postgres array has (MAXDIM).
const maxDims = 6

// parseArray parses an array literal as array_out prints it: "{1,2,NULL}",
// quoted elements with backslash escapes ({"a,b","c\"d"}), nested braces for
// more dimensions ({{1,2},{3,4}} → [[1,2],[3,4]]) and an optional
// dimension decoration ("[0:1]={1,2}"), which is dropped: tapline arrays
// start at index 1 (see the README). Each element is decoded as kind k;
// delim separates elements (0 means ',').
func parseArray(b []byte, k kind, delim byte) (connectors.Value, error) {
	if delim == 0 {
		delim = ','
	}
	if len(b) > 0 && b[0] == '[' {
		i := 0
		for i < len(b) && b[i] == '[' {
			j := i + 1
			for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '-' || b[j] == ':' || b[j] == '+') {
				j++
			}
			if j >= len(b) || b[j] != ']' {
				return nil, syntaxError("array")
			}
			i = j + 1
		}
		if i >= len(b) || b[i] != '=' {
			return nil, syntaxError("array")
		}
		b = b[i+1:]
	}
	p := arrayParser{b: b, k: k, delim: delim}
	p.skipSpace()
	v, err := p.level(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.i != len(p.b) {
		return nil, syntaxError("array")
	}
	return v, nil
}

type arrayParser struct {
	b       []byte
	i       int
	k       kind
	delim   byte
	scratch []byte // unescaped element text
}

func (p *arrayParser) skipSpace() {
	for p.i < len(p.b) && isSpace(p.b[p.i]) {
		p.i++
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// count returns the number of elements of the level that starts at p.i
// (which is '{'), so that its slice is allocated once.
func (p *arrayParser) count() int {
	n, depth, quoted, empty := 1, 0, false, true
	for i := p.i; i < len(p.b); i++ {
		c := p.b[i]
		switch {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case c == '\\':
			i++
			empty = false
		case c == '"':
			quoted, empty = true, false
		case c == '{':
			depth++
			if depth > 1 {
				empty = false
			}
		case c == '}':
			depth--
			if depth == 0 {
				if empty {
					return 0
				}
				return n
			}
		case c == p.delim && depth == 1:
			n++
		case depth == 1 && !isSpace(c):
			empty = false
		}
	}
	return n
}

// level parses one brace-delimited level at p.i.
func (p *arrayParser) level(depth int) ([]connectors.Value, error) {
	if depth >= maxDims || p.i >= len(p.b) || p.b[p.i] != '{' {
		return nil, syntaxError("array")
	}
	out := make([]connectors.Value, 0, p.count())
	p.i++
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return out, nil
	}
	for {
		p.skipSpace()
		if p.i >= len(p.b) {
			return nil, syntaxError("array")
		}
		var v connectors.Value
		var err error
		switch p.b[p.i] {
		case '{':
			var sub []connectors.Value
			sub, err = p.level(depth + 1)
			v = sub
		case '"':
			v, err = p.quoted()
		default:
			v, err = p.unquoted()
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		p.skipSpace()
		if p.i >= len(p.b) {
			return nil, syntaxError("array")
		}
		switch p.b[p.i] {
		case p.delim:
			p.i++
		case '}':
			p.i++
			return out, nil
		default:
			return nil, syntaxError("array")
		}
	}
}

// quoted parses a double-quoted element at p.i. A quoted NULL is the
// string "NULL", not a null.
func (p *arrayParser) quoted() (connectors.Value, error) {
	p.i++
	start := p.i
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '"':
			v, err := decodeScalar(p.k, p.b[start:p.i])
			p.i++
			return v, err
		case '\\':
			return p.escaped(start, '"')
		}
		p.i++
	}
	return nil, syntaxError("array")
}

// escaped finishes an element from start that has backslash escapes,
// unescaping it into the scratch buffer. end is '"' for a quoted element,
// 0 for an unquoted one.
func (p *arrayParser) escaped(start int, end byte) (connectors.Value, error) {
	s := append(p.scratch[:0], p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return nil, syntaxError("array")
			}
			s = append(s, p.b[p.i])
			p.i++
			continue
		case end == '"' && c == '"':
			p.i++
			p.scratch = s
			return decodeScalar(p.k, s)
		case end == 0 && (c == p.delim || c == '}'):
			for len(s) > 0 && isSpace(s[len(s)-1]) {
				s = s[:len(s)-1]
			}
			p.scratch = s
			return decodeScalar(p.k, s)
		case end == 0 && (c == '{' || c == '"'):
			return nil, syntaxError("array")
		}
		s = append(s, c)
		p.i++
	}
	return nil, syntaxError("array")
}

// unquoted parses an unquoted element at p.i: NULL (in any case) is a null.
func (p *arrayParser) unquoted() (connectors.Value, error) {
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == p.delim || c == '}':
			e := p.b[start:p.i]
			for len(e) > 0 && isSpace(e[len(e)-1]) {
				e = e[:len(e)-1]
			}
			if len(e) == 0 {
				return nil, syntaxError("array")
			}
			if len(e) == 4 && (e[0]|0x20) == 'n' && (e[1]|0x20) == 'u' && (e[2]|0x20) == 'l' && (e[3]|0x20) == 'l' {
				return nil, nil
			}
			return decodeScalar(p.k, e)
		case c == '\\':
			return p.escaped(start, 0)
		case c == '{' || c == '"':
			return nil, syntaxError("array")
		}
		p.i++
	}
	return nil, syntaxError("array")
}
