// Package pgconv converts Postgres column types and text-format values into
// tapline's columns and values, and back into Postgres column types for
// sinks. It does no I/O: the Postgres source gives it the type OID and typmod
// of each column of a pgoutput Relation message (plus a TypeInfo, loaded
// once with TypeQuery, for types that are not built in) and the text form of
// each value, as the type's output function prints it.
//
// The decoders expect the session settings the source sets on its
// replication connection: DateStyle=ISO, IntervalStyle=iso_8601,
// extra_float_digits >= 1 (the default since Postgres 12), and any TimeZone
// (timestamptz values are converted to UTC). bytea may be in the hex or the
// legacy escape format.
package pgconv

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/tapline/tapline/connectors"
)

// TypeInfo describes a type that is not built in (an enum, a domain, a
// composite, a range, an extension's type, or an array of one of these) as
// pg_type records it. The source loads it with TypeQuery.
type TypeInfo struct {
	OID    uint32
	Schema string // pg_namespace.nspname
	Name   string // typname
	// Kind is typtype: 'b' base, 'c' composite, 'd' domain, 'e' enum,
	// 'r' range, 'm' multirange, 'p' pseudo-type.
	Kind byte
	// Category is typcategory: 'A' array, 'S' string, 'E' enum, 'U' user
	// defined, ...
	Category byte
	// BaseType is typbasetype: for a domain, the type it is over.
	BaseType uint32
	// BaseTypmod is typtypmod: for a domain, the typmod of its base type
	// (for a domain over numeric(10,2), that numeric's typmod), else -1.
	BaseTypmod int32
	// Elem is typelem: for an array type, the element type.
	Elem uint32
	// Delim is typdelim: the delimiter between elements in arrays of this
	// type (',' for all but box).
	Delim byte
}

// TypeQuery loads the TypeInfo of the types whose OIDs are its one
// parameter (an oid[]), and of every type they depend on (domains' base
// types and arrays' element types, recursively). Each row scans with
// ScanTypeInfo. Run it once per new set of OIDs that IsBuiltin rejects, not
// per row.
const TypeQuery = `WITH RECURSIVE wanted(oid) AS (
    SELECT unnest($1::pg_catalog.oid[])
  UNION
    SELECT v.x
      FROM wanted w
      JOIN pg_catalog.pg_type t ON t.oid = w.oid
      CROSS JOIN LATERAL (VALUES (t.typbasetype), (t.typelem)) AS v(x)
     WHERE v.x <> 0
)
SELECT t.oid::int8, n.nspname::text, t.typname::text, t.typtype::text,
       t.typcategory::text, t.typbasetype::int8, t.typtypmod::int4,
       t.typelem::int8, t.typdelim::text
  FROM wanted w
  JOIN pg_catalog.pg_type t ON t.oid = w.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace`

// ScanTypeInfo scans one row of TypeQuery with scan, which is the Scan
// method of a pgx.Row or pgx.Rows, or of a database/sql *Rows.
func ScanTypeInfo(scan func(dest ...any) error) (TypeInfo, error) {
	var (
		oid, base, elem               int64
		typmod                        int32
		schema, name, kind, cat, dlim string
	)
	if err := scan(&oid, &schema, &name, &kind, &cat, &base, &typmod, &elem, &dlim); err != nil {
		return TypeInfo{}, err
	}
	first := func(s string) byte {
		if s == "" {
			return 0
		}
		return s[0]
	}
	return TypeInfo{
		OID: uint32(oid), Schema: schema, Name: name,
		Kind: first(kind), Category: first(cat),
		BaseType: uint32(base), BaseTypmod: typmod, Elem: uint32(elem),
		Delim: first(dlim),
	}, nil
}

// TypeMap holds loaded TypeInfos by OID. Its Lookup method is the lookup
// function NewColumn takes.
type TypeMap map[uint32]TypeInfo

// Lookup returns the TypeInfo of oid, if loaded.
func (m TypeMap) Lookup(oid uint32) (TypeInfo, bool) {
	t, ok := m[oid]
	return t, ok
}

// Column is a Postgres column resolved into tapline's terms: the
// connectors.Column to put in a schema, and the decoder of its values,
// chosen once so that decoding a value is a switch and a parse.
//
// A Column is immutable and safe for concurrent use.
type Column struct {
	connectors.Column
	OID    uint32 // the column's type OID, as the Relation message gives it
	Typmod int32  // the column's typmod, as the Relation message gives it

	kind     kind // how values decode
	elemKind kind // for arrays, how elements decode
	delim    byte // for arrays, the element delimiter
}

// maxDepth bounds the resolution of domains over domains and arrays of
// domains, in case the catalog (or a lookup function) has a cycle.
const maxDepth = 16

// resolved is what resolve finds out about a type.
type resolved struct {
	typ, elem      connectors.Type
	native         string
	kind, elemKind kind
	delim          byte
}

// NewColumn resolves a column of type oid with typmod (as a pgoutput
// Relation message gives them). lookup gives the TypeInfo of types that are
// not built in; it may be nil, and it may report false, in which case the
// column is TypeText with the OID as its Native.
//
// The column is Nullable (pgoutput does not say) and has no Key; the source
// sets those from what it knows.
//
// Mapping: built-in types as the package README lists; domains as their
// base type (Native is the domain's name); enums and base types of the
// string category (citext) as TypeString; arrays as TypeArray with Elem set
// to their element's type; everything else (composites, ranges, extension
// types like hstore) as TypeText holding the text Postgres prints.
func NewColumn(name string, oid uint32, typmod int32, lookup func(oid uint32) (TypeInfo, bool)) Column {
	r := resolve(oid, typmod, lookup, 0)
	return Column{
		Column: connectors.Column{
			Name: name, Type: r.typ, Native: r.native, Nullable: true, Elem: r.elem,
		},
		OID: oid, Typmod: typmod,
		kind: r.kind, elemKind: r.elemKind, delim: r.delim,
	}
}

func resolve(oid uint32, typmod int32, lookup func(uint32) (TypeInfo, bool), depth int) resolved {
	if b, ok := builtins[oid]; ok {
		return resolved{typ: b.typ, native: b.native(typmod), kind: b.kind, delim: b.delim}
	}
	if e, ok := builtinArrays[oid]; ok {
		return arrayOf(resolve(e, typmod, lookup, depth+1))
	}
	var info TypeInfo
	ok := false
	if lookup != nil && depth < maxDepth {
		info, ok = lookup(oid)
	}
	if !ok {
		return resolved{typ: connectors.TypeText, native: strconv.FormatUint(uint64(oid), 10)}
	}
	name := qualify(info.Schema, info.Name)
	switch {
	case info.Category == 'A' && info.Elem != 0 && info.Kind == 'b':
		return arrayOf(resolve(info.Elem, typmod, lookup, depth+1))
	case info.Kind == 'd':
		tm := typmod
		if tm < 0 {
			tm = info.BaseTypmod
		}
		r := resolve(info.BaseType, tm, lookup, depth+1)
		r.native = name
		if info.Delim != 0 && info.Delim != ',' {
			r.delim = info.Delim
		}
		return r
	case info.Kind == 'e', info.Kind == 'b' && info.Category == 'S':
		return resolved{typ: connectors.TypeString, native: name, delim: delimOf(info)}
	}
	return resolved{typ: connectors.TypeText, native: name, delim: delimOf(info)}
}

func delimOf(info TypeInfo) byte {
	if info.Delim == ',' {
		return 0
	}
	return info.Delim
}

// arrayOf makes an array of the element type e. Postgres has no arrays of
// arrays (only multi-dimensional arrays), so an array element that resolves
// to an array (a domain over an array) is kept as text.
func arrayOf(e resolved) resolved {
	if e.typ == connectors.TypeArray {
		e = resolved{typ: connectors.TypeText, native: e.native}
	}
	return resolved{
		typ: connectors.TypeArray, elem: e.typ, native: e.native + "[]",
		kind: kindArray, elemKind: e.kind, delim: e.delim,
	}
}

// qualify writes schema.name as Postgres would need it written, quoting
// identifiers that are not plain lower-case words; pg_catalog is left out.
func qualify(schema, name string) string {
	if schema == "" || schema == "pg_catalog" {
		return quoteIdent(name)
	}
	return quoteIdent(schema) + "." + quoteIdent(name)
}

func quoteIdent(s string) string {
	plain := s != "" && !(s[0] >= '0' && s[0] <= '9')
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// Decode converts the text form of one of the column's values into a
// connectors.Value of the Go type the column's Type calls for (see
// connectors.Value). It does not retain text. A value that does not parse
// as the column's type is an error naming the type; the value itself is
// left out of the error, as it may be sensitive.
func (c *Column) Decode(text []byte) (connectors.Value, error) {
	var v connectors.Value
	var err error
	if c.kind == kindArray {
		v, err = parseArray(text, c.elemKind, c.delim)
	} else {
		v, err = decodeScalar(c.kind, text)
	}
	if err != nil {
		return nil, c.wrap(err)
	}
	return v, nil
}

func (c *Column) wrap(err error) error {
	return fmt.Errorf("pgconv: column %q (%s): %w", c.Name, c.Native, err)
}

// DecodeTuple decodes one column of a pgoutput TupleData: dataType is the
// pglogrepl.TupleDataColumn's DataType and data its Data. Null is nil, an
// unchanged TOASTed value is connectors.Unchanged, text is decoded with
// Decode; binary values are an error (the source asks for text).
func (c *Column) DecodeTuple(dataType byte, data []byte) (connectors.Value, error) {
	switch dataType {
	case pglogrepl.TupleDataTypeNull:
		return nil, nil
	case pglogrepl.TupleDataTypeToast:
		return connectors.Unchanged, nil
	case pglogrepl.TupleDataTypeText:
		return c.Decode(data)
	}
	return nil, errors.New("pgconv: column " + strconv.Quote(c.Name) + ": tuple data type " + strconv.QuoteRune(rune(dataType)) + " is not supported (want text)")
}
