package pgconv

import (
	"strings"
	"testing"
	"time"
)

// countValues counts the elements (at every level) of a decoded array.
func countValues(v V) int {
	a, ok := v.([]V)
	if !ok {
		return 1
	}
	n := 1
	for _, e := range a {
		n += countValues(e)
	}
	return n
}

func FuzzArray(f *testing.F) {
	for _, s := range []string{
		"{}", "{1,2,NULL}", "{{1,2},{3,4}}", "[0:1]={1,2}", `{"a,b","c\"d","",NULL,"NULL"}`,
		`{ a\,b , c }`, `{{{{{{1}}}}}}`, `{"\\x00ff"}`, `{(1,1),(0,0);(2,2),(1,1)}`, "{{},{}}", `{"}"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, k := range []kind{kindString, kindInt, kindTimestampTZ} {
			v, err := parseArray([]byte(s), k, 0)
			if err != nil {
				continue
			}
			// Every value (and every nested array) needs at least one
			// input byte: the output is bounded by the input.
			if n := countValues(v); n > len(s)+1 {
				t.Fatalf("%q: %d values from %d bytes", s, n, len(s))
			}
			if k != kindString {
				continue
			}
			// What decodes re-encodes to a literal that decodes the same.
			var b strings.Builder
			arrayLiteral(&b, "", v.([]V), ',')
			again, err := parseArray([]byte(b.String()), k, 0)
			if err != nil || !same(again, v) {
				t.Fatalf("%q → %#v → %q → %#v, %v", s, v, b.String(), again, err)
			}
		}
	})
}

func FuzzTimestampTZ(f *testing.F) {
	for _, s := range []string{
		"2025-11-22 10:11:12.5+01", "2025-11-22 10:11:12+05:30", "1850-01-01 00:00:00+05:41:16",
		"0044-03-15 10:00:00+00 BC", "294277-01-01 05:44:59.999999+05:45", "infinity", "2024-02-29 23:30:00-02",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := decodeTimestampTZ([]byte(s))
		if err != nil || s == "infinity" || s == "-infinity" {
			return
		}
		got := v.(string)
		if strings.HasSuffix(s, " BC") || got[0] == '-' || got[0] == '+' || !strings.HasSuffix(got, "Z") {
			return
		}
		// Cross-check with the time package where it can parse the input.
		layout := "2006-01-02 15:04:05.999999999-07"
		switch i := strings.LastIndexAny(s, "+-"); len(s) - i {
		case 6:
			layout += ":00"
		case 9:
			layout += ":00:00"
		}
		want, err := time.Parse(layout, s)
		if err != nil {
			return
		}
		have, err := time.Parse(time.RFC3339Nano, got)
		if err != nil {
			t.Fatalf("%q → %q, which is not RFC 3339: %v", s, got, err)
		}
		if !have.Equal(want) {
			t.Fatalf("%q → %q, want %s", s, got, want.UTC().Format(time.RFC3339Nano))
		}
	})
}
