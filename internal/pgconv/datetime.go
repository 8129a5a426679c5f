package pgconv

import (
	"strconv"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// Dates and timestamps are written in ISO 8601 with years as java.time
// writes them: four digits for years 1 to 9999 AD, astronomical numbering
// for years BC (1 BC is 0000, 44 BC is -0043) and a + before years past
// 9999 (+10000). Postgres prints "0044-03-15 BC" and "10000-01-01"; PostgresDate
// and the README say how to turn them back.

// isInfinity reports whether b is "infinity" or "-infinity", which dates and
// timestamps keep as those strings.
func isInfinity(b []byte) bool {
	return string(b) == "infinity" || string(b) == "-infinity"
}

// cutBC removes a trailing " BC" and reports whether there was one.
func cutBC(b []byte) ([]byte, bool) {
	if n := len(b); n > 3 && b[n-3] == ' ' && b[n-2] == 'B' && b[n-1] == 'C' {
		return b[:n-3], true
	}
	return b, false
}

// digits parses exactly n decimal digits at the start of b.
func digits(b []byte, n int) (int, bool) {
	if len(b) < n {
		return 0, false
	}
	v := 0
	for _, c := range b[:n] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseYMD parses "YYYY-MM-DD" (four or more year digits) at the start of
// b and returns the number of bytes it used.
func parseYMD(b []byte) (y int64, m, d, n int, ok bool) {
	for n < len(b) && n < 8 && b[n] >= '0' && b[n] <= '9' {
		y = y*10 + int64(b[n]-'0')
		n++
	}
	if n < 4 || len(b) < n+6 || b[n] != '-' || b[n+3] != '-' {
		return 0, 0, 0, 0, false
	}
	m, ok1 := digits(b[n+1:], 2)
	d, ok2 := digits(b[n+4:], 2)
	if !ok1 || !ok2 || m < 1 || m > 12 || d < 1 || d > 31 {
		return 0, 0, 0, 0, false
	}
	return y, m, d, n + 6, true
}

// parseClock parses "HH:MM:SS" optionally followed by "." and fraction
// digits at the start of b, returning the seconds of the day, the fraction
// (with its dot) and the bytes used.
func parseClock(b []byte) (secs int64, frac []byte, n int, ok bool) {
	h, ok1 := digits(b, 2)
	if !ok1 || len(b) < 8 || b[2] != ':' || b[5] != ':' {
		return 0, nil, 0, false
	}
	mi, ok2 := digits(b[3:], 2)
	s, ok3 := digits(b[6:], 2)
	if !ok2 || !ok3 || h > 24 || mi > 59 || s > 60 {
		return 0, nil, 0, false
	}
	n = 8
	if n < len(b) && b[n] == '.' {
		n++
		for n < len(b) && b[n] >= '0' && b[n] <= '9' {
			n++
		}
		if n == 9 {
			return 0, nil, 0, false
		}
		frac = b[8:n]
	}
	return int64(h)*3600 + int64(mi)*60 + int64(s), frac, n, true
}

// appendYear writes an astronomical year as java.time does.
func appendYear(buf []byte, y int64) []byte {
	if y < 0 {
		buf = append(buf, '-')
		y = -y
	} else if y > 9999 {
		buf = append(buf, '+')
	}
	for p := int64(1000); p > 1 && y < p; p /= 10 {
		buf = append(buf, '0')
	}
	return strconv.AppendInt(buf, y, 10)
}

func append2(buf []byte, v int) []byte {
	return append(buf, byte('0'+v/10), byte('0'+v%10))
}

func appendYMD(buf []byte, y int64, m, d int) []byte {
	buf = appendYear(buf, y)
	buf = append(buf, '-')
	buf = append2(buf, m)
	buf = append(buf, '-')
	return append2(buf, d)
}

func decodeDate(b []byte) (connectors.Value, error) {
	if isInfinity(b) {
		return string(b), nil
	}
	b, bc := cutBC(b)
	y, m, d, n, ok := parseYMD(b)
	if !ok || n != len(b) {
		return nil, syntaxError("date")
	}
	if bc {
		y = 1 - y
	}
	var arr [24]byte
	return string(appendYMD(arr[:0], y, m, d)), nil
}

func decodeTimestamp(b []byte) (connectors.Value, error) {
	if isInfinity(b) {
		return string(b), nil
	}
	b, bc := cutBC(b)
	y, m, d, n, ok := parseYMD(b)
	if !ok || n >= len(b) || b[n] != ' ' {
		return nil, syntaxError("timestamp")
	}
	clock := b[n+1:]
	if _, _, cn, ok := parseClock(clock); !ok || cn != len(clock) {
		return nil, syntaxError("timestamp")
	}
	if bc {
		y = 1 - y
	}
	var arr [48]byte
	buf := appendYMD(arr[:0], y, m, d)
	buf = append(buf, 'T')
	buf = append(buf, clock...)
	return string(buf), nil
}

func decodeTimestampTZ(b []byte) (connectors.Value, error) {
	if isInfinity(b) {
		return string(b), nil
	}
	var arr [48]byte
	buf, ok := appendUTC(arr[:0], b)
	if !ok {
		return nil, syntaxError("timestamp with time zone")
	}
	return string(buf), nil
}

// appendUTC converts a timestamptz as Postgres prints it with DateStyle=ISO
// in any TimeZone ("2025-11-22 10:11:12.5+05:45:30", "... BC") to ISO 8601
// in UTC ("2025-11-22T04:25:42.5Z") and appends it to buf.
func appendUTC(buf, b []byte) ([]byte, bool) {
	b, bc := cutBC(b)
	y, m, d, n, ok := parseYMD(b)
	if !ok || n >= len(b) || b[n] != ' ' {
		return buf, false
	}
	b = b[n+1:]
	secs, frac, n, ok := parseClock(b)
	if !ok || n >= len(b) {
		return buf, false
	}
	off, ok := parseOffset(b[n:])
	if !ok {
		return buf, false
	}
	if bc {
		y = 1 - y
	}
	t := daysFromCivil(y, m, d)*86400 + secs - off
	days := floorDiv(t, 86400)
	secs = t - days*86400
	y, m, d = civilFromDays(days)
	buf = appendYMD(buf, y, m, d)
	buf = append(buf, 'T')
	buf = append2(buf, int(secs/3600))
	buf = append(buf, ':')
	buf = append2(buf, int(secs/60%60))
	buf = append(buf, ':')
	buf = append2(buf, int(secs%60))
	buf = append(buf, frac...)
	return append(buf, 'Z'), true
}

// parseOffset parses a UTC offset "+HH", "+HH:MM" or "+HH:MM:SS" (or with
// "-") making up all of b, in seconds east of UTC.
func parseOffset(b []byte) (int64, bool) {
	if len(b) != 3 && len(b) != 6 && len(b) != 9 {
		return 0, false
	}
	var sign int64
	switch b[0] {
	case '+':
		sign = 1
	case '-':
		sign = -1
	default:
		return 0, false
	}
	var off int64
	for i := 1; i < len(b); i += 3 {
		if i > 1 && b[i-1] != ':' {
			return 0, false
		}
		v, ok := digits(b[i:], 2)
		if !ok || i > 1 && v > 59 {
			return 0, false
		}
		off = off*60 + int64(v)
	}
	for i := len(b); i < 9; i += 3 {
		off *= 60
	}
	return sign * off, true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date with an astronomical year (H. Hinnant's algorithm).
func daysFromCivil(y int64, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := int64((m + 9) % 12)
	doy := (153*mp+2)/5 + int64(d) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y int64, m, d int) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

// PostgresDate turns a date, timestamp or timestamptz string as Decode
// writes it back into a form Postgres accepts as input: an astronomical
// year at or below 0 becomes a year BC ("-0043-03-15" → "0044-03-15 BC"),
// a leading "+" is dropped, and other strings (including "infinity") are
// returned as they are. A Postgres sink uses it to write these values.
func PostgresDate(s string) string {
	if s == "" {
		return s
	}
	if s[0] == '+' {
		return s[1:]
	}
	neg := s[0] == '-'
	if !neg && !(len(s) >= 4 && s[:4] == "0000") {
		return s
	}
	if s == "-infinity" {
		return s
	}
	rest := s
	if neg {
		rest = s[1:]
	}
	i := strings.IndexByte(rest, '-')
	if i < 4 {
		return s
	}
	y, err := strconv.ParseInt(rest[:i], 10, 64)
	if err != nil {
		return s
	}
	if neg {
		y = -y
	}
	bcYear := 1 - y
	var arr [16]byte
	yb := strconv.AppendInt(arr[:0], bcYear, 10)
	pad := ""
	if len(yb) < 4 {
		pad = "0000"[:4-len(yb)]
	}
	return pad + string(yb) + rest[i:] + " BC"
}
