package pipelines

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/pipelines/transforms"
)

func loadOne(t *testing.T, src string) *Pipeline {
	t.Helper()
	ps, err := LoadBytes("test.yaml", []byte(src), testRegistry(), testEnv)
	if err != nil {
		t.Fatalf("LoadBytes:\n%v", err)
	}
	if len(ps) != 1 {
		t.Fatalf("got %d pipelines, want 1", len(ps))
	}
	return ps[0]
}

func loadErrs(t *testing.T, src string) ErrorList {
	t.Helper()
	_, err := LoadBytes("test.yaml", []byte(src), testRegistry(), testEnv)
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("LoadBytes error = %v (%T), want an ErrorList", err, err)
	}
	return list
}

const fullPipeline = `
name: legacy-orders
source:
  type: postgres
  dsn: ${PG_DSN}
  tables: [public.orders, public.customers]
transforms:
  - type: drop_columns
    columns: [public.customers.password_hash]
  - type: mask_columns
    columns: ["*.email"]
    salt: ${PG_DSN}
sink:
  type: nats
  subject_prefix: legacy
batch:
  max_events: 500
  max_bytes: 4MiB
  max_wait: 250ms
on_error: dlq
dlq:
  type: jsonl
  path: data/orders.dlq.jsonl
retry:
  initial: 200ms
  max: 1m
  max_attempts: 7
`

func TestLoadFullPipeline(t *testing.T) {
	p := loadOne(t, fullPipeline)
	if p.Name != "legacy-orders" || p.File != "test.yaml" || p.Line != 2 {
		t.Errorf("name/file/line = %q %q %d", p.Name, p.File, p.Line)
	}
	src, ok := p.Source.Config.(*cfgTestSource)
	if !ok {
		t.Fatalf("source config is %T", p.Source.Config)
	}
	if p.Source.Type != "postgres" || p.Source.Reg == nil || p.Source.Reg.Name != "postgres" || p.Source.Line != 4 || p.Source.Column != 3 {
		t.Errorf("source spec = %+v", p.Source)
	}
	if src.DSN.Reveal() != testEnvVars["PG_DSN"] {
		t.Errorf("dsn = %q", src.DSN.Reveal())
	}
	if !reflect.DeepEqual(src.Tables, []string{"public.orders", "public.customers"}) || src.Count != 10 || src.Wait != time.Second {
		t.Errorf("source config = %+v (defaults must survive)", src)
	}
	if len(p.Transforms) != 2 || p.Transforms[0].Type != "drop_columns" || p.Transforms[0].Transform == nil || p.Transforms[1].Line != 10 {
		t.Fatalf("transforms = %+v", p.Transforms)
	}
	if m := p.Transforms[1].Config.(*transforms.MaskColumnsConfig); m.Method != transforms.MaskHash || m.Salt.Reveal() != testEnvVars["PG_DSN"] {
		t.Errorf("mask config = %+v", m)
	}
	if len(p.TransformChain()) != 2 {
		t.Error("TransformChain")
	}
	if sink := p.Sink.Config.(*cfgTestNATSSink); sink.SubjectPrefix != "legacy" {
		t.Errorf("sink config = %+v", sink)
	}
	if want := (connectors.Limits{MaxEvents: 500, MaxBytes: 4 << 20, MaxWait: 250 * time.Millisecond}); p.Batch != want {
		t.Errorf("batch = %+v, want %+v", p.Batch, want)
	}
	if p.OnError != PolicyDLQ || p.DLQ == nil || p.DLQ.Type != "jsonl" || p.DLQ.Config.(*cfgTestFileSink).Path != "data/orders.dlq.jsonl" {
		t.Errorf("on_error/dlq = %v %+v", p.OnError, p.DLQ)
	}
	if want := (Retry{Initial: 200 * time.Millisecond, Max: time.Minute, MaxAttempts: 7}); p.Retry != want {
		t.Errorf("retry = %+v", p.Retry)
	}

	// Printing a pipeline, its specs or configs never shows a secret.
	for _, s := range []string{
		fmt.Sprintf("%v %+v %#v", p, p, p),
		fmt.Sprintf("%v %+v %#v", *p, *p, *p),
		fmt.Sprintf("%+v %+v", p.Source, p.Source.Config),
		fmt.Sprintf("%#v", p.Source.Config),
		fmt.Sprintf("%+v %+v", p.Transforms, p.Transforms[1].Config),
	} {
		if strings.Contains(s, testSecret) {
			t.Errorf("a secret is printed: %s", s)
		}
	}
}

func TestLoadDefaults(t *testing.T) {
	p := loadOne(t, `{name: minimal, source: {type: mysql, dsn: x}, sink: {type: nats}}`)
	if p.Batch != DefaultLimits || p.OnError != PolicyFail || p.Retry != DefaultRetry || p.DLQ != nil || len(p.Transforms) != 0 {
		t.Errorf("defaults: %+v", p)
	}
	if s := p.Sink.Config.(*cfgTestNATSSink); s.SubjectPrefix != "tapline" {
		t.Errorf("sink default lost: %+v", s)
	}
	// Null and empty values keep the default.
	p = loadOne(t, "name: x\nsource: {type: postgres, dsn: x, count: ~, wait: }\nsink: {type: nats}\nbatch:\n")
	if s := p.Source.Config.(*cfgTestSource); s.Count != 10 || s.Wait != time.Second || p.Batch != DefaultLimits {
		t.Errorf("null values did not keep defaults: %+v %+v", s, p.Batch)
	}
}

func TestScalarConversions(t *testing.T) {
	p := loadOne(t, `
name: conversions
source:
  type: postgres
  dsn: 0123
  password: 1.50
  count: ${COUNT}
  wait: ${WAIT}
  snapshot: ${SNAPSHOT}
  ratio: 1e3
  tables: [1, true, "x"]
  options: {port: 5432, app: "tap$$line", empty: "${SET_EMPTY}", dflt: "${SET_EMPTY:-fallback}", unset: "${NOPE:-x}", dollar: "a$b"}
  extra: {any: [1, two], env: "${COUNT}"}
  tls:
    ca_file: |
      /etc/ssl/ca-${COUNT}.pem
  limits: {rows: 0x10, small: 2_5_5, tiny: "-12", share: .inf}
sink: {type: jsonl, path: "cost $5", sync: "TRUE"}
`)
	s := p.Source.Config.(*cfgTestSource)
	if s.DSN.Reveal() != "0123" || s.Password.Reveal() != "1.50" {
		t.Errorf("dsn, password = %q, %q", s.DSN.Reveal(), s.Password.Reveal())
	}
	if s.Count != 42 || s.Wait != 250*time.Millisecond || !s.Snapshot || s.Ratio != 1000 {
		t.Errorf("count %d wait %v snapshot %v ratio %v", s.Count, s.Wait, s.Snapshot, s.Ratio)
	}
	if !reflect.DeepEqual(s.Tables, []string{"1", "true", "x"}) {
		t.Errorf("tables = %q", s.Tables)
	}
	want := map[string]string{"port": "5432", "app": "tap$line", "empty": "", "dflt": "fallback", "unset": "x", "dollar": "a$b"}
	if !reflect.DeepEqual(s.Options, want) {
		t.Errorf("options = %q", s.Options)
	}
	if want := map[string]any{"any": []any{uint64(1), "two"}, "env": "42"}; !reflect.DeepEqual(s.Extra, want) {
		t.Errorf("extra = %#v", s.Extra)
	}
	if s.TLS == nil || s.TLS.CAFile != "/etc/ssl/ca-42.pem\n" {
		t.Errorf("tls = %+v", s.TLS)
	}
	if s.Limits.Rows != 16 || s.Limits.Small != 255 || s.Limits.Tiny != -12 || !math.IsInf(float64(s.Limits.Share), 1) {
		t.Errorf("limits = %+v", s.Limits)
	}
	if k := p.Sink.Config.(*cfgTestFileSink); k.Path != "cost $5" || !k.Sync {
		t.Errorf("sink = %+v", k)
	}
}

// TestMisspelledKeyFails guards the strictness of stage two: a misspelled
// key in a connector block is an error with its place and a suggestion,
// never silently dropped.
func TestMisspelledKeyFails(t *testing.T) {
	errs := loadErrs(t, "name: x\nsource:\n  type: postgres\n  dsn: x\n  tabels: [a]\nsink: {type: nats}\n")
	if len(errs) != 1 {
		t.Fatalf("errors = %v", errs)
	}
	want := Error{File: "test.yaml", Line: 5, Column: 3, Path: "source.tabels", Msg: "unknown key", Hint: `did you mean "tables"?`}
	if *errs[0] != want {
		t.Errorf("error = %+v, want %+v", *errs[0], want)
	}
	var e *Error
	if !errors.As(error(errs), &e) || e.Path != "source.tabels" {
		t.Errorf("errors.As(*Error) = %v", e)
	}
}

// TestGoccyStrictOnSubNode is a regression test for the library: decoding
// a node taken out of a document (what the loader does for `any` fields and
// custom YAML unmarshalers) must keep yaml.Strict(), which gopkg.in/yaml.v3
// famously drops for Node.Decode (go-yaml/yaml#460).
func TestGoccyStrictOnSubNode(t *testing.T) {
	f, err := parser.ParseBytes([]byte("source:\n  type: postgres\n  tabels: [a]\n"), 0)
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := newDecoder("x", f.Docs[0].Body, testEnv).entries(f.Docs[0].Body, "")
	var cfg struct {
		Type   string   `yaml:"type"`
		Tables []string `yaml:"tables"`
	}
	err = yaml.NodeToValue(ents[0].value, &cfg, yaml.Strict())
	var unk *yaml.UnknownFieldError
	if !errors.As(err, &unk) {
		t.Fatalf("NodeToValue with Strict on a sub-node = %v, want an UnknownFieldError", err)
	}
}

func TestDelegatedFieldsAreStrictAndPositioned(t *testing.T) {
	errs := loadErrs(t, "name: x\nsource:\n  type: postgres\n  dsn: x\n  extra: ${NOPE}\nsink: {type: nats}\n")
	if len(errs) != 1 || errs[0].Path != "source.extra" || errs[0].Line != 5 || !strings.Contains(errs[0].Msg, "NOPE") {
		t.Errorf("errors = %v", errs)
	}
}

func TestYAMLUnmarshalerFields(t *testing.T) {
	p := loadOne(t, "name: x\nsource: {type: mysql, dsn: x}\nsink: {type: nats, ack: all}\n")
	if a := p.Sink.Config.(*cfgTestNATSSink).Ack; a != "all" {
		t.Errorf("ack = %q", a)
	}
	errs := loadErrs(t, "name: x\nsource: {type: mysql, dsn: x}\nsink:\n  type: nats\n  ack: some\n")
	if len(errs) != 1 || errs[0].Line != 5 || errs[0].Path != "sink.ack" || !strings.Contains(errs[0].Msg, "ack must be none or all") {
		t.Errorf("errors = %v", errs)
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pipe := func(name string) string {
		return "name: " + name + "\nsource: {type: postgres, dsn: x}\nsink: {type: nats}\n"
	}
	write("b.yaml", pipe("b1")+"---\n"+pipe("b2"))
	write("a.yml", "---\n"+pipe("a1")+"---\n# nothing\n---\n")
	write("c.txt", "not: yaml: at all")
	write(".hidden.yaml", pipe("hidden"))
	write("sub/d.yaml", pipe("sub"))
	ps, err := Load(dir, testRegistry(), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if !reflect.DeepEqual(names, []string{"a1", "b1", "b2"}) {
		t.Errorf("pipelines = %v, want a1 b1 b2 (sorted files, non-recursive, hidden skipped)", names)
	}
	if ps[2].File != filepath.Join(dir, "b.yaml") || ps[2].Line != 5 {
		t.Errorf("b2 at %s:%d", ps[2].File, ps[2].Line)
	}

	// A file is loaded on its own too; a missing path is an error.
	if ps, err := Load(filepath.Join(dir, "sub", "d.yaml"), testRegistry(), testEnv); err != nil || len(ps) != 1 {
		t.Errorf("Load(file) = %v, %v", ps, err)
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"), testRegistry(), testEnv)
	if err == nil || !strings.HasSuffix(err.Error(), "missing.yaml: no such file or directory") {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoaderUsesItsRegistries(t *testing.T) {
	treg := transforms.NewRegistry()
	transforms.RegisterIn(treg, "upper", "test transform", nil, func(struct{}) (transforms.Transform, error) {
		return transforms.Func(func(*connectors.Event) (bool, error) { return true, nil }), nil
	})
	l := &Loader{Connectors: testRegistry(), Transforms: treg, Env: func(string) (string, bool) { return "", false }}
	ps, err := l.LoadBytes("x.yaml", []byte("name: x\nsource: {type: mysql, dsn: x}\ntransforms: [{type: upper}]\nsink: {type: nats}\n"))
	if err != nil || len(ps) != 1 || ps[0].Transforms[0].Type != "upper" {
		t.Fatalf("LoadBytes = %v, %v", ps, err)
	}
	_, err = l.LoadBytes("x.yaml", []byte("name: x\nsource: {type: mysql, dsn: x}\ntransforms: [{type: filter}]\nsink: {type: nats}\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown transform type "filter" (did you mean "upper"?)`) && !strings.Contains(err.Error(), `unknown transform type "filter" (known: upper)`) {
		t.Errorf("err = %v", err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{File: "p/o.yaml", Line: 7, Column: 5, Path: "source.tabels", Msg: "unknown key", Hint: `did you mean "tables"?`},
			`p/o.yaml:7:5: source.tabels: unknown key (did you mean "tables"?)`},
		{Error{File: "p/o.yaml", Line: 3, Msg: "syntax error: x"}, "p/o.yaml:3: syntax error: x"},
		{Error{File: "p", Msg: "no pipeline files"}, "p: no pipeline files"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	l := ErrorList{{File: "b", Line: 1, Msg: "x"}, {File: "a", Line: 9, Msg: "y"}, {File: "a", Line: 2, Column: 4, Msg: "z"}, {File: "a", Line: 2, Column: 1, Msg: "w"}}
	l.sort()
	if got := l.Error(); got != "a:2:1: w\na:2:4: z\na:9: y\nb:1: x" {
		t.Errorf("sorted list:\n%s", got)
	}
}

func TestExpandEnv(t *testing.T) {
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"A": "alpha", "E": "", "X_1": "x"}[k]
		return v, ok
	}
	for _, c := range []struct {
		in, out  string
		fromEnv  bool
		problems int
	}{
		{"plain", "plain", false, 0},
		{"${A}", "alpha", true, 0},
		{"pre-${A}-${X_1}-post", "pre-alpha-x-post", true, 0},
		{"${E}", "", true, 0},
		{"${E:-dflt}", "dflt", true, 0},
		{"${U:-dflt}", "dflt", true, 0},
		{"${U:-}", "", true, 0},
		{"${A:-dflt}", "alpha", true, 0},
		{"${U:-a:-b}", "a:-b", true, 0},
		{"$$", "$", false, 0},
		{"$${A}", "${A}", false, 0},
		{"a$b $ $", "a$b $ $", false, 0},
		{"${U}", "", true, 1},
		{"${U}${V}", "", true, 2},
		{"${A", "${A", false, 1},
		{"${}", "", false, 1},
		{"${1A}", "", false, 1},
		{"${A B}", "", false, 1},
	} {
		out, fromEnv, problems := expandEnv(c.in, env)
		if out != c.out || fromEnv != c.fromEnv || len(problems) != c.problems {
			t.Errorf("expandEnv(%q) = %q, %v, %v; want %q, %v, %d problems", c.in, out, fromEnv, problems, c.out, c.fromEnv, c.problems)
		}
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int{
		"4194304": 4 << 20, "4MiB": 4 << 20, "4 MiB": 4 << 20, "512KiB": 512 << 10, "1GiB": 1 << 30,
		"4MB": 4e6, "10kb": 10e3, "1.5MiB": 3 << 19, "100B": 100, "1_000": 1000,
	} {
		var s byteSize
		if err := s.UnmarshalText([]byte(in)); err != nil || int(s) != want {
			t.Errorf("%q = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "4XB", "-1", "4 M i B", "1e3", "99999999999GiB"} {
		var s byteSize
		if err := s.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q = %d, want an error", in, s)
		}
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	// Every error below concerns a value expanded from a secret.
	_, err := LoadBytes("s.yaml", []byte(`
name: ${SECRET_NAME}
source: {type: postgres, dsn: "${PG_DSN}", count: "${SECRET_COUNT}", tables: "${PG_DSN}", limits: {rows: "${PG_DSN}"}}
sink: {type: "${SECRET_TYPE}"}
on_error: ${SECRET_POLICY}
`), testRegistry(), testEnv)
	if err == nil {
		t.Fatal("no errors")
	}
	if s := err.Error(); strings.Contains(s, testSecret) || strings.Count(s, "\n") != 5 {
		t.Errorf("errors (want 6, none with the secret):\n%s", s)
	}
}

func TestValidateErrorsAreRedacted(t *testing.T) {
	reg := connectors.NewRegistry()
	connectors.RegisterSourceIn(reg, "leaky", "", nil, func(leakyConfig, connectors.Runtime) (connectors.Source, error) { return nil, nil })
	connectors.RegisterSinkIn(reg, "nats", "", nil, func(cfgTestNATSSink, connectors.Runtime) (connectors.Sink, error) { return nil, nil })
	_, err := LoadBytes("l.yaml", []byte("name: x\nsource: {type: leaky, dsn: \"${PG_DSN}\"}\nsink: {type: nats}\n"), reg, testEnv)
	if err == nil || strings.Contains(err.Error(), testSecret) || !strings.Contains(err.Error(), "l.yaml:2:9: source: cannot parse") {
		t.Errorf("err = %v", err)
	}
}

type leakyConfig struct {
	DSN connectors.Secret `yaml:"dsn"`
}

func (c leakyConfig) Validate() error {
	return fmt.Errorf("cannot parse %s", c.DSN.Reveal())
}
