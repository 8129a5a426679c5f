package mysqlconv

// ZeroDates says what becomes of MySQL's zero and partly-zero dates
// ('0000-00-00', '2024-00-10'), which are no valid ISO 8601 date.
type ZeroDates uint8

// The zero-date policies.
const (
	// ZeroDatesKeep keeps them as MySQL prints them, in the ISO layout:
	// "0000-00-00", "0000-00-00T00:00:00", "0000-00-00T00:00:00Z". Lossless;
	// a sink that cannot store them rejects the event visibly.
	ZeroDatesKeep ZeroDates = iota
	// ZeroDatesNull turns them into NULL (Debezium's behaviour).
	ZeroDatesNull
)

// Options adjust how values are decoded.
type Options struct {
	ZeroDates ZeroDates
}

// appendDigits appends v in exactly n decimal digits (more if v needs them).
func appendDigits(b []byte, v int, n int) []byte {
	var tmp [20]byte
	i := len(tmp)
	for v > 0 || n > 0 {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		n--
	}
	return append(b, tmp[i:]...)
}

// appendFrac appends "." and the first fsp digits of micro (a count of
// microseconds), or nothing when fsp is 0.
func appendFrac(b []byte, micro int, fsp int) []byte {
	if fsp <= 0 {
		return b
	}
	if fsp > 6 {
		fsp = 6
	}
	b = append(b, '.')
	var digits [6]byte
	for i := 5; i >= 0; i-- {
		digits[i] = byte('0' + micro%10)
		micro /= 10
	}
	return append(b, digits[:fsp]...)
}

// appendDate appends YYYY-MM-DD.
func appendDate(b []byte, y, m, d int) []byte {
	b = appendDigits(b, y, 4)
	b = append(b, '-')
	b = appendDigits(b, m, 2)
	b = append(b, '-')
	return appendDigits(b, d, 2)
}

// appendClock appends HH:MM:SS (hours may have more digits).
func appendClock(b []byte, h, mi, s int) []byte {
	b = appendDigits(b, h, 2)
	b = append(b, ':')
	b = appendDigits(b, mi, 2)
	b = append(b, ':')
	return appendDigits(b, s, 2)
}

// civil converts seconds since the Unix epoch to a UTC date and time,
// without time.Time (years 1970..2106 are all TIMESTAMP can hold).
func civil(sec int64) (y, m, d, h, mi, s int) {
	days := sec / 86400
	rem := int(sec % 86400)
	h, mi, s = rem/3600, rem%3600/60, rem%60
	// Howard Hinnant's days_from_civil, inverted.
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	yy := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	if m <= 2 {
		yy++
	}
	return int(yy), m, d, h, mi, s
}
