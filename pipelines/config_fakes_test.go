package pipelines

import (
	"errors"
	"strings"
	"time"

	"github.com/tapline/tapline/connectors"
)

// Small fake connectors with typed configs, so that the loader's tests do
// not depend on the real connectors.

type cfgTestTLS struct {
	CAFile string `yaml:"ca_file" required:"true" doc:"CA bundle"`
	Verify bool   `yaml:"verify" doc:"verify the server"`
}

type cfgTestLimits struct {
	Rows  int64   `yaml:"rows" doc:"rows per fetch"`
	Small uint8   `yaml:"small" doc:"a small unsigned"`
	Tiny  int8    `yaml:"tiny" doc:"a small signed"`
	Share float32 `yaml:"share" doc:"a float32"`
}

type cfgTestSource struct {
	DSN      connectors.Secret `yaml:"dsn" required:"true" doc:"connection string"`
	Tables   []string          `yaml:"tables" doc:"tables to capture"`
	Count    int               `yaml:"count" doc:"how many"`
	Wait     time.Duration     `yaml:"wait" doc:"poll interval"`
	Ratio    float64           `yaml:"ratio" doc:"a ratio"`
	Snapshot bool              `yaml:"snapshot" doc:"take a snapshot first"`
	Options  map[string]string `yaml:"options" doc:"driver options"`
	TLS      *cfgTestTLS       `yaml:"tls" doc:"TLS settings"`
	Limits   cfgTestLimits     `yaml:"limits" doc:"limits"`
	Extra    any               `yaml:"extra" doc:"free-form, decoded by goccy/go-yaml"`
	Password connectors.Secret `yaml:"password" doc:"a password"`
}

func (c *cfgTestSource) Validate() error {
	if c.Count > 1000 {
		return errors.New("count must be at most 1000")
	}
	return nil
}

type cfgTestFileSink struct {
	Path string `yaml:"path" required:"true" doc:"file to write"`
	Sync bool   `yaml:"sync" doc:"fsync each batch"`
}

func (c cfgTestFileSink) Validate() error {
	if strings.HasSuffix(c.Path, "/") {
		return errors.New("path names a directory; give a file")
	}
	return nil
}

type cfgTestNATSSink struct {
	URL           connectors.Secret `yaml:"url" doc:"server URL"`
	SubjectPrefix string            `yaml:"subject_prefix" doc:"subject prefix"`
	Ack           cfgTestAck        `yaml:"ack" doc:"ack mode, decoded by its own UnmarshalYAML"`
}

// cfgTestAck decodes itself with goccy/go-yaml's BytesUnmarshaler.
type cfgTestAck string

func (a *cfgTestAck) UnmarshalYAML(b []byte) error {
	switch s := strings.TrimSpace(string(b)); s {
	case "none", "all":
		*a = cfgTestAck(s)
		return nil
	}
	return errors.New("ack must be none or all")
}

func testRegistry() *connectors.Registry {
	reg := connectors.NewRegistry()
	noSource := func(c cfgTestSource, _ connectors.Runtime) (connectors.Source, error) { return nil, nil }
	connectors.RegisterSourceIn(reg, "postgres", "fake postgres",
		func() cfgTestSource { return cfgTestSource{Count: 10, Wait: time.Second} }, noSource)
	connectors.RegisterSourceIn(reg, "mysql", "fake mysql", nil, noSource)
	connectors.RegisterSinkIn(reg, "jsonl", "fake file sink", nil,
		func(cfgTestFileSink, connectors.Runtime) (connectors.Sink, error) { return nil, nil })
	connectors.RegisterSinkIn(reg, "nats", "fake nats sink",
		func() cfgTestNATSSink { return cfgTestNATSSink{SubjectPrefix: "tapline"} },
		func(cfgTestNATSSink, connectors.Runtime) (connectors.Sink, error) { return nil, nil })
	return reg
}

// testSecret is the value of the secret environment variables; no error
// and no printed pipeline may contain it.
const testSecret = "hunter2"

var testEnvVars = map[string]string{
	"PG_DSN":        "postgres://app:" + testSecret + "@db.internal/shop",
	"SECRET_COUNT":  testSecret,
	"SECRET_TYPE":   testSecret,
	"SECRET_NAME":   "Name-" + testSecret,
	"SECRET_POLICY": testSecret,
	"SET_EMPTY":     "",
	"COUNT":         "42",
	"WAIT":          "250ms",
	"SNAPSHOT":      "true",
}

func testEnv(name string) (string, bool) {
	v, ok := testEnvVars[name]
	return v, ok
}
