package mysqlconv

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// Kind is the family of a MySQL column, which decides how its values are
// decoded and what tapline type they get.
type Kind uint8

// The kinds of column.
const (
	KindInvalid   Kind = iota
	KindInt            // tinyint .. bigint; Size is the storage size (1, 2, 3, 4, 8)
	KindDecimal        // decimal(Precision, Scale)
	KindFloat          // float
	KindDouble         // double
	KindBit            // bit(Length)
	KindDate           // date
	KindDatetime       // datetime(FSP)
	KindTimestamp      // timestamp(FSP)
	KindTime           // time(FSP)
	KindYear           // year
	KindEnum           // enum(Labels); Size is 1 or 2
	KindSet            // set(Labels); Size is 1..8
	KindChar           // char(Length) / binary(Length)
	KindVarchar        // varchar(Length) / varbinary(Length)
	KindBlob           // tinytext..longtext, tinyblob..longblob; Size is the length's bytes (1..4)
	KindJSON           // MySQL's binary json
	KindGeometry       // geometry and its subtypes
	KindVector         // vector(Length)
)

// Binlog type codes (MYSQL_TYPE_* in the server's sources), as TABLE_MAP
// events give them.
const (
	TypeDecimal    byte = 0
	TypeTiny       byte = 1
	TypeShort      byte = 2
	TypeLong       byte = 3
	TypeFloat      byte = 4
	TypeDouble     byte = 5
	TypeNull       byte = 6
	TypeTimestamp  byte = 7
	TypeLongLong   byte = 8
	TypeInt24      byte = 9
	TypeDate       byte = 10
	TypeTime       byte = 11
	TypeDatetime   byte = 12
	TypeYear       byte = 13
	TypeNewDate    byte = 14
	TypeVarchar    byte = 15
	TypeBit        byte = 16
	TypeTimestamp2 byte = 17
	TypeDatetime2  byte = 18
	TypeTime2      byte = 19
	TypeVector     byte = 242
	TypeJSON       byte = 245
	TypeNewDecimal byte = 246
	TypeEnum       byte = 247
	TypeSet        byte = 248
	TypeTinyBlob   byte = 249
	TypeMediumBlob byte = 250
	TypeLongBlob   byte = 251
	TypeBlob       byte = 252
	TypeVarString  byte = 253
	TypeString     byte = 254
	TypeGeometry   byte = 255
)

// Column is one column of a MySQL table, described the same way whether it
// came from a binlog TABLE_MAP event (ColumnFromBinlog) or from
// information_schema (ColumnFromInfo), so that both give equal
// connectors.Columns and decode values to equal connectors.Values.
type Column struct {
	Name     string
	Kind     Kind
	Size     int  // see Kind
	Unsigned bool // integers
	// Charset is the character set of char, varchar, text, enum and set
	// columns; Binary (or nil) for binary strings, whose values are bytes.
	Charset   *Charset
	Length    int // char/varchar/binary/varbinary: characters; bit: bits; vector: dimensions
	Precision int // decimal
	Scale     int // decimal
	FSP       int // fractional seconds digits of datetime, timestamp and time
	// Labels are the values of an enum or set column, in UTF-8.
	Labels []string
	// JSON marks a text column that holds JSON documents: MariaDB's json,
	// an alias of longtext with a json_valid check.
	JSON bool
	// Format shows the bytes of a binary column as text: MariaDB's uuid,
	// inet6 and inet4 types, which the binlog carries as binary(16) and
	// binary(4).
	Format Format
	// Geometry is the subtype of a geometry column ("point", ...), or
	// "geometry".
	Geometry string
	Nullable bool
	Key      int // 1-based position in the primary key, 0 if not in it

	// binlog layout
	binType  byte   // the type code the row image uses
	maxBytes int    // char/varchar: the longest value in bytes
	oldFSP   bool   // a pre-5.6 temporal type (no fractional part)
	meta     uint16 // the TABLE_MAP metadata, for types that need it
}

// IsText reports whether the column's values are strings in a charset
// (rather than bytes).
func (c *Column) IsText() bool {
	switch c.Kind {
	case KindChar, KindVarchar, KindBlob:
		return !c.Charset.IsBinary()
	}
	return false
}

// Connector returns the portable description of the column.
func (c *Column) Connector() connectors.Column {
	return connectors.Column{Name: c.Name, Type: c.Type(), Native: c.Native(), Nullable: c.Nullable, Key: c.Key}
}

// Type returns the tapline type of the column's values.
func (c *Column) Type() connectors.Type {
	switch c.Kind {
	case KindInt:
		switch {
		case c.Size == 1, c.Size == 2 && !c.Unsigned:
			return connectors.TypeInt16
		case c.Size <= 3, c.Size == 4 && !c.Unsigned:
			return connectors.TypeInt32
		case c.Size == 4, !c.Unsigned:
			return connectors.TypeInt64
		}
		return connectors.TypeUint64
	case KindDecimal:
		return connectors.TypeDecimal
	case KindFloat:
		return connectors.TypeFloat32
	case KindDouble:
		return connectors.TypeFloat64
	case KindBit:
		if c.Length == 1 {
			return connectors.TypeBool
		}
		return connectors.TypeUint64
	case KindDate:
		return connectors.TypeDate
	case KindDatetime:
		return connectors.TypeTimestamp
	case KindTimestamp:
		return connectors.TypeTimestampTZ
	case KindTime:
		return connectors.TypeTime
	case KindYear:
		return connectors.TypeInt16
	case KindEnum, KindSet:
		return connectors.TypeString
	case KindChar, KindVarchar, KindBlob:
		switch c.Format {
		case FormatUUID:
			return connectors.TypeUUID
		case FormatInet4, FormatInet6:
			return connectors.TypeString
		}
		if c.Charset.IsBinary() {
			return connectors.TypeBytes
		}
		if c.JSON {
			return connectors.TypeJSON
		}
		return connectors.TypeString
	case KindJSON:
		return connectors.TypeJSON
	case KindGeometry:
		return connectors.TypeText
	case KindVector:
		return connectors.TypeBytes
	}
	return connectors.TypeText
}

// Native returns the column's MySQL type in a canonical form, the same
// from a TABLE_MAP event as from information_schema: "int unsigned",
// "decimal(65,30)", "varchar(255)", "datetime(6)", "enum('a','b')".
// Display widths (int(11)) are not kept: the binlog does not carry them.
func (c *Column) Native() string {
	var s string
	switch c.Kind {
	case KindInt:
		s = [...]string{1: "tinyint", 2: "smallint", 3: "mediumint", 4: "int", 8: "bigint"}[c.Size]
		if c.Unsigned {
			s += " unsigned"
		}
	case KindDecimal:
		s = fmt.Sprintf("decimal(%d,%d)", c.Precision, c.Scale)
	case KindFloat:
		s = "float"
	case KindDouble:
		s = "double"
	case KindBit:
		s = fmt.Sprintf("bit(%d)", c.Length)
	case KindDate:
		s = "date"
	case KindDatetime:
		s = withFSP("datetime", c.FSP)
	case KindTimestamp:
		s = withFSP("timestamp", c.FSP)
	case KindTime:
		s = withFSP("time", c.FSP)
	case KindYear:
		s = "year"
	case KindEnum, KindSet:
		var b strings.Builder
		if c.Kind == KindEnum {
			b.WriteString("enum(")
		} else {
			b.WriteString("set(")
		}
		for i, l := range c.Labels {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('\'')
			b.WriteString(strings.ReplaceAll(l, "'", "''"))
			b.WriteByte('\'')
		}
		b.WriteByte(')')
		s = b.String()
	case KindChar, KindVarchar:
		if c.Format != FormatNone {
			return c.Format.String()
		}
		bin := c.binaryCharset()
		switch {
		case c.Kind == KindChar && bin:
			s = "binary"
		case c.Kind == KindChar:
			s = "char"
		case bin:
			s = "varbinary"
		default:
			s = "varchar"
		}
		s += "(" + strconv.Itoa(c.Length) + ")"
	case KindBlob:
		if c.JSON {
			return "json"
		}
		prefix := [...]string{1: "tiny", 2: "", 3: "medium", 4: "long"}[min(max(c.Size, 1), 4)]
		if c.binaryCharset() {
			s = prefix + "blob"
		} else {
			s = prefix + "text"
		}
	case KindJSON:
		s = "json"
	case KindGeometry:
		s = c.Geometry
		if s == "" {
			s = "geometry"
		}
	case KindVector:
		s = fmt.Sprintf("vector(%d)", c.Length)
	default:
		s = "unknown"
	}
	return s
}

// Format is how the bytes of a binary column are shown as text.
type Format uint8

// The formats.
const (
	FormatNone  Format = iota
	FormatUUID         // MariaDB uuid: 8-4-4-4-12 lower-case hex
	FormatInet4        // MariaDB inet4: dotted quad
	FormatInet6        // MariaDB inet6: RFC 5952 text
)

// String returns the MariaDB type name.
func (f Format) String() string {
	return [...]string{"", "uuid", "inet4", "inet6"}[f]
}

// FormatByName returns the format of a MariaDB data type ("uuid", "inet6",
// "inet4"), or FormatNone.
func FormatByName(dataType string) Format {
	switch strings.ToLower(dataType) {
	case "uuid":
		return FormatUUID
	case "inet4":
		return FormatInet4
	case "inet6":
		return FormatInet6
	}
	return FormatNone
}

// FormatBytes shows b as the column's format does; bytes that do not fit
// the format are returned as they are.
func (c *Column) FormatBytes(b []byte) connectors.Value {
	switch {
	case c.Format == FormatUUID && len(b) == 16:
		var out [36]byte
		hex.Encode(out[0:8], b[0:4])
		out[8] = '-'
		hex.Encode(out[9:13], b[4:6])
		out[13] = '-'
		hex.Encode(out[14:18], b[6:8])
		out[18] = '-'
		hex.Encode(out[19:23], b[8:10])
		out[23] = '-'
		hex.Encode(out[24:36], b[10:16])
		return string(out[:])
	case c.Format == FormatInet4 && len(b) == 4, c.Format == FormatInet6 && len(b) == 16:
		addr, _ := netip.AddrFromSlice(b)
		return addr.String()
	}
	return b
}

// binaryCharset reports whether the column is a binary string (binary,
// varbinary, blob) rather than text in a charset tapline cannot decode.
func (c *Column) binaryCharset() bool { return c.Charset == nil || c.Charset.kind == csBinary }

func withFSP(name string, fsp int) string {
	if fsp == 0 {
		return name
	}
	return name + "(" + strconv.Itoa(fsp) + ")"
}

// geometryTypes are the geometry subtypes by the code TABLE_MAP events
// give them (Field::geometry_type).
var geometryTypes = [...]string{"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection"}

// BinlogColumn is what a TABLE_MAP event (with binlog_row_metadata=FULL)
// says about one column.
type BinlogColumn struct {
	Name      string
	Type      byte   // the column type code
	Meta      uint16 // its metadata, as github.com/go-mysql-org/go-mysql decodes it
	Unsigned  bool
	Collation uint64   // character columns, enum and set: the collation id
	Labels    []string // enum and set: the values, as bytes of the column's charset
	Geometry  uint64   // geometry: the subtype code
	Nullable  bool
	Key       int
}

// ColumnFromBinlog describes a column from its TABLE_MAP metadata.
// Labels are converted from the column's charset to UTF-8.
func ColumnFromBinlog(b BinlogColumn, cs *Charsets) (Column, error) {
	c := Column{Name: b.Name, Unsigned: b.Unsigned, Nullable: b.Nullable, Key: b.Key, binType: b.Type, meta: b.Meta}
	typ := b.Type
	if typ == TypeString && b.Meta >= 256 {
		b0, b1 := byte(b.Meta>>8), byte(b.Meta)
		if b0&0x30 != 0x30 {
			c.maxBytes = int(b1) | int((b0&0x30)^0x30)<<4
			typ = b0 | 0x30
		} else {
			c.maxBytes = int(b1)
			typ = b0
		}
	} else if typ == TypeString {
		c.maxBytes = int(b.Meta)
	}
	charset := func() *Charset {
		if b.Collation == 0 {
			return Binary
		}
		return cs.Lookup(b.Collation)
	}
	switch typ {
	case TypeTiny:
		c.Kind, c.Size = KindInt, 1
	case TypeShort:
		c.Kind, c.Size = KindInt, 2
	case TypeInt24:
		c.Kind, c.Size = KindInt, 3
	case TypeLong:
		c.Kind, c.Size = KindInt, 4
	case TypeLongLong:
		c.Kind, c.Size = KindInt, 8
	case TypeNewDecimal:
		c.Kind, c.Precision, c.Scale = KindDecimal, int(b.Meta>>8), int(b.Meta&0xFF)
	case TypeFloat:
		c.Kind = KindFloat
	case TypeDouble:
		c.Kind = KindDouble
	case TypeBit:
		c.Kind, c.Length = KindBit, int(b.Meta>>8)*8+int(b.Meta&0xFF)
	case TypeDate, TypeNewDate:
		c.Kind = KindDate
	case TypeDatetime:
		c.Kind, c.oldFSP = KindDatetime, true
	case TypeDatetime2:
		c.Kind, c.FSP = KindDatetime, int(b.Meta)
	case TypeTimestamp:
		c.Kind, c.oldFSP = KindTimestamp, true
	case TypeTimestamp2:
		c.Kind, c.FSP = KindTimestamp, int(b.Meta)
	case TypeTime:
		c.Kind, c.oldFSP = KindTime, true
	case TypeTime2:
		c.Kind, c.FSP = KindTime, int(b.Meta)
	case TypeYear:
		c.Kind = KindYear
	case TypeEnum, TypeSet:
		c.Kind, c.Size = KindEnum, int(b.Meta&0xFF)
		if typ == TypeSet {
			c.Kind = KindSet
		}
		c.Charset = charset()
		c.Labels = make([]string, len(b.Labels))
		for i, l := range b.Labels {
			if c.Charset.IsBinary() {
				c.Labels[i] = l
			} else {
				c.Labels[i] = c.Charset.Decode([]byte(l))
			}
		}
		if c.Kind == KindEnum && c.Size != 1 && c.Size != 2 {
			return c, fmt.Errorf("column %s: enum stored in %d bytes", b.Name, c.Size)
		}
		if c.Kind == KindSet && (c.Size < 1 || c.Size > 8) {
			return c, fmt.Errorf("column %s: set stored in %d bytes", b.Name, c.Size)
		}
	case TypeString:
		c.Kind, c.Charset = KindChar, charset()
		c.Length = c.maxBytes / c.Charset.MaxLen
	case TypeVarchar, TypeVarString:
		c.Kind, c.Charset, c.maxBytes = KindVarchar, charset(), int(b.Meta)
		c.Length = c.maxBytes / c.Charset.MaxLen
	case TypeBlob, TypeTinyBlob, TypeMediumBlob, TypeLongBlob:
		c.Kind, c.Size, c.Charset = KindBlob, int(b.Meta), charset()
		if c.Size < 1 || c.Size > 4 {
			return c, fmt.Errorf("column %s: blob with a %d-byte length", b.Name, c.Size)
		}
	case TypeJSON:
		c.Kind, c.Size = KindJSON, int(b.Meta)
	case TypeGeometry:
		c.Kind, c.Size = KindGeometry, int(b.Meta)
		if b.Geometry < uint64(len(geometryTypes)) {
			c.Geometry = geometryTypes[b.Geometry]
		} else {
			c.Geometry = "geometry"
		}
	case TypeVector:
		c.Kind, c.Size, c.Length = KindVector, int(b.Meta), 0
	default:
		return c, fmt.Errorf("column %s: binlog type %d is not supported", b.Name, typ)
	}
	c.binType = typ
	return c, nil
}

// InfoColumn is a row of information_schema.COLUMNS, with the primary-key
// position from information_schema.STATISTICS and, for MariaDB, whether a
// json_valid check makes the column a json column.
type InfoColumn struct {
	Name       string
	DataType   string // DATA_TYPE, e.g. "varchar"
	ColumnType string // COLUMN_TYPE, e.g. "int(10) unsigned", "enum('a','b')"
	CharMaxLen int64  // CHARACTER_MAXIMUM_LENGTH
	Precision  int64  // NUMERIC_PRECISION
	Scale      int64  // NUMERIC_SCALE
	FSP        int64  // DATETIME_PRECISION
	Charset    string // CHARACTER_SET_NAME, "" when NULL
	Nullable   bool
	Key        int
	JSONCheck  bool
}

// ColumnFromInfo describes a column from information_schema. maxLen gives
// a charset's longest character (from information_schema.CHARACTER_SETS);
// nil uses the known values.
func ColumnFromInfo(ic InfoColumn, maxLen func(charset string) int) (Column, error) {
	c := Column{Name: ic.Name, Nullable: ic.Nullable, Key: ic.Key, JSON: ic.JSONCheck}
	c.Unsigned = strings.Contains(strings.ToLower(ic.ColumnType), "unsigned")
	charset := func() *Charset {
		if ic.Charset == "" || ic.Charset == "binary" {
			return Binary
		}
		n := 0
		if maxLen != nil {
			n = maxLen(ic.Charset)
		}
		return CharsetByName(ic.Charset, n)
	}
	dt := strings.ToLower(ic.DataType)
	switch dt {
	case "tinyint", "bool", "boolean":
		c.Kind, c.Size = KindInt, 1
	case "smallint":
		c.Kind, c.Size = KindInt, 2
	case "mediumint":
		c.Kind, c.Size = KindInt, 3
	case "int", "integer":
		c.Kind, c.Size = KindInt, 4
	case "bigint":
		c.Kind, c.Size = KindInt, 8
	case "decimal", "numeric", "fixed":
		c.Kind, c.Precision, c.Scale = KindDecimal, int(ic.Precision), int(ic.Scale)
	case "float":
		c.Kind = KindFloat
	case "double", "real", "double precision":
		c.Kind = KindDouble
	case "bit":
		c.Kind, c.Length = KindBit, int(ic.Precision)
	case "date":
		c.Kind = KindDate
	case "datetime":
		c.Kind, c.FSP = KindDatetime, int(ic.FSP)
	case "timestamp":
		c.Kind, c.FSP = KindTimestamp, int(ic.FSP)
	case "time":
		c.Kind, c.FSP = KindTime, int(ic.FSP)
	case "year":
		c.Kind = KindYear
	case "enum", "set":
		c.Kind = KindEnum
		if dt == "set" {
			c.Kind = KindSet
		}
		c.Charset = charset()
		labels, err := parseLabels(ic.ColumnType)
		if err != nil {
			return c, fmt.Errorf("column %s: %w", ic.Name, err)
		}
		c.Labels = labels
		if c.Kind == KindEnum {
			c.Size = 1
			if len(labels) > 255 {
				c.Size = 2
			}
		} else {
			c.Size = (len(labels) + 7) / 8
			if c.Size > 4 {
				c.Size = 8
			}
		}
	case "char", "binary":
		c.Kind, c.Charset, c.Length = KindChar, charset(), int(ic.CharMaxLen)
		c.maxBytes = c.Length * c.Charset.MaxLen
	case "varchar", "varbinary":
		c.Kind, c.Charset, c.Length = KindVarchar, charset(), int(ic.CharMaxLen)
		c.maxBytes = c.Length * c.Charset.MaxLen
	case "tinytext", "tinyblob":
		c.Kind, c.Size, c.Charset = KindBlob, 1, charset()
	case "text", "blob":
		c.Kind, c.Size, c.Charset = KindBlob, 2, charset()
	case "mediumtext", "mediumblob":
		c.Kind, c.Size, c.Charset = KindBlob, 3, charset()
	case "longtext", "longblob":
		c.Kind, c.Size, c.Charset = KindBlob, 4, charset()
	case "json":
		if ic.Charset != "" && !strings.EqualFold(ic.Charset, "binary") {
			// MariaDB reports its json alias as json in some versions.
			c.Kind, c.Size, c.Charset, c.JSON = KindBlob, 4, charset(), true
		} else {
			c.Kind, c.Size = KindJSON, 4
		}
	case "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection", "geomcollection":
		c.Kind, c.Size, c.Geometry = KindGeometry, 4, dt
		if dt == "geomcollection" {
			c.Geometry = "geometrycollection"
		}
	case "vector":
		c.Kind, c.Size = KindVector, 4
	case "uuid", "inet6", "inet4":
		c.Kind, c.Charset, c.Length, c.Format = KindChar, Binary, 16, FormatUUID
		if dt == "inet6" {
			c.Format = FormatInet6
		} else if dt == "inet4" {
			c.Length, c.Format = 4, FormatInet4
		}
		c.maxBytes = c.Length
	default:
		return c, fmt.Errorf("column %s: type %s is not supported", ic.Name, ic.ColumnType)
	}
	return c, nil
}

// parseLabels reads the values of "enum('a','b”c')" or "set(...)".
func parseLabels(columnType string) ([]string, error) {
	open := strings.IndexByte(columnType, '(')
	if open < 0 || !strings.HasSuffix(columnType, ")") {
		return nil, fmt.Errorf("cannot read the values of %q", columnType)
	}
	s := columnType[open+1 : len(columnType)-1]
	var out []string
	for len(s) > 0 {
		if s[0] != '\'' {
			return nil, fmt.Errorf("cannot read the values of %q", columnType)
		}
		var b strings.Builder
		i := 1
		for ; i < len(s); i++ {
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					b.WriteByte('\'')
					i++
					continue
				}
				break
			}
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				case '0':
					b.WriteByte(0)
				case 'Z':
					b.WriteByte(26)
				default:
					b.WriteByte(s[i])
				}
				continue
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, fmt.Errorf("cannot read the values of %q", columnType)
		}
		out = append(out, b.String())
		s = s[i+1:]
		if len(s) > 0 {
			if s[0] != ',' {
				return nil, fmt.Errorf("cannot read the values of %q", columnType)
			}
			s = s[1:]
		}
	}
	return out, nil
}
