package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/servicetest"
	"github.com/tapline/tapline/sources/kafka"
)

// fill writes versions 0..versions-1 of rows 0..rows-1 to topic, row r in
// partition r % partitions, interleaved, and returns the events' idents
// per partition in offset order.
func fill(t *testing.T, c *kfake.Cluster, topic string, partitions, rows, versions int) map[int32][]string {
	t.Helper()
	return fillVersions(t, c, topic, partitions, rows, 0, versions)
}

// fillVersions is fill for versions from..to-1.
func fillVersions(t *testing.T, c *kfake.Cluster, topic string, partitions, rows, from, to int) map[int32][]string {
	t.Helper()
	cl := manualClient(t, c)
	defer cl.Close()
	out := map[int32][]string{}
	var recs []*kgo.Record
	for v := from; v < to; v++ {
		for r := 0; r < rows; r++ {
			ev := item(int64(r), int64(v))
			rec := record(t, topic, ev)
			rec.Partition = int32(r % partitions)
			recs = append(recs, rec)
			out[rec.Partition] = append(out[rec.Partition], ident(&ev))
		}
	}
	produce(t, cl, recs...)
	return out
}

// groupOffsets returns the offsets a group has committed.
func groupOffsets(t *testing.T, c *kfake.Cluster, group string) kafka.Offsets {
	t.Helper()
	cl := client(t, c)
	defer cl.Close()
	resp, err := kadm.NewClient(cl).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	o := kafka.Offsets{}
	resp.Each(func(r kadm.OffsetResponse) {
		if r.Err == nil && r.At >= 0 {
			if o[r.Topic] == nil {
				o[r.Topic] = map[int32]int64{}
			}
			o[r.Topic][r.Partition] = r.At
		}
	})
	return o
}

// checkComplement checks that a and b together hold every event of want
// exactly once, each partition's events in order.
func checkComplement(t *testing.T, want map[int32][]string, parts ...[]connectors.Event) {
	t.Helper()
	var problems []string
	seen := map[string]int{}
	order := map[int32][]string{}
	for _, evs := range parts {
		for i := range evs {
			id := ident(&evs[i])
			seen[id]++
			p := int32(evs[i].Row()[0].(int64) % int64(len(want)))
			order[p] = append(order[p], id)
		}
	}
	for p, ids := range want {
		for _, id := range ids {
			if seen[id] != 1 {
				problems = append(problems, fmt.Sprintf("%s read %d times", id, seen[id]))
			}
			delete(seen, id)
		}
		if strings.Join(order[p], " ") != strings.Join(ids, " ") {
			problems = append(problems, fmt.Sprintf("partition %d read out of order", p))
		}
	}
	for id := range seen {
		problems = append(problems, fmt.Sprintf("unexpected %s", id))
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Fatalf("%d problems:\n%s", len(problems), strings.Join(problems[:min(10, len(problems))], "\n"))
	}
}

// Across partitions: acknowledging an event's position commits exactly
// what it covers, and the rest is read once, whether the next source
// resumes from the group's offsets or from the position in a new group. A
// position given to Open wins over the group's offsets.
func TestResumeAcrossPartitions(t *testing.T) {
	c := newCluster(t)
	topic := createTopic(t, c, "multi", 4)
	want := fill(t, c, topic, 4, 40, 10)
	group := servicetest.Name(t, "g")
	cfg := func(cfg *kafka.Config) { cfg.Topics, cfg.Group = []string{topic}, group }

	a := newSource(t, c, cfg)
	openSource(t, a, nil)
	first := readN(t, a, 150, 20*time.Second)
	mid, at := first[59], first[119]
	if err := a.Ack(context.Background(), at.Position); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	a.Close(context.Background())
	acked, _ := kafka.DecodePosition(at.Position)
	if got := groupOffsets(t, c, group); got.String() != acked.String() {
		t.Fatalf("the group committed %s, want exactly the acknowledged %s", got, acked)
	}

	b := newSource(t, c, cfg) // the group's offsets
	openSource(t, b, nil)
	rest := readN(t, b, 400-120, 20*time.Second)
	rest = append(rest, readQuiet(t, b, 300*time.Millisecond)...)
	b.Close(context.Background())
	checkComplement(t, want, first[:120], rest)

	fresh := newSource(t, c, func(c *kafka.Config) { c.Topics, c.Group = []string{topic}, group+"-new" })
	openSource(t, fresh, at.Position) // a new group: the position only
	rest = readN(t, fresh, 400-120, 20*time.Second)
	rest = append(rest, readQuiet(t, fresh, 300*time.Millisecond)...)
	fresh.Close(context.Background())
	checkComplement(t, want, first[:120], rest)

	older := newSource(t, c, cfg) // the group is at event 120; the position, older, wins
	openSource(t, older, mid.Position)
	rest = readN(t, older, 400-60, 20*time.Second)
	rest = append(rest, readQuiet(t, older, 300*time.Millisecond)...)
	checkComplement(t, want, first[:60], rest)
}

// Tombstones without a table header, transaction markers and the offsets
// topic's records are skipped, yet the position moves past them: the
// backlog reaches zero.
func TestSkipsAndBacklog(t *testing.T) {
	c := newCluster(t)
	prefix := servicetest.Name(t, "skip")
	cl := client(t, c)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	data, offsets := prefix+".data", prefix+".offsets"
	for _, tp := range []string{data, offsets} {
		if _, err := adm.CreateTopic(context.Background(), 1, 1, nil, tp); err != nil {
			t.Fatal(err)
		}
	}
	txn := client(t, c, kgo.TransactionalID(prefix))
	defer txn.Close()
	var recs []*kgo.Record
	for i := 0; i < 30; i++ {
		r := record(t, data, item(int64(i), 0))
		recs = append(recs, r, &kgo.Record{Topic: data, Key: r.Key}) // each followed by a tombstone
	}
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(t, txn, recs...)
	produce(t, txn, &kgo.Record{Topic: offsets, Key: []byte("some-pipeline"), Value: []byte("K\x01\x00")})
	if err := txn.EndTransaction(context.Background(), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	s := newSource(t, c, func(cfg *kafka.Config) {
		cfg.TopicRegex, cfg.Group, cfg.OffsetsTopic = strings.ReplaceAll(prefix, ".", `\.`)+`\..*`, prefix, offsets
	})
	openSource(t, s, nil)
	evs := readN(t, s, 30, 20*time.Second)
	more := readQuiet(t, s, 500*time.Millisecond)
	if len(evs)+len(more) != 30 {
		t.Fatalf("read %d events, want the 30 rows without tombstones or offsets records", len(evs)+len(more))
	}
	n, err := s.Backlog(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("Backlog after reading everything = %d, %v; want 0 (markers and skipped records count as read)", n, err)
	}
	if owned := s.Owned(); len(owned) != 2 {
		t.Fatalf("the regex gave partitions %v, want both topics", owned)
	}
}

// Backlog counts the records after the last event returned.
func TestBacklog(t *testing.T) {
	c := newCluster(t)
	topic := createTopic(t, c, "backlog", 3)
	fill(t, c, topic, 3, 30, 3) // 90 records
	s := newSource(t, c, func(cfg *kafka.Config) { cfg.Topics, cfg.Group = []string{topic}, servicetest.Name(t, "g") })
	openSource(t, s, nil)
	ctx := context.Background()
	var got []connectors.Event
	for len(got) == 0 {
		b, err := s.ReadBatch(ctx, connectors.Limits{MaxEvents: 20, MaxWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		got = b.Events
	}
	n, err := s.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(90 - len(got)); n != want {
		t.Fatalf("Backlog after %d events = %d, want %d", len(got), n, want)
	}
	readN(t, s, 90-len(got), 20*time.Second)
	if n, err := s.Backlog(ctx); err != nil || n != 0 {
		t.Fatalf("Backlog at the end = %d, %v", n, err)
	}
}

// A new group with start: latest reads only what is written after it
// joined.
func TestStartLatest(t *testing.T) {
	c := newCluster(t)
	topic := createTopic(t, c, "latest", 2)
	fill(t, c, topic, 2, 10, 1)
	s := newSource(t, c, func(cfg *kafka.Config) {
		cfg.Topics, cfg.Group, cfg.Start = []string{topic}, servicetest.Name(t, "g"), kafka.StartLatest
	})
	openSource(t, s, nil)
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Owned()) < 2 { // joined, and the end offsets listed
		if time.Now().After(deadline) {
			t.Fatal("the source was not assigned the partitions")
		}
		readQuiet(t, s, 100*time.Millisecond)
	}
	readQuiet(t, s, 200*time.Millisecond)
	cl := manualClient(t, c)
	defer cl.Close()
	var recs []*kgo.Record
	for i := 0; i < 6; i++ {
		r := record(t, topic, item(int64(100+i), 0))
		r.Partition = int32(i % 2)
		recs = append(recs, r)
	}
	produce(t, cl, recs...)
	got := readN(t, s, 6, 10*time.Second)
	got = append(got, readQuiet(t, s, 200*time.Millisecond)...)
	if len(got) != 6 {
		t.Fatalf("read %d events, want the 6 written after joining", len(got))
	}
	for _, ev := range got {
		if id := ev.Row()[0].(int64); id < 100 {
			t.Fatalf("read row %d, written before the group joined", id)
		}
	}
}

// A record that is not an event stops the source after the events before
// it, with an error naming where it is.
func TestBadRecord(t *testing.T) {
	c := newCluster(t)
	topic := createTopic(t, c, "bad", 1)
	cl := client(t, c)
	defer cl.Close()
	produce(t, cl, record(t, topic, item(1, 0)), record(t, topic, item(2, 0)),
		&kgo.Record{Topic: topic, Value: []byte(`{"op":"c","after":`)}, record(t, topic, item(3, 0)))
	s := newSource(t, c, func(cfg *kafka.Config) { cfg.Topics, cfg.Group = []string{topic}, servicetest.Name(t, "g") })
	openSource(t, s, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []connectors.Event
	var err error
	for err == nil {
		var b connectors.Batch
		b, err = s.ReadBatch(ctx, lim)
		got = append(got, b.Events...)
	}
	if len(got) != 2 || !strings.Contains(err.Error(), topic+"/0 at offset 2") {
		t.Fatalf("read %d events, then %v; want 2 events, then an error naming %s/0 at offset 2", len(got), err, topic)
	}
}

// A position whose records were deleted (retention), or beyond the end
// of the log, is an error, not a silent jump.
func TestDataLoss(t *testing.T) {
	c := newCluster(t)
	topic := createTopic(t, c, "loss", 1)
	fill(t, c, topic, 1, 50, 1)
	cl := client(t, c)
	defer cl.Close()
	if _, err := kadm.NewClient(cl).DeleteRecords(context.Background(), kadm.OffsetsFromFetches(kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: topic, Partitions: []kgo.FetchPartition{{Partition: 0, Records: []*kgo.Record{{Topic: topic, Partition: 0, Offset: 19}}}}}}}})); err != nil {
		t.Fatalf("delete records: %v", err)
	}
	for _, tc := range []struct {
		at   int64
		want string
	}{{10, "were deleted"}, {80, "recreated"}} {
		s := newSource(t, c, func(cfg *kafka.Config) { cfg.Topics, cfg.Group = []string{topic}, servicetest.Name(t, "g") })
		openSource(t, s, kafka.Offsets{topic: {0: tc.at}}.Position())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		b, err := s.ReadBatch(ctx, lim)
		cancel()
		var loss *kafka.DataLossError
		if !errors.As(err, &loss) || len(b.Events) != 0 || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("ReadBatch at offset %d: %d events, %v; want a DataLossError saying %q", tc.at, len(b.Events), err, tc.want)
		}
		s.Close(context.Background())
	}
}

func TestCheck(t *testing.T) {
	c := newCluster(t)
	topic := createTopic(t, c, "check", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		mod  func(*kafka.Config)
		want string
	}{
		{"ok", func(cfg *kafka.Config) { cfg.Topics = []string{topic} }, ""},
		{"regex", func(cfg *kafka.Config) { cfg.TopicRegex = "check.*" }, ""},
		{"missing topic", func(cfg *kafka.Config) { cfg.Topics = []string{topic, "nope"} }, "topics: nope"},
		{"regex matching nothing", func(cfg *kafka.Config) { cfg.TopicRegex = "nope.*" }, "matches no topic"},
		{"unreachable", func(cfg *kafka.Config) { cfg.Topics, cfg.Brokers = []string{topic}, []string{"127.0.0.1:1"} }, "127.0.0.1:1"},
	} {
		s := newSource(t, c, tc.mod)
		err := s.Check(ctx)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Check = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	base := kafka.DefaultConfig()
	base.Brokers = []string{"k:9092"}
	for _, tc := range []struct {
		mod  func(*kafka.Config)
		want string
	}{
		{func(c *kafka.Config) {}, "topics: give"},
		{func(c *kafka.Config) { c.Topics, c.TopicRegex = []string{"a"}, "a" }, "not both"},
		{func(c *kafka.Config) { c.TopicRegex = "(" }, "topic_regex"},
		{func(c *kafka.Config) { c.Topics, c.Start = []string{"a"}, "beginning" }, "start"},
		{func(c *kafka.Config) { c.Topics = []string{"a b"} }, "topics[0]"},
		{func(c *kafka.Config) { c.Topics, c.FetchMaxPartitionBytes = []string{"a"}, 1<<30 }, "fetch_max_partition_bytes"},
		{func(c *kafka.Config) { c.Topics, c.Brokers = []string{"a"}, nil }, "brokers"},
		{func(c *kafka.Config) { c.Topics, c.SASLMechanism, c.SASLUser = []string{"a"}, "PLAIN", "u" }, "sasl_password"},
	} {
		cfg := base
		tc.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		}
	}
	cfg := base
	cfg.Topics = []string{"a"}
	if _, err := kafka.New(cfg, connectors.Runtime{}); err == nil || !strings.Contains(err.Error(), "group") {
		t.Errorf("New without a group or pipeline: %v", err)
	}
}

// A rebuild reads in a group of its own, also when the config names the
// group: joining the live group would take partitions from the live view.
func TestRebuildGetsItsOwnGroup(t *testing.T) {
	cfg := kafka.DefaultConfig()
	cfg.Brokers = []string{"127.0.0.1:9"}
	cfg.Topics = []string{"t"}
	for _, c := range []struct {
		group string
		rt    connectors.Runtime
		want  string
	}{
		{"", connectors.Runtime{Pipeline: "view"}, "view"},
		{"", connectors.Runtime{Pipeline: "view-rebuild", Rebuild: true}, "view-rebuild"},
		{"orders", connectors.Runtime{Pipeline: "view"}, "orders"},
		{"orders", connectors.Runtime{Pipeline: "view-rebuild", Rebuild: true}, "orders-rebuild"},
	} {
		cfg.Group = c.group
		s, err := kafka.New(cfg, c.rt)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Group(); got != c.want {
			t.Errorf("group %q, pipeline %q, rebuild %v: joins %q, want %q", c.group, c.rt.Pipeline, c.rt.Rebuild, got, c.want)
		}
		s.Close(context.Background())
	}
}
