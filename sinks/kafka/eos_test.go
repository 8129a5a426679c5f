package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/sinks/kafka"
)

func eosConfig(t *testing.T, c *kfake.Cluster) kafka.Config {
	cfg := sinkConfig(t, c)
	cfg.Delivery = kafka.ExactlyOnce
	cfg.OffsetsTopic = cfg.TopicPrefix + ".offsets"
	cfg.Partitions = 3
	return cfg
}

func committed(t *testing.T, s connectors.Sink) connectors.Position {
	t.Helper()
	pos, err := s.(connectors.AtomicSink).CommittedPosition(context.Background())
	if err != nil {
		t.Fatalf("CommittedPosition: %v", err)
	}
	return pos
}

// countIDs counts the records of each id, tombstones aside, and reports
// ids seen other than once.
func countIDs(recs []*kgo.Record, ids int) []string {
	n := map[string]int{}
	for _, r := range recs {
		if r.Value != nil {
			n[string(r.Key)]++
		}
	}
	var problems []string
	for id := 1; id <= ids; id++ {
		k := fmt.Sprintf(`{"id":%d}`, id)
		if n[k] != 1 {
			problems = append(problems, fmt.Sprintf("%s seen %d times", k, n[k]))
		}
		delete(n, k)
	}
	for k, c := range n {
		problems = append(problems, fmt.Sprintf("unexpected %s seen %d times", k, c))
	}
	sort.Strings(problems)
	return problems
}

var errCrash = errors.New("crash injected between produce and commit")

// A crash after the batch's records are produced and before the
// transaction commits: a new sink aborts the open transaction, reports the
// position stored before, and the replayed batch is seen once by a
// read_committed consumer.
func TestExactlyOnceCrashBeforeCommit(t *testing.T) {
	c := newCluster(t)
	cfg := eosConfig(t, c)
	topic := itemsTopic(cfg)
	b1, b2, b3 := keyed(1, 1, 50), keyed(2, 51, 50), keyed(3, 101, 50)

	a := newSink(t, cfg, "eos")
	open(t, a)
	write(t, a, b1)
	kafka.Unwrap(a).SetBeforeCommit(func() error { return errCrash })
	if err := a.WriteBatch(context.Background(), batchOf(b2)); !errors.Is(err, errCrash) {
		t.Fatalf("WriteBatch with the crash: %v", err)
	}
	a.Close(context.Background()) // the process dies; its transaction stays open

	if n := len(consume(t, c, false, topic)); n != 100 {
		t.Fatalf("read_uncommitted sees %d records before the restart, want 100: the crash must come after the produce", n)
	}

	b := newSink(t, cfg, "eos")
	open(t, b)
	if got, want := committed(t, b), b1[49].Position; !bytes.Equal(got, want) {
		t.Fatalf("CommittedPosition after the crash = %s, want %s (the last committed batch)", got, want)
	}
	write(t, b, b2) // the engine replays from the committed position
	write(t, b, b3)
	if p := countIDs(consume(t, c, true, topic), 150); len(p) > 0 {
		t.Fatalf("read_committed consumer:\n%s", strings.Join(p, "\n"))
	}
	if n := len(consume(t, c, false, topic)); n != 200 {
		t.Errorf("read_uncommitted sees %d records, want 200 (batch 2 twice, once aborted)", n)
	}
	b.Close(context.Background())

	again := newSink(t, cfg, "eos")
	open(t, again)
	if got, want := committed(t, again), b3[49].Position; !bytes.Equal(got, want) {
		t.Fatalf("CommittedPosition after reopening = %s, want %s", got, want)
	}
}

// A batch whose commit is refused is aborted; WriteBatch says it may be
// retried, and the retry is seen once.
func TestExactlyOnceCommitFails(t *testing.T) {
	c := newCluster(t)
	cfg := eosConfig(t, c)
	s := newSink(t, cfg, "eos")
	open(t, s)
	b1, b2 := keyed(1, 1, 30), keyed(2, 31, 30)
	write(t, s, b1)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TopLevel: true, Err: kerr.UnknownServerError})
	err := s.WriteBatch(context.Background(), batchOf(b2))
	if err == nil || !connectors.IsRetryable(err) {
		t.Fatalf("WriteBatch with a failed commit: %v (retryable %v), want a retryable error", err, connectors.IsRetryable(err))
	}
	if got := committed(t, s); !bytes.Equal(got, b1[29].Position) {
		t.Fatalf("CommittedPosition after the failed commit = %s, want the previous batch's", got)
	}
	write(t, s, b2)
	if p := countIDs(consume(t, c, true, itemsTopic(cfg)), 60); len(p) > 0 {
		t.Fatalf("read_committed consumer:\n%s", strings.Join(p, "\n"))
	}
	if got := committed(t, s); !bytes.Equal(got, b2[29].Position) {
		t.Fatalf("CommittedPosition = %s, want %s", got, b2[29].Position)
	}
}

// A batch the engine writes again after the sink committed it (a crash
// before the engine's own offset commit) is not written twice.
func TestExactlyOnceReplayOfCommittedBatch(t *testing.T) {
	c := newCluster(t)
	cfg := eosConfig(t, c)
	s := newSink(t, cfg, "eos")
	open(t, s)
	b1 := keyed(1, 1, 40)
	write(t, s, b1)
	s.Close(context.Background())
	s = newSink(t, cfg, "eos")
	open(t, s)
	write(t, s, b1)
	if p := countIDs(consume(t, c, true, itemsTopic(cfg)), 40); len(p) > 0 {
		t.Fatalf("read_committed consumer:\n%s", strings.Join(p, "\n"))
	}
}

// A second sink with the same transactional id fences the first: the
// first fails with an error that says why, and nothing it tries is seen.
func TestExactlyOnceFencesZombie(t *testing.T) {
	c := newCluster(t)
	cfg := eosConfig(t, c)
	old := newSink(t, cfg, "eos")
	open(t, old)
	write(t, old, keyed(1, 1, 10))
	cur := newSink(t, cfg, "eos")
	open(t, cur)
	err := old.WriteBatch(context.Background(), batchOf(keyed(2, 11, 10)))
	if err == nil || connectors.IsRetryable(err) || !strings.Contains(err.Error(), "another sink with this transactional id") {
		t.Fatalf("WriteBatch of the fenced sink: %v (retryable %v)", err, connectors.IsRetryable(err))
	}
	write(t, cur, keyed(2, 11, 10))
	if p := countIDs(consume(t, c, true, itemsTopic(cfg)), 20); len(p) > 0 {
		t.Fatalf("read_committed consumer:\n%s", strings.Join(p, "\n"))
	}
}

// Positions of several pipelines share an offsets topic of several
// partitions; each is stored in the partition its key hashes to and read
// back from there.
func TestExactlyOnceSharedOffsetsTopic(t *testing.T) {
	c := newCluster(t)
	cfg := eosConfig(t, c)
	cl := client(t, c)
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 4, 1, map[string]*string{"cleanup.policy": new("compact")}, cfg.OffsetsTopic); err != nil {
		t.Fatal(err)
	}
	pipelines := []string{"orders", "customers", "invoices", "shipments", "stock"}
	last := map[string]connectors.Position{}
	for round := 0; round < 2; round++ {
		for i, p := range pipelines {
			pc := cfg
			pc.TopicPrefix = cfg.TopicPrefix + "-" + p
			s := newSink(t, pc, p)
			open(t, s)
			if got := committed(t, s); !bytes.Equal(got, last[p]) {
				t.Fatalf("round %d: %s: CommittedPosition = %s, want %s", round, p, got, last[p])
			}
			evs := keyed(uint64(round*100+i+1), 1, 5)
			write(t, s, evs)
			last[p] = evs[4].Position
			s.Close(context.Background())
		}
	}
	recs := consume(t, c, true, cfg.OffsetsTopic)
	if len(recs) != 2*len(pipelines) {
		t.Fatalf("%d records in the offsets topic, want %d", len(recs), 2*len(pipelines))
	}
	for _, r := range recs {
		if want := javaPartition(r.Key, 4); r.Partition != want || kafka.KeyPartition(cfg.OffsetsTopic, r.Key, 4) != want {
			t.Errorf("position of %s in partition %d, want %d", r.Key, r.Partition, want)
		}
	}
}

// franz-go may end a transaction it was asked to commit with an abort,
// and return nil, when it finds no partition marked as added to it (seen
// under load for one-record transactions: an empty batch, its position
// alone). The sink must then report the batch as not written, so that the
// engine writes it again: here, rounds of an empty batch, a close and a
// reopen must each find the position just written, the writes retried as
// the engine retries them. The abort shows only under load: with -race
// and three busy loops on the 2-core test machine, this test failed in 2
// of 3 runs of TAPLINE_REOPEN_ROUNDS=300 without the sink's watch
// (endWatch), and passed 4 of 4 with it, 5 aborts caught and written
// again; by default it runs 100 rounds.
func TestEmptyBatchesSurviveReopens(t *testing.T) {
	c := newCluster(t)
	cfg := eosConfig(t, c)
	ctx := context.Background()
	rounds := servicetest.Count(t, "TAPLINE_REOPEN_ROUNDS", 100)
	retried := 0
	for i := range rounds {
		s := newSink(t, cfg, "reopens")
		open(t, s)
		last := connectors.TxPosition{Commit: uint64(1000 + i), Ordinal: 1}.Encode()
		for attempt := 1; ; attempt++ {
			err := s.WriteBatch(ctx, connectors.Batch{Last: last})
			if err == nil {
				break
			}
			if !connectors.IsRetryable(err) || attempt == 5 {
				t.Fatalf("round %d: WriteBatch: %v", i, err)
			}
			retried++
		}
		s.Close(ctx)
		s2 := newSink(t, cfg, "reopens")
		open(t, s2)
		if got := committed(t, s2); !bytes.Equal(got, last) {
			t.Fatalf("round %d: reopened at %s, want %s: a batch reported written was not committed", i, got, last)
		}
		s2.Close(ctx)
	}
	t.Logf("%d of %d writes were aborted by the client and written again", retried, rounds)
}

// The watch sees franz-go's line for a commit turned into an abort, and
// only that; it passes on what the configured logger wants.
func TestEndWatch(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, eosConfig(t, c), "watch")
	w, aborted := kafka.EndWatch(s)
	if w.Level() < kgo.LogLevelInfo {
		t.Fatalf("Level = %v; the abort line is logged at info and must reach the watch", w.Level())
	}
	w.Log(kgo.LogLevelInfo, "ending transaction", "commit", true)
	if aborted() {
		t.Fatal("an ordinary line was taken for an abort")
	}
	w.Log(kgo.LogLevelInfo, "no produce succeeded in this transaction but produces were attempted; issuing an abort to clear any server-side partition registrations")
	if !aborted() {
		t.Fatal("franz-go's abort line went unnoticed")
	}
}
