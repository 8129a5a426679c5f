package mysql

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

// dialect is what MySQL and MariaDB say about types and names.
type dialect struct{}

// The defaults for types whose size the source does not say.
const (
	keyVarchar   = 255 // a string key column: 1020 bytes in utf8mb4, within InnoDB's 3072 per key
	maxPrecision = 65  // DECIMAL's most digits
	maxScale     = 30  // and fraction digits
)

// ColumnType maps portable types to MySQL's: DECIMAL(p,s) with the source's
// precision when its Native type gives one (else DECIMAL(65,30)), DATETIME(6)
// for timestamps (timestamptz in UTC), JSON for json and arrays, LONGTEXT
// and LONGBLOB for strings and bytes, and VARCHAR/VARBINARY for key columns,
// which InnoDB must index.
func (dialect) ColumnType(c connectors.Column, key bool, _ string) string {
	switch c.Type {
	case connectors.TypeBool:
		return "tinyint(1)"
	case connectors.TypeInt16:
		return "smallint"
	case connectors.TypeInt32:
		return "int"
	case connectors.TypeInt64:
		return "bigint"
	case connectors.TypeUint64:
		return "bigint unsigned"
	case connectors.TypeFloat32:
		return "float"
	case connectors.TypeFloat64:
		return "double"
	case connectors.TypeDecimal:
		p, s, ok := viewsql.ParseTypmod(c.Native)
		if ok && s < 0 {
			s = 0
		}
		if !ok || p < 1 || p > maxPrecision || s > maxScale || s > p {
			p, s = maxPrecision, maxScale
		}
		return fmt.Sprintf("decimal(%d,%d)", p, s)
	case connectors.TypeBytes:
		if key {
			return fmt.Sprintf("varbinary(%d)", keyVarchar)
		}
		return "longblob"
	case connectors.TypeJSON, connectors.TypeArray:
		return "json"
	case connectors.TypeUUID:
		return "char(36)"
	case connectors.TypeDate:
		return "date"
	case connectors.TypeTime:
		if strings.Contains(c.Native, "with time zone") {
			return "varchar(40)"
		}
		return "time(6)"
	case connectors.TypeTimestamp, connectors.TypeTimestampTZ:
		return "datetime(6)"
	case connectors.TypeInterval:
		return "varchar(100)"
	}
	if key {
		n := keyVarchar
		if v, _, ok := viewsql.ParseTypmod(c.Native); ok && v > 0 && v <= 768 && strings.Contains(c.Native, "var") {
			n = v
		}
		return fmt.Sprintf("varchar(%d)", n)
	}
	return "longtext"
}

// canonical writes a type as MySQL 8 reports it: without the display
// widths MariaDB and MySQL 5.7 print for integers (bigint(20)).
func canonical(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	for _, it := range []string{"tinyint", "smallint", "mediumint", "int", "bigint"} {
		if strings.HasPrefix(t, it+"(") && !(it == "tinyint" && strings.HasPrefix(t, "tinyint(1)")) {
			if end := strings.IndexByte(t, ')'); end > 0 {
				t = it + t[end+1:]
			}
		}
	}
	return t
}

// CanTake accepts the same type and the changes a column holds without
// loss: a wider integer, double for float, a DECIMAL with at least as many
// integer and fraction digits, LONGTEXT for any string, LONGBLOB for bytes,
// and JSON where MariaDB reports it as LONGTEXT.
func (dialect) CanTake(have, want string) bool {
	have, want = canonical(have), canonical(want)
	if have == want {
		return true
	}
	ints := map[string]int{"tinyint(1)": 1, "smallint": 2, "int": 3, "bigint": 4}
	switch {
	case ints[have] > 0 && ints[want] > 0:
		return ints[have] >= ints[want]
	case have == "double":
		return want == "float"
	case have == "longtext":
		return want == "json" || strings.HasPrefix(want, "varchar") || strings.HasPrefix(want, "char")
	case have == "longblob":
		return strings.HasPrefix(want, "varbinary")
	case strings.HasPrefix(have, "decimal(") && strings.HasPrefix(want, "decimal("):
		hp, hs, ok1 := viewsql.ParseTypmod(have)
		wp, ws, ok2 := viewsql.ParseTypmod(want)
		return ok1 && ok2 && hs >= ws && hp-hs >= wp-ws
	case strings.HasPrefix(have, "varchar(") && strings.HasPrefix(want, "varchar("):
		h, _, ok1 := viewsql.ParseTypmod(have)
		w, _, ok2 := viewsql.ParseTypmod(want)
		return ok1 && ok2 && h >= w
	}
	return false
}

func (dialect) TransactionalDDL() bool { return false }
func (dialect) CaseInsensitive() bool  { return true }

// MaxIdentifier is MySQL's limit on table names.
func (dialect) MaxIdentifier() int { return 64 }

// Converter returns the value the driver writes for each column type.
func (dialect) Converter(def *viewsql.ColumnDef) func(connectors.Value) (any, error) {
	t := def.Source.Type
	switch t {
	case connectors.TypeBool:
		return func(v connectors.Value) (any, error) {
			switch v.(type) {
			case nil, bool:
				return v, nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeInt16, connectors.TypeInt32, connectors.TypeInt64:
		lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
		switch t {
		case connectors.TypeInt16:
			lo, hi = math.MinInt16, math.MaxInt16
		case connectors.TypeInt32:
			lo, hi = math.MinInt32, math.MaxInt32
		}
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case int64:
				if x < lo || x > hi {
					return nil, fmt.Errorf("%d is out of the range of %s", x, def.Type)
				}
				return v, nil
			case uint64:
				if x > uint64(hi) {
					return nil, fmt.Errorf("%d is out of the range of %s", x, def.Type)
				}
				return int64(x), nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeUint64:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil, uint64:
				return v, nil
			case int64:
				if x < 0 {
					return nil, fmt.Errorf("%d is negative; the column is bigint unsigned", x)
				}
				return v, nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeFloat32, connectors.TypeFloat64:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case float64:
				if math.IsNaN(x) || math.IsInf(x, 0) {
					return nil, fmt.Errorf("%v: MySQL has no NaN or infinite floats", x)
				}
				return v, nil
			case int64:
				return float64(x), nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeDecimal:
		p, s, _ := viewsql.ParseTypmod(def.Type)
		return func(v connectors.Value) (any, error) {
			var text string
			switch x := v.(type) {
			case nil:
				return nil, nil
			case string:
				text = x
			case int64:
				text = strconv.FormatInt(x, 10)
			case uint64:
				text = strconv.FormatUint(x, 10)
			default:
				return nil, viewsql.Unsupported(v, t)
			}
			d, err := viewsql.ParseDecimal(text)
			switch {
			case err != nil:
				return nil, err
			case d.Special != "":
				return nil, fmt.Errorf("%s: MySQL's DECIMAL has no NaN or infinity", text)
			case d.Exponent:
				return nil, fmt.Errorf("%s: write decimals without an exponent", text)
			case len(d.Int) > p-s || len(d.Frac) > s:
				return nil, fmt.Errorf("%s does not fit %s without loss", text, def.Type)
			}
			return text, nil
		}
	case connectors.TypeBytes:
		limit := -1
		if n, _, ok := viewsql.ParseTypmod(def.Type); ok {
			limit = n
		}
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case []byte:
				if limit >= 0 && len(x) > limit {
					return nil, fmt.Errorf("%d bytes do not fit %s", len(x), def.Type)
				}
				if x == nil {
					return []byte{}, nil
				}
				return v, nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeJSON:
		return func(v connectors.Value) (any, error) {
			var doc string
			switch x := v.(type) {
			case nil:
				return nil, nil
			case connectors.JSON:
				doc = string(x)
			case string:
				doc = x
			default:
				return nil, viewsql.Unsupported(v, t)
			}
			if !json.Valid([]byte(doc)) {
				return nil, fmt.Errorf("invalid JSON document %.40q", doc)
			}
			return doc, nil
		}
	case connectors.TypeArray:
		return func(v connectors.Value) (any, error) {
			if v == nil {
				return nil, nil
			}
			if _, ok := v.([]connectors.Value); !ok {
				return nil, viewsql.Unsupported(v, t)
			}
			return viewsql.JSONText(v)
		}
	case connectors.TypeDate:
		return stringConv(t, func(s string) (string, error) {
			if err := checkDate(s); err != nil {
				return "", err
			}
			return s, nil
		})
	case connectors.TypeTimestamp, connectors.TypeTimestampTZ:
		return stringConv(t, func(s string) (string, error) { return datetime(s, t == connectors.TypeTimestampTZ) })
	case connectors.TypeTime:
		if !strings.HasPrefix(def.Type, "time") {
			break
		}
		return stringConv(t, checkTime)
	}
	// Strings of every other kind; key columns are VARCHAR(n).
	limit := -1
	if strings.HasPrefix(def.Type, "varchar(") || strings.HasPrefix(def.Type, "char(") {
		limit, _, _ = viewsql.ParseTypmod(def.Type)
	}
	return func(v connectors.Value) (any, error) {
		var s string
		switch x := v.(type) {
		case nil:
			return nil, nil
		case string:
			s = x
		case []byte:
			return nil, viewsql.Unsupported(v, t)
		default:
			var err error
			if s, err = viewsql.Text(v); err != nil {
				return nil, err
			}
			v = s
		}
		if !utf8.ValidString(s) {
			return nil, errors.New("the text is not valid UTF-8")
		}
		if limit >= 0 && utf8.RuneCountInString(s) > limit {
			return nil, fmt.Errorf("%d characters do not fit %s", utf8.RuneCountInString(s), def.Type)
		}
		return v, nil
	}
}

func stringConv(t connectors.Type, f func(string) (string, error)) func(connectors.Value) (any, error) {
	return func(v connectors.Value) (any, error) {
		switch x := v.(type) {
		case nil:
			return nil, nil
		case string:
			return f(x)
		}
		return nil, viewsql.Unsupported(v, t)
	}
}

// checkDate accepts YYYY-MM-DD with a year from 0001 to 9999, which DATE
// holds; BC dates, infinity and years past 9999 it cannot.
func checkDate(s string) error {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' || !digits(s[:4]) || !digits(s[5:7]) || !digits(s[8:]) || s[:4] == "0000" {
		return fmt.Errorf("%q is not a date MySQL holds (years 0001 to 9999)", s)
	}
	return nil
}

// datetime turns an ISO 8601 timestamp into DATETIME(6)'s form. A
// timestamptz, which is in UTC, loses its Z: DATETIME columns hold UTC.
func datetime(s string, utc bool) (string, error) {
	t := s
	if utc {
		if !strings.HasSuffix(t, "Z") {
			return "", fmt.Errorf("%q is not a UTC timestamp (…Z)", s)
		}
		t = t[:len(t)-1]
	}
	if len(t) < 19 || t[10] != 'T' && t[10] != ' ' {
		return "", fmt.Errorf("%q is not a timestamp MySQL holds", s)
	}
	if err := checkDate(t[:10]); err != nil {
		return "", err
	}
	clock := t[11:]
	if err := checkClock(clock, 23); err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	return t[:10] + " " + clock, nil
}

// checkTime accepts HH:MM:SS[.ffffff] within TIME's range.
func checkTime(s string) (string, error) {
	if err := checkClock(s, 838); err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	return s, nil
}

func checkClock(s string, maxHour int) error {
	h, rest, ok := strings.Cut(s, ":")
	if !ok || !digits(h) || len(h) < 2 || len(rest) < 5 || rest[2] != ':' || !digits(rest[:2]) || !digits(rest[3:5]) {
		return errors.New("not a time of day HH:MM:SS")
	}
	if hour, _ := strconv.Atoi(h); hour > maxHour {
		return fmt.Errorf("hour %d is out of range", hour)
	}
	frac := rest[5:]
	if frac != "" {
		if frac[0] != '.' || !digits(frac[1:]) {
			return errors.New("has an offset or other trailing text MySQL would drop")
		}
		if len(strings.TrimRight(frac[1:], "0")) > 6 {
			return errors.New("has more than the 6 fraction digits MySQL keeps")
		}
	}
	return nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
