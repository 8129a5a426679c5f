package shop

import (
	"testing"
	"time"
)

// The same rows read from different stores (native types from Postgres,
// text from SQLite or Redis) have the same digest, and any changed value,
// a missing row or a row too many changes it.
func TestDigestComparesAcrossStores(t *testing.T) {
	cols := []Column{{Name: "id", Kind: Int}, {Name: "total", Kind: Decimal, Scale: 2}, {Name: "at", Kind: Time},
		{Name: "doc", Kind: JSON}, {Name: "note"}}
	at := time.Date(2026, 11, 23, 10, 0, 0, 123456000, time.FixedZone("CET", 3600))
	pg := [][]any{
		{int64(1), "19.90", at, map[string]any{"b": 1.0, "a": "x"}, nil},
		{int64(2), "5.00", at, map[string]any{}, "gift"},
	}
	text := [][]any{
		{"2", "5", "2026-11-23T09:00:00.123456Z", "{}", "gift"},
		{"1", "19.9", "2026-11-23 09:00:00.123456+00:00", `{"a": "x", "b": 1}`, nil},
	}
	digest := func(rows [][]any) Digest {
		t.Helper()
		lines, err := Canon(rows, cols)
		if err != nil {
			t.Fatal(err)
		}
		return Sum(lines)
	}
	want := digest(pg)
	if got := digest(text); got != want {
		t.Fatalf("the same rows from two stores digest differently: %v vs %v", got, want)
	}
	for name, rows := range map[string][][]any{
		"changed value": {{"2", "5.01", "2026-11-23T09:00:00.123456Z", "{}", "gift"}, text[1]},
		"null vs empty": {{"2", "5", "2026-11-23T09:00:00.123456Z", "{}", ""}, text[1]},
		"missing row":   {text[0]},
		"extra row":     {text[0], text[1], {"3", "1", "2026-11-23T09:00:00Z", "{}", nil}},
	} {
		if got := digest(rows); got == want {
			t.Errorf("%s: same digest %v", name, got)
		}
	}
}
