package viewsql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
)

// JSONText returns the JSON form of v (see eventjson.AppendValue): stores
// without arrays keep arrays as JSON text.
func JSONText(v connectors.Value) (string, error) {
	b, err := eventjson.AppendValue(nil, v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// Decimal is a decimal number parsed from its text form.
type Decimal struct {
	Neg      bool
	Int      string // integer digits without leading zeros ("" for 0)
	Frac     string // fraction digits without trailing zeros
	Special  string // "NaN", "Infinity" or "-Infinity"; the rest is empty
	Exponent bool   // the text had an exponent (1.5e3); Int and Frac are empty
}

// ParseDecimal parses the text form of a decimal: an optional sign, digits,
// an optional fraction, and optionally an exponent; or NaN, Infinity,
// -Infinity.
func ParseDecimal(s string) (Decimal, error) {
	switch s {
	case "NaN", "Infinity", "-Infinity", "+Infinity", "inf", "-inf":
		return Decimal{Special: s}, nil
	}
	var d Decimal
	t := s
	if t != "" && (t[0] == '-' || t[0] == '+') {
		d.Neg = t[0] == '-'
		t = t[1:]
	}
	mant, exp, hasExp := strings.Cut(strings.ToLower(t), "e")
	ip, fp, _ := strings.Cut(mant, ".")
	if ip == "" && fp == "" || !digits(ip) || !digits(fp) {
		return Decimal{}, fmt.Errorf("%q is not a decimal number", s)
	}
	if hasExp {
		if _, err := strconv.Atoi(exp); err != nil {
			return Decimal{}, fmt.Errorf("%q is not a decimal number", s)
		}
		d.Exponent = true
		return d, nil
	}
	d.Int = strings.TrimLeft(ip, "0")
	d.Frac = strings.TrimRight(fp, "0")
	return d, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseTypmod returns the numbers in the parentheses of a type name such as
// "numeric(10,2)" or "character varying(40)": (10, 2, true), (40, -1,
// true); ok is false without parentheses.
func ParseTypmod(native string) (a, b int, ok bool) {
	open := strings.IndexByte(native, '(')
	end := strings.IndexByte(native, ')')
	if open < 0 || end < open {
		return 0, 0, false
	}
	x, y, two := strings.Cut(native[open+1:end], ",")
	a, err := strconv.Atoi(strings.TrimSpace(x))
	if err != nil {
		return 0, 0, false
	}
	b = -1
	if two {
		if b, err = strconv.Atoi(strings.TrimSpace(y)); err != nil {
			return 0, 0, false
		}
	}
	return a, b, true
}

// ErrUnsupported is wrapped by converters for a Go value type that
// connectors.Value does not allow, or that does not fit the column's type.
var ErrUnsupported = errors.New("unsupported value")

// Unsupported returns the error for value v in a column of type t.
func Unsupported(v connectors.Value, t connectors.Type) error {
	return fmt.Errorf("%w: a %T for a column of type %s", ErrUnsupported, v, t)
}

// Text returns the text a string-like column stores for v: strings as
// they are, numbers and booleans in their shortest exact form, JSON as its
// text and arrays as JSON text. Bytes are an error: they are not text.
func Text(v connectors.Value) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case connectors.JSON:
		return string(x), nil
	case []connectors.Value:
		return JSONText(x)
	}
	return "", Unsupported(v, connectors.TypeText)
}

// CheckText returns an error if s is not valid UTF-8 or holds a NUL byte,
// which Postgres and MySQL text columns cannot hold.
func CheckText(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return errors.New("the text holds a NUL byte, which the store's text columns cannot hold")
	}
	if !utf8.ValidString(s) {
		return errors.New("the text is not valid UTF-8")
	}
	return nil
}
