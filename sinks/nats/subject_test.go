package nats

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
)

func TestTokenEscapesInjectively(t *testing.T) {
	cases := map[string]string{
		"orders": "orders", "public.orders": "public%2Eorders", "my table": "my%20table", "50%": "50%25",
		"a*b>c": "a%2Ab%3Ec", "": "%", "straße": "straße", "tab\there": "tab%09here", "\xff": "%FF", "$x-y_z": "$x-y_z",
	}
	seen := map[string]string{}
	for in, want := range cases {
		got := Token(in)
		if got != want {
			t.Errorf("Token(%q) = %q, want %q", in, got, want)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("Token(%q) and Token(%q) are both %q", in, prev, got)
		}
		seen[got] = in
		if !validSubject("p." + got) {
			t.Errorf("Token(%q) = %q is not a valid subject token", in, got)
		}
	}
	// Escaping the escaped form never gives the same token as the name.
	if Token("a.b") == Token("a%2Eb") {
		t.Error("a.b and a%2Eb collide")
	}
}

func TestTemplate(t *testing.T) {
	for _, c := range []struct {
		tmpl   string
		v      values
		want   string
		covers string
	}{
		{"{prefix}.{schema}.{table}", values{prefix: "tapline", schema: "public", table: "orders"}, "tapline.public.orders", "tapline.>"},
		{"{prefix}.{schema}.{table}", values{prefix: "tapline", table: "orders"}, "tapline.orders", "tapline.>"},
		{"{prefix}.{db}.{schema}.{table}", values{prefix: "a.b", db: "shop", table: "t.1"}, "a.b.shop.t%2E1", "a.b.>"},
		{"cdc.{prefix}.x{table}", values{prefix: "p", table: "t"}, "cdc.p.xt", "cdc.p.>"},
		{"{table}.events", values{prefix: "p", table: "t"}, "t.events", ">"},
	} {
		tp, err := parseTemplate(c.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", c.tmpl, err)
		}
		if got := string(tp.appendSubject(nil, &c.v)); got != c.want {
			t.Errorf("%s with %+v = %q, want %q", c.tmpl, c.v, got, c.want)
		}
		if got := tp.coverage(c.v.prefix); got != c.covers {
			t.Errorf("%s coverage = %q, want %q", c.tmpl, got, c.covers)
		}
	}
	for _, bad := range []string{"", "a..b", "{prefix}.{tabel}", "{prefix}.*", "a.{table"} {
		if _, err := parseTemplate(bad); err == nil {
			t.Errorf("template %q parsed", bad)
		}
	}
	if _, err := parseTemplate("{prefix}.{tabel}"); err == nil || !strings.Contains(err.Error(), "did you mean {table}") {
		t.Errorf("misspelled placeholder: %v", err)
	}
}

func TestCovers(t *testing.T) {
	for _, c := range []struct {
		filter, pattern string
		want            bool
	}{
		{"tapline.>", "tapline.>", true}, {">", "a.>", true}, {"tapline.*", "tapline.>", false},
		{"tapline.>", "tapline.a.b", true}, {"a.*.c", "a.b.c", true}, {"a.b", "a.b.c", false}, {"a.>", "a", false},
	} {
		if got := covers(c.filter, c.pattern); got != c.want {
			t.Errorf("covers(%q, %q) = %v", c.filter, c.pattern, got)
		}
	}
}

func TestKeyTokens(t *testing.T) {
	sch := connectors.MustSchema(connectors.TableID{Name: "t"}, 1, []connectors.Column{
		{Name: "a", Type: connectors.TypeString, Key: 1}, {Name: "b", Type: connectors.TypeInt64, Key: 2}, {Name: "c", Type: connectors.TypeBytes, Key: 3},
	})
	ev := connectors.Event{Op: connectors.OpCreate, Schema: sch, After: []connectors.Value{"x.y", int64(-7), []byte{0xff}}}
	got, ok, err := keyTokens(nil, &ev)
	if err != nil || !ok || string(got) != "x%2Ey.-7.%b_w" {
		t.Fatalf("keyTokens = %q, %v, %v", got, ok, err)
	}
	long := make([]byte, 300)
	ev.After = []connectors.Value{string(long), int64(1), []byte{}}
	got, _, _ = keyTokens(nil, &ev)
	if len(got) > 200 || string(got[:2]) != "%h" {
		t.Fatalf("long key token %q not hashed", got)
	}
	ev.Schema = connectors.MustSchema(connectors.TableID{Name: "t"}, 1, []connectors.Column{{Name: "a", Type: connectors.TypeString}})
	if _, ok, _ := keyTokens(nil, &ev); ok {
		t.Fatal("a keyless table has key tokens")
	}
}

func TestStreamName(t *testing.T) {
	for in, want := range map[string]string{"tapline": "TAPLINE", "legacy.cdc": "LEGACY_CDC", "a b/c": "A_B_C"} {
		if got := streamName(in); got != want {
			t.Errorf("streamName(%q) = %q, want %q", in, got, want)
		}
	}
}

func ExampleToken() {
	fmt.Println(Token("orders"), Token("public.orders"), Token("my table"), Token("50%"), Token(""))
	// Output: orders public%2Eorders my%20table 50%25 %
}
