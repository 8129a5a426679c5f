package redis

import (
	"math"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
)

func TestTemplateSplit(t *testing.T) {
	for _, tc := range []struct {
		tmpl, prefix, head, tail string
	}{
		{"{table}:{pk}", "", "orders:", ""},
		{"{table}:{pk}", "app:", "app:orders:", ""},
		{"{prefix}v1/{db}/{schema}.{table}:{pk}/row", "app:", "app:v1/shop%3Adb/public.orders:", "/row"},
		{"{pk}:{table}", "app:", "app:", ":orders"},
		{"{pk}", "", "", ""},
	} {
		tm, err := parseTemplate(tc.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		head, tail := tm.split(tableVars{prefix: tc.prefix, db: escape("shop:db"), schema: "public", table: "orders"})
		if head != tc.head || tail != tc.tail {
			t.Errorf("%s with prefix %q: %q + pk + %q, want %q + pk + %q", tc.tmpl, tc.prefix, head, tail, tc.head, tc.tail)
		}
	}
}

// A ':' must separate {pk} from the nearest {db}, {schema} or {table} on
// each side, so that a table's key pattern matches only its keys.
func TestTemplateNeedsColon(t *testing.T) {
	for tmpl, ok := range map[string]bool{
		"{table}:{pk}":             true,
		"{table}:v{pk}":            true,
		"{pk}:{table}":             true,
		"{prefix}{table}:{pk}":     true,
		"{table}:{pk}/{schema}":    false,
		"{table}/{pk}":             false,
		"{table}{pk}":              false,
		"{schema}:{table}-{pk}":    false,
		"row:{pk}":                 true,
		"{db}:x/{pk}/{table}:y":    false,
		"{db}:x/{pk}:/{table}:y":   true,
		"{prefix}{pk}{prefix}":     true,
		"{table}:{prefix}{pk}":     true,
		"{table}{prefix}:{pk}":     true,
		"{table}{prefix}{pk}":      false,
		"{pk}{db}":                 false,
		"v1:{schema}.{table}:{pk}": true,
	} {
		_, err := parseTemplate(tmpl)
		if ok && err != nil {
			t.Errorf("%s: %v", tmpl, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "put a ':' between")) {
			t.Errorf("%s: err = %v, want one asking for a ':'", tmpl, err)
		}
	}
}

// globEscape makes text match only itself in SCAN MATCH.
func TestGlobEscape(t *testing.T) {
	for in, want := range map[string]string{"orders:": "orders:", `a*b?c[d]e\f`: `a\*b\?c\[d\]e\\f`} {
		if got := globEscape(in); got != want {
			t.Errorf("globEscape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain": "plain", "a:b": "a%3Ab", "50%": "50%25", "%3A": "%253A", "": "", "é:ü": "é%3Aü",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
	// Different values, or different splits of a composite key, never
	// give the same {pk}.
	seen := map[string][]string{}
	for _, parts := range [][]string{{"a:b", "c"}, {"a", "b:c"}, {"a%3Ab", "c"}, {"a", "b", "c"}} {
		pk := ""
		for i, p := range parts {
			if i > 0 {
				pk += ":"
			}
			pk += escape(p)
		}
		if prev, dup := seen[pk]; dup {
			t.Errorf("%q and %q both give %q", prev, parts, pk)
		}
		seen[pk] = parts
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct {
		v    connectors.Value
		want string
		ok   bool
	}{
		{nil, "", false},
		{"x", "x", true},
		{int64(-42), "-42", true},
		{uint64(math.MaxUint64), "18446744073709551615", true},
		{true, "true", true},
		{0.1, "0.1", true},
		{1e21, "1e+21", true},
		{math.NaN(), "NaN", true},
		{math.Inf(-1), "-Infinity", true},
		{[]byte{0, 255}, "AP8=", true},
		{connectors.JSON(`{"a": 1}`), `{"a": 1}`, true},
		{[]connectors.Value{int64(1), "b", nil}, `[1,"b",null]`, true},
	} {
		got, ok, err := text(tc.v)
		if err != nil || got != tc.want || ok != tc.ok {
			t.Errorf("text(%#v) = %q, %v, %v; want %q, %v", tc.v, got, ok, err, tc.want, tc.ok)
		}
	}
	for _, v := range []connectors.Value{connectors.Unchanged, struct{}{}, int(3)} {
		if _, _, err := text(v); err == nil {
			t.Errorf("text(%#v): no error", v)
		}
	}
}

func TestRawText(t *testing.T) {
	for raw, want := range map[string]string{`"a\"b"`: `a"b`, `42`: `42`, `true`: `true`, `{"x":1}`: `{"x":1}`} {
		if got, ok := rawText(raw); !ok || got != want {
			t.Errorf("rawText(%s) = %q, %v; want %q", raw, got, ok, want)
		}
	}
	if _, ok := rawText("null"); ok {
		t.Error("rawText(null) is a value")
	}
}
