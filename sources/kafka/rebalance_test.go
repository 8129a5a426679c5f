package kafka_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/sources/kafka"
)

// member runs a source the way the engine does: read a batch, make it
// "durable" (record it), acknowledge it.
type member struct {
	name string
	s    *kafka.Source

	mu     sync.Mutex
	events []delivery
}

// delivery is one event a member returned, with the partitions it owned
// then.
type delivery struct {
	id    string
	part  int32
	owned []string
}

func (m *member) record(b connectors.Batch) {
	owned := m.s.Owned()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range b.Events {
		m.events = append(m.events, delivery{id: ident(&b.Events[i]), part: partOf(&b.Events[i]), owned: owned})
	}
}

func (m *member) delivered() []delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]delivery(nil), m.events...)
}

// run reads and acknowledges until ctx is done.
func (m *member) run(t *testing.T, ctx context.Context) {
	for ctx.Err() == nil {
		b, err := m.s.ReadBatch(ctx, lim)
		m.record(b)
		if b.Last != nil {
			if err := m.s.Ack(context.WithoutCancel(ctx), b.Last); err != nil {
				t.Errorf("%s: Ack: %v", m.name, err)
			}
		}
		if err != nil && ctx.Err() == nil {
			t.Errorf("%s: ReadBatch: %v", m.name, err)
			return
		}
	}
}

const rebalanceParts = 6

func partOf(ev *connectors.Event) int32 { return int32(ev.Row()[0].(int64) % rebalanceParts) }

// Two sources in one group share the partitions. When the second joins,
// the first stops returning events of the partitions taken from it and
// commits only what it acknowledged of them; the events it returned but
// had not acknowledged (a batch in flight) are read again by the new owner
// and are the only events read twice. Nothing is lost, and in the end the
// group has committed every offset.
func TestRebalanceLosesNothing(t *testing.T) {
	c := newCluster(t)
	topic := createTopic(t, c, "rebalance", rebalanceParts)
	want := fill(t, c, topic, rebalanceParts, 60, 5) // 300 events, 50 per partition
	group := servicetest.Name(t, "g")
	cfg := func(cfg *kafka.Config) { cfg.Topics, cfg.Group = []string{topic}, group }

	a := &member{name: "A", s: newSource(t, c, cfg)}
	openSource(t, a.s, nil)
	// A acknowledges its first batch, then reads everything else and
	// holds it: returned, not acknowledged.
	ctx := context.Background()
	first := readN(t, a.s, 1, 10*time.Second)
	var acked connectors.Position = first[len(first)-1].Position
	if err := a.s.Ack(ctx, acked); err != nil {
		t.Fatal(err)
	}
	a.record(connectors.Batch{Events: first})
	held := readN(t, a.s, 300-len(first), 20*time.Second)
	a.record(connectors.Batch{Events: held})
	heldLast := held[len(held)-1].Position
	before := a.s.Owned()
	if len(before) != rebalanceParts {
		t.Fatalf("A owns %v, want all %d partitions", before, rebalanceParts)
	}

	// B joins. Neither reads until the group settles: A as a pipeline
	// whose sink is slow would not, B because the group joins on its own.
	b := &member{name: "B", s: newSource(t, c, cfg)}
	openSource(t, b.s, nil)

	// Wait for the cooperative rebalance to settle: A keeps some
	// partitions, B owns the others.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ao, bo := a.s.Owned(), b.s.Owned()
		if len(ao) > 0 && len(bo) > 0 && len(ao)+len(bo) == rebalanceParts && disjoint(ao, bo) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group did not settle: A owns %v, B owns %v", ao, bo)
		}
		time.Sleep(20 * time.Millisecond)
	}
	kept := a.s.Owned()
	revoked := map[int32]bool{}
	for p := int32(0); p < rebalanceParts; p++ {
		if !contains(kept, fmt.Sprintf("%s/%d", topic, p)) {
			revoked[p] = true
		}
	}

	// Only what A acknowledged of the revoked partitions is committed.
	ackedOffsets, _ := kafka.DecodePosition(acked)
	committed := groupOffsets(t, c, group)
	for p := range revoked {
		w, had := ackedOffsets[topic][p]
		g, has := committed[topic][p]
		if had != has || w != g {
			t.Errorf("revoked partition %d: the group committed %d (%v), A acknowledged %d (%v)", p, g, has, w, had)
		}
	}

	// The held batch is now durable: A acknowledges it. That commits its
	// offsets of the partitions A kept, and nothing of the revoked ones:
	// their new owner reads them from what was committed.
	if err := a.s.Ack(ctx, heldLast); err != nil {
		t.Fatalf("A: Ack of the held batch: %v", err)
	}
	heldOffsets, _ := kafka.DecodePosition(heldLast)
	committed = groupOffsets(t, c, group)
	for p := int32(0); p < rebalanceParts; p++ {
		w, _ := heldOffsets[topic][p]
		if revoked[p] {
			w = ackedOffsets[topic][p]
		}
		if g := committed[topic][p]; g != w {
			t.Errorf("after acknowledging the held batch, partition %d (revoked %v): the group committed %d, want %d", p, revoked[p], g, w)
		}
	}
	t.Logf("A kept %v; %d events held unacknowledged at the rebalance", kept, len(held))

	var wg sync.WaitGroup
	actx, stopA := context.WithCancel(ctx)
	bctx, stopB := context.WithCancel(ctx)
	wg.Add(2)
	go func() { defer wg.Done(); a.run(t, actx) }()
	go func() { defer wg.Done(); b.run(t, bctx) }()
	defer func() { stopA(); stopB(); wg.Wait() }()

	// More changes arrive while both read.
	for p, ids := range fillVersions(t, c, topic, rebalanceParts, 60, 5, 10) {
		want[p] = append(want[p], ids...)
	}

	deadline = time.Now().Add(30 * time.Second)
	for {
		if covered(want, a.delivered(), b.delivered()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every event was delivered within 30s: A %d, B %d", len(a.delivered()), len(b.delivered()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let the last acks land
	stopA()
	stopB()
	wg.Wait()

	// Every event of the revoked partitions that A held unacknowledged is
	// read again by B; nothing else is read twice.
	heldRevoked := map[string]bool{}
	for i := range held {
		if revoked[partOf(&held[i])] {
			heldRevoked[ident(&held[i])] = true
		}
	}
	if len(heldRevoked) == 0 {
		t.Fatal("test setup: the held batch has no event of a revoked partition")
	}
	t.Logf("%d held events of revoked partitions", len(heldRevoked))
	counts := map[string]int{}
	var problems []string
	for _, m := range []*member{a, b} {
		for _, d := range m.delivered() {
			counts[d.id]++
			if !contains(d.owned, fmt.Sprintf("%s/%d", topic, d.part)) {
				problems = append(problems, fmt.Sprintf("%s returned %s of partition %d, owning %v", m.name, d.id, d.part, d.owned))
			}
		}
	}
	for p, ids := range want {
		for _, id := range ids {
			n := counts[id]
			switch {
			case n == 0:
				problems = append(problems, fmt.Sprintf("%s (partition %d) was lost", id, p))
			case heldRevoked[id] && n != 2:
				problems = append(problems, fmt.Sprintf("%s, held by A in a revoked partition, read %d times, want 2", id, n))
			case !heldRevoked[id] && n != 1:
				problems = append(problems, fmt.Sprintf("%s read %d times, want once", id, n))
			}
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Fatalf("%d problems (%d events held in revoked partitions):\n%s", len(problems), len(heldRevoked), strings.Join(problems[:min(15, len(problems))], "\n"))
	}

	// Everything was acknowledged, so everything is committed.
	committed = groupOffsets(t, c, group)
	for p := int32(0); p < rebalanceParts; p++ {
		if got, want := committed[topic][p], int64(len(want[p])); got != want {
			t.Errorf("partition %d: the group committed %d, want the end %d", p, got, want)
		}
	}
}

// covered reports whether the deliveries hold every written event.
func covered(want map[int32][]string, dels ...[]delivery) bool {
	got := map[string]bool{}
	for _, ds := range dels {
		for _, d := range ds {
			got[d.id] = true
		}
	}
	for _, ids := range want {
		for _, id := range ids {
			if !got[id] {
				return false
			}
		}
	}
	return true
}

func disjoint(a, b []string) bool {
	for _, x := range a {
		if contains(b, x) {
			return false
		}
	}
	return true
}

func contains(list []string, x string) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}
