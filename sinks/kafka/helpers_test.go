package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/sinks/kafka"
)

// newCluster starts an in-process Kafka (kfake) that stops when the test
// ends.
func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// sinkConfig is the default config against c, with a topic prefix unique
// to the test.
func sinkConfig(t testing.TB, c *kfake.Cluster) kafka.Config {
	cfg := kafka.DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.TopicPrefix = servicetest.Name(t, "tl")
	return cfg
}

func newSink(t testing.TB, cfg kafka.Config, pipeline string) connectors.Sink {
	t.Helper()
	s, err := kafka.New(cfg, connectors.Runtime{Pipeline: pipeline})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func open(t testing.TB, s connectors.Sink) {
	t.Helper()
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
}

func write(t testing.TB, s connectors.Sink, evs []connectors.Event) {
	t.Helper()
	if err := s.WriteBatch(context.Background(), batchOf(evs)); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
}

func batchOf(evs []connectors.Event) connectors.Batch {
	return connectors.Batch{Events: evs, Last: evs[len(evs)-1].Position}
}

// client returns a client of c; the caller closes it.
func client(t testing.TB, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// consume reads every record of the topics from their start to the end
// offsets listed first, control records left out. readCommitted chooses
// the isolation level.
func consume(t testing.TB, c *kfake.Cluster, readCommitted bool, topics ...string) []*kgo.Record {
	t.Helper()
	return consumeWith(t, c, nil, readCommitted, topics...)
}

// consumeWith is consume with more client options (SASL, TLS).
func consumeWith(t testing.TB, c *kfake.Cluster, opts []kgo.Opt, readCommitted bool, topics ...string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acl := client(t, c, opts...)
	defer acl.Close()
	ends, err := kadm.NewClient(acl).ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatalf("list end offsets of %v: %v", topics, err)
	}
	left := map[string]map[int32]int64{}
	offs := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
			return // no such topic: nothing in it
		}
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		if o.Offset > 0 {
			if left[o.Topic] == nil {
				left[o.Topic], offs[o.Topic] = map[int32]int64{}, map[int32]kgo.Offset{}
			}
			left[o.Topic][o.Partition] = o.Offset
			offs[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(left) == 0 {
		return nil
	}
	iso := kgo.ReadUncommitted()
	if readCommitted {
		iso = kgo.ReadCommitted()
	}
	cl := client(t, c, append(opts, kgo.ConsumePartitions(offs), kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords())...)
	defer cl.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume %v: timed out with partitions left: %v", topics, left)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("consume %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Topic][r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if r.Offset >= end-1 {
				delete(left[r.Topic], r.Partition)
				if len(left[r.Topic]) == 0 {
					delete(left, r.Topic)
				}
			}
		})
	}
	return out
}

// fold folds conformance records by key, the way a compacted topic's
// reader does: the latest event per key, deletes and tombstones removing
// it.
func fold(t testing.TB, recs []*kgo.Record) map[string]string {
	t.Helper()
	state := map[string]string{}
	d := eventjson.NewDecoder()
	for _, r := range recs {
		var key struct{ ID int64 }
		if err := json.Unmarshal(r.Key, &key); err != nil {
			t.Fatalf("%s/%d@%d: key %q: %v", r.Topic, r.Partition, r.Offset, r.Key, err)
		}
		k := connectortest.Key(key.ID)
		if r.Value == nil {
			delete(state, k)
			continue
		}
		ev, err := d.Decode(r.Value)
		if err != nil {
			t.Fatalf("%s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
		}
		if ev.Op == connectors.OpDelete {
			delete(state, k)
		} else {
			state[k] = connectortest.Row(ev.After...)
		}
	}
	return state
}

// header returns a record's header value.
func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// itemsTopic is the topic of the conformance table under cfg's prefix.
func itemsTopic(cfg kafka.Config) string { return cfg.TopicPrefix + ".conformance.items" }

// keyed returns n creates of ids first..first+n-1, positions from commit.
func keyed(commit uint64, first int64, n int) []connectors.Event {
	evs := make([]connectors.Event, n)
	for i := range evs {
		id := first + int64(i)
		evs[i] = connectors.Event{Op: connectors.OpCreate, Schema: connectortest.Schema,
			After:    []connectors.Value{id, fmt.Sprintf("item %d", id), int64(0), "1.00"},
			Source:   connectors.SourceInfo{Connector: "test", DB: "shop", Schema: "conformance", Table: "items"},
			Position: connectors.TxPosition{Commit: commit, Ordinal: uint32(i + 1)}.Encode()}
	}
	return evs
}
