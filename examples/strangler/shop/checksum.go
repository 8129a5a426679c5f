package shop

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind says how a column's values are put in canonical form, so that the
// same row read from Postgres, SQLite, MariaDB or Redis (each with its own
// types and text forms) compares equal.
type Kind int

// The column kinds.
const (
	Text    Kind = iota // compared as is
	Int                 // an integer, in decimal
	Decimal             // a decimal with Scale digits after the point
	Time                // an instant, in UTC with microseconds
	JSON                // a JSON document, keys sorted
)

// Column is a compared column.
type Column struct {
	Name  string
	Kind  Kind
	Scale int // for Decimal
}

// Digest is the content of a table in canonical form: the row count and a
// SHA-256 over the rows sorted by their canonical text.
type Digest struct {
	Rows int
	Sum  string
}

// Short is the first 12 hex digits of the sum.
func (d Digest) Short() string {
	if len(d.Sum) < 12 {
		return d.Sum
	}
	return d.Sum[:12]
}

// Canon returns the canonical text of rows (each a slice of values in the
// order of cols) sorted, one line per row; Digest hashes it.
func Canon(rows [][]any, cols []Column) ([]string, error) {
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		if len(r) != len(cols) {
			return nil, fmt.Errorf("row has %d values for %d columns", len(r), len(cols))
		}
		parts := make([]string, len(r))
		for i, v := range r {
			s, err := canonValue(v, cols[i])
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", cols[i].Name, err)
			}
			parts[i] = s
		}
		lines = append(lines, strings.Join(parts, "\x1f"))
	}
	sort.Strings(lines)
	return lines, nil
}

// Sum digests canonical lines.
func Sum(lines []string) Digest {
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return Digest{Rows: len(lines), Sum: hex.EncodeToString(h.Sum(nil))}
}

const null = "\x00NULL"

func canonValue(v any, c Column) (string, error) {
	if v == nil {
		return null, nil
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case []byte:
		s = string(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case int32:
		s = strconv.FormatInt(int64(x), 10)
	case int:
		s = strconv.Itoa(x)
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(x)
	case time.Time:
		if c.Kind == Time {
			return x.UTC().Format("2006-01-02T15:04:05.000000Z"), nil
		}
		s = x.String()
	case map[string]any, []any:
		b, err := json.Marshal(x) // maps marshal with sorted keys
		if err != nil {
			return "", err
		}
		s = string(b)
	case fmt.Stringer:
		s = x.String()
	default:
		s = fmt.Sprint(x)
	}
	switch c.Kind {
	case Int:
		n, ok := new(big.Int).SetString(strings.TrimSpace(s), 10)
		if !ok {
			return "", fmt.Errorf("%q is not an integer", s)
		}
		return n.String(), nil
	case Decimal:
		r, ok := new(big.Rat).SetString(strings.TrimSpace(s))
		if !ok {
			return "", fmt.Errorf("%q is not a decimal", s)
		}
		return r.FloatString(c.Scale), nil
	case Time:
		t, err := parseTime(s)
		if err != nil {
			return "", err
		}
		return t.UTC().Format("2006-01-02T15:04:05.000000Z"), nil
	case JSON:
		var doc any
		if err := json.Unmarshal([]byte(s), &doc); err != nil {
			return "", fmt.Errorf("%q is not JSON: %w", s, err)
		}
		b, err := json.Marshal(doc)
		return string(b), err
	}
	return s, nil
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05.999999999 -0700 MST",
}

func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time", s)
}
