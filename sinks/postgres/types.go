package postgres

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/pgconv"
	"github.com/tapline/tapline/internal/viewsql"
)

// dialect is what Postgres says about types and names.
type dialect struct{}

// ColumnType is pgconv.DDLType: a Postgres source's exact type (Native)
// when the event comes from Postgres, else the portable type's.
func (dialect) ColumnType(c connectors.Column, _ bool, connector string) string {
	if connector != "postgres" {
		c.Native = ""
	}
	return normalize(pgconv.DDLType(c))
}

func (dialect) TransactionalDDL() bool { return true }
func (dialect) CaseInsensitive() bool  { return false }

// MaxIdentifier is NAMEDATALEN-1: longer names are silently cut by the
// server.
func (dialect) MaxIdentifier() int { return 63 }

// normalize writes a type as format_type does, so that it compares with
// the catalog's: timestamptz → timestamp with time zone, and so on.
func normalize(t string) string {
	dims := ""
	for strings.HasSuffix(t, "[]") {
		t, dims = t[:len(t)-2], dims+"[]"
	}
	head, mod := t, ""
	if i := strings.IndexByte(t, '('); i >= 0 && strings.HasSuffix(t, ")") {
		head, mod = t[:i], t[i:]
	}
	switch head {
	case "timestamptz":
		t = "timestamp" + mod + " with time zone"
	case "timestamp":
		t = "timestamp" + mod + " without time zone"
	case "timetz":
		t = "time" + mod + " with time zone"
	case "time":
		t = "time" + mod + " without time zone"
	case "int8":
		t = "bigint"
	case "int4", "int":
		t = "integer"
	case "int2":
		t = "smallint"
	case "bool":
		t = "boolean"
	case "float8":
		t = "double precision"
	case "float4":
		t = "real"
	case "varchar":
		t = "character varying" + mod
	case "decimal":
		t = "numeric" + mod
	}
	return t + dims
}

// CanTake accepts the same type, and the changes a column holds without
// loss: a wider integer, double for real, unconstrained numeric for any
// numeric or integer, text for any string type, a timestamp or time of
// default precision for one of lower precision.
func (dialect) CanTake(have, want string) bool {
	have, want = normalize(have), normalize(want)
	if have == want {
		return true
	}
	hd, wd := strings.Count(have, "[]"), strings.Count(want, "[]")
	if hd != wd {
		return false
	}
	have, want = strings.TrimSuffix(have, strings.Repeat("[]", hd)), strings.TrimSuffix(want, strings.Repeat("[]", wd))
	ints := map[string]int{"smallint": 1, "integer": 2, "bigint": 3}
	switch {
	case ints[have] > 0 && ints[want] > 0:
		return ints[have] >= ints[want]
	case have == "numeric":
		return strings.HasPrefix(want, "numeric") || ints[want] > 0
	case have == "double precision":
		return want == "real" || want == "smallint" || want == "integer"
	case have == "text":
		return want == "text" || strings.HasPrefix(want, "character")
	case have == "character varying":
		return strings.HasPrefix(want, "character varying")
	}
	for _, base := range []string{"timestamp", "time"} {
		for _, zone := range []string{" with time zone", " without time zone"} {
			if have == base+zone && strings.HasPrefix(want, base+"(") && strings.HasSuffix(want, zone) {
				return true
			}
		}
	}
	return false
}

// tempType is the type of a column in the temporary table a batch is
// copied into: a type pgx encodes the Go value into directly, else text,
// which the merge casts to the target's type.
func tempType(def *viewsql.ColumnDef) string {
	switch def.Source.Type {
	case connectors.TypeBool:
		return "boolean"
	case connectors.TypeInt16, connectors.TypeInt32, connectors.TypeInt64:
		return "bigint"
	case connectors.TypeFloat64:
		return "double precision"
	case connectors.TypeBytes:
		return "bytea"
	}
	return "text"
}

// Converter returns the value copied into the temporary table's column of
// tempType.
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
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil, int64:
				return v, nil
			case uint64:
				if x > math.MaxInt64 {
					return nil, fmt.Errorf("%d does not fit the column's %s", x, def.Type)
				}
				return int64(x), nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeUint64:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case int64:
				return strconv.FormatInt(x, 10), nil
			case uint64:
				return strconv.FormatUint(x, 10), nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeFloat64:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil, float64:
				return v, nil
			case int64:
				return float64(x), nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeFloat32:
		// As text: the shortest form of the float64 parses to the same
		// float4 as the source's text did.
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case float64:
				return floatText(x), nil
			case int64:
				return strconv.FormatInt(x, 10), nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeDecimal:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case string:
				if _, err := viewsql.ParseDecimal(x); err != nil {
					return nil, err
				}
				return v, nil
			case int64:
				return strconv.FormatInt(x, 10), nil
			case uint64:
				return strconv.FormatUint(x, 10), nil
			case float64:
				return floatText(x), nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeBytes:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case []byte:
				if x == nil {
					return []byte{}, nil
				}
				return v, nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeJSON:
		jsonb := strings.HasPrefix(def.Type, "jsonb")
		return func(v connectors.Value) (any, error) {
			var doc []byte
			switch x := v.(type) {
			case nil:
				return nil, nil
			case connectors.JSON:
				doc = x
			case string:
				doc = []byte(x)
			default:
				return nil, viewsql.Unsupported(v, t)
			}
			if !json.Valid(doc) {
				return nil, fmt.Errorf("invalid JSON document %.40q", doc)
			}
			if jsonb && bytes.Contains(doc, []byte(`\u0000`)) {
				return nil, errors.New(`the JSON document holds \u0000, which jsonb cannot hold`)
			}
			return string(doc), nil
		}
	case connectors.TypeDate, connectors.TypeTimestamp, connectors.TypeTimestampTZ:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case string:
				return pgconv.PostgresDate(x), viewsql.CheckText(x)
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeArray:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case []connectors.Value:
				b, err := appendArray(nil, x, def.Source.Elem, 0)
				if err != nil {
					return nil, err
				}
				return string(b), nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	}
	// string, text, uuid, time, interval and the like: text as it is.
	return func(v connectors.Value) (any, error) {
		switch x := v.(type) {
		case nil:
			return nil, nil
		case string:
			if err := viewsql.CheckText(x); err != nil {
				return nil, err
			}
			return v, nil
		case []byte:
			return nil, viewsql.Unsupported(v, t)
		}
		s, err := viewsql.Text(v)
		if err != nil {
			return nil, err
		}
		return s, viewsql.CheckText(s)
	}
}

// floatText is the text Postgres reads back as the same float.
func floatText(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// appendArray writes an array literal ({1,NULL,"a b"}) of elements of type
// elem; nested slices are further dimensions.
func appendArray(b []byte, arr []connectors.Value, elem connectors.Type, depth int) ([]byte, error) {
	if depth >= 6 {
		return nil, errors.New("an array with more than 6 dimensions")
	}
	b = append(b, '{')
	for i, e := range arr {
		if i > 0 {
			b = append(b, ',')
		}
		if sub, ok := e.([]connectors.Value); ok {
			var err error
			if b, err = appendArray(b, sub, elem, depth+1); err != nil {
				return nil, err
			}
			continue
		}
		var s string
		switch x := e.(type) {
		case nil:
			b = append(b, "NULL"...)
			continue
		case bool:
			s = "f"
			if x {
				s = "t"
			}
		case int64:
			s = strconv.FormatInt(x, 10)
		case uint64:
			s = strconv.FormatUint(x, 10)
		case float64:
			s = floatText(x)
		case string:
			s = x
			switch elem {
			case connectors.TypeDate, connectors.TypeTimestamp, connectors.TypeTimestampTZ:
				s = pgconv.PostgresDate(x)
			}
		case []byte:
			s = `\x` + hex.EncodeToString(x)
		case connectors.JSON:
			s = string(x)
		default:
			return nil, fmt.Errorf("array element %d: %w", i, viewsql.Unsupported(e, elem))
		}
		if err := viewsql.CheckText(s); err != nil {
			return nil, fmt.Errorf("array element %d: %w", i, err)
		}
		b = appendQuoted(b, s)
	}
	return append(b, '}'), nil
}

// appendQuoted writes an array element in double quotes with " and \
// escaped, which is always a valid element.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
