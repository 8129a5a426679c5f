package pgconv

import (
	"errors"
	"math"
	"strconv"

	"github.com/tapline/tapline/connectors"
)

// syntaxError says what did not parse; Column.Decode adds which column.
func syntaxError(what string) error {
	return errors.New("invalid " + what + " text")
}

// decodeScalar decodes a value of a scalar kind.
func decodeScalar(k kind, b []byte) (connectors.Value, error) {
	switch k {
	case kindInt:
		n, ok := parseInt(b)
		if !ok {
			return nil, syntaxError("integer")
		}
		return n, nil
	case kindFloat:
		// Parsing the shortest decimal form Postgres prints as a float64
		// keeps the value a float4 column holds (it rounds back to the
		// same float32) and prints as Postgres printed it.
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil && !isRangeErr(err) {
			return nil, syntaxError("float")
		}
		return f, nil
	case kindBool:
		if len(b) == 1 {
			switch b[0] {
			case 't':
				return true, nil
			case 'f':
				return false, nil
			}
		}
		return nil, syntaxError("boolean")
	case kindBytea:
		return decodeBytea(b)
	case kindJSON:
		return connectors.JSON(append([]byte(nil), b...)), nil
	case kindDate:
		return decodeDate(b)
	case kindTimestamp:
		return decodeTimestamp(b)
	case kindTimestampTZ:
		return decodeTimestampTZ(b)
	}
	return string(b), nil
}

func isRangeErr(err error) bool {
	var ne *strconv.NumError
	return errors.As(err, &ne) && ne.Err == strconv.ErrRange
}

// parseInt parses a base-10 int64 with an optional sign, without
// converting b to a string.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := false
	switch b[0] {
	case '-':
		neg = true
		b = b[1:]
	case '+':
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if u > (math.MaxUint64-9)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// decodeBytea decodes bytea's hex format (\x0aff) or its legacy escape
// format (printable bytes as is, \\ for a backslash, \ooo octal).
func decodeBytea(b []byte) (connectors.Value, error) {
	if len(b) >= 2 && b[0] == '\\' && b[1] == 'x' {
		h := b[2:]
		if len(h)%2 != 0 {
			return nil, syntaxError("bytea")
		}
		out := make([]byte, len(h)/2)
		for i := range out {
			hi, ok1 := unhex(h[2*i])
			lo, ok2 := unhex(h[2*i+1])
			if !ok1 || !ok2 {
				return nil, syntaxError("bytea")
			}
			out[i] = hi<<4 | lo
		}
		return out, nil
	}
	n := 0 // the decoded length, counted first so one allocation is enough
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' {
			switch {
			case i+1 < len(b) && b[i+1] == '\\':
				i++
			case i+3 < len(b) && isOctal(b[i+1]) && isOctal(b[i+2]) && isOctal(b[i+3]) && b[i+1] <= '3':
				i += 3
			default:
				return nil, syntaxError("bytea")
			}
		}
		n++
	}
	out := make([]byte, 0, n)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\\' {
			if b[i+1] == '\\' {
				i++
			} else {
				c = (b[i+1]-'0')<<6 | (b[i+2]-'0')<<3 | (b[i+3] - '0')
				i += 3
			}
		}
		out = append(out, c)
	}
	return out, nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
