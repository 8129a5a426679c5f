package strangler

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultKafkaPort is where Run's kfake broker listens when Options names
// no port: a fixed port, so that the tapline daemon (another process) and
// kcat can reach it.
const DefaultKafkaPort = 19092

// Topic is one topic of the Kafka log, as a run left it.
type Topic struct {
	Name          string
	Partitions    int
	CleanupPolicy string
	// EndOffset is the sum of the partitions' end offsets: records, plus
	// one marker per transaction the exactly-once capture committed.
	EndOffset int64
}

// eventLog is the log a run's pipelines write to and read from.
type eventLog struct {
	// desc says which log it is, for the report.
	desc string
	// pipelines is the directory of the pipeline files for it.
	pipelines string
	// env is what the daemon's environment needs for those files.
	env []string
	// topics lists the run's Kafka topics; nil for NATS.
	topics func(ctx context.Context) ([]Topic, error)
	// close releases what the log holds (a kfake broker); called after
	// the daemon has stopped.
	close func()
}

// openLog sets up the log o asks for: the embedded NATS server the daemon
// starts itself, a kfake broker started here, or an existing Kafka
// cluster.
func openLog(ctx context.Context, o Options) (*eventLog, error) {
	if !o.Kafka {
		return &eventLog{
			desc:      fmt.Sprintf("embedded NATS JetStream in the tapline daemon, 127.0.0.1:%d (streams SHOP, MSHOP)", o.NATSPort),
			pipelines: o.Pipelines,
			env:       []string{"TAPLINE_NATS_PORT=" + strconv.Itoa(o.NATSPort)},
			close:     func() {},
		}, nil
	}
	l := &eventLog{pipelines: filepath.Join(o.Pipelines, "kafka"), close: func() {}}
	prefix := o.KafkaPrefix
	var bootstrap string
	if len(o.KafkaBrokers) == 0 {
		port := o.KafkaPort
		if port == 0 {
			port = DefaultKafkaPort
		}
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port))
		if err != nil {
			return nil, fmt.Errorf("start a kfake broker on 127.0.0.1:%d: %w (pass another port with -kafka-port, or a cluster with -kafka-brokers)", port, err)
		}
		l.close = c.Close
		bootstrap = c.ListenAddrs()[0]
		if prefix == "" {
			prefix = "shop"
		}
		l.desc = fmt.Sprintf("Kafka, a kfake broker in the demo's process at %s", bootstrap)
	} else {
		var err error
		if bootstrap, err = firstBroker(ctx, o.KafkaBrokers); err != nil {
			return nil, err
		}
		if prefix == "" {
			// The topics and the exactly-once positions of an earlier
			// run must not feed this one: a name of its own.
			prefix = "shop_" + strconv.FormatInt(time.Now().Unix(), 10)
		}
		l.desc = fmt.Sprintf("Kafka, the cluster bootstrapped from %s", bootstrap)
	}
	l.desc += fmt.Sprintf(" (topics %s.*, m%s.*)", prefix, prefix)
	l.env = []string{"KAFKA_BROKERS=" + bootstrap, "KAFKA_PREFIX=" + prefix}
	l.topics = func(ctx context.Context) ([]Topic, error) {
		return listTopics(ctx, bootstrap, prefix+".", "m"+prefix+".")
	}
	return l, nil
}

// firstBroker returns the first of brokers that answers. The pipeline
// files take one bootstrap broker; a client finds the others from its
// metadata.
func firstBroker(ctx context.Context, brokers []string) (string, error) {
	var errs []error
	for _, b := range brokers {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(b))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b, err))
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = cl.Ping(pctx)
		cancel()
		cl.Close()
		if err == nil {
			return b, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", b, err))
	}
	if len(errs) == 0 {
		return "", errors.New("kafka: no broker given")
	}
	return "", fmt.Errorf("kafka: no broker answers: %w", errors.Join(errs...))
}

// listTopics describes the topics whose names start with one of prefixes.
func listTopics(ctx context.Context, broker string, prefixes ...string) ([]Topic, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("kafka: list topics: %w", err)
	}
	var names []string
	for _, name := range details.Names() {
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				names = append(names, name)
				break
			}
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("kafka: list end offsets: %w", err)
	}
	configs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("kafka: describe topic configs: %w", err)
	}
	out := make([]Topic, 0, len(names))
	for _, name := range names {
		t := Topic{Name: name, Partitions: len(details[name].Partitions)}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Topic == name && o.Err == nil {
				t.EndOffset += o.Offset
			}
		})
		if rc, err := configs.On(name, nil); err == nil {
			for _, c := range rc.Configs {
				if c.Key == "cleanup.policy" && c.Value != nil {
					t.CleanupPolicy = *c.Value
				}
			}
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
