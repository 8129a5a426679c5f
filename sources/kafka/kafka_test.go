package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/sources/kafka"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// kfakeConnGoroutines are the top functions of the broker side of a
// client connection in kfake.
var kfakeConnGoroutines = []string{
	"github.com/twmb/franz-go/pkg/kfake.(*clientConn).read",
	"github.com/twmb/franz-go/pkg/kfake.(*clientConn).write",
}

// fillConformance writes 120 events to a one-partition topic as the Kafka
// sink does (tombstones after deletes), half of them in a committed
// transaction, with an aborted transaction between: a read_committed
// reader sees the 120 events only.
func fillConformance(t *testing.T, topic string, cl, txn *kgo.Client) int {
	t.Helper()
	evs := connectortest.Changes(1, 120, 1, map[string]string{})
	recs := func(evs []connectors.Event) []*kgo.Record {
		var out []*kgo.Record
		for _, ev := range evs {
			r := record(t, topic, ev)
			out = append(out, r)
			if ev.Op == connectors.OpDelete {
				out = append(out, &kgo.Record{Topic: topic, Key: r.Key})
			}
		}
		return out
	}
	produce(t, cl, recs(evs[:60])...)
	ctx := context.Background()
	for _, commit := range []kgo.TransactionEndTry{kgo.TryAbort, kgo.TryCommit} {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		part := evs[60:]
		if !commit {
			part = connectortest.Changes(500, 20, 9000, map[string]string{}) // never seen
		}
		produce(t, txn, recs(part)...)
		if err := txn.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	return len(evs)
}

func TestConformance(t *testing.T) {
	c := newCluster(t)
	topic := createTopic(t, c, "conf", 1)
	cl, txn := client(t, c), client(t, c, kgo.TransactionalID(servicetest.Name(t, "txn")))
	n := fillConformance(t, topic, cl, txn)
	cl.Close()
	txn.Close()
	group := servicetest.Name(t, "g")
	connectortest.RunSource(t, connectortest.SourceHarness{
		New: func(t *testing.T) connectors.Source {
			return newSource(t, c, func(cfg *kafka.Config) { cfg.Topics, cfg.Group = []string{topic}, group })
		},
		Events:    n,
		Unordered: true,
		Timeout:   30 * time.Second,
		// The in-process broker's side of a connection lives on while
		// the broker holds a request of it (a JoinGroup waiting for the
		// group's rebalance), after the client closed it. These are
		// kfake's goroutines, not the source's.
		IgnoreLeaks: kfakeConnGoroutines,
	})
}
