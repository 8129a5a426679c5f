package kafka_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/pipelines"
	"github.com/tapline/tapline/sinks/kafka"
	_ "github.com/tapline/tapline/sources/kafka"
)

func TestConfigErrors(t *testing.T) {
	base := kafka.DefaultConfig()
	base.Brokers = []string{"k:9092"}
	if err := base.Validate(); err != nil {
		t.Fatalf("the defaults with brokers: %v", err)
	}
	for _, tc := range []struct {
		mod  func(*kafka.Config)
		want string
	}{
		{func(c *kafka.Config) { c.Topic = "{prefix}.{tabel}" }, "topic: unknown placeholder {tabel}"},
		{func(c *kafka.Config) { c.Topic = "{prefix" }, "unclosed"},
		{func(c *kafka.Config) { c.Topic = "cdc/{table}" }, "topic:"},
		{func(c *kafka.Config) { c.TopicPrefix = "my prefix" }, "topic_prefix"},
		{func(c *kafka.Config) { c.Compression = "brotli" }, "compression"},
		{func(c *kafka.Config) { c.Delivery = "exactly-once" }, "delivery"},
		{func(c *kafka.Config) { c.Partitions = 0 }, "partitions"},
		{func(c *kafka.Config) { c.Topics = []kafka.Output{{}, {}} }, "topics[1].suffix"},
		{func(c *kafka.Config) { c.Topics = []kafka.Output{{CleanupPolicy: "compacted"}} }, "topics[0].cleanup_policy"},
		{func(c *kafka.Config) {
			c.Topics = []kafka.Output{{Configs: map[string]string{"cleanup.policy": "compact"}}}
		}, "topics[0].configs"},
		{func(c *kafka.Config) { c.Topics = []kafka.Output{{Retention: -time.Second}} }, "topics[0].retention"},
		{func(c *kafka.Config) { c.Delivery, c.OffsetsTopic = kafka.ExactlyOnce, "" }, "offsets_topic"},
		{func(c *kafka.Config) { c.MaxMessageBytes = 10 }, "max_message_bytes"},
		{func(c *kafka.Config) { c.SASLMechanism, c.SASLPassword = "PLAIN", "hunter2-secret" }, "sasl_user"},
	} {
		cfg := base
		tc.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		} else if strings.Contains(err.Error(), "hunter2") || strings.Contains(fmt.Sprintf("%v", cfg), "hunter2") {
			t.Errorf("the password shows in %q or the printed config", err)
		}
	}
	eos := base
	eos.Delivery = kafka.ExactlyOnce
	if _, err := kafka.New(eos, connectors.Runtime{}); err == nil || !strings.Contains(err.Error(), "pipeline's name") {
		t.Errorf("exactly_once without a pipeline name: %v", err)
	}
	if s, err := kafka.New(base, connectors.Runtime{}); err != nil {
		t.Fatal(err)
	} else if _, atomic := s.(connectors.AtomicSink); atomic {
		t.Error("an at_least_once sink must not be an AtomicSink: the engine would resume from its (empty) position")
	}
	if s, _ := kafka.New(eos, connectors.Runtime{Pipeline: "p"}); s != nil {
		if _, atomic := s.(connectors.AtomicSink); !atomic {
			t.Error("an exactly_once sink is not an AtomicSink")
		}
	}
}

// The pipeline loader decodes the sink's and the source's YAML, lists of
// topics with their policies included, strictly.
func TestYAMLConfig(t *testing.T) {
	yaml := `
name: orders-log
source:
  type: kafka
  brokers: [k1:9092]
  topic_regex: 'legacy\..*'
  sasl_mechanism: SCRAM-SHA-512
  sasl_user: tapline
  sasl_password: ${KAFKA_PASSWORD}
sink:
  type: kafka
  brokers: [k1:9092, k2:9092]
  topic: "{prefix}.{db}.{table}"
  delivery: exactly_once
  compression: zstd
  partitions: 12
  replication_factor: 3
  topics:
    - cleanup_policy: compact
      configs: {min.compaction.lag.ms: "60000"}
    - suffix: .history
      retention: 720h
      tombstones: false
`
	env := func(k string) (string, bool) {
		return map[string]string{"KAFKA_PASSWORD": "pw-from-env"}[k], k == "KAFKA_PASSWORD"
	}
	ps, err := pipelines.LoadBytes("orders.yaml", []byte(yaml), connectors.Default, env)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	got := *ps[0].Sink.Config.(*kafka.Config)
	want := kafka.DefaultConfig()
	want.Brokers = []string{"k1:9092", "k2:9092"}
	want.Topic, want.Delivery, want.Compression, want.Partitions, want.Replication = "{prefix}.{db}.{table}", kafka.ExactlyOnce, "zstd", 12, 3
	no := false
	want.Topics = []kafka.Output{
		{CleanupPolicy: "compact", Configs: map[string]string{"min.compaction.lag.ms": "60000"}},
		{Suffix: ".history", Retention: 720 * time.Hour, Tombstones: &no},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n %+v\nwant\n %+v", got, want)
	}

	bad := strings.Replace(yaml, "retention: 720h", "retension: 720h", 1)
	if _, err := pipelines.LoadBytes("orders.yaml", []byte(bad), connectors.Default, env); err == nil || !strings.Contains(err.Error(), `did you mean "retention"`) {
		t.Fatalf("a misspelled key: %v", err)
	}
}
