package kafka_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/sinks/kafka"
)

// describe returns a topic's partition count and the configs set on it.
func describe(t *testing.T, c *kfake.Cluster, topic string) (int, map[string]string) {
	t.Helper()
	cl := client(t, c)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	td, err := adm.ListTopics(ctx, topic)
	if err != nil || td[topic].Err != nil {
		t.Fatalf("describe %s: %v %v", topic, err, td[topic].Err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("describe configs of %s: %v", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatalf("describe configs of %s: %v", topic, err)
	}
	configs := map[string]string{}
	for _, c := range rc.Configs {
		configs[c.Key] = c.MaybeValue()
	}
	return len(td[topic].Partitions), configs
}

// Created topics get the configured partitions, cleanup.policy, retention
// and extra configs; exactly_once's offsets topic is compacted.
func TestCreatesTopicsWithPolicy(t *testing.T) {
	c := newCluster(t)
	cfg := sinkConfig(t, c)
	cfg.Partitions = 2
	cfg.Delivery = kafka.ExactlyOnce
	cfg.OffsetsTopic = cfg.TopicPrefix + ".offsets"
	cfg.Topics = []kafka.Output{
		{CleanupPolicy: "compact", Partitions: 3, Configs: map[string]string{"min.compaction.lag.ms": "1000"}},
		{Suffix: ".history", CleanupPolicy: "delete", Retention: 72 * time.Hour},
		{Suffix: ".both", CleanupPolicy: "delete, compact"},
	}
	s := newSink(t, cfg, "p")
	open(t, s)
	write(t, s, keyed(1, 1, 5))

	for _, tc := range []struct {
		topic      string
		partitions int
		configs    map[string]string
	}{
		{itemsTopic(cfg), 3, map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "1000"}},
		{itemsTopic(cfg) + ".history", 2, map[string]string{"cleanup.policy": "delete", "retention.ms": fmt.Sprint((72 * time.Hour).Milliseconds())}},
		{itemsTopic(cfg) + ".both", 2, map[string]string{"cleanup.policy": "compact,delete"}},
		{cfg.OffsetsTopic, 1, map[string]string{"cleanup.policy": "compact"}},
	} {
		n, configs := describe(t, c, tc.topic)
		if n != tc.partitions {
			t.Errorf("%s: %d partitions, want %d", tc.topic, n, tc.partitions)
		}
		for k, v := range tc.configs {
			if configs[k] != v {
				t.Errorf("%s: %s = %q, want %q", tc.topic, k, configs[k], v)
			}
		}
	}
}

// An existing topic is used as it is, and create_topics: false creates
// nothing.
func TestExistingTopics(t *testing.T) {
	c := newCluster(t)
	cfg := sinkConfig(t, c)
	cl := client(t, c)
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 5, 1, nil, itemsTopic(cfg)); err != nil {
		t.Fatal(err)
	}
	cfg.Topics = []kafka.Output{{CleanupPolicy: "compact", Partitions: 2}}
	s := newSink(t, cfg, "p")
	open(t, s)
	write(t, s, keyed(1, 1, 20))
	if n, configs := describe(t, c, itemsTopic(cfg)); n != 5 || configs["cleanup.policy"] == "compact" {
		t.Errorf("the existing topic was changed: %d partitions, cleanup.policy %q", n, configs["cleanup.policy"])
	}
	if n := len(consume(t, c, true, itemsTopic(cfg))); n != 20 {
		t.Errorf("%d records, want 20", n)
	}

	cfg.CreateTopics = false
	cfg.TopicPrefix += "x"
	cfg.DeliveryTimeout = 2 * time.Second
	s2 := newSink(t, cfg, "p")
	open(t, s2)
	err := s2.WriteBatch(context.Background(), batchOf(keyed(1, 1, 1)))
	t.Logf("WriteBatch to a missing topic: %v (retryable %v)", err, connectors.IsRetryable(err))
	if err == nil || !strings.Contains(err.Error(), "create_topics") {
		t.Fatalf("WriteBatch to a missing topic with create_topics off: %v; want an error pointing at create_topics", err)
	}
	if recs := consume(t, c, false, itemsTopic(cfg)); len(recs) != 0 {
		t.Fatalf("create_topics: false created the topic")
	}
}

// One pipeline holds events twice: a compacted table topic (latest row
// per key, tombstones after deletes) and a history topic (every change,
// no tombstones). After compaction the table topic holds each live row
// once and no deleted row.
func TestTableAndHistoryTopics(t *testing.T) {
	c := newCluster(t)
	cfg := sinkConfig(t, c)
	no := false
	cfg.Topics = []kafka.Output{
		{CleanupPolicy: "compact", Partitions: 1, Configs: map[string]string{"delete.retention.ms": "0"}},
		{Suffix: ".history", CleanupPolicy: "delete", Partitions: 1, Tombstones: &no},
	}
	s := newSink(t, cfg, "p")
	open(t, s)
	want := map[string]string{}
	evs := connectortest.Changes(1, 150, 1, want)
	for i := 0; i < len(evs); i += 30 {
		write(t, s, evs[i:i+30])
	}
	sentinel := keyed(1000, 100_000, 1) // the last batch: kfake's active segment, which compaction leaves
	write(t, s, sentinel)
	want[connectortest.Key(100_000)] = connectortest.Row(sentinel[0].After...)

	table, history := itemsTopic(cfg), itemsTopic(cfg)+".history"
	hist := consume(t, c, true, history)
	if len(hist) != len(evs)+1 {
		t.Fatalf("history topic holds %d records, want every change: %d", len(hist), len(evs)+1)
	}
	for i, r := range hist[:len(evs)] {
		if r.Value == nil {
			t.Fatalf("history record %d is a tombstone", i)
		}
		if got, want := header(r, kafka.HeaderPosition), evs[i].Position.String(); got != want {
			t.Fatalf("history record %d has position %s, want %s (in order)", i, got, want)
		}
	}
	before := consume(t, c, true, table)
	compare(t, "table topic", fold(t, before), want)

	c.Compact()
	after := consume(t, c, true, table)
	compare(t, "compacted table topic", fold(t, after), want)
	perKey := map[string]int{}
	for _, r := range after {
		perKey[string(r.Key)]++
	}
	var problems []string
	for k, n := range perKey {
		if n > 1 {
			problems = append(problems, fmt.Sprintf("key %s has %d records after compaction", k, n))
		}
	}
	if len(perKey) != len(want) {
		problems = append(problems, fmt.Sprintf("%d keys after compaction (%d records before), want the %d live rows only", len(perKey), len(before), len(want)))
	}
	if len(problems) > 0 {
		t.Fatal(strings.Join(problems, "\n"))
	}
}

func compare(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	var problems []string
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			problems = append(problems, fmt.Sprintf("%s = %q, want %q", k, g, w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			problems = append(problems, fmt.Sprintf("unexpected %s", k))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("%s differs from the changes written:\n%s", what, strings.Join(problems[:min(10, len(problems))], "\n"))
	}
}

func TestCheck(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	check := func(cfg kafka.Config) error {
		s, err := kafka.New(cfg, connectors.Runtime{Pipeline: "p"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(ctx)
		return s.(connectors.Checker).Check(ctx)
	}
	cfg := sinkConfig(t, c)
	if err := check(cfg); err != nil {
		t.Fatalf("Check: %v", err)
	}
	eos := cfg
	eos.Delivery = kafka.ExactlyOnce
	if err := check(eos); err != nil {
		t.Fatalf("Check with exactly_once: %v", err)
	}

	fixed := cfg
	fixed.Topic = "{prefix}.all"
	fixed.CreateTopics = false
	if err := check(fixed); err == nil || !strings.Contains(err.Error(), fixed.TopicPrefix+".all does not exist") {
		t.Fatalf("Check of a missing fixed topic: %v", err)
	}
	eos.CreateTopics = false
	if err := check(eos); err == nil || !strings.Contains(err.Error(), "offsets_topic") {
		t.Fatalf("Check of a missing offsets topic: %v", err)
	}

	down := cfg
	down.Brokers = []string{"127.0.0.1:1"}
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	s, _ := kafka.New(down, connectors.Runtime{})
	err := s.(connectors.Checker).Check(dctx)
	t.Logf("Check of an unreachable broker: %v", err)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Check of an unreachable broker: %v", err)
	}
}
