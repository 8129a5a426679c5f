package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/sources/kafka"
)

func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
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

// createTopic creates a topic of n partitions with a name unique to the
// test.
func createTopic(t testing.TB, c *kfake.Cluster, prefix string, n int32) string {
	t.Helper()
	name := servicetest.Name(t, prefix)
	cl := client(t, c)
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), n, 1, nil, name); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return name
}

var itemSchema = connectors.MustSchema(connectors.TableID{Schema: "shop", Name: "items"}, 1, []connectors.Column{
	{Name: "id", Type: connectors.TypeInt64, Native: "int8", Key: 1},
	{Name: "version", Type: connectors.TypeInt64, Native: "int8"},
})

// item returns the event of version v of row id.
func item(id, v int64) connectors.Event {
	op := connectors.OpCreate
	if v > 0 {
		op = connectors.OpUpdate
	}
	return connectors.Event{Op: op, Schema: itemSchema, After: []connectors.Value{id, v},
		Source: connectors.SourceInfo{Connector: "test", DB: "shop", Schema: "shop", Table: "items"}}
}

// ident names an event by its row and version.
func ident(ev *connectors.Event) string {
	row := ev.Row()
	return fmt.Sprintf("%v@%v", row[0], row[1])
}

// record encodes ev as the Kafka sink does: key, value; partition
// chosen by the caller's partitioner.
func record(t testing.TB, topic string, ev connectors.Event) *kgo.Record {
	t.Helper()
	key, err := eventjson.MarshalKey(&ev)
	if err != nil {
		t.Fatal(err)
	}
	val, err := eventjson.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topic, Key: key, Value: val}
}

// produce writes records and waits for them.
func produce(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// manualClient returns a client that sends each record to the partition
// it names; the caller closes it.
func manualClient(t testing.TB, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	return client(t, c, append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
}

func newSource(t testing.TB, c *kfake.Cluster, mod func(*kafka.Config)) *kafka.Source {
	t.Helper()
	cfg := kafka.DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.SessionTimeout = 6 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	s, err := kafka.New(cfg, connectors.Runtime{Pipeline: "p"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openSource(t testing.TB, s *kafka.Source, pos connectors.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Open(ctx, pos); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
}

var lim = connectors.Limits{MaxEvents: 50, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond}

// readN reads until it has n events (failing after timeout), then returns
// them and the last batch position.
func readN(t testing.TB, s connectors.Source, n int, timeout time.Duration) []connectors.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []connectors.Event
	for len(out) < n {
		b, err := s.ReadBatch(ctx, lim)
		out = append(out, b.Events...)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d events: %v", len(out), n, err)
		}
	}
	return out
}

// readQuiet reads for d and returns what came: to check that nothing more
// does.
func readQuiet(t testing.TB, s connectors.Source, d time.Duration) []connectors.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []connectors.Event
	for {
		b, err := s.ReadBatch(ctx, lim)
		out = append(out, b.Events...)
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, io.EOF) {
				t.Fatalf("ReadBatch: %v", err)
			}
			return out
		}
	}
}
