package kafka_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/offsets"
	"github.com/tapline/tapline/pipelines"
	"github.com/tapline/tapline/sinks/kafka"
	source "github.com/tapline/tapline/sources/kafka"
)

// failingStore fails its failAt-th Commit, as a crash after the sink's
// commit and before the engine's would.
type failingStore struct {
	offsets.Store
	failAt int32
	n      atomic.Int32
}

var errStoreCrash = errors.New("crash injected before the offset store's commit")

func (f *failingStore) Commit(ctx context.Context, pipeline string, pos connectors.Position) error {
	if f.n.Add(1) == f.failAt {
		return errStoreCrash
	}
	return f.Store.Commit(ctx, pipeline, pos)
}

// A pipeline from a Kafka topic to Kafka topics with delivery:
// exactly_once, run by the engine, crashes twice: between a transaction's
// produce and its commit, and between the sink's commit and the engine's
// (so that the consumer group's offsets lag behind the sink's position).
// Each time it runs again, the engine resumes the source from the sink's
// stored position, which wins over the group's offsets, and a
// read_committed consumer of the output sees every event once.
func TestPipelineExactlyOnceAcrossCrash(t *testing.T) {
	c := newCluster(t)
	cfg := eosConfig(t, c)
	in := cfg.TopicPrefix + ".in"
	cl := client(t, c)
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 3, 1, nil, in); err != nil {
		t.Fatal(err)
	}
	const n = 600
	var recs []*kgo.Record
	for _, ev := range keyed(1, 1, n) {
		key, _ := eventjson.MarshalKey(&ev)
		val, _ := eventjson.Marshal(&ev)
		recs = append(recs, &kgo.Record{Topic: in, Key: key, Value: val})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	store := &failingStore{Store: offsets.NewMemory()}
	// Each run uses another batch size, so that a batch read again has
	// other bounds than the one before the crash (the sink drops a batch
	// whose last position is the one it stored, which would hide a
	// source that does not resume from the position).
	run := func(crashAt, storeCrashAt int32, batch int) error {
		store.n.Store(0)
		store.failAt = storeCrashAt
		scfg := source.DefaultConfig()
		scfg.Brokers, scfg.Topics = c.ListenAddrs(), []string{in}
		src, err := source.New(scfg, connectors.Runtime{Pipeline: "mirror"})
		if err != nil {
			t.Fatal(err)
		}
		sink := newSink(t, cfg, "mirror")
		var batches atomic.Int32
		kafka.Unwrap(sink).SetBeforeCommit(func() error {
			if batches.Add(1) == crashAt {
				return errCrash
			}
			return nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- pipelines.Run(ctx, pipelines.Job{Name: "mirror", Source: src, Sink: sink, Offsets: store,
				Limits: connectors.Limits{MaxEvents: batch, MaxBytes: 1 << 20, MaxWait: 20 * time.Millisecond},
				Retry:  pipelines.Retry{MaxAttempts: 1}})
		}()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case err := <-done:
				return err
			case <-deadline:
				t.Fatal("the pipeline did not finish its work within 30s")
			case <-time.After(100 * time.Millisecond):
			}
			if crashAt == 0 && storeCrashAt == 0 && len(consume(t, c, true, itemsTopic(cfg))) >= n {
				cancel()
				return <-done
			}
		}
	}
	if err := run(4, 0, 40); !errors.Is(err, errCrash) {
		t.Fatalf("first run: %v; want the injected crash", err)
	}
	// The crashed transaction is still open: a read_committed consumer
	// waits for it to end; a read_uncommitted one sees its records.
	before := len(consume(t, c, false, itemsTopic(cfg)))
	if before == 0 || before >= n {
		t.Fatalf("the first run wrote %d of %d events before crashing; want some, not all", before, n)
	}
	if err := run(0, 3, 30); !errors.Is(err, errStoreCrash) {
		t.Fatalf("second run: %v; want the injected crash", err)
	}
	if err := run(0, 0, 25); err != nil {
		t.Fatalf("third run: %v", err)
	}
	if p := countIDs(consume(t, c, true, itemsTopic(cfg)), n); len(p) > 0 {
		t.Fatalf("read_committed consumer of the output (%d written before the crash):\n%s", before, strings.Join(p[:min(10, len(p))], "\n"))
	}
}
