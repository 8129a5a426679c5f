package sqlite

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/viewsql"
)

// dialect is what SQLite says about types and names.
type dialect struct{}

// ColumnType maps a portable type to a declared type whose affinity keeps
// the value as it is: INTEGER, REAL, TEXT, BLOB, and BOOLEAN (numeric
// affinity, 0 or 1). Decimals are TEXT: SQLite has no exact numeric type,
// and a NUMERIC column would turn "0.10" into the float 0.1.
func (dialect) ColumnType(c connectors.Column, _ bool, _ string) string {
	switch c.Type {
	case connectors.TypeBool:
		return "BOOLEAN"
	case connectors.TypeInt16, connectors.TypeInt32, connectors.TypeInt64, connectors.TypeUint64:
		return "INTEGER"
	case connectors.TypeFloat32, connectors.TypeFloat64:
		return "REAL"
	case connectors.TypeBytes:
		return "BLOB"
	}
	return "TEXT"
}

// CanTake: a column takes only values of the declared type it was created
// with; SQLite would store others, but they would read back as another
// type.
func (dialect) CanTake(have, want string) bool { return strings.EqualFold(have, want) }

func (dialect) TransactionalDDL() bool { return true }
func (dialect) CaseInsensitive() bool  { return true }

// MaxIdentifier: SQLite has no limit of its own; this keeps names readable
// and portable.
func (dialect) MaxIdentifier() int { return 255 }

// Converter returns the driver value for each column type.
func (dialect) Converter(def *viewsql.ColumnDef) func(connectors.Value) (any, error) {
	t := def.Source.Type
	switch t {
	case connectors.TypeBool:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil, bool:
				return v, nil
			case int64:
				if x == 0 || x == 1 {
					return x == 1, nil
				}
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeInt16, connectors.TypeInt32, connectors.TypeInt64, connectors.TypeUint64:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil, int64:
				return v, nil
			case uint64:
				if x > math.MaxInt64 {
					return nil, fmt.Errorf("%d is above the largest INTEGER SQLite holds (%d)", x, int64(math.MaxInt64))
				}
				return int64(x), nil
			}
			return nil, viewsql.Unsupported(v, t)
		}
	case connectors.TypeFloat32, connectors.TypeFloat64:
		return func(v connectors.Value) (any, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case float64:
				if math.IsNaN(x) {
					return nil, errors.New("NaN: SQLite stores a NaN as NULL")
				}
				return v, nil
			case int64:
				return float64(x), nil
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
	}
	// Text of every other kind: strings, dates and times (ISO 8601, which
	// SQLite's date functions read), JSON and arrays (as JSON text).
	return func(v connectors.Value) (any, error) {
		switch v.(type) {
		case nil, string:
			return v, nil
		case []byte:
			return nil, viewsql.Unsupported(v, t)
		}
		return viewsql.Text(v)
	}
}
