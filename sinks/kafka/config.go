package kafka

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/internal/kafkaopts"
)

// Config is the Kafka sink's configuration.
type Config struct {
	kafkaopts.Conn `yaml:",inline"`

	Topic        string   `yaml:"topic" doc:"topic name template; placeholders {prefix} {db} {schema} {table}; an event's destination (route transform) replaces the whole name"`
	TopicPrefix  string   `yaml:"topic_prefix" doc:"the value of {prefix}"`
	Topics       []Output `yaml:"topics" doc:"the topics every event is written to, each the template's name plus a suffix, with its cleanup policy (see README: a compacted table topic and a history topic from one pipeline); default one topic, the name itself, cleanup_policy delete"`
	Tombstones   bool     `yaml:"tombstones" doc:"follow each delete with a tombstone (same key, null value) so that compaction drops the row"`
	CreateTopics bool     `yaml:"create_topics" doc:"create missing topics (and offsets_topic) with the partitions, replication factor and configs given here"`
	Partitions   int32    `yaml:"partitions" doc:"partitions of created topics; -1 takes the broker's num.partitions"`
	Replication  int16    `yaml:"replication_factor" doc:"replication factor of created topics; -1 takes the broker's default.replication.factor"`
	Compression  string   `yaml:"compression" doc:"compression of produced batches: none, gzip, snappy, lz4 or zstd"`
	Delivery     string   `yaml:"delivery" doc:"at_least_once: idempotent producer, a replayed batch is written again; exactly_once: one Kafka transaction per batch that also stores the batch's position in offsets_topic"`
	OffsetsTopic string   `yaml:"offsets_topic" doc:"compacted topic where delivery: exactly_once stores each pipeline's position (key: the pipeline name); sources skip its records"`
	TxnID        string   `yaml:"transactional_id" doc:"transactional id of delivery: exactly_once; default tapline-<pipeline>. Two sinks with one id fence each other"`

	TransactionTimeout time.Duration `yaml:"transaction_timeout" doc:"how long the broker lets a transaction stay open before aborting it (a batch must be written within it)"`
	DeliveryTimeout    time.Duration `yaml:"delivery_timeout" doc:"how long a record may take to be acknowledged, retries included, before the batch fails (and is retried)"`
	MaxMessageBytes    int           `yaml:"max_message_bytes" doc:"largest record (key, value and headers); a larger event is rejected (the pipeline's on_error decides). Keep it at or below the topics' max.message.bytes"`
}

// Output is one topic every event is written to: the name the template
// gives, plus Suffix.
type Output struct {
	Suffix        string            `yaml:"suffix" doc:"appended to the topic name, e.g. .history; empty for the name itself"`
	CleanupPolicy string            `yaml:"cleanup_policy" doc:"delete (keep by time or size), compact (keep the latest record per key) or compact,delete; default delete"`
	Retention     time.Duration     `yaml:"retention" doc:"retention.ms of the created topic; 0 keeps the broker's default (use configs retention.ms: \"-1\" for forever)"`
	Partitions    int32             `yaml:"partitions" doc:"partitions of the created topic; 0 takes the sink's partitions"`
	Replication   int16             `yaml:"replication_factor" doc:"replication factor of the created topic; 0 takes the sink's"`
	Tombstones    *bool             `yaml:"tombstones" doc:"write tombstones after deletes into this topic; default the sink's tombstones"`
	Configs       map[string]string `yaml:"configs" doc:"other topic configs set when the topic is created, e.g. min.insync.replicas: \"2\""`
}

// The delivery modes.
const (
	AtLeastOnce = "at_least_once"
	ExactlyOnce = "exactly_once"
)

// DefaultConfig returns the defaults: topics tapline.<schema>.<table>,
// created when missing with the broker's partitions and replication,
// tombstones on, snappy compression, at-least-once delivery.
func DefaultConfig() Config {
	return Config{
		Conn:               kafkaopts.Conn{ClientID: kafkaopts.DefaultClientID},
		Topic:              "{prefix}.{schema}.{table}",
		TopicPrefix:        "tapline",
		Tombstones:         true,
		CreateTopics:       true,
		Partitions:         -1,
		Replication:        -1,
		Compression:        "snappy",
		Delivery:           AtLeastOnce,
		OffsetsTopic:       "tapline.offsets",
		TransactionTimeout: time.Minute,
		DeliveryTimeout:    2 * time.Minute,
		MaxMessageBytes:    1_000_000,
	}
}

// Validate checks the config without connecting. Its errors name the key.
func (c Config) Validate() error {
	errs := []error{c.Conn.Validate()}
	if _, err := parseTemplate(c.Topic); err != nil {
		errs = append(errs, fmt.Errorf("topic: %w", err))
	}
	if c.TopicPrefix != "" && kafkaopts.TopicPart(c.TopicPrefix) != c.TopicPrefix {
		errs = append(errs, fmt.Errorf("topic_prefix: %q: use only letters, digits, '.', '_' and '-'", c.TopicPrefix))
	}
	if _, err := c.outputs(); err != nil {
		errs = append(errs, err)
	}
	if _, err := compression(c.Compression); err != nil {
		errs = append(errs, err)
	}
	if c.Partitions == 0 || c.Partitions < -1 {
		errs = append(errs, fmt.Errorf("partitions: %d: give a positive count, or -1 for the broker's default", c.Partitions))
	}
	if c.Replication == 0 || c.Replication < -1 {
		errs = append(errs, fmt.Errorf("replication_factor: %d: give a positive count, or -1 for the broker's default", c.Replication))
	}
	switch c.Delivery {
	case AtLeastOnce:
	case ExactlyOnce:
		if err := kafkaopts.ValidTopic(c.OffsetsTopic); err != nil {
			errs = append(errs, fmt.Errorf("offsets_topic: %w", err))
		}
		if c.TransactionTimeout <= 0 {
			errs = append(errs, errors.New("transaction_timeout: must be positive"))
		}
	default:
		errs = append(errs, fmt.Errorf("delivery: %q: want at_least_once or exactly_once", c.Delivery))
	}
	if c.DeliveryTimeout <= 0 {
		errs = append(errs, errors.New("delivery_timeout: must be positive"))
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("max_message_bytes: %d: give 1024 to 1073741824", c.MaxMessageBytes))
	}
	return errors.Join(errs...)
}

// compression returns the codec named by s.
func compression(s string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(s) {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression: %q: want none, gzip, snappy, lz4 or zstd", s)
}

// output is a validated Output with the sink's defaults filled in.
type output struct {
	suffix      string
	compact     bool
	tombstones  bool
	partitions  int32
	replication int16
	configs     map[string]*string
}

// outputs validates the topics list and fills in defaults.
func (c Config) outputs() ([]output, error) {
	list := c.Topics
	if len(list) == 0 {
		list = []Output{{}}
	}
	var errs []error
	seen := map[string]bool{}
	out := make([]output, 0, len(list))
	for i, o := range list {
		at := fmt.Sprintf("topics[%d]", i)
		if o.Suffix != "" && kafkaopts.TopicPart(o.Suffix) != o.Suffix {
			errs = append(errs, fmt.Errorf("%s.suffix: %q: use only letters, digits, '.', '_' and '-'", at, o.Suffix))
		}
		if seen[o.Suffix] {
			errs = append(errs, fmt.Errorf("%s.suffix: %q is used twice; each topic needs its own suffix", at, o.Suffix))
		}
		seen[o.Suffix] = true
		policy := strings.ReplaceAll(strings.ToLower(o.CleanupPolicy), " ", "")
		switch policy {
		case "":
			policy = "delete"
		case "delete", "compact":
		case "compact,delete", "delete,compact":
			policy = "compact,delete"
		default:
			errs = append(errs, fmt.Errorf("%s.cleanup_policy: %q: want delete, compact or compact,delete", at, o.CleanupPolicy))
		}
		if _, dup := o.Configs["cleanup.policy"]; dup {
			errs = append(errs, fmt.Errorf("%s.configs: set cleanup.policy with %s.cleanup_policy", at, at))
		}
		if _, dup := o.Configs["retention.ms"]; dup && o.Retention != 0 {
			errs = append(errs, fmt.Errorf("%s.configs: retention.ms and %s.retention are both set; keep one", at, at))
		}
		if o.Retention < 0 {
			errs = append(errs, fmt.Errorf("%s.retention: must not be negative (configs retention.ms: \"-1\" keeps records forever)", at))
		}
		if o.Partitions < 0 || o.Replication < 0 {
			errs = append(errs, fmt.Errorf("%s: partitions and replication_factor must be positive, or 0 for the sink's", at))
		}
		op := output{suffix: o.Suffix, compact: strings.Contains(policy, "compact"), tombstones: c.Tombstones,
			partitions: c.Partitions, replication: c.Replication, configs: map[string]*string{}}
		if o.Tombstones != nil {
			op.tombstones = *o.Tombstones
		}
		if o.Partitions > 0 {
			op.partitions = o.Partitions
		}
		if o.Replication > 0 {
			op.replication = o.Replication
		}
		for k, v := range o.Configs {
			op.configs[k] = &v
		}
		op.configs["cleanup.policy"] = &policy
		if o.Retention > 0 {
			ms := fmt.Sprint(o.Retention.Milliseconds())
			op.configs["retention.ms"] = &ms
		}
		out = append(out, op)
	}
	return out, errors.Join(errs...)
}

// template is a parsed topic name template.
type template struct {
	parts []tpart
}

// tpart is a literal (ph 0) or a placeholder.
type tpart struct {
	lit string
	ph  placeholder
}

type placeholder int

const (
	phNone placeholder = iota
	phPrefix
	phDB
	phSchema
	phTable
)

var placeholders = map[string]placeholder{"prefix": phPrefix, "db": phDB, "schema": phSchema, "table": phTable}

// parseTemplate parses a topic template such as "{prefix}.{schema}.{table}".
func parseTemplate(s string) (template, error) {
	var t template
	if s == "" {
		return t, errors.New("empty; the default is {prefix}.{schema}.{table}")
	}
	for s != "" {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			t.parts = append(t.parts, tpart{lit: s})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, tpart{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return t, fmt.Errorf("%q has an unclosed {", s)
		}
		name := s[i+1 : i+j]
		ph, ok := placeholders[name]
		if !ok {
			return t, fmt.Errorf("unknown placeholder {%s}; want {prefix}, {db}, {schema} or {table}", name)
		}
		t.parts = append(t.parts, tpart{ph: ph})
		s = s[i+j+1:]
	}
	for _, p := range t.parts {
		if p.ph == phNone && kafkaopts.TopicPart(p.lit) != p.lit {
			return t, fmt.Errorf("%q: Kafka topic names allow only letters, digits, '.', '_' and '-'", p.lit)
		}
	}
	return t, nil
}

// render fills in the placeholders. Values are made topic-safe (other
// bytes become '_'), and the dots around an empty value are dropped.
func (t template) render(prefix, db, schema, table string) string {
	var b strings.Builder
	for _, p := range t.parts {
		switch p.ph {
		case phNone:
			b.WriteString(p.lit)
		case phPrefix:
			b.WriteString(prefix)
		case phDB:
			b.WriteString(kafkaopts.TopicPart(db))
		case phSchema:
			b.WriteString(kafkaopts.TopicPart(schema))
		case phTable:
			b.WriteString(kafkaopts.TopicPart(table))
		}
	}
	s := b.String()
	for strings.Contains(s, "..") {
		s = strings.ReplaceAll(s, "..", ".")
	}
	return strings.Trim(s, ".")
}

// fixed reports whether the template has no placeholder but {prefix}, so
// that it names one topic.
func (t template) fixed() bool {
	for _, p := range t.parts {
		if p.ph != phNone && p.ph != phPrefix {
			return false
		}
	}
	return true
}
