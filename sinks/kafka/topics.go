package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tapline/tapline/internal/kafkaopts"
)

// ensureTopics creates the topics in need (topic → output index) that do
// not exist yet, when create_topics is on, and remembers them as ready.
// A topic that exists already is kept as it is; if its cleanup.policy
// differs from the output's, a warning says so.
func (s *Sink) ensureTopics(ctx context.Context, need map[string]int) error {
	if len(need) == 0 {
		return nil
	}
	if !s.cfg.CreateTopics {
		for t := range need {
			s.ready[t] = true
		}
		return nil
	}
	byOutput := map[int][]string{}
	for t, oi := range need {
		byOutput[oi] = append(byOutput[oi], t)
	}
	for oi, topics := range byOutput {
		sort.Strings(topics)
		if err := s.createTopics(ctx, s.outs[oi], topics...); err != nil {
			return err
		}
	}
	return nil
}

// createTopics creates topics with o's settings; existing ones are fine.
func (s *Sink) createTopics(ctx context.Context, o output, topics ...string) error {
	resps, err := s.adm.CreateTopics(ctx, o.partitions, o.replication, o.configs, topics...)
	if err != nil {
		return kafkaopts.Err(fmt.Sprintf("kafka: create topics %s", strings.Join(topics, ", ")), err)
	}
	var existing []string
	for _, t := range topics {
		r, ok := resps[t]
		switch {
		case !ok:
			return kafkaopts.Err("kafka: create topic "+t, errors.New("the broker did not answer for it"))
		case r.Err == nil:
			s.log.Info("kafka: created topic", "topic", t, "partitions", r.NumPartitions, "replication_factor", r.ReplicationFactor,
				"cleanup_policy", *o.configs["cleanup.policy"])
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			existing = append(existing, t)
		default:
			return kafkaopts.Err(fmt.Sprintf("kafka: create topic %s (partitions %d, replication_factor %d)", t, o.partitions, o.replication), withMessage(r.Err, r.ErrMessage))
		}
		s.ready[t] = true
	}
	if len(existing) > 0 {
		s.checkPolicy(ctx, o, existing)
	}
	return nil
}

func withMessage(err error, msg string) error {
	if msg == "" {
		return err
	}
	return fmt.Errorf("%w: %s", err, msg)
}

// checkPolicy warns about existing topics whose cleanup.policy is not the
// one configured: a table topic that is not compacted keeps deleted rows,
// a history topic that is compacted loses history.
func (s *Sink) checkPolicy(ctx context.Context, o output, topics []string) {
	want := *o.configs["cleanup.policy"]
	rcs, err := s.adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		s.log.Warn("kafka: could not read the configs of existing topics", "topics", topics, "error", err)
		return
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			continue
		}
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" && normalizePolicy(c.MaybeValue()) != want {
				s.log.Warn("kafka: an existing topic has another cleanup.policy than configured; it is left as it is",
					"topic", rc.Name, "cleanup_policy", c.MaybeValue(), "configured", want)
			}
		}
	}
}

func normalizePolicy(p string) string {
	p = strings.ReplaceAll(strings.ToLower(p), " ", "")
	if p == "delete,compact" {
		return "compact,delete"
	}
	return p
}

// ensureOffsetsTopic makes sure offsets_topic exists: created compacted,
// with one partition, when create_topics is on; an error naming the key
// when it is off and the topic is missing.
func (s *Sink) ensureOffsetsTopic(ctx context.Context) error {
	topic := s.cfg.OffsetsTopic
	if s.cfg.CreateTopics {
		compact := "compact"
		o := output{partitions: 1, replication: s.cfg.Replication, configs: map[string]*string{"cleanup.policy": &compact}}
		return s.createTopics(ctx, o, topic)
	}
	td, err := s.adm.ListTopics(ctx, topic)
	if err != nil {
		return kafkaopts.Err("kafka: look up offsets_topic "+topic, err)
	}
	if d, ok := td[topic]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("kafka: offsets_topic %s does not exist; create it compacted (cleanup.policy=compact), or set create_topics: true", topic)
	} else if d.Err != nil {
		return kafkaopts.Err("kafka: look up offsets_topic "+topic, d.Err)
	}
	return nil
}

// Check connects and verifies what it can without writing: that the
// brokers answer (and authenticate), that a fixed topic exists or may be
// created, that created topics' settings are accepted (a validate-only
// CreateTopics of a sample name), and for exactly_once that offsets_topic
// exists or may be created.
func (s *Sink) Check(ctx context.Context) error {
	cl, err := newClient(s.conn)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return kafkaopts.Err(fmt.Sprintf("kafka: brokers %v", s.cfg.Brokers), err)
	}
	if len(md.Brokers) == 0 {
		return fmt.Errorf("kafka: brokers %v: the cluster lists no broker", s.cfg.Brokers)
	}
	var errs []error
	sample := s.tmpl.render(s.cfg.TopicPrefix, "db", "schema", "table")
	for _, o := range s.outs {
		name := sample + o.suffix
		if s.tmpl.fixed() {
			errs = append(errs, s.checkTopic(ctx, adm, o, name, "topic"))
		} else if s.cfg.CreateTopics {
			errs = append(errs, s.validateCreate(ctx, adm, o, name+".tapline_check", "topics"))
		}
	}
	if s.eos {
		compact := "compact"
		o := output{partitions: 1, replication: s.cfg.Replication, configs: map[string]*string{"cleanup.policy": &compact}}
		errs = append(errs, s.checkTopic(ctx, adm, o, s.cfg.OffsetsTopic, "offsets_topic"))
	}
	return errors.Join(errs...)
}

// checkTopic checks that topic exists, or may be created with o's
// settings.
func (s *Sink) checkTopic(ctx context.Context, adm *kadm.Client, o output, topic, key string) error {
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return kafkaopts.Err(fmt.Sprintf("kafka: %s: look up %s", key, topic), err)
	}
	if d, ok := td[topic]; ok && d.Err == nil {
		return nil
	}
	if !s.cfg.CreateTopics {
		return fmt.Errorf("kafka: %s: %s does not exist; create it, or set create_topics: true", key, topic)
	}
	return s.validateCreate(ctx, adm, o, topic, key)
}

// validateCreate asks the brokers whether topic could be created with o's
// settings, without creating it.
func (s *Sink) validateCreate(ctx context.Context, adm *kadm.Client, o output, topic, key string) error {
	resps, err := adm.ValidateCreateTopics(ctx, o.partitions, o.replication, o.configs, topic)
	if err != nil {
		return kafkaopts.Err(fmt.Sprintf("kafka: %s: validate creating %s", key, topic), err)
	}
	if r, ok := resps[topic]; ok && r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
		return kafkaopts.Err(fmt.Sprintf("kafka: %s: the brokers would refuse to create %s (create_topics: true)", key, topic), withMessage(r.Err, r.ErrMessage))
	}
	return nil
}
