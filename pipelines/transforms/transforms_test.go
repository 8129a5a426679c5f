package transforms

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
)

var (
	ordersTable = connectors.TableID{Schema: "public", Name: "orders"}
	orders      = connectors.MustSchema(ordersTable, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Native: "bigint", Key: 1},
		{Name: "amount", Type: connectors.TypeDecimal, Native: "numeric(10,2)", Nullable: true},
		{Name: "status", Type: connectors.TypeString, Native: "text"},
		{Name: "email", Type: connectors.TypeString, Native: "text", Nullable: true},
	})
	customers = connectors.MustSchema(connectors.TableID{Schema: "crm", Name: "customers"}, 3, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Key: 1},
		{Name: "email", Type: connectors.TypeString},
		{Name: "password_hash", Type: connectors.TypeBytes},
	})
)

func orderEvent(op connectors.Op, id int64, amount any, status string) connectors.Event {
	row := []connectors.Value{id, amount, status, "a@example.com"}
	ev := connectors.Event{Op: op, Schema: orders, Source: connectors.SourceInfo{Connector: "postgres", DB: "shop", Schema: "public", Table: "orders"}}
	switch op {
	case connectors.OpDelete:
		ev.Before = row
	case connectors.OpUpdate:
		ev.Before, ev.After = row, row
	case connectors.OpTruncate:
	default:
		ev.After = row
	}
	return ev
}

func customerEvent(id int64) connectors.Event {
	return connectors.Event{Op: connectors.OpCreate, Schema: customers,
		Source: connectors.SourceInfo{Connector: "mysql", DB: "crm", Table: "customers"},
		After:  []connectors.Value{id, "c@example.com", []byte("x")}}
}

func build(t *testing.T, name string, fill func(cfg any)) Transform {
	t.Helper()
	tr, err := buildErr(name, fill)
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	return tr
}

func buildErr(name string, fill func(cfg any)) (Transform, error) {
	r, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	cfg := r.NewConfig()
	fill(cfg)
	return r.Build(cfg)
}

func apply(t *testing.T, tr Transform, ev connectors.Event) (connectors.Event, bool) {
	t.Helper()
	keep, err := tr.Apply(&ev)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return ev, keep
}

func TestRegistry(t *testing.T) {
	want := []string{"drop_columns", "filter", "mask_columns", "rename", "route"}
	if got := Names(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	_, err := Lookup("filtr")
	var unk *connectors.UnknownError
	if !errors.As(err, &unk) || err.Error() != `unknown transform type "filtr" (did you mean "filter"?)` {
		t.Fatalf("Lookup(filtr) = %v", err)
	}
	r, _ := Lookup("mask_columns")
	if cfg := r.NewConfig().(*MaskColumnsConfig); cfg.Method != MaskHash {
		t.Errorf("mask_columns default method = %q", cfg.Method)
	}
	var keys []string
	for _, f := range r.Fields() {
		keys = append(keys, f.Key)
	}
	if !reflect.DeepEqual(keys, []string{"columns", "method", "salt"}) {
		t.Errorf("mask_columns fields = %v", keys)
	}
	if _, err := r.Build(&FilterConfig{}); err == nil {
		t.Error("Build with another transform's config succeeded")
	}

	reg := NewRegistry()
	RegisterIn(reg, "noop", "does nothing", nil, func(struct{}) (Transform, error) {
		return Func(func(*connectors.Event) (bool, error) { return true, nil }), nil
	})
	if got := reg.Names(); !reflect.DeepEqual(got, []string{"noop"}) {
		t.Errorf("own registry Names() = %v", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a name twice did not panic")
		}
	}()
	RegisterIn(reg, "noop", "", nil, func(struct{}) (Transform, error) { return nil, nil })
}

func TestFilterTablesAndOps(t *testing.T) {
	tr := build(t, "filter", func(c any) {
		c.(*FilterConfig).Tables = []string{"public.ord*"}
		c.(*FilterConfig).Ops = []string{"c", "delete"}
	})
	cases := []struct {
		ev   connectors.Event
		keep bool
	}{
		{orderEvent(connectors.OpCreate, 1, "1.00", "new"), true},
		{orderEvent(connectors.OpDelete, 1, "1.00", "new"), true},
		{orderEvent(connectors.OpUpdate, 1, "1.00", "new"), false},
		{customerEvent(1), false},
	}
	for i, c := range cases {
		if _, keep := apply(t, tr, c.ev); keep != c.keep {
			t.Errorf("case %d (%s %s): keep = %v, want %v", i, c.ev.Op, c.ev.Table(), keep, c.keep)
		}
	}
	// A pattern without a schema matches the table in any schema.
	tr = build(t, "filter", func(c any) { c.(*FilterConfig).Tables = []string{"customers"} })
	if _, keep := apply(t, tr, customerEvent(1)); !keep {
		t.Error(`"customers" did not match crm.customers`)
	}
}

func TestFilterWhere(t *testing.T) {
	tr := build(t, "filter", func(c any) {
		c.(*FilterConfig).Where = `num(row.amount) > 100 && op in ["c", "u", "d"] && table == "public.orders"`
	})
	for _, c := range []struct {
		ev   connectors.Event
		keep bool
	}{
		{orderEvent(connectors.OpCreate, 1, "100.50", "new"), true},
		{orderEvent(connectors.OpCreate, 2, "99.99", "new"), false},
		{orderEvent(connectors.OpDelete, 3, "250", "new"), true}, // row is before for deletes
		{orderEvent(connectors.OpRead, 4, "250", "new"), false},
	} {
		if _, keep := apply(t, tr, c.ev); keep != c.keep {
			t.Errorf("%s id %v: keep = %v, want %v", c.ev.Op, c.ev.Row()[0], keep, c.keep)
		}
	}

	tr = build(t, "filter", func(c any) {
		c.(*FilterConfig).Where = `before.status != after.status || after.id == 42`
	})
	ev := orderEvent(connectors.OpUpdate, 42, "1", "paid")
	if _, keep := apply(t, tr, ev); !keep {
		t.Error("after.id == 42 (int64 against an int literal) did not match")
	}
	// Absent images are empty maps, so their columns are null.
	tr = build(t, "filter", func(c any) { c.(*FilterConfig).Where = `before.id == nil` })
	if _, keep := apply(t, tr, orderEvent(connectors.OpCreate, 1, "1", "x")); !keep {
		t.Error("before.id of an insert is not nil")
	}
}

func TestFilterWhereErrors(t *testing.T) {
	for _, where := range []string{`num(after.amount) >`, `aftr.amount > 1`, `1 + 1`} {
		_, err := buildErr("filter", func(c any) { c.(*FilterConfig).Where = where })
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "where" {
			t.Errorf("where %q: err = %v, want a ConfigError for where", where, err)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("where %q: multi-line error %q", where, err)
		}
	}
	_, err := buildErr("filter", func(c any) { c.(*FilterConfig).Ops = []string{"upsert"} })
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != "ops" {
		t.Errorf("ops upsert: err = %v", err)
	}

	// Runtime errors stop the pipeline and name the table and the expression.
	tr := build(t, "filter", func(c any) { c.(*FilterConfig).Where = `num(after.amount) > 100` })
	ev := orderEvent(connectors.OpCreate, 1, nil, "new")
	_, err = tr.Apply(&ev)
	if err == nil || !strings.Contains(err.Error(), "public.orders") || !strings.Contains(err.Error(), "num(after.amount) > 100") {
		t.Errorf("null amount: err = %v", err)
	}
	ev = orderEvent(connectors.OpCreate, 1, "secret-ish", "new")
	_, err = tr.Apply(&ev)
	if err == nil || strings.Contains(err.Error(), "secret-ish") {
		t.Errorf("bad decimal: err = %v (must not quote the row's value)", err)
	}
	tr = build(t, "filter", func(c any) { c.(*FilterConfig).Where = `after.id` })
	if _, err = tr.Apply(&ev); err == nil || !strings.Contains(err.Error(), `where "after.id"`) {
		t.Errorf("non-bool result: err = %v", err)
	}
}

func TestDropColumns(t *testing.T) {
	tr := build(t, "drop_columns", func(c any) {
		c.(*DropColumnsConfig).Columns = []string{"public.orders.email", "*.password_hash", "orders.nothing"}
	})
	ev := orderEvent(connectors.OpUpdate, 7, "5.00", "paid")
	orig := ev.After
	out, keep := apply(t, tr, ev)
	if !keep {
		t.Fatal("dropped the event")
	}
	if got := out.Schema.Columns; len(got) != 3 || got[2].Name != "status" || out.Schema.Table != ordersTable || !out.Schema.HasKey() {
		t.Fatalf("schema = %+v", out.Schema)
	}
	if !reflect.DeepEqual(out.After, []connectors.Value{int64(7), "5.00", "paid"}) || !reflect.DeepEqual(out.Before, out.After) {
		t.Errorf("rows = %v / %v", out.Before, out.After)
	}
	if len(orig) != 4 || orig[3] != "a@example.com" || orders.Index("email") != 3 {
		t.Error("the input row or schema was modified")
	}
	out2, _ := apply(t, tr, orderEvent(connectors.OpCreate, 8, "1", "new"))
	if out2.Schema != out.Schema {
		t.Error("the derived schema is not shared between events of one input schema")
	}
	c, _ := apply(t, tr, customerEvent(1))
	if len(c.Schema.Columns) != 2 || len(c.After) != 2 || c.Schema.Version != 3 {
		t.Errorf("customers: %+v %v", c.Schema, c.After)
	}
	tru, _ := apply(t, tr, orderEvent(connectors.OpTruncate, 0, nil, ""))
	if tru.Schema != out.Schema || tru.Before != nil || tru.After != nil {
		t.Error("truncate event not passed through with the new schema")
	}

	// A table none of the selectors names passes untouched, schema included.
	tr = build(t, "drop_columns", func(c any) { c.(*DropColumnsConfig).Columns = []string{"crm.customers.email"} })
	ev = orderEvent(connectors.OpCreate, 1, "1", "x")
	if out, _ := apply(t, tr, ev); out.Schema != orders || &out.After[0] != &ev.After[0] {
		t.Error("an unselected table was changed or copied")
	}
}

func TestDropColumnsRefusesKeys(t *testing.T) {
	tr := build(t, "drop_columns", func(c any) { c.(*DropColumnsConfig).Columns = []string{"*.id"} })
	ev := orderEvent(connectors.OpCreate, 1, "1", "x")
	_, err := tr.Apply(&ev)
	if err == nil || !strings.Contains(err.Error(), "public.orders") || !strings.Contains(err.Error(), `"id"`) {
		t.Fatalf("err = %v, want one naming the table and the key column", err)
	}
	for _, cols := range [][]string{nil, {"orders"}, {"public.orders."}, {"[.x"}} {
		_, err := buildErr("drop_columns", func(c any) { c.(*DropColumnsConfig).Columns = cols })
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "columns" {
			t.Errorf("columns %q: err = %v", cols, err)
		}
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestMaskColumnsHash(t *testing.T) {
	tr := build(t, "mask_columns", func(c any) {
		cfg := c.(*MaskColumnsConfig)
		cfg.Columns = []string{"orders.email", "orders.id"}
		cfg.Salt = "pepper"
	})
	ev := orderEvent(connectors.OpUpdate, 42, "1.00", "new")
	ev.Before = []connectors.Value{int64(42), "1.00", "old", nil}
	ev.After = []connectors.Value{int64(42), "1.00", "new", connectors.Unchanged}
	orig := ev.After
	out, _ := apply(t, tr, ev)
	if out.After[0] != sha("pepper42") || out.After[1] != "1.00" {
		t.Errorf("after = %v", out.After)
	}
	if out.Before[3] != nil || out.After[3] != connectors.Unchanged {
		t.Errorf("null or unchanged values were masked: %v %v", out.Before[3], out.After[3])
	}
	if orig[0] != int64(42) {
		t.Error("the input row was modified")
	}
	if c := out.Schema.Columns[0]; c.Type != connectors.TypeString || c.Native != "" || c.Key != 1 {
		t.Errorf("masked key column = %+v", c)
	}
	if out.Schema.Columns[1] != orders.Columns[1] {
		t.Error("an unmasked column changed")
	}
	// Stable across transform instances (and so across runs).
	tr2 := build(t, "mask_columns", func(c any) {
		cfg := c.(*MaskColumnsConfig)
		cfg.Columns, cfg.Salt = []string{"*.email"}, "pepper"
	})
	o2, _ := apply(t, tr2, orderEvent(connectors.OpCreate, 1, "1", "x"))
	if o2.After[3] != sha("pepper"+"a@example.com") {
		t.Errorf("email hash = %v", o2.After[3])
	}
	if s := fmt.Sprintf("%+v %#v", tr2, MaskColumnsConfig{Salt: "pepper"}); strings.Contains(s, "pepper") {
		t.Errorf("the salt is printed: %s", s)
	}
}

func TestMaskColumnsRedactAndNull(t *testing.T) {
	tr := build(t, "mask_columns", func(c any) {
		cfg := c.(*MaskColumnsConfig)
		cfg.Columns, cfg.Method = []string{"public.orders.email"}, MaskRedact
	})
	out, _ := apply(t, tr, orderEvent(connectors.OpCreate, 1, "1", "x"))
	if out.After[3] != Redacted {
		t.Errorf("redact: %v", out.After)
	}
	tr = build(t, "mask_columns", func(c any) {
		cfg := c.(*MaskColumnsConfig)
		cfg.Columns, cfg.Method = []string{"public.orders.status"}, MaskNull
	})
	out, _ = apply(t, tr, orderEvent(connectors.OpCreate, 1, "1", "x"))
	if c := out.Schema.Columns[2]; out.After[2] != nil || !c.Nullable || c.Type != connectors.TypeString {
		t.Errorf("null: %v %+v", out.After, c)
	}
	// Only hash may mask a key.
	tr = build(t, "mask_columns", func(c any) {
		cfg := c.(*MaskColumnsConfig)
		cfg.Columns, cfg.Method = []string{"orders.id"}, MaskRedact
	})
	ev := orderEvent(connectors.OpCreate, 1, "1", "x")
	if _, err := tr.Apply(&ev); err == nil || !strings.Contains(err.Error(), "public.orders") {
		t.Errorf("redacting a key: err = %v", err)
	}
	_, err := buildErr("mask_columns", func(c any) {
		cfg := c.(*MaskColumnsConfig)
		cfg.Columns, cfg.Method = []string{"orders.id"}, "hsah"
	})
	if err == nil || err.Error() != `method: unknown method "hsah" (did you mean "hash"?)` {
		t.Errorf("bad method: err = %v", err)
	}
}

func TestRename(t *testing.T) {
	tr := build(t, "rename", func(c any) {
		cfg := c.(*RenameConfig)
		cfg.Tables = map[string]string{"public.orders": "shop.purchases", "customers": "clients"}
		cfg.Columns = map[string]string{"public.orders.amount": "total", "*.email": "mail", "customers.id": "client_id"}
	})
	ev := orderEvent(connectors.OpCreate, 1, "1", "x")
	out, _ := apply(t, tr, ev)
	if out.Table() != (connectors.TableID{Schema: "shop", Name: "purchases"}) {
		t.Errorf("table = %v", out.Table())
	}
	if got := []string{out.Schema.Columns[1].Name, out.Schema.Columns[3].Name}; !reflect.DeepEqual(got, []string{"total", "mail"}) {
		t.Errorf("columns = %v", got)
	}
	if out.Source.Schema != "public" || out.Source.Table != "orders" {
		t.Errorf("source changed: %+v", out.Source)
	}
	if &out.After[0] != &ev.After[0] || orders.Columns[1].Name != "amount" {
		t.Error("rows were copied or the input schema changed")
	}
	if o2, _ := apply(t, tr, orderEvent(connectors.OpCreate, 2, "1", "x")); o2.Schema != out.Schema {
		t.Error("derived schema not cached")
	}
	c, _ := apply(t, tr, customerEvent(1))
	if c.Table() != (connectors.TableID{Schema: "crm", Name: "clients"}) || c.Schema.Columns[0].Name != "client_id" || c.Schema.Columns[0].Key != 1 {
		t.Errorf("customers: %+v", c.Schema)
	}

	// Renaming onto an existing column is an error at the first event.
	tr = build(t, "rename", func(c any) { c.(*RenameConfig).Columns = map[string]string{"orders.amount": "status"} })
	ev = orderEvent(connectors.OpCreate, 1, "1", "x")
	if _, err := tr.Apply(&ev); err == nil || !strings.Contains(err.Error(), "public.orders") {
		t.Errorf("duplicate column: err = %v", err)
	}
	for _, cfg := range []RenameConfig{
		{},
		{Tables: map[string]string{"public.*": "x"}},
		{Tables: map[string]string{"public.orders": "shop."}},
		{Columns: map[string]string{"public.*.id": "x"}},
		{Columns: map[string]string{"orders.id": ""}},
	} {
		if _, err := NewRename(cfg); err == nil {
			t.Errorf("NewRename(%+v) succeeded", cfg)
		}
	}
}

func TestRoute(t *testing.T) {
	tr := build(t, "route", func(c any) { c.(*RouteConfig).Destination = "cdc.{connector}.{db}.{schema}.{table}.{op}" })
	out, _ := apply(t, tr, orderEvent(connectors.OpUpdate, 1, "1", "x"))
	if out.Destination != "cdc.postgres.shop.public.orders.u" {
		t.Errorf("destination = %q", out.Destination)
	}
	tr = build(t, "route", func(c any) {
		c.(*RouteConfig).Destination = "legacy.{table}"
		c.(*RouteConfig).Tables = []string{"crm.*"}
	})
	if out, _ := apply(t, tr, orderEvent(connectors.OpCreate, 1, "1", "x")); out.Destination != "" {
		t.Errorf("an unselected table was routed to %q", out.Destination)
	}
	if out, _ := apply(t, tr, customerEvent(1)); out.Destination != "legacy.customers" {
		t.Errorf("destination = %q", out.Destination)
	}
	for tmpl, want := range map[string]string{
		"cdc.{tabel}": `destination: unknown placeholder {tabel} (did you mean {table}?)`,
		"cdc.{xyz}":   `destination: unknown placeholder {xyz} (want one of {schema}, {table}, {op}, {db}, {connector})`,
		"cdc.{table":  `destination: unclosed "{"`,
		"cdc}":        `destination: unmatched "}"`,
		"":            `destination: empty template`,
	} {
		_, err := NewRoute(RouteConfig{Destination: tmpl})
		if err == nil || err.Error() != want {
			t.Errorf("template %q: err = %v, want %s", tmpl, err, want)
		}
	}
}

func ExampleNewRoute() {
	tr, _ := NewRoute(RouteConfig{Destination: "cdc.{db}.{table}"})
	ev := connectors.Event{
		Op:     connectors.OpCreate,
		Schema: connectors.MustSchema(connectors.TableID{Schema: "public", Name: "orders"}, 1, nil),
		Source: connectors.SourceInfo{DB: "shop"},
	}
	tr.Apply(&ev)
	fmt.Println(ev.Destination)
	// Output: cdc.shop.orders
}

func ExampleNewDropColumns() {
	tr, _ := NewDropColumns(DropColumnsConfig{Columns: []string{"*.password_hash"}})
	ev := connectors.Event{
		Op: connectors.OpCreate,
		Schema: connectors.MustSchema(connectors.TableID{Schema: "crm", Name: "users"}, 1, []connectors.Column{
			{Name: "id", Type: connectors.TypeInt64, Key: 1},
			{Name: "password_hash", Type: connectors.TypeBytes},
		}),
		After: []connectors.Value{int64(1), []byte("...")},
	}
	tr.Apply(&ev)
	fmt.Println(len(ev.Schema.Columns), ev.After)
	// Output: 1 [1]
}
