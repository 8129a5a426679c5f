package connectors_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
)

type nopSource struct{ cfg testConfig }

func (nopSource) Open(context.Context, connectors.Position) error { return nil }
func (nopSource) ReadBatch(context.Context, connectors.Limits) (connectors.Batch, error) {
	return connectors.Batch{}, nil
}
func (nopSource) Ack(context.Context, connectors.Position) error { return nil }
func (nopSource) Close(context.Context) error                    { return nil }

type nopSink struct{}

func (nopSink) Open(context.Context) error                         { return nil }
func (nopSink) WriteBatch(context.Context, connectors.Batch) error { return nil }
func (nopSink) Close(context.Context) error                        { return nil }

// Common is embedded in testConfig, as connectors share config blocks.
type Common struct {
	Timeout time.Duration `yaml:"timeout" doc:"how long to wait"`
}

type TLS struct {
	CA string `yaml:"ca" doc:"CA file"`
}

type testConfig struct {
	Common
	TLS      `yaml:",inline"`
	DSN      connectors.Secret `yaml:"dsn" required:"true" doc:"connection string"`
	Tables   []string          `yaml:"tables" doc:"tables to read"`
	MaxRows  int               `yaml:"max_rows" doc:"rows per read"`
	Ratio    float64           `yaml:"ratio"`
	Labels   map[string]string `yaml:"labels"`
	Enabled  bool              `yaml:"enabled"`
	Port     uint16            `yaml:"port"`
	Nested   struct{ A int }   `yaml:"nested"`
	Ptr      *int              `yaml:"ptr"`
	Skipped  string            `yaml:"-"`
	Untagged string
	hidden   string `yaml:"hidden"` // unexported: not a key
}

func defaults() testConfig {
	return testConfig{
		Common: Common{Timeout: 5 * time.Second}, DSN: "postgres://u:pw@h/db",
		Tables: []string{"a", "b.c"}, MaxRows: 500, Ratio: 0.5, Enabled: true, Port: 5432,
	}
}

func TestConfigFields(t *testing.T) {
	var got []string
	for _, f := range connectors.ConfigFields(defaults()) {
		got = append(got, fmt.Sprintf("%s|%s|%s|%s|%v|%s|%v", f.Key, f.Flag, f.Type, f.Default, f.Required, f.Doc, f.Index))
	}
	want := []string{
		"timeout|timeout|duration|5s|false|how long to wait|[0 0]",
		"ca|ca|string||false|CA file|[1 0]",
		"dsn|dsn|secret||true|connection string|[2]",
		"tables|tables|list of string|a,b.c|false|tables to read|[3]",
		"max_rows|max-rows|int|500|false|rows per read|[4]",
		"ratio|ratio|float|0.5|false||[5]",
		"labels|labels|map of string||false||[6]",
		"enabled|enabled|bool|true|false||[7]",
		"port|port|uint|5432|false||[8]",
		"nested|nested|object||false||[9]",
		"ptr|ptr|int||false||[10]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ConfigFields:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The index path reaches the field, through embedded structs too.
	cfg := defaults()
	v := reflect.ValueOf(&cfg).Elem()
	for _, f := range connectors.ConfigFields(&cfg) {
		if f.Key == "timeout" && v.FieldByIndex(f.Index).Interface() != 5*time.Second {
			t.Errorf("index %v does not reach timeout", f.Index)
		}
	}
	if connectors.ConfigFields(42) != nil || connectors.ConfigFields(new(int)) != nil {
		t.Error("ConfigFields of a non-struct is not nil")
	}
}

func newTestRegistry() *connectors.Registry {
	reg := connectors.NewRegistry()
	build := func(c testConfig, _ connectors.Runtime) (connectors.Source, error) { return nopSource{c}, nil }
	connectors.RegisterSourceIn(reg, "postgres", "Postgres logical replication", defaults, build)
	connectors.RegisterSourceIn(reg, "mysql", "MySQL binlog", defaults, build)
	connectors.RegisterSinkIn(reg, "sqlite", "SQLite view", func() struct{} { return struct{}{} },
		func(struct{}, connectors.Runtime) (connectors.Sink, error) { return nopSink{}, nil })
	return reg
}

func TestRegistryLookup(t *testing.T) {
	reg := newTestRegistry()
	if got := reg.Names(connectors.KindSource); fmt.Sprint(got) != "[mysql postgres]" {
		t.Errorf("Names = %v", got)
	}
	r, err := reg.Lookup(connectors.KindSource, "postgres")
	if err != nil || r.Kind != connectors.KindSource || r.Summary != "Postgres logical replication" {
		t.Fatalf("Lookup postgres: %+v, %v", r, err)
	}
	cfg := r.NewConfig().(*testConfig)
	if cfg.MaxRows != 500 {
		t.Errorf("NewConfig has no defaults: %+v", cfg)
	}
	cfg.MaxRows = 7
	src, err := r.NewSource(cfg, connectors.Runtime{})
	if err != nil || src.(nopSource).cfg.MaxRows != 7 {
		t.Errorf("NewSource did not get the config: %v, %v", src, err)
	}
	if r.NewConfig().(*testConfig).MaxRows != 500 {
		t.Error("NewConfig returned a shared config")
	}
	if _, err := r.NewSink(cfg, connectors.Runtime{}); err == nil || err.Error() != `"postgres" is a source, not a sink` {
		t.Errorf("NewSink of a source: %v", err)
	}
	if len(r.Fields()) != 11 {
		t.Errorf("Fields: %d", len(r.Fields()))
	}

	for _, tc := range []struct {
		kind connectors.Kind
		name string
		want string
	}{
		{connectors.KindSource, "postgress", `unknown source type "postgress" (did you mean "postgres"?)`},
		{connectors.KindSource, "mysq", `unknown source type "mysq" (did you mean "mysql"?)`},
		{connectors.KindSource, "kafka", `unknown source type "kafka" (known: mysql, postgres)`},
		{connectors.KindSink, "postgres", `unknown sink type "postgres" (known: sqlite)`},
	} {
		_, err := reg.Lookup(tc.kind, tc.name)
		var ue *connectors.UnknownError
		if err == nil || err.Error() != tc.want || !errors.As(err, &ue) || ue.Name != tc.name {
			t.Errorf("Lookup(%s, %s) = %v, want %s", tc.kind, tc.name, err, tc.want)
		}
	}
}

func TestRegisterPanics(t *testing.T) {
	reg := newTestRegistry()
	for _, tc := range []struct {
		name string
		reg  func()
		want string
	}{
		{"duplicate", func() {
			connectors.RegisterSourceIn[struct{}](reg, "postgres", "", nil, nil)
		}, "connectors: Register called twice for source postgres"},
		{"empty name", func() {
			connectors.RegisterSinkIn[struct{}](reg, "", "", nil, nil)
		}, "connectors: Register sink with an empty name"},
	} {
		func() {
			defer func() {
				if r := recover(); fmt.Sprint(r) != tc.want {
					t.Errorf("%s: recovered %v, want %q", tc.name, r, tc.want)
				}
			}()
			tc.reg()
		}()
	}
	// A sink and a source may share a name.
	connectors.RegisterSinkIn[struct{}](reg, "postgres", "", nil, nil)
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct {
		s          string
		candidates []string
		want       string
	}{
		{"postgress", []string{"mysql", "postgres", "sqlite"}, "postgres"},
		{"tabels", []string{"tables", "snapshot", "slot"}, "tables"},
		{"Tables", []string{"tables"}, "tables"},
		{"slto", []string{"slot", "tables"}, "slot"},
		{"dns", []string{"dsn", "tables"}, "dsn"},
		{"kafka", []string{"postgres", "mysql"}, ""},
		{"x", []string{"postgres"}, ""},
		{"completely_different", []string{"tables", "dsn"}, ""},
		{"anything", nil, ""},
	} {
		if got := connectors.Suggest(tc.s, tc.candidates); got != tc.want {
			t.Errorf("Suggest(%q, %v) = %q, want %q", tc.s, tc.candidates, got, tc.want)
		}
	}
}

func ExampleSuggest() {
	fmt.Printf("%q %q\n", connectors.Suggest("postgress", []string{"mysql", "postgres"}), connectors.Suggest("redis", []string{"mysql", "postgres"}))
	// Output: "postgres" ""
}

func ExampleRegistry_Lookup() {
	reg := connectors.NewRegistry()
	connectors.RegisterSinkIn(reg, "sqlite", "SQLite view", func() struct{} { return struct{}{} },
		func(struct{}, connectors.Runtime) (connectors.Sink, error) { return nopSink{}, nil })
	_, err := reg.Lookup(connectors.KindSink, "sqlit")
	fmt.Println(err)
	// Output: unknown sink type "sqlit" (did you mean "sqlite"?)
}
