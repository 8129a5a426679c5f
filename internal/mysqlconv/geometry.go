package mysqlconv

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
)

// geometryText turns MySQL's internal geometry value (a 4-byte
// little-endian SRID, then WKB) into WKT, prefixed with "SRID=n;" (EWKT, as
// PostGIS reads it) when the SRID is not 0. A value that is not valid WKB
// is returned as "HEX:" and the hex of the whole value, never dropped.
func geometryText(v []byte) string {
	if len(v) >= 5 {
		srid := binary.LittleEndian.Uint32(v)
		var b []byte
		if srid != 0 {
			b = append(b, "SRID="...)
			b = strconv.AppendUint(b, uint64(srid), 10)
			b = append(b, ';')
		}
		if out, rest, err := appendWKT(b, v[4:], 0); err == nil && len(rest) == 0 {
			return string(out)
		}
	}
	return "HEX:" + hex.EncodeToString(v)
}

var errWKB = errors.New("invalid WKB")

var wkbNames = [...]string{1: "POINT", 2: "LINESTRING", 3: "POLYGON", 4: "MULTIPOINT", 5: "MULTILINESTRING", 6: "MULTIPOLYGON", 7: "GEOMETRYCOLLECTION"}

// appendWKT appends the WKT of one WKB geometry and returns the bytes after it.
func appendWKT(b, w []byte, depth int) ([]byte, []byte, error) {
	if depth > 16 || len(w) < 5 {
		return b, nil, errWKB
	}
	var order binary.ByteOrder = binary.LittleEndian
	switch w[0] {
	case 0:
		order = binary.BigEndian
	case 1:
	default:
		return b, nil, errWKB
	}
	typ := order.Uint32(w[1:])
	w = w[5:]
	if typ < 1 || typ > 7 {
		return b, nil, errWKB
	}
	b = append(b, wkbNames[typ]...)
	count := func() (int, error) {
		if len(w) < 4 {
			return 0, errWKB
		}
		n := order.Uint32(w)
		w = w[4:]
		if uint64(n) > uint64(len(w)) { // every element takes at least one byte
			return 0, errWKB
		}
		return int(n), nil
	}
	point := func() error {
		if len(w) < 16 {
			return errWKB
		}
		b = appendCoord(b, math.Float64frombits(order.Uint64(w)))
		b = append(b, ' ')
		b = appendCoord(b, math.Float64frombits(order.Uint64(w[8:])))
		w = w[16:]
		return nil
	}
	points := func() error {
		n, err := count()
		if err != nil {
			return err
		}
		b = append(b, '(')
		for i := 0; i < n; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			if err := point(); err != nil {
				return err
			}
		}
		b = append(b, ')')
		return nil
	}
	rings := func() error {
		n, err := count()
		if err != nil {
			return err
		}
		b = append(b, '(')
		for i := 0; i < n; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			if err := points(); err != nil {
				return err
			}
		}
		b = append(b, ')')
		return nil
	}
	var err error
	switch typ {
	case 1:
		b = append(b, '(')
		if err = point(); err == nil {
			b = append(b, ')')
		}
	case 2:
		err = points()
	case 3:
		err = rings()
	default: // multi* and collections: nested WKB geometries
		var n int
		if n, err = count(); err != nil {
			break
		}
		b = append(b, '(')
		for i := 0; i < n && err == nil; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			var inner []byte
			start := len(b)
			b, inner, err = appendWKT(b, w, depth+1)
			if err != nil {
				break
			}
			w = inner
			if typ != 7 {
				// MULTIPOINT((1 2),(3 4)): members are written without
				// their type name.
				name := wkbNames[typ-3]
				if string(b[start:start+len(name)]) != name {
					err = errWKB
					break
				}
				b = append(b[:start], b[start+len(name):]...)
			}
		}
		if err == nil {
			b = append(b, ')')
		}
	}
	return b, w, err
}

func appendCoord(b []byte, f float64) []byte {
	if f == 0 {
		return append(b, '0') // also -0
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}
