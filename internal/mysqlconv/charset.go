package mysqlconv

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

// Charset is a MySQL character set: its name, the most bytes one character
// takes, and how its bytes become UTF-8.
type Charset struct {
	Name   string
	MaxLen int
	kind   charsetKind
	enc    encoding.Encoding // for kindOther
}

type charsetKind uint8

const (
	csUTF8    charsetKind = iota // UTF-8 already (utf8mb4, utf8mb3, ascii): copied as is
	csBinary                     // not text: the column's values are bytes
	csLatin1                     // MySQL's latin1 (cp1252 with the five holes kept as C1 controls)
	csUCS2                       // UCS-2 / UTF-16 big endian
	csUTF16LE                    // UTF-16 little endian
	csUTF32                      // UTF-32 big endian
	csOther                      // through golang.org/x/text
	csUnknown                    // no decoder: values are kept as bytes
)

// Binary is the "binary" character set: values of its columns are bytes.
var Binary = &Charset{Name: "binary", MaxLen: 1, kind: csBinary}

// IsBinary reports whether values in this charset are bytes, not text: the
// binary charset, or a charset tapline cannot decode (kept lossless as bytes).
func (c *Charset) IsBinary() bool {
	return c == nil || c.kind == csBinary || c.kind == csUnknown
}

// Known reports whether tapline can turn this charset into UTF-8.
func (c *Charset) Known() bool { return c != nil && c.kind != csUnknown }

// Decode returns b, in this charset, as a UTF-8 string. Bytes that do not
// form a character become U+FFFD, as MySQL prints them with '?'.
func (c *Charset) Decode(b []byte) string {
	switch c.kind {
	case csUTF8, csBinary, csUnknown:
		return string(b)
	case csLatin1:
		return decodeLatin1(b)
	case csUCS2:
		return decodeUTF16(b, false)
	case csUTF16LE:
		return decodeUTF16(b, true)
	case csUTF32:
		var sb strings.Builder
		sb.Grow(len(b))
		for i := 0; i+4 <= len(b); i += 4 {
			r := rune(uint32(b[i])<<24 | uint32(b[i+1])<<16 | uint32(b[i+2])<<8 | uint32(b[i+3]))
			if !utf8.ValidRune(r) {
				r = utf8.RuneError
			}
			sb.WriteRune(r)
		}
		return sb.String()
	case csOther:
		out, err := c.enc.NewDecoder().Bytes(b)
		if err != nil {
			return strings.ToValidUTF8(string(b), "\uFFFD")
		}
		return string(out)
	}
	return string(b)
}

// latin1High maps bytes 0x80..0x9F of MySQL's latin1 (which is Windows-1252,
// except that the five bytes cp1252 leaves undefined map to the C1 controls
// of the same value). Bytes 0xA0..0xFF are U+00A0..U+00FF.
var latin1High = [32]rune{
	0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
	0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
}

func decodeLatin1(b []byte) string {
	ascii := true
	for _, c := range b {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b)
	}
	out := make([]byte, 0, len(b)+len(b)/2)
	for _, c := range b {
		switch {
		case c < 0x80:
			out = append(out, c)
		case c < 0xA0:
			out = utf8.AppendRune(out, latin1High[c-0x80])
		default:
			out = utf8.AppendRune(out, rune(c))
		}
	}
	return string(out)
}

func decodeUTF16(b []byte, little bool) string {
	var sb strings.Builder
	sb.Grow(len(b))
	u := func(i int) rune {
		if little {
			return rune(b[i]) | rune(b[i+1])<<8
		}
		return rune(b[i])<<8 | rune(b[i+1])
	}
	for i := 0; i+2 <= len(b); i += 2 {
		r := u(i)
		if r >= 0xD800 && r < 0xDC00 && i+4 <= len(b) {
			if lo := u(i + 2); lo >= 0xDC00 && lo < 0xE000 {
				r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
				i += 2
			}
		}
		if !utf8.ValidRune(r) {
			r = utf8.RuneError
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// CharsetByName returns the charset with a MySQL charset name; maxLen is
// its longest character in bytes (0: the known value for the name, or 1).
// A charset tapline cannot decode is returned with Known false, and its
// columns' values are kept as bytes.
func CharsetByName(name string, maxLen int) *Charset {
	name = strings.ToLower(name)
	c := &Charset{Name: name, MaxLen: maxLen}
	switch name {
	case "utf8mb4", "utf8mb3", "utf8", "ascii":
		c.kind = csUTF8
	case "binary":
		return Binary
	case "latin1":
		c.kind = csLatin1
	case "ucs2", "utf16":
		c.kind = csUCS2
	case "utf16le":
		c.kind = csUTF16LE
	case "utf32":
		c.kind = csUTF32
	default:
		if enc, ok := otherCharsets[name]; ok {
			c.kind, c.enc = csOther, enc
		} else {
			c.kind = csUnknown
		}
	}
	if c.MaxLen <= 0 {
		c.MaxLen = knownMaxLen[name]
		if c.MaxLen == 0 {
			c.MaxLen = 1
		}
	}
	return c
}

var otherCharsets = map[string]encoding.Encoding{
	"latin2":   charmap.ISO8859_2,
	"latin5":   charmap.ISO8859_9,
	"latin7":   charmap.ISO8859_13,
	"greek":    charmap.ISO8859_7,
	"hebrew":   charmap.ISO8859_8,
	"cp1250":   charmap.Windows1250,
	"cp1251":   charmap.Windows1251,
	"cp1256":   charmap.Windows1256,
	"cp1257":   charmap.Windows1257,
	"cp850":    charmap.CodePage850,
	"cp852":    charmap.CodePage852,
	"cp866":    charmap.CodePage866,
	"koi8r":    charmap.KOI8R,
	"koi8u":    charmap.KOI8U,
	"macroman": charmap.Macintosh,
	"sjis":     japanese.ShiftJIS,
	"cp932":    japanese.ShiftJIS,
	"ujis":     japanese.EUCJP,
	"eucjpms":  japanese.EUCJP,
	"gbk":      simplifiedchinese.GBK,
	"gb2312":   simplifiedchinese.GBK, // EUC-CN is a subset of GBK
	"gb18030":  simplifiedchinese.GB18030,
	"big5":     traditionalchinese.Big5,
	"euckr":    korean.EUCKR,
}

var knownMaxLen = map[string]int{
	"utf8mb4": 4, "utf8mb3": 3, "utf8": 3, "ucs2": 2, "utf16": 4, "utf16le": 4, "utf32": 4,
	"sjis": 2, "cp932": 2, "ujis": 3, "eucjpms": 3, "gbk": 2, "gb2312": 2, "gb18030": 4, "big5": 2, "euckr": 2,
}

// Charsets maps collation ids (as TABLE_MAP events give them) to charsets.
// Build it from the server's information_schema with Add; DefaultCharsets
// knows the common collations. It is safe for concurrent reads once built.
type Charsets struct {
	byID   map[uint64]*Charset
	byName map[string]*Charset
}

// NewCharsets returns an empty set.
func NewCharsets() *Charsets {
	return &Charsets{byID: map[uint64]*Charset{}, byName: map[string]*Charset{}}
}

// Add records that collation id belongs to the named charset, whose
// longest character has maxLen bytes (0: the known value).
func (cs *Charsets) Add(id uint64, charset string, maxLen int) {
	c, ok := cs.byName[charset]
	if !ok || (maxLen > 0 && c.MaxLen != maxLen) {
		c = CharsetByName(charset, maxLen)
		cs.byName[charset] = c
	}
	cs.byID[id] = c
}

// Lookup returns the charset of a collation id; an unknown id gives a
// charset with Known false.
func (cs *Charsets) Lookup(id uint64) *Charset {
	if c, ok := cs.byID[id]; ok {
		return c
	}
	if id == 63 {
		return Binary
	}
	return &Charset{Name: "collation#" + itoa(int(id)), MaxLen: 1, kind: csUnknown}
}

// MaxLen returns the longest character of the named charset, in bytes.
func (cs *Charsets) MaxLen(charset string) int {
	if c, ok := cs.byName[charset]; ok {
		return c.MaxLen
	}
	return CharsetByName(charset, 0).MaxLen
}

// DefaultCharsets returns the collation ids MySQL and MariaDB share for
// the common charsets (the default collations and a few more), for use
// without a server; the source adds the server's own list.
func DefaultCharsets() *Charsets {
	cs := NewCharsets()
	for id, name := range map[uint64]string{
		8: "latin1", 5: "latin1", 15: "latin1", 31: "latin1", 47: "latin1", 48: "latin1", 49: "latin1", 94: "latin1",
		33: "utf8mb3", 83: "utf8mb3", 192: "utf8mb3", 213: "utf8mb3",
		45: "utf8mb4", 46: "utf8mb4", 224: "utf8mb4", 255: "utf8mb4", 309: "utf8mb4",
		11: "ascii", 65: "ascii", 63: "binary", 35: "ucs2", 54: "utf16", 56: "utf16le", 60: "utf32",
		9: "latin2", 51: "cp1251", 28: "gbk", 1: "big5", 13: "sjis", 7: "koi8r",
	} {
		cs.Add(id, name, 0)
	}
	return cs
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
