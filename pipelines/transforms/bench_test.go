package transforms

import (
	"testing"

	"github.com/tapline/tapline/connectors"
)

func benchApply(b *testing.B, tr Transform) {
	b.Helper()
	ev := orderEvent(connectors.OpUpdate, 42, "123.45", "paid")
	b.ReportAllocs()
	for b.Loop() {
		e := ev
		if _, err := tr.Apply(&e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFilterWhere(b *testing.B) {
	tr, err := NewFilter(FilterConfig{Where: `num(after.amount) > 100 && after.status == "paid"`})
	if err != nil {
		b.Fatal(err)
	}
	benchApply(b, tr)
}

func BenchmarkFilterTablesOps(b *testing.B) {
	tr, err := NewFilter(FilterConfig{Tables: []string{"public.ord*"}, Ops: []string{"c", "u"}})
	if err != nil {
		b.Fatal(err)
	}
	benchApply(b, tr)
}

func BenchmarkDropColumns(b *testing.B) {
	tr, err := NewDropColumns(DropColumnsConfig{Columns: []string{"*.email"}})
	if err != nil {
		b.Fatal(err)
	}
	benchApply(b, tr)
}

func BenchmarkMaskHash(b *testing.B) {
	tr, err := NewMaskColumns(MaskColumnsConfig{Columns: []string{"*.email"}, Method: MaskHash, Salt: "s"})
	if err != nil {
		b.Fatal(err)
	}
	benchApply(b, tr)
}

func BenchmarkRoute(b *testing.B) {
	tr, err := NewRoute(RouteConfig{Destination: "cdc.{db}.{schema}.{table}"})
	if err != nil {
		b.Fatal(err)
	}
	benchApply(b, tr)
}
