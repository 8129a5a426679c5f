package mysqlconv

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"

	"github.com/tapline/tapline/connectors"
)

// BinaryJSON is a MySQL json value in the server's binary form, as
// RowDecoder leaves it: the caller decodes it (the MySQL source uses
// github.com/go-mysql-org/go-mysql's decoder) and replaces it with a
// connectors.JSON. It aliases the decoded buffer. MariaDB never writes it:
// its json is text.
type BinaryJSON []byte

// RowDecoder decodes the row images of binlog rows events, for the columns
// of one TABLE_MAP event. It does no I/O and never retains its input. It
// is not safe for concurrent use.
type RowDecoder struct {
	Cols []Column
	Opts Options
	buf  []byte
}

var errShort = errors.New("row image ends early")

// Decode decodes one row image at the start of data into row (one value per
// column): a null bitmap over the columns that present marks as included,
// then their values. A column not included (binlog_row_image other than
// FULL) gets connectors.Unchanged. It returns the bytes read.
func (d *RowDecoder) Decode(data, present []byte, row []connectors.Value) (int, error) {
	n := len(d.Cols)
	if len(row) != n {
		return 0, fmt.Errorf("row has room for %d values, the table %d columns", len(row), n)
	}
	if len(present) < (n+7)/8 {
		return 0, fmt.Errorf("column bitmap of %d bytes for %d columns", len(present), n)
	}
	count := 0
	for i := 0; i < n/8; i++ {
		count += bits.OnesCount8(present[i])
	}
	if n%8 != 0 {
		count += bits.OnesCount8(present[n/8] & byte(1<<(n%8)-1))
	}
	nb := (count + 7) / 8
	if len(data) < nb {
		return 0, errShort
	}
	nulls, pos, ni := data[:nb], nb, 0
	for i := range d.Cols {
		if present[i>>3]&(1<<(i&7)) == 0 {
			row[i] = connectors.Unchanged
			continue
		}
		null := nulls[ni>>3]&(1<<(ni&7)) != 0
		ni++
		if null {
			row[i] = nil
			continue
		}
		v, k, err := d.value(&d.Cols[i], data[pos:])
		if err != nil {
			return 0, fmt.Errorf("column %s (%s): %w", d.Cols[i].Name, d.Cols[i].Native(), err)
		}
		row[i] = v
		pos += k
	}
	return pos, nil
}

func le(b []byte, n int) uint64 {
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func be(b []byte, n int) uint64 {
	var v uint64
	for i := 0; i < n; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// intValue returns an unsigned value as int64 when it fits, else uint64.
func uintValue(u uint64) connectors.Value {
	if u <= math.MaxInt64 {
		return int64(u)
	}
	return u
}

// lenPrefixed reads a little-endian length of n bytes and that many bytes.
func lenPrefixed(data []byte, n int) ([]byte, int, error) {
	if n < 1 || n > 4 || len(data) < n {
		return nil, 0, errShort
	}
	l := le(data, n)
	if uint64(len(data)-n) < l {
		return nil, 0, errShort
	}
	return data[n : n+int(l)], n + int(l), nil
}

func (d *RowDecoder) value(c *Column, data []byte) (connectors.Value, int, error) {
	need := func(n int) error {
		if len(data) < n {
			return errShort
		}
		return nil
	}
	switch c.Kind {
	case KindInt:
		if err := need(c.Size); err != nil {
			return nil, 0, err
		}
		u := le(data, c.Size)
		if c.Unsigned {
			return uintValue(u), c.Size, nil
		}
		shift := 64 - 8*uint(c.Size)
		return int64(u<<shift) >> shift, c.Size, nil
	case KindFloat:
		if err := need(4); err != nil {
			return nil, 0, err
		}
		return float32Value(math.Float32frombits(binary.LittleEndian.Uint32(data))), 4, nil
	case KindDouble:
		if err := need(8); err != nil {
			return nil, 0, err
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(data)), 8, nil
	case KindDecimal:
		b, n, err := appendDecimal(d.buf[:0], data, c.Precision, c.Scale)
		d.buf = b
		if err != nil {
			return nil, 0, err
		}
		return string(b), n, nil
	case KindBit:
		n := (c.Length + 7) / 8
		if err := need(n); err != nil {
			return nil, 0, err
		}
		if n > 8 {
			return nil, 0, fmt.Errorf("bit(%d) is longer than 64 bits", c.Length)
		}
		u := be(data, n)
		if c.Length == 1 {
			return u != 0, n, nil
		}
		return uintValue(u), n, nil
	case KindDate:
		if err := need(3); err != nil {
			return nil, 0, err
		}
		v := int(le(data, 3))
		return d.date(v>>9, v>>5&15, v&31), 3, nil
	case KindDatetime:
		return d.datetime(c, data)
	case KindTimestamp:
		return d.timestamp(c, data)
	case KindTime:
		return d.time(c, data)
	case KindYear:
		if err := need(1); err != nil {
			return nil, 0, err
		}
		if data[0] == 0 {
			return int64(0), 1, nil
		}
		return int64(data[0]) + 1900, 1, nil
	case KindEnum:
		if err := need(c.Size); err != nil {
			return nil, 0, err
		}
		idx := int(le(data, c.Size))
		if idx == 0 {
			return "", c.Size, nil // the error value of an invalid insert in non-strict mode
		}
		if idx > len(c.Labels) {
			return nil, 0, fmt.Errorf("enum index %d of %d values (binlog_row_metadata=FULL sends the values)", idx, len(c.Labels))
		}
		return c.Labels[idx-1], c.Size, nil
	case KindSet:
		if err := need(c.Size); err != nil {
			return nil, 0, err
		}
		mask := le(data, c.Size)
		b := d.buf[:0]
		for i := 0; mask != 0 && i < 64; i++ {
			if mask&1 != 0 {
				if i >= len(c.Labels) {
					return nil, 0, fmt.Errorf("set bit %d of %d values (binlog_row_metadata=FULL sends the values)", i, len(c.Labels))
				}
				if len(b) > 0 {
					b = append(b, ',')
				}
				b = append(b, c.Labels[i]...)
			}
			mask >>= 1
		}
		d.buf = b
		return string(b), c.Size, nil
	case KindChar, KindVarchar:
		lb := 1
		if c.maxBytes > 255 {
			lb = 2
		}
		raw, n, err := lenPrefixed(data, lb)
		if err != nil {
			return nil, 0, err
		}
		return c.bytesValue(raw, c.Kind == KindChar), n, nil
	case KindBlob:
		raw, n, err := lenPrefixed(data, c.Size)
		if err != nil {
			return nil, 0, err
		}
		return c.bytesValue(raw, false), n, nil
	case KindJSON:
		raw, n, err := lenPrefixed(data, c.Size)
		if err != nil {
			return nil, 0, err
		}
		return BinaryJSON(raw), n, nil
	case KindGeometry:
		raw, n, err := lenPrefixed(data, c.Size)
		if err != nil {
			return nil, 0, err
		}
		return geometryText(raw), n, nil
	case KindVector:
		raw, n, err := lenPrefixed(data, c.Size)
		if err != nil {
			return nil, 0, err
		}
		return append([]byte(nil), raw...), n, nil
	}
	return nil, 0, fmt.Errorf("cannot decode a %s column", c.Native())
}

// bytesValue converts a string column's bytes: text to a UTF-8 string (or
// a connectors.JSON for json columns), binary to a copy, binary(n) padded
// back to its length with the zero bytes the binlog strips.
func (c *Column) bytesValue(raw []byte, fixed bool) connectors.Value {
	if c.Format != FormatNone {
		return c.FormatBytes(raw)
	}
	if c.binaryCharset() {
		if fixed && len(raw) < c.Length {
			out := make([]byte, c.Length)
			copy(out, raw)
			return out
		}
		return append(make([]byte, 0, len(raw)), raw...)
	}
	if !c.Charset.Known() {
		return append(make([]byte, 0, len(raw)), raw...)
	}
	if c.JSON {
		return jsonValue(c.Charset.Decode(raw))
	}
	return c.Charset.Decode(raw)
}

// JSONValue makes a connectors.JSON of a json column's text. MariaDB's json
// is text with a check constraint that can be dropped; text that is not
// JSON becomes a JSON string, so that the value stays valid JSON.
func JSONValue(s string) connectors.Value { return jsonValue(s) }

func jsonValue(s string) connectors.Value {
	if json.Valid([]byte(s)) {
		return connectors.JSON(s)
	}
	q, _ := json.Marshal(s)
	return connectors.JSON(q)
}

// float32Value is the float64 of a float column's value as MySQL prints it
// (0.1, not 0.10000000149011612).
func float32Value(f float32) float64 {
	if f == 0 || math.IsInf(float64(f), 0) || math.IsNaN(float64(f)) {
		return float64(f)
	}
	var buf [32]byte
	s := strconv.AppendFloat(buf[:0], float64(f), 'g', -1, 32)
	v, err := strconv.ParseFloat(string(s), 64)
	if err != nil {
		return float64(f)
	}
	return v
}

func zeroish(y, m, d int) bool { return m == 0 || d == 0 }

func (d *RowDecoder) date(y, m, day int) connectors.Value {
	if zeroish(y, m, day) && d.Opts.ZeroDates == ZeroDatesNull {
		return nil
	}
	d.buf = appendDate(d.buf[:0], y, m, day)
	return string(d.buf)
}

func fracBytes(fsp int) int { return (fsp + 1) / 2 }

// readFrac reads the fractional part of a temporal2 value, as microseconds.
func readFrac(data []byte, fsp int) int {
	switch fsp {
	case 1, 2:
		return int(data[0]) * 10000
	case 3, 4:
		return int(be(data, 2)) * 100
	case 5, 6:
		return int(be(data, 3))
	}
	return 0
}

func (d *RowDecoder) datetime(c *Column, data []byte) (connectors.Value, int, error) {
	var y, m, day, h, mi, s, micro, n int
	if c.oldFSP {
		if len(data) < 8 {
			return nil, 0, errShort
		}
		v := binary.LittleEndian.Uint64(data)
		date, clock := v/1000000, v%1000000
		y, m, day = int(date/10000), int(date/100%100), int(date%100)
		h, mi, s = int(clock/10000), int(clock/100%100), int(clock%100)
		n = 8
	} else {
		n = 5 + fracBytes(c.FSP)
		if len(data) < n {
			return nil, 0, errShort
		}
		v := int64(be(data, 5)) - 0x8000000000
		if v < 0 {
			v = -v
		}
		ymd, hms := v>>17, v&(1<<17-1)
		ym := ymd >> 5
		y, m, day = int(ym/13), int(ym%13), int(ymd&31)
		h, mi, s = int(hms>>12), int(hms>>6&63), int(hms&63)
		micro = readFrac(data[5:], c.FSP)
	}
	if zeroish(y, m, day) && d.Opts.ZeroDates == ZeroDatesNull {
		return nil, n, nil
	}
	b := appendDate(d.buf[:0], y, m, day)
	b = append(b, 'T')
	b = appendClock(b, h, mi, s)
	b = appendFrac(b, micro, c.FSP)
	d.buf = b
	return string(b), n, nil
}

func (d *RowDecoder) timestamp(c *Column, data []byte) (connectors.Value, int, error) {
	var sec int64
	var micro, n int
	if c.oldFSP {
		if len(data) < 4 {
			return nil, 0, errShort
		}
		sec, n = int64(binary.LittleEndian.Uint32(data)), 4
	} else {
		n = 4 + fracBytes(c.FSP)
		if len(data) < n {
			return nil, 0, errShort
		}
		sec, micro = int64(binary.BigEndian.Uint32(data)), readFrac(data[4:], c.FSP)
	}
	var b []byte
	if sec == 0 {
		// TIMESTAMP's range starts at 1970-01-01 00:00:01 UTC: 0 is the zero date.
		if d.Opts.ZeroDates == ZeroDatesNull {
			return nil, n, nil
		}
		b = append(d.buf[:0], "0000-00-00T00:00:00"...)
	} else {
		y, m, day, h, mi, s := civil(sec)
		b = appendDate(d.buf[:0], y, m, day)
		b = append(b, 'T')
		b = appendClock(b, h, mi, s)
	}
	b = appendFrac(b, micro, c.FSP)
	b = append(b, 'Z')
	d.buf = b
	return string(b), n, nil
}

func (d *RowDecoder) time(c *Column, data []byte) (connectors.Value, int, error) {
	var total int64 // (hms packed << 24) + microseconds, signed
	var n int
	if c.oldFSP {
		if len(data) < 3 {
			return nil, 0, errShort
		}
		v := int64(le(data, 3)<<40) >> 40
		neg := v < 0
		if neg {
			v = -v
		}
		b := d.buf[:0]
		if neg {
			b = append(b, '-')
		}
		b = appendClock(b, int(v/10000), int(v/100%100), int(v%100))
		d.buf = b
		return string(b), 3, nil
	}
	n = 3 + fracBytes(c.FSP)
	if len(data) < n {
		return nil, 0, errShort
	}
	switch c.FSP {
	case 1, 2:
		ip := int64(be(data, 3)) - 0x800000
		frac := int64(data[3])
		if ip < 0 && frac != 0 {
			ip++
			frac -= 0x100
		}
		total = ip<<24 + frac*10000
	case 3, 4:
		ip := int64(be(data, 3)) - 0x800000
		frac := int64(be(data[3:], 2))
		if ip < 0 && frac != 0 {
			ip++
			frac -= 0x10000
		}
		total = ip<<24 + frac*100
	case 5, 6:
		total = int64(be(data, 6)) - 0x800000000000
	default:
		total = (int64(be(data, 3)) - 0x800000) << 24
	}
	b := d.buf[:0]
	if total < 0 {
		b = append(b, '-')
		total = -total
	}
	hms, micro := total>>24, int(total%(1<<24))
	b = appendClock(b, int(hms>>12%(1<<10)), int(hms>>6%64), int(hms%64))
	b = appendFrac(b, micro, c.FSP)
	d.buf = b
	return string(b), n, nil
}

// SelectExpr returns the expression a snapshot selects for the column
// (quoted is its quoted name) so that DecodeText gets a lossless text:
// float columns are cast to double, whose text has every digit.
func (c *Column) SelectExpr(quoted string) string {
	switch c.Kind {
	case KindFloat:
		return "CAST(" + quoted + " AS DOUBLE)"
	case KindChar, KindVarchar, KindBlob:
		if c.Charset != nil && !c.Charset.Known() {
			// The stream keeps these as bytes: read the bytes, unconverted.
			return "CAST(" + quoted + " AS BINARY)"
		}
	}
	return quoted
}

// DecodeText decodes a value as the text protocol returns it for the
// expression SelectExpr gives, on a connection with character_set_results
// utf8mb4 and time_zone '+00:00'. raw is not NULL; it is not retained.
func (c *Column) DecodeText(raw []byte, opts Options) (connectors.Value, error) {
	s := string(raw)
	switch c.Kind {
	case KindInt, KindYear:
		if c.Unsigned {
			u, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, err
			}
			return uintValue(u), nil
		}
		return strconv.ParseInt(s, 10, 64)
	case KindDecimal:
		return s, nil
	case KindFloat:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		return float32Value(float32(f)), nil
	case KindDouble:
		return strconv.ParseFloat(s, 64)
	case KindBit:
		if len(raw) > 8 {
			return nil, fmt.Errorf("bit value of %d bytes", len(raw))
		}
		u := be(raw, len(raw))
		if c.Length == 1 {
			return u != 0, nil
		}
		return uintValue(u), nil
	case KindDate:
		if len(s) != 10 {
			return nil, fmt.Errorf("date %q", s)
		}
		if opts.ZeroDates == ZeroDatesNull && (s[5:7] == "00" || s[8:10] == "00") {
			return nil, nil
		}
		return s, nil
	case KindDatetime, KindTimestamp:
		if len(s) < 19 || s[10] != ' ' {
			return nil, fmt.Errorf("datetime %q", s)
		}
		zero := s[5:7] == "00" || s[8:10] == "00"
		if zero && opts.ZeroDates == ZeroDatesNull {
			return nil, nil
		}
		b := make([]byte, 0, len(s)+1)
		b = append(b, s[:10]...)
		b = append(b, 'T')
		b = append(b, s[11:]...)
		if c.Kind == KindTimestamp {
			b = append(b, 'Z')
		}
		return string(b), nil
	case KindTime, KindEnum, KindSet:
		return s, nil
	case KindChar, KindVarchar, KindBlob:
		if c.Format != FormatNone {
			return s, nil // the server prints these types as text
		}
		if c.binaryCharset() || !c.Charset.Known() {
			return append([]byte(nil), raw...), nil
		}
		if c.JSON {
			return jsonValue(s), nil
		}
		return s, nil
	case KindJSON:
		return jsonValue(s), nil
	case KindGeometry:
		return geometryText(raw), nil
	case KindVector:
		return append([]byte(nil), raw...), nil
	}
	return nil, fmt.Errorf("cannot decode a %s column", c.Native())
}
