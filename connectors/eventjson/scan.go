package eventjson

import (
	"fmt"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeError reports malformed event JSON: the field it was in (a path
// such as "after.amount" or "schema.columns[2].type", empty for the
// envelope itself) and the byte offset in the input.
type DecodeError struct {
	Field  string
	Offset int
	Msg    string
}

// Error returns `eventjson: field "after.amount" at byte 57: ...`.
func (e *DecodeError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("eventjson: at byte %d: %s", e.Offset, e.Msg)
	}
	return fmt.Sprintf("eventjson: field %q at byte %d: %s", e.Field, e.Offset, e.Msg)
}

// maxDepth bounds the nesting of JSON values, as encoding/json does.
const maxDepth = 10000

// scanner reads JSON tokens from data, validating as it goes. Offsets in
// its errors are into data.
type scanner struct {
	data []byte
	i    int
}

func (s *scanner) errorf(off int, format string, args ...any) *DecodeError {
	return &DecodeError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func (s *scanner) skipWS() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.skipWS()
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *scanner) unexpected(what string) *DecodeError {
	if s.i >= len(s.data) {
		return s.errorf(s.i, "unexpected end of input looking for %s", what)
	}
	return s.errorf(s.i, "invalid character %s looking for %s", quoteChar(s.data[s.i]), what)
}

func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	return strconv.QuoteRune(rune(c))
}

// expect consumes c, after white space.
func (s *scanner) expect(c byte, what string) error {
	if s.peek() != c {
		return s.unexpected(what)
	}
	s.i++
	return nil
}

// strStop marks the bytes that end the fast scan of a string.
var strStop = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// scanString reads a string at s.i (which must be '"') and returns its raw
// contents, and whether they hold escapes.
func (s *scanner) scanString() (raw []byte, escaped bool, err error) {
	start := s.i + 1
	i := start
	for {
		for i < len(s.data) && !strStop[s.data[i]] {
			i++
		}
		if i >= len(s.data) {
			return nil, false, s.errorf(len(s.data), "unexpected end of input in a string")
		}
		switch c := s.data[i]; c {
		case '"':
			s.i = i + 1
			return s.data[start:i], escaped, nil
		case '\\':
			escaped = true
			if i+1 >= len(s.data) {
				return nil, false, s.errorf(len(s.data), "unexpected end of input in a string")
			}
			switch s.data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s.data) {
					return nil, false, s.errorf(len(s.data), "unexpected end of input in a string")
				}
				for _, h := range s.data[i+2 : i+6] {
					if unhex(h) < 0 {
						return nil, false, s.errorf(i, "invalid escape %q in a string", s.data[i:i+6])
					}
				}
				i += 6
			default:
				return nil, false, s.errorf(i, "invalid escape %q in a string", s.data[i:i+2])
			}
		default:
			return nil, false, s.errorf(i, "control character %s in a string", quoteChar(c))
		}
	}
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// appendUnquoted appends the text of a scanned string's raw contents:
// escapes decoded, unpaired surrogates and invalid UTF-8 replaced by
// U+FFFD, as the encoder does.
func appendUnquoted(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			switch raw[i+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(raw[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						if r2 := utf16.DecodeRune(r, hex4(raw[i+2:])); r2 != utf8.RuneError {
							dst = utf8.AppendRune(dst, r2)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, raw[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, "\ufffd"...)
			} else {
				dst = append(dst, raw[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}

func hex4(b []byte) rune {
	return rune(unhex(b[0])<<12 | unhex(b[1])<<8 | unhex(b[2])<<4 | unhex(b[3]))
}

// unquote returns the text of a scanned string, using buf as scratch.
func unquote(raw []byte, escaped bool, buf *[]byte) string {
	if !escaped && utf8.Valid(raw) {
		return string(raw)
	}
	*buf = appendUnquoted((*buf)[:0], raw)
	return string(*buf)
}

// scanNumber reads a number at s.i and returns its text.
func (s *scanner) scanNumber() ([]byte, error) {
	d := s.data
	start, i := s.i, s.i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	default:
		s.i = i
		return nil, s.unexpected("a digit")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			s.i = i
			return nil, s.unexpected("a digit after the decimal point")
		}
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			s.i = i
			return nil, s.unexpected("a digit in the exponent")
		}
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	}
	s.i = i
	return d[start:i], nil
}

// literal consumes the literal word (true, false, null) at s.i.
func (s *scanner) literal(word string) error {
	if len(s.data)-s.i >= len(word) && string(s.data[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return nil
	}
	return s.unexpected("a value")
}

// skipValue reads and validates one value, after white space, and returns
// the offset where it starts.
func (s *scanner) skipValue(depth int) (int, error) {
	c := s.peek()
	start := s.i
	switch {
	case c == '"':
		_, _, err := s.scanString()
		return start, err
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return start, s.errorf(s.i, "values nested more than %d deep", maxDepth)
		}
		s.i++
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		if s.peek() == end {
			s.i++
			return start, nil
		}
		for {
			if c == '{' {
				if s.peek() != '"' {
					return start, s.unexpected("a string key")
				}
				if _, _, err := s.scanString(); err != nil {
					return start, err
				}
				if err := s.expect(':', "':' after a key"); err != nil {
					return start, err
				}
			}
			if _, err := s.skipValue(depth + 1); err != nil {
				return start, err
			}
			switch s.peek() {
			case ',':
				s.i++
			case end:
				s.i++
				return start, nil
			default:
				return start, s.unexpected(fmt.Sprintf("',' or '%c'", end))
			}
		}
	case c == 't':
		return start, s.literal("true")
	case c == 'f':
		return start, s.literal("false")
	case c == 'n':
		return start, s.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		_, err := s.scanNumber()
		return start, err
	}
	return start, s.unexpected("a value")
}

// parseInt parses a plain integer literal (no fraction or exponent).
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	u, ok := parseUint(b)
	if !ok {
		return 0, false
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// parseUint parses a plain unsigned integer literal.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		hi, lo := bits.Mul64(u, 10)
		if hi != 0 {
			return 0, false
		}
		var carry uint64
		u, carry = bits.Add64(lo, uint64(c-'0'), 0)
		if carry != 0 {
			return 0, false
		}
	}
	return u, true
}

// decimal is the normalized form of a JSON number: the value is
// (-1)^neg × 0.digits × 10^exp, digits without leading or trailing zeros
// (empty for zero).
type decimal struct {
	neg    bool
	digits []byte
	exp    int
}

// normalize reads a valid JSON number (or strconv's 'e' form of a float)
// into d, using d.digits' storage.
func (d *decimal) normalize(b []byte) bool {
	d.neg, d.digits, d.exp = false, d.digits[:0], 0
	i := 0
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		d.neg = b[i] == '-'
		i++
	}
	point := -1
	for ; i < len(b); i++ {
		c := b[i]
		if c == '.' {
			point = len(d.digits)
			continue
		}
		if c < '0' || c > '9' {
			break
		}
		d.digits = append(d.digits, c)
	}
	if point < 0 {
		point = len(d.digits)
	}
	exp := 0
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		for ; i < len(b); i++ {
			if exp > 1e8 {
				return false // absurd exponent
			}
			exp = exp*10 + int(b[i]-'0')
		}
		if eneg {
			exp = -exp
		}
	}
	lead := 0
	for lead < len(d.digits) && d.digits[lead] == '0' {
		lead++
	}
	d.digits = d.digits[lead:]
	point -= lead
	for len(d.digits) > 0 && d.digits[len(d.digits)-1] == '0' {
		d.digits = d.digits[:len(d.digits)-1]
	}
	d.exp = point + exp
	if len(d.digits) == 0 {
		d.neg, d.exp = false, 0
	}
	return true
}

func (d *decimal) equal(o *decimal) bool {
	return d.neg == o.neg && d.exp == o.exp && string(d.digits) == string(o.digits)
}

// integral reports whether the value is a whole number.
func (d *decimal) integral() bool { return len(d.digits) <= d.exp || len(d.digits) == 0 }

// toInt returns the integer value of an integral decimal if it fits an
// int64 or, when it does not, a uint64.
func (d *decimal) toInt() (i int64, u uint64, isU, ok bool) {
	if len(d.digits) == 0 {
		return 0, 0, false, true
	}
	if d.exp > 20 {
		return 0, 0, false, false
	}
	var buf [21]byte
	n := copy(buf[:], d.digits)
	for ; n < d.exp; n++ {
		buf[n] = '0'
	}
	v, fits := parseUint(buf[:n])
	if !fits {
		return 0, 0, false, false
	}
	switch {
	case d.neg && v <= 1<<63:
		return -int64(v), 0, false, true
	case d.neg:
		return 0, 0, false, false
	case v <= 1<<63-1:
		return int64(v), 0, false, true
	}
	return 0, v, true, true
}

// numberInfo classifies a JSON number for inference.
type numberInfo struct {
	kind       kind  // kInt, kUint, kFloat or kInexact
	floatExact bool  // float64 holds the value exactly
	i          int64 // for kInt
	u          uint64
	f          float64 // for kFloat
}

// classifyNumber tells how to hold a number without loss: an int64 or
// uint64 when it is whole and fits, else a float64 when the float's
// shortest form has the same value as the text, else (kInexact) its text.
func classifyNumber(b []byte, tmp *decimal) numberInfo {
	if i, ok := parseInt(b); ok {
		return numberInfo{kind: kInt, i: i, floatExact: intFloatExact(i)}
	}
	if len(b) > 0 && b[0] != '-' {
		if u, ok := parseUint(b); ok {
			return numberInfo{kind: kUint, u: u, floatExact: uintFloatExact(u)}
		}
	}
	if !tmp.normalize(b) {
		return numberInfo{kind: kInexact}
	}
	if tmp.integral() {
		if i, u, isU, ok := tmp.toInt(); ok {
			if isU {
				return numberInfo{kind: kUint, u: u, floatExact: uintFloatExact(u)}
			}
			return numberInfo{kind: kInt, i: i, floatExact: intFloatExact(i)}
		}
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return numberInfo{kind: kInexact}
	}
	var buf [32]byte
	var digits [32]byte
	back := decimal{digits: digits[:0]}
	back.normalize(strconv.AppendFloat(buf[:0], f, 'e', -1, 64))
	if !back.equal(tmp) {
		return numberInfo{kind: kInexact}
	}
	return numberInfo{kind: kFloat, f: f, floatExact: true}
}

func intFloatExact(i int64) bool {
	if i < 0 {
		if i == -1<<63 {
			return true
		}
		i = -i
	}
	return uintFloatExact(uint64(i))
}

func uintFloatExact(u uint64) bool {
	return u == 0 || bits.Len64(u)-bits.TrailingZeros64(u) <= 53
}
