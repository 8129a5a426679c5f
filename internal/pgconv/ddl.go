package pgconv

import (
	"strings"

	"github.com/tapline/tapline/connectors"
)

// nativeNames maps the names format_type prints without a typmod (head +
// tail, and bare) to built-in scalar OIDs, for DDLType.
var nativeNames = func() map[string]uint32 {
	m := make(map[string]uint32, 2*len(builtins))
	for oid, b := range builtins {
		m[b.head+b.tail] = oid
		if b.bare != "" {
			m[b.bare] = oid
		}
	}
	return m
}()

// portableDDL is the Postgres type DDLType gives each portable type when
// the column's Native is not a built-in Postgres type.
var portableDDL = map[connectors.Type]string{
	connectors.TypeBool:        "boolean",
	connectors.TypeInt16:       "smallint",
	connectors.TypeInt32:       "integer",
	connectors.TypeInt64:       "bigint",
	connectors.TypeUint64:      "numeric(20,0)",
	connectors.TypeFloat32:     "real",
	connectors.TypeFloat64:     "double precision",
	connectors.TypeDecimal:     "numeric",
	connectors.TypeString:      "text",
	connectors.TypeBytes:       "bytea",
	connectors.TypeJSON:        "jsonb",
	connectors.TypeUUID:        "uuid",
	connectors.TypeDate:        "date",
	connectors.TypeTime:        "time",
	connectors.TypeTimestamp:   "timestamp",
	connectors.TypeTimestampTZ: "timestamptz",
	connectors.TypeInterval:    "interval",
	connectors.TypeText:        "text",
}

// DDLType returns the Postgres type a sink should create for column c.
//
// When c.Native is a built-in Postgres type as format_type writes it
// ("numeric(10,2)", "timestamp(3) with time zone", "integer[]") and it
// agrees with c.Type (and c.Elem), that type is used, so a Postgres-to-
// Postgres view keeps its exact types. Otherwise (another database's type,
// an enum, a domain, an extension type) the portable Type decides:
// decimal → numeric, uint64 → numeric(20,0), json → jsonb, bytes → bytea,
// array of X → X[], string and text → text, and so on. Native is parsed, never
// copied, so the result is always a safe type name to put into DDL.
func DDLType(c connectors.Column) string {
	if t, ok := nativeDDL(c); ok {
		return t
	}
	if c.Type == connectors.TypeArray {
		e, ok := portableDDL[c.Elem]
		if !ok {
			e = "text"
		}
		return e + "[]"
	}
	if t, ok := portableDDL[c.Type]; ok {
		return t
	}
	return "text"
}

// nativeDDL parses c.Native as a built-in type that agrees with c.Type.
func nativeDDL(c connectors.Column) (string, bool) {
	s := c.Native
	dims := 0
	for strings.HasSuffix(s, "[]") {
		s = s[:len(s)-2]
		dims++
	}
	if dims > maxDims {
		return "", false
	}
	want := c.Type
	if dims > 0 {
		if c.Type != connectors.TypeArray {
			return "", false
		}
		want = c.Elem
	}
	name, ok := parseNative(s)
	if !ok {
		return "", false
	}
	head, mod, tail := name, "", ""
	if i := strings.IndexByte(name, '('); i >= 0 {
		j := strings.IndexByte(name, ')')
		head, mod, tail = name[:i], name[i+1:j], name[j+1:]
	}
	oid, ok := nativeNames[head+tail]
	if !ok && strings.HasPrefix(head, "interval") && tail == "" {
		oid, ok = builtinIntervalOID(head)
	}
	b := builtins[oid]
	if !ok || b.typ != want {
		return "", false
	}
	if mod != "" {
		// The typmod must be one the type takes, where format_type puts it.
		switch {
		case b.mod == modNone,
			b.mod != modNumeric && strings.Contains(mod, ","),
			b.mod != modNumeric && strings.HasPrefix(mod, "-"),
			b.mod != modInterval && (head != b.head || tail != b.tail):
			return "", false
		}
	}
	return name + strings.Repeat("[]", dims), true
}

func builtinIntervalOID(head string) (uint32, bool) {
	for _, f := range intervalFields {
		if head == "interval"+f {
			return 1186, true
		}
	}
	return 0, false
}

// parseNative checks that s is a type name of letters, spaces, quotes and
// underscores with at most one typmod "(n)" or "(n,m)" placed where
// format_type places it, and returns it.
func parseNative(s string) (string, bool) {
	open := strings.IndexByte(s, '(')
	if open < 0 {
		return s, isName(s)
	}
	end := strings.IndexByte(s, ')')
	if end < open || !isName(s[:open]) || !isName(s[end+1:]) || strings.ContainsAny(s[end+1:], "()") {
		return "", false
	}
	mod := s[open+1 : end]
	parts := strings.Split(mod, ",")
	if len(parts) > 2 {
		return "", false
	}
	for _, p := range parts {
		p = strings.TrimPrefix(p, "-")
		if p == "" || len(p) > 10 {
			return "", false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return "", false
			}
		}
	}
	tail := s[end+1:]
	if tail != "" && tail != " with time zone" && tail != " without time zone" {
		return "", false
	}
	return s, true
}

func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == ' ' || c == '_' || c == '"') {
			return false
		}
	}
	return true
}
