package connectors_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/tapline/tapline/connectors"
)

const password = "hunter2-s3cret"

type secretConfig struct {
	Host string            `json:"host"`
	DSN  connectors.Secret `json:"dsn"`
}

func TestSecretRedaction(t *testing.T) {
	s := connectors.Secret("postgres://app:" + password + "@db/shop")
	cfg := secretConfig{Host: "db", DSN: s}
	var outs []string
	for _, format := range []string{"%v", "%s", "%#v", "%q", "%+v"} {
		outs = append(outs, fmt.Sprintf(format, s), fmt.Sprintf(format, cfg), fmt.Sprintf(format, &cfg))
	}
	outs = append(outs, fmt.Sprint(s), fmt.Sprintln(cfg), s.String(), s.GoString())

	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("connect", "dsn", s, "cfg", cfg)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("connect", "dsn", s, "cfg", cfg)
	outs = append(outs, text.String(), js.String())

	m, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(m))
	if string(m) != `{"host":"db","dsn":"[redacted]"}` {
		t.Errorf("json.Marshal = %s", m)
	}
	if !strings.Contains(text.String(), `dsn=[redacted]`) || !strings.Contains(js.String(), `"dsn":"[redacted]"`) {
		t.Errorf("slog:\n%s%s", text.String(), js.String())
	}
	for _, out := range outs {
		if strings.Contains(out, password) || strings.Contains(out, "app:") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if fmt.Sprintf("%#v", s) != `"[redacted]"` {
		t.Errorf("%%#v = %s", fmt.Sprintf("%#v", s))
	}
	if s.Reveal() != "postgres://app:"+password+"@db/shop" {
		t.Error("Reveal does not give the value back")
	}
	// An empty secret shows as empty, so that "not set" stays visible.
	var empty connectors.Secret
	if empty.String() != "" || fmt.Sprintf("%v|%#v", empty, empty) != `|""` {
		t.Errorf("empty secret prints as %v|%#v", empty, empty)
	}
	if b, _ := empty.MarshalText(); len(b) != 0 {
		t.Errorf("empty secret marshals to %q", b)
	}
}

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"host=db user=app password=" + password + " dbname=shop", "host=db user=app password=xxxxx dbname=shop"},
		{"host=db password='" + password + " with space' dbname=shop", "host=db password=xxxxx dbname=shop"},
		{`host=db PWD="` + password + `"`, "host=db PWD=xxxxx"},
		{"token=" + password, "token=xxxxx"},
		{"app:" + password + "@tcp(127.0.0.1:3306)/shop?parseTime=true", "app:xxxxx@tcp(127.0.0.1:3306)/shop?parseTime=true"},
		{"host=db user=app dbname=shop", "host=db user=app dbname=shop"},
		{"no credentials here", "no credentials here"},
	} {
		if got := connectors.RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
	}
	// URLs, also inside error messages; a URL without a password is left
	// alone.
	for _, tc := range []struct{ in, want string }{
		{"postgres://app:" + password + "@db:5432/shop?sslmode=disable", "postgres://app:xxxxx@db:5432/shop?sslmode=disable"},
		{"connect to postgres://app:" + password + "@db/shop: connection refused", "connect to postgres://app:xxxxx@db/shop: connection refused"},
		{"redis://:" + password + "@localhost:6379/0", "redis://:xxxxx@localhost:6379/0"},
		{"postgres://app@db/shop", "postgres://app@db/shop"},
		{"mysql: open app:" + password + "@tcp(db:3306)/shop: refused", "mysql: open app:xxxxx@tcp(db:3306)/shop: refused"},
		{"app:" + password + "@/shop", "app:xxxxx@/shop"},
	} {
		if got := connectors.RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func ExampleRedactDSN() {
	fmt.Println(connectors.RedactDSN("pq: password authentication failed: host=db user=app password=hunter2 dbname=shop"))
	fmt.Println(connectors.RedactDSN("app:hunter2@tcp(db:3306)/shop"))
	// Output:
	// pq: password authentication failed: host=db user=app password=xxxxx dbname=shop
	// app:xxxxx@tcp(db:3306)/shop
}

func ExampleSecret() {
	dsn := connectors.Secret("postgres://app:hunter2@db/shop")
	fmt.Println(dsn, len(dsn.Reveal()) > 0)
	// Output: [redacted] true
}
