package pgconv

import (
	"strconv"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tapline/tapline/connectors"
)

// OIDs of built-in types that pgtype has no constant for.
const (
	moneyOID         = 790
	moneyArrayOID    = 791
	macaddr8ArrayOID = 775
	tsqueryOID       = 3615
	tsqueryArrayOID  = 3645
	pgLSNOID         = 3220
	pgLSNArrayOID    = 3221
	int2vectorOID    = 22
	oidvectorOID     = 30
	regprocOID       = 24
	regprocedureOID  = 2202
	regoperOID       = 2203
	regoperatorOID   = 2204
	regclassOID      = 2205
	regtypeOID       = 2206
	regconfigOID     = 3734
	regdictOID       = 3769
	regnamespaceOID  = 4089
	regroleOID       = 4096
	regcollationOID  = 4191
	txidSnapshotOID  = 2970
	pgSnapshotOID    = 5038
	jsonpathOID      = pgtype.JSONPathOID
)

// kind selects the decoder of a scalar value.
type kind uint8

const (
	kindString      kind = iota // the text as a string
	kindInt                     // int64
	kindFloat                   // float64
	kindBool                    // bool
	kindBytea                   // []byte
	kindJSON                    // connectors.JSON
	kindDate                    // ISO 8601 date string
	kindTimestamp               // ISO 8601 timestamp string
	kindTimestampTZ             // ISO 8601 UTC timestamp string with Z
	kindArray                   // []Value (only as a column's kind, never an element's)
)

// modStyle says how a type's typmod is written.
type modStyle uint8

const (
	modNone     modStyle = iota
	modNumeric           // numeric(p,s)
	modChars             // character varying(n): typmod is n+4
	modBits              // bit(n): typmod is n
	modTime              // timestamp(p) with time zone: typmod is p
	modInterval          // interval day to second(p)
)

// builtin describes a built-in scalar type.
type builtin struct {
	typ  connectors.Type
	kind kind
	// head and tail are the name format_type prints, with the typmod (if
	// any) written between them: "timestamp" + "(3)" + " with time zone".
	head, tail string
	// bare is the name format_type prints when the typmod is -1, when it
	// differs from head+tail ("bpchar", "\"bit\"").
	bare  string
	mod   modStyle
	delim byte // the array element delimiter, 0 for ','
}

// builtins maps the OIDs of built-in scalar types (those a database has
// without extensions) to their descriptions.
var builtins = map[uint32]builtin{
	pgtype.BoolOID:        {typ: connectors.TypeBool, kind: kindBool, head: "boolean"},
	pgtype.Int2OID:        {typ: connectors.TypeInt16, kind: kindInt, head: "smallint"},
	pgtype.Int4OID:        {typ: connectors.TypeInt32, kind: kindInt, head: "integer"},
	pgtype.Int8OID:        {typ: connectors.TypeInt64, kind: kindInt, head: "bigint"},
	pgtype.OIDOID:         {typ: connectors.TypeInt64, kind: kindInt, head: "oid"},
	pgtype.Float4OID:      {typ: connectors.TypeFloat32, kind: kindFloat, head: "real"},
	pgtype.Float8OID:      {typ: connectors.TypeFloat64, kind: kindFloat, head: "double precision"},
	pgtype.NumericOID:     {typ: connectors.TypeDecimal, head: "numeric", mod: modNumeric},
	pgtype.TextOID:        {typ: connectors.TypeString, head: "text"},
	pgtype.VarcharOID:     {typ: connectors.TypeString, head: "character varying", mod: modChars},
	pgtype.BPCharOID:      {typ: connectors.TypeString, head: "character", bare: "bpchar", mod: modChars},
	pgtype.NameOID:        {typ: connectors.TypeString, head: "name"},
	pgtype.QCharOID:       {typ: connectors.TypeString, head: `"char"`},
	pgtype.ByteaOID:       {typ: connectors.TypeBytes, kind: kindBytea, head: "bytea"},
	pgtype.UUIDOID:        {typ: connectors.TypeUUID, head: "uuid"},
	pgtype.JSONOID:        {typ: connectors.TypeJSON, kind: kindJSON, head: "json"},
	pgtype.JSONBOID:       {typ: connectors.TypeJSON, kind: kindJSON, head: "jsonb"},
	pgtype.DateOID:        {typ: connectors.TypeDate, kind: kindDate, head: "date"},
	pgtype.TimeOID:        {typ: connectors.TypeTime, head: "time", tail: " without time zone", mod: modTime},
	pgtype.TimetzOID:      {typ: connectors.TypeTime, head: "time", tail: " with time zone", mod: modTime},
	pgtype.TimestampOID:   {typ: connectors.TypeTimestamp, kind: kindTimestamp, head: "timestamp", tail: " without time zone", mod: modTime},
	pgtype.TimestamptzOID: {typ: connectors.TypeTimestampTZ, kind: kindTimestampTZ, head: "timestamp", tail: " with time zone", mod: modTime},
	pgtype.IntervalOID:    {typ: connectors.TypeInterval, head: "interval", mod: modInterval},

	// Kept as text, in the form Postgres prints.
	moneyOID:                 {typ: connectors.TypeText, head: "money"},
	pgtype.InetOID:           {typ: connectors.TypeText, head: "inet"},
	pgtype.CIDROID:           {typ: connectors.TypeText, head: "cidr"},
	pgtype.MacaddrOID:        {typ: connectors.TypeText, head: "macaddr"},
	pgtype.Macaddr8OID:       {typ: connectors.TypeText, head: "macaddr8"},
	pgtype.BitOID:            {typ: connectors.TypeText, head: "bit", bare: `"bit"`, mod: modBits},
	pgtype.VarbitOID:         {typ: connectors.TypeText, head: "bit varying", mod: modBits},
	pgtype.XMLOID:            {typ: connectors.TypeText, head: "xml"},
	pgtype.TSVectorOID:       {typ: connectors.TypeText, head: "tsvector"},
	tsqueryOID:               {typ: connectors.TypeText, head: "tsquery"},
	pgtype.PointOID:          {typ: connectors.TypeText, head: "point"},
	pgtype.LineOID:           {typ: connectors.TypeText, head: "line"},
	pgtype.LsegOID:           {typ: connectors.TypeText, head: "lseg"},
	pgtype.BoxOID:            {typ: connectors.TypeText, head: "box", delim: ';'},
	pgtype.PathOID:           {typ: connectors.TypeText, head: "path"},
	pgtype.PolygonOID:        {typ: connectors.TypeText, head: "polygon"},
	pgtype.CircleOID:         {typ: connectors.TypeText, head: "circle"},
	pgtype.Int4rangeOID:      {typ: connectors.TypeText, head: "int4range"},
	pgtype.Int8rangeOID:      {typ: connectors.TypeText, head: "int8range"},
	pgtype.NumrangeOID:       {typ: connectors.TypeText, head: "numrange"},
	pgtype.TsrangeOID:        {typ: connectors.TypeText, head: "tsrange"},
	pgtype.TstzrangeOID:      {typ: connectors.TypeText, head: "tstzrange"},
	pgtype.DaterangeOID:      {typ: connectors.TypeText, head: "daterange"},
	pgtype.Int4multirangeOID: {typ: connectors.TypeText, head: "int4multirange"},
	pgtype.Int8multirangeOID: {typ: connectors.TypeText, head: "int8multirange"},
	pgtype.NummultirangeOID:  {typ: connectors.TypeText, head: "nummultirange"},
	pgtype.TsmultirangeOID:   {typ: connectors.TypeText, head: "tsmultirange"},
	pgtype.TstzmultirangeOID: {typ: connectors.TypeText, head: "tstzmultirange"},
	pgtype.DatemultirangeOID: {typ: connectors.TypeText, head: "datemultirange"},
	jsonpathOID:              {typ: connectors.TypeText, head: "jsonpath"},
	pgLSNOID:                 {typ: connectors.TypeText, head: "pg_lsn"},
	pgtype.TIDOID:            {typ: connectors.TypeText, head: "tid"},
	pgtype.XIDOID:            {typ: connectors.TypeText, head: "xid"},
	pgtype.XID8OID:           {typ: connectors.TypeText, head: "xid8"},
	pgtype.CIDOID:            {typ: connectors.TypeText, head: "cid"},
	pgtype.ACLItemOID:        {typ: connectors.TypeText, head: "aclitem"},
	int2vectorOID:            {typ: connectors.TypeText, head: "int2vector"},
	oidvectorOID:             {typ: connectors.TypeText, head: "oidvector"},
	regprocOID:               {typ: connectors.TypeText, head: "regproc"},
	regprocedureOID:          {typ: connectors.TypeText, head: "regprocedure"},
	regoperOID:               {typ: connectors.TypeText, head: "regoper"},
	regoperatorOID:           {typ: connectors.TypeText, head: "regoperator"},
	regclassOID:              {typ: connectors.TypeText, head: "regclass"},
	regtypeOID:               {typ: connectors.TypeText, head: "regtype"},
	regconfigOID:             {typ: connectors.TypeText, head: "regconfig"},
	regdictOID:               {typ: connectors.TypeText, head: "regdictionary"},
	regnamespaceOID:          {typ: connectors.TypeText, head: "regnamespace"},
	regroleOID:               {typ: connectors.TypeText, head: "regrole"},
	regcollationOID:          {typ: connectors.TypeText, head: "regcollation"},
	txidSnapshotOID:          {typ: connectors.TypeText, head: "txid_snapshot"},
	pgSnapshotOID:            {typ: connectors.TypeText, head: "pg_snapshot"},
}

// builtinArrays maps the OIDs of built-in array types to their element
// types' OIDs.
var builtinArrays = map[uint32]uint32{
	pgtype.BoolArrayOID:           pgtype.BoolOID,
	pgtype.Int2ArrayOID:           pgtype.Int2OID,
	pgtype.Int4ArrayOID:           pgtype.Int4OID,
	pgtype.Int8ArrayOID:           pgtype.Int8OID,
	pgtype.OIDArrayOID:            pgtype.OIDOID,
	pgtype.Float4ArrayOID:         pgtype.Float4OID,
	pgtype.Float8ArrayOID:         pgtype.Float8OID,
	pgtype.NumericArrayOID:        pgtype.NumericOID,
	pgtype.TextArrayOID:           pgtype.TextOID,
	pgtype.VarcharArrayOID:        pgtype.VarcharOID,
	pgtype.BPCharArrayOID:         pgtype.BPCharOID,
	pgtype.NameArrayOID:           pgtype.NameOID,
	pgtype.QCharArrayOID:          pgtype.QCharOID,
	pgtype.ByteaArrayOID:          pgtype.ByteaOID,
	pgtype.UUIDArrayOID:           pgtype.UUIDOID,
	pgtype.JSONArrayOID:           pgtype.JSONOID,
	pgtype.JSONBArrayOID:          pgtype.JSONBOID,
	pgtype.DateArrayOID:           pgtype.DateOID,
	pgtype.TimeArrayOID:           pgtype.TimeOID,
	pgtype.TimetzArrayOID:         pgtype.TimetzOID,
	pgtype.TimestampArrayOID:      pgtype.TimestampOID,
	pgtype.TimestamptzArrayOID:    pgtype.TimestamptzOID,
	pgtype.IntervalArrayOID:       pgtype.IntervalOID,
	moneyArrayOID:                 moneyOID,
	pgtype.InetArrayOID:           pgtype.InetOID,
	pgtype.CIDRArrayOID:           pgtype.CIDROID,
	pgtype.MacaddrArrayOID:        pgtype.MacaddrOID,
	macaddr8ArrayOID:              pgtype.Macaddr8OID,
	pgtype.BitArrayOID:            pgtype.BitOID,
	pgtype.VarbitArrayOID:         pgtype.VarbitOID,
	pgtype.XMLArrayOID:            pgtype.XMLOID,
	pgtype.TSVectorArrayOID:       pgtype.TSVectorOID,
	tsqueryArrayOID:               tsqueryOID,
	pgtype.PointArrayOID:          pgtype.PointOID,
	pgtype.LineArrayOID:           pgtype.LineOID,
	pgtype.LsegArrayOID:           pgtype.LsegOID,
	pgtype.BoxArrayOID:            pgtype.BoxOID,
	pgtype.PathArrayOID:           pgtype.PathOID,
	pgtype.PolygonArrayOID:        pgtype.PolygonOID,
	pgtype.CircleArrayOID:         pgtype.CircleOID,
	pgtype.Int4rangeArrayOID:      pgtype.Int4rangeOID,
	pgtype.Int8rangeArrayOID:      pgtype.Int8rangeOID,
	pgtype.NumrangeArrayOID:       pgtype.NumrangeOID,
	pgtype.TsrangeArrayOID:        pgtype.TsrangeOID,
	pgtype.TstzrangeArrayOID:      pgtype.TstzrangeOID,
	pgtype.DaterangeArrayOID:      pgtype.DaterangeOID,
	pgtype.Int4multirangeArrayOID: pgtype.Int4multirangeOID,
	pgtype.Int8multirangeArrayOID: pgtype.Int8multirangeOID,
	pgtype.NummultirangeArrayOID:  pgtype.NummultirangeOID,
	pgtype.TsmultirangeArrayOID:   pgtype.TsmultirangeOID,
	pgtype.TstzmultirangeArrayOID: pgtype.TstzmultirangeOID,
	pgtype.DatemultirangeArrayOID: pgtype.DatemultirangeOID,
	pgtype.JSONPathArrayOID:       jsonpathOID,
	pgLSNArrayOID:                 pgLSNOID,
	pgtype.TIDArrayOID:            pgtype.TIDOID,
	pgtype.XIDArrayOID:            pgtype.XIDOID,
	pgtype.XID8ArrayOID:           pgtype.XID8OID,
	pgtype.CIDArrayOID:            pgtype.CIDOID,
	pgtype.ACLItemArrayOID:        pgtype.ACLItemOID,
	1006:                          int2vectorOID,
	1013:                          oidvectorOID,
	1008:                          regprocOID,
	2207:                          regprocedureOID,
	2208:                          regoperOID,
	2209:                          regoperatorOID,
	2210:                          regclassOID,
	2211:                          regtypeOID,
	3735:                          regconfigOID,
	3770:                          regdictOID,
	4090:                          regnamespaceOID,
	4097:                          regroleOID,
	4192:                          regcollationOID,
	2949:                          txidSnapshotOID,
	5039:                          pgSnapshotOID,
}

// IsBuiltin reports whether oid is a type this package knows without a
// TypeInfo: a built-in scalar or array type. The source loads TypeInfo (with
// TypeQuery) only for the OIDs for which it reports false.
func IsBuiltin(oid uint32) bool {
	if _, ok := builtins[oid]; ok {
		return true
	}
	_, ok := builtinArrays[oid]
	return ok
}

// intervalFields are the field restrictions of interval typmods, by the
// bit mask Postgres stores (datetime.h: MONTH=1, YEAR=2, DAY=3, HOUR=10,
// MINUTE=11, SECOND=12), as intervaltypmodout writes them.
var intervalFields = map[int32]string{
	1 << 2:                       " year",
	1 << 1:                       " month",
	1 << 3:                       " day",
	1 << 10:                      " hour",
	1 << 11:                      " minute",
	1 << 12:                      " second",
	1<<2 | 1<<1:                  " year to month",
	1<<3 | 1<<10:                 " day to hour",
	1<<3 | 1<<10 | 1<<11:         " day to minute",
	1<<3 | 1<<10 | 1<<11 | 1<<12: " day to second",
	1<<10 | 1<<11:                " hour to minute",
	1<<10 | 1<<11 | 1<<12:        " hour to second",
	1<<11 | 1<<12:                " minute to second",
	0x7fff:                       "",
}

// native renders a built-in scalar type with a typmod as format_type does.
func (b *builtin) native(typmod int32) string {
	if typmod < 0 {
		if b.bare != "" {
			return b.bare
		}
		return b.head + b.tail
	}
	switch b.mod {
	case modNumeric:
		if typmod < 4 {
			break
		}
		t := typmod - 4
		prec := (t >> 16) & 0xffff
		scale := ((t & 0x7ff) ^ 1024) - 1024
		return b.head + "(" + itoa(prec) + "," + itoa(scale) + ")" + b.tail
	case modChars:
		if typmod < 4 {
			break
		}
		return b.head + "(" + itoa(typmod-4) + ")" + b.tail
	case modBits, modTime:
		return b.head + "(" + itoa(typmod) + ")" + b.tail
	case modInterval:
		fields, ok := intervalFields[(typmod>>16)&0x7fff]
		if !ok {
			break
		}
		if prec := typmod & 0xffff; prec != 0xffff {
			return b.head + fields + "(" + itoa(prec) + ")"
		}
		return b.head + fields
	}
	return b.head + b.tail
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }
