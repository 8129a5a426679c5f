package connectors_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
)

func TestTableID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want connectors.TableID
	}{
		{"public.orders", connectors.TableID{Schema: "public", Name: "orders"}},
		{"orders", connectors.TableID{Name: "orders"}},
		{"a.b.c", connectors.TableID{Schema: "a", Name: "b.c"}},
		{"", connectors.TableID{}},
	} {
		got := connectors.ParseTableID(tc.in)
		if got != tc.want {
			t.Errorf("ParseTableID(%q) = %#v", tc.in, got)
		}
		if got.String() != tc.in {
			t.Errorf("%#v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

func TestNewSchemaErrors(t *testing.T) {
	tbl := connectors.TableID{Schema: "s", Name: "t"}
	for _, tc := range []struct {
		name string
		cols []connectors.Column
		want string
	}{
		{"unnamed", []connectors.Column{{Name: "a"}, {}}, `schema s.t: a column has no name`},
		{"duplicate", []connectors.Column{{Name: "a"}, {Name: "b"}, {Name: "a"}}, `schema s.t: column "a" appears twice`},
		{"key twice", []connectors.Column{{Name: "a", Key: 1}, {Name: "b", Key: 1}}, `key positions must be 1..2, each once (column "b" has 1)`},
		{"key gap", []connectors.Column{{Name: "a", Key: 1}, {Name: "b", Key: 3}}, `key positions must be 1..2, each once (column "b" has 3)`},
		{"no first key", []connectors.Column{{Name: "a", Key: 2}}, `key positions must be 1..1, each once (column "a" has 2)`},
	} {
		if _, err := connectors.NewSchema(tbl, 1, tc.cols); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "appears twice") {
			t.Errorf("MustSchema with a bad column list: recovered %v", r)
		}
	}()
	connectors.MustSchema(tbl, 1, []connectors.Column{{Name: "a"}, {Name: "a"}})
}

func TestKeyColumns(t *testing.T) {
	// A composite key declared out of column order: (tenant, id).
	cols := []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Key: 2},
		{Name: "note", Type: connectors.TypeText, Nullable: true},
		{Name: "tenant", Type: connectors.TypeString, Key: 1},
	}
	s := connectors.MustSchema(connectors.TableID{Name: "t"}, 1, cols)
	if got := s.KeyColumns(); !slices.Equal(got, []int{2, 0}) || !s.HasKey() {
		t.Errorf("KeyColumns = %v", got)
	}
	// A Schema built without NewSchema computes its key on demand.
	lit := &connectors.Schema{Table: connectors.TableID{Name: "t"}, Columns: cols}
	if got := lit.KeyColumns(); !slices.Equal(got, []int{2, 0}) {
		t.Errorf("KeyColumns of a literal = %v", got)
	}
	nokey := connectors.MustSchema(connectors.TableID{Name: "log"}, 1, []connectors.Column{{Name: "msg"}})
	if nokey.HasKey() || len(nokey.KeyColumns()) != 0 {
		t.Errorf("a table without a key has key %v", nokey.KeyColumns())
	}
	if (&connectors.Schema{Columns: []connectors.Column{{Name: "a"}}}).HasKey() {
		t.Error("a literal without key columns has a key")
	}
	if s.Index("tenant") != 2 || s.Index("nope") != -1 {
		t.Error("Index")
	}
}

func TestSameShape(t *testing.T) {
	cols := []connectors.Column{{Name: "id", Type: connectors.TypeInt64, Key: 1}, {Name: "v", Type: connectors.TypeText, Nullable: true}}
	a := connectors.MustSchema(connectors.TableID{Name: "a"}, 1, cols)
	b := connectors.MustSchema(connectors.TableID{Schema: "x", Name: "b"}, 7, slices.Clone(cols))
	if !a.SameShape(b) {
		t.Error("same columns, other table and version: not the same shape")
	}
	for _, change := range []func(c []connectors.Column){
		func(c []connectors.Column) { c[1].Type = connectors.TypeString },
		func(c []connectors.Column) { c[1].Nullable = false },
		func(c []connectors.Column) { c[1].Name = "w" },
		func(c []connectors.Column) { c[1].Native = "varchar" },
	} {
		c := slices.Clone(cols)
		change(c)
		if a.SameShape(connectors.MustSchema(connectors.TableID{Name: "a"}, 1, c)) {
			t.Errorf("changed column %+v: still the same shape", c[1])
		}
	}
	if a.SameShape(connectors.MustSchema(connectors.TableID{Name: "a"}, 1, cols[:1])) {
		t.Error("fewer columns: same shape")
	}
}

func ExampleSchema_KeyColumns() {
	s := connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "order_lines"}, 1, []connectors.Column{
		{Name: "line", Type: connectors.TypeInt32, Key: 2},
		{Name: "sku", Type: connectors.TypeString},
		{Name: "order_id", Type: connectors.TypeInt64, Key: 1},
	})
	for _, i := range s.KeyColumns() {
		fmt.Println(s.Columns[i].Name)
	}
	// Output:
	// order_id
	// line
}

// KeyOnly holds for version-0 schemas whose every column is a key column,
// and for no other.
func TestSchemaKeyOnly(t *testing.T) {
	id := connectors.TableID{Schema: "s", Name: "t"}
	for _, tc := range []struct {
		name    string
		version int
		cols    []connectors.Column
		want    bool
	}{
		{"the key of a tombstone", connectors.KeyOnlyVersion, []connectors.Column{{Name: "a", Type: connectors.TypeInt64, Key: 1}, {Name: "b", Type: connectors.TypeString, Key: 2}}, true},
		{"inferred, no key", connectors.KeyOnlyVersion, []connectors.Column{{Name: "a", Type: connectors.TypeInt64}}, false},
		{"a non-key column", connectors.KeyOnlyVersion, []connectors.Column{{Name: "a", Type: connectors.TypeInt64, Key: 1}, {Name: "b", Type: connectors.TypeString}}, false},
		{"a versioned schema of key columns only", 1, []connectors.Column{{Name: "a", Type: connectors.TypeInt64, Key: 1}}, false},
	} {
		if got := connectors.MustSchema(id, tc.version, tc.cols).KeyOnly(); got != tc.want {
			t.Errorf("%s: KeyOnly = %v, want %v", tc.name, got, tc.want)
		}
	}
	var none *connectors.Schema
	if none.KeyOnly() {
		t.Error("a nil schema is key-only")
	}
}
