package mysqlconv

import "fmt"

// dig2bytes is how many bytes a group of n (< 9) decimal digits takes in
// MySQL's binary decimal format.
var dig2bytes = [10]int{0, 1, 1, 2, 2, 3, 3, 4, 4, 4}

// decimalSize returns the bytes a decimal(prec, scale) takes.
func decimalSize(prec, scale int) int {
	intg := prec - scale
	return intg/9*4 + dig2bytes[intg%9] + scale/9*4 + dig2bytes[scale%9]
}

// appendDecimal decodes MySQL's binary decimal(prec, scale) at the start of
// data and appends its text as the server prints it: an optional "-", the
// integer digits without leading zeros ("0" when none), and, when scale >
// 0, "." and exactly scale digits. It returns the bytes read.
func appendDecimal(dst, data []byte, prec, scale int) ([]byte, int, error) {
	if prec < 1 || prec > 65 || scale < 0 || scale > 38 || scale > prec {
		return dst, 0, fmt.Errorf("decimal(%d,%d) is not a valid decimal type", prec, scale)
	}
	size := decimalSize(prec, scale)
	if len(data) < size {
		return dst, 0, fmt.Errorf("decimal(%d,%d) needs %d bytes, %d left", prec, scale, size, len(data))
	}
	var mask byte
	neg := data[0]&0x80 == 0
	if neg {
		mask = 0xFF
	}
	pos := 0
	group := func(n int) int {
		v := 0
		for i := 0; i < n; i++ {
			b := data[pos] ^ mask
			if pos == 0 {
				b ^= 0x80
			}
			v = v<<8 | int(b)
			pos++
		}
		return v
	}
	start := len(dst)
	if neg {
		dst = append(dst, '-')
	}
	digitsStart := len(dst)
	intg := prec - scale
	leading := true
	if x := intg % 9; x > 0 {
		if v := group(dig2bytes[x]); v != 0 {
			dst = appendDigits(dst, v, 0)
			leading = false
		}
	}
	for i := 0; i < intg/9; i++ {
		v := group(4)
		switch {
		case leading && v == 0:
		case leading:
			dst = appendDigits(dst, v, 0)
			leading = false
		default:
			dst = appendDigits(dst, v, 9)
		}
	}
	if leading {
		dst = append(dst, '0')
	}
	if scale > 0 {
		dst = append(dst, '.')
		for i := 0; i < scale/9; i++ {
			dst = appendDigits(dst, group(4), 9)
		}
		if x := scale % 9; x > 0 {
			dst = appendDigits(dst, group(dig2bytes[x]), x)
		}
	}
	if neg {
		// "-0.00" is 0.00: MySQL prints no sign for zero.
		zero := true
		for _, c := range dst[digitsStart:] {
			if c != '0' && c != '.' {
				zero = false
				break
			}
		}
		if zero {
			dst = append(dst[:start], dst[digitsStart:]...)
		}
	}
	return dst, size, nil
}
