package kafka

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/tapline/tapline/internal/kafkaopts"
)

// Config is the Kafka source's configuration.
type Config struct {
	kafkaopts.Conn `yaml:",inline"`

	Topics       []string `yaml:"topics" doc:"topics to read (or topic_regex)"`
	TopicRegex   string   `yaml:"topic_regex" doc:"read every topic whose whole name matches this regular expression (Go RE2 syntax), instead of topics; topics created later join when they appear"`
	Group        string   `yaml:"group" doc:"consumer group; default the pipeline's name. A rebuild reads everything again in a group of its own (the pipeline's name, or this one, with -rebuild)"`
	Start        string   `yaml:"start" doc:"where a partition starts when the group has no committed offset for it and the pipeline no position: earliest or latest"`
	OffsetsTopic string   `yaml:"offsets_topic" doc:"the Kafka sink's offsets topic (delivery: exactly_once); its records are skipped, should topic_regex match it"`

	FetchMaxBytes          int32         `yaml:"fetch_max_bytes" doc:"most bytes a fetch from one broker returns; with fetch_max_partition_bytes it bounds the memory read ahead"`
	FetchMaxPartitionBytes int32         `yaml:"fetch_max_partition_bytes" doc:"most bytes a fetch returns from one partition"`
	SessionTimeout         time.Duration `yaml:"session_timeout" doc:"how long the group coordinator waits for a heartbeat before it gives this member's partitions to others"`
	RebalanceTimeout       time.Duration `yaml:"rebalance_timeout" doc:"how long members may take to join a rebalance"`
}

// The values of Config.Start.
const (
	StartEarliest = "earliest"
	StartLatest   = "latest"
)

// DefaultConfig returns the defaults: group named after the pipeline,
// start at the earliest offset, fetches of at most 4 MiB.
func DefaultConfig() Config {
	return Config{
		Conn:                   kafkaopts.Conn{ClientID: kafkaopts.DefaultClientID},
		Start:                  StartEarliest,
		OffsetsTopic:           "tapline.offsets",
		FetchMaxBytes:          4 << 20,
		FetchMaxPartitionBytes: 1 << 20,
		SessionTimeout:         45 * time.Second,
		RebalanceTimeout:       time.Minute,
	}
}

// Validate checks the config without connecting. Its errors name the key.
func (c Config) Validate() error {
	errs := []error{c.Conn.Validate()}
	switch {
	case len(c.Topics) == 0 && c.TopicRegex == "":
		errs = append(errs, errors.New("topics: give the topics to read, or topic_regex"))
	case len(c.Topics) > 0 && c.TopicRegex != "":
		errs = append(errs, errors.New("topics, topic_regex: give one of them, not both"))
	}
	for i, t := range c.Topics {
		if err := kafkaopts.ValidTopic(t); err != nil {
			errs = append(errs, fmt.Errorf("topics[%d]: %w", i, err))
		}
	}
	if c.TopicRegex != "" {
		if _, err := regexp.Compile(c.TopicRegex); err != nil {
			errs = append(errs, fmt.Errorf("topic_regex: %w", err))
		}
	}
	switch c.Start {
	case StartEarliest, StartLatest:
	default:
		errs = append(errs, fmt.Errorf("start: %q: want earliest or latest", c.Start))
	}
	if c.OffsetsTopic != "" {
		if err := kafkaopts.ValidTopic(c.OffsetsTopic); err != nil {
			errs = append(errs, fmt.Errorf("offsets_topic: %w", err))
		}
	}
	if c.FetchMaxBytes <= 0 || c.FetchMaxPartitionBytes <= 0 {
		errs = append(errs, errors.New("fetch_max_bytes, fetch_max_partition_bytes: must be positive"))
	} else if c.FetchMaxPartitionBytes > c.FetchMaxBytes {
		errs = append(errs, fmt.Errorf("fetch_max_partition_bytes: %d is more than fetch_max_bytes (%d)", c.FetchMaxPartitionBytes, c.FetchMaxBytes))
	}
	if c.SessionTimeout <= 0 || c.RebalanceTimeout <= 0 {
		errs = append(errs, errors.New("session_timeout, rebalance_timeout: must be positive"))
	}
	return errors.Join(errs...)
}

// regex returns topic_regex anchored to match whole topic names.
func (c Config) regex() string { return "^(?:" + c.TopicRegex + ")$" }
