package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/connectors/connectortest"
	"github.com/tapline/tapline/connectors/eventjson"
	"github.com/tapline/tapline/sinks/kafka"
)

// Each record's key is the primary key JSON, its value the event JSON with
// the schema block, and its headers carry op, table, schema version and
// position. A destination replaces the topic name.
func TestRecordKeyValueAndHeaders(t *testing.T) {
	c := newCluster(t)
	cfg := sinkConfig(t, c)
	cfg.Partitions = 1 // records come back in write order
	s := newSink(t, cfg, "p")
	open(t, s)
	evs := connectortest.Changes(1, 12, 1, map[string]string{})
	routed := keyed(50, 500, 1)[0]
	routed.Destination = cfg.TopicPrefix + "-routed"
	evs = append(evs, routed)
	write(t, s, evs)

	recs := consume(t, c, true, itemsTopic(cfg), routed.Destination)
	var got []*kgo.Record
	for _, r := range recs {
		if r.Value != nil { // tombstones are checked in TestTombstones
			got = append(got, r)
		}
	}
	if len(got) != len(evs) {
		t.Fatalf("%d records with values, want %d", len(got), len(evs))
	}
	byTopic := map[string][]*kgo.Record{}
	for _, r := range got {
		byTopic[r.Topic] = append(byTopic[r.Topic], r)
	}
	if n := len(byTopic[routed.Destination]); n != 1 {
		t.Fatalf("%d records in the destination topic %s, want 1", n, routed.Destination)
	}
	main := byTopic[itemsTopic(cfg)]
	for i, r := range append(main, byTopic[routed.Destination]...) {
		ev := &evs[i]
		wantKey, _ := eventjson.MarshalKey(ev)
		if !bytes.Equal(r.Key, wantKey) {
			t.Errorf("record %d: key %s, want %s", i, r.Key, wantKey)
		}
		wantVal, _ := eventjson.Marshal(ev)
		if !bytes.Equal(r.Value, wantVal) {
			t.Errorf("record %d: value\n %s\nwant\n %s", i, r.Value, wantVal)
		}
		if !bytes.Contains(r.Value, []byte(`"schema":{"table":"conformance.items","version":1,`)) {
			t.Errorf("record %d: value has no schema block: %s", i, r.Value)
		}
		for k, want := range map[string]string{
			kafka.HeaderOp: ev.Op.String(), kafka.HeaderTable: "conformance.items",
			kafka.HeaderSchemaVersion: "1", kafka.HeaderPosition: ev.Position.String(),
		} {
			if got := header(r, k); got != want {
				t.Errorf("record %d: header %s = %q, want %q", i, k, got, want)
			}
		}
	}
}

// A delete is followed, in the same partition, by a tombstone with the
// same key; tombstones: false leaves them out.
func TestTombstones(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("tombstones=%v", on), func(t *testing.T) {
			c := newCluster(t)
			cfg := sinkConfig(t, c)
			cfg.Tombstones = on
			cfg.Partitions = 4
			s := newSink(t, cfg, "p")
			open(t, s)
			evs := connectortest.Changes(1, 60, 1, map[string]string{})
			write(t, s, evs)
			deletes := 0
			for _, ev := range evs {
				if ev.Op == connectors.OpDelete {
					deletes++
				}
			}
			if deletes == 0 {
				t.Fatal("the test changes hold no delete")
			}
			recs := consume(t, c, true, itemsTopic(cfg))
			byPart := map[int32][]*kgo.Record{}
			for _, r := range recs {
				byPart[r.Partition] = append(byPart[r.Partition], r)
			}
			var problems []string
			tombs, seenDeletes := 0, 0
			for p, rs := range byPart {
				for i, r := range rs {
					isDelete := r.Value != nil && header(r, kafka.HeaderOp) == "d"
					if r.Value == nil {
						tombs++
						if i == 0 || !bytes.Equal(rs[i-1].Key, r.Key) || rs[i-1].Value == nil || header(rs[i-1], kafka.HeaderOp) != "d" {
							problems = append(problems, fmt.Sprintf("partition %d offset %d: tombstone for %s does not follow its delete", p, r.Offset, r.Key))
						}
						if header(r, kafka.HeaderOp) != "d" {
							problems = append(problems, fmt.Sprintf("partition %d offset %d: tombstone op header %q", p, r.Offset, header(r, kafka.HeaderOp)))
						}
					}
					if isDelete {
						seenDeletes++
						if on && (i+1 >= len(rs) || rs[i+1].Value != nil || !bytes.Equal(rs[i+1].Key, r.Key)) {
							problems = append(problems, fmt.Sprintf("partition %d offset %d: delete of %s is not followed by its tombstone", p, r.Offset, r.Key))
						}
					}
				}
			}
			want := 0
			if on {
				want = deletes
			}
			if tombs != want || seenDeletes != deletes {
				problems = append(problems, fmt.Sprintf("%d tombstones and %d delete events, want %d and %d", tombs, seenDeletes, want, deletes))
			}
			if len(problems) > 0 {
				t.Fatal(strings.Join(problems, "\n"))
			}
		})
	}
}

// Every change of a key lands in one partition, in the order written,
// across many keys, partitions and batches.
func TestOrderPerKey(t *testing.T) {
	c := newCluster(t)
	cfg := sinkConfig(t, c)
	cfg.Partitions = 8
	s := newSink(t, cfg, "p")
	open(t, s)
	const keys, versions = 300, 12
	rng := rand.New(rand.NewPCG(1, 2))
	next := make([]int, keys) // next version per key
	var evs []connectors.Event
	for len(evs) < keys*versions {
		k := rng.IntN(keys)
		if next[k] == versions {
			continue
		}
		ev := keyed(uint64(len(evs)+1), int64(k), 1)[0]
		ev.After[2] = int64(next[k])
		if next[k] > 0 {
			ev.Op = connectors.OpUpdate
		}
		next[k]++
		evs = append(evs, ev)
	}
	for i := 0; i < len(evs); i += 250 {
		write(t, s, evs[i:min(i+250, len(evs))])
	}
	recs := consume(t, c, true, itemsTopic(cfg))
	ev := eventjson.NewDecoder()
	type seen struct {
		part int32
		vers []int64
	}
	got := map[string]*seen{}
	parts := map[int32]bool{}
	for _, r := range recs {
		e, err := ev.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		k := string(r.Key)
		if got[k] == nil {
			got[k] = &seen{part: r.Partition}
		}
		if got[k].part != r.Partition {
			t.Errorf("key %s in partitions %d and %d", k, got[k].part, r.Partition)
		}
		got[k].vers = append(got[k].vers, e.After[2].(int64))
		parts[r.Partition] = true
	}
	if len(got) != keys {
		t.Fatalf("%d keys, want %d", len(got), keys)
	}
	if len(parts) != 8 {
		t.Errorf("records in %d partitions, want all 8", len(parts))
	}
	var problems []string
	for k, s := range got {
		for i, v := range s.vers {
			if v != int64(i) {
				problems = append(problems, fmt.Sprintf("key %s: versions %v, want 0..%d in order", k, s.vers, versions-1))
				break
			}
		}
		if len(s.vers) != versions {
			problems = append(problems, fmt.Sprintf("key %s: %d versions, want %d", k, len(s.vers), versions))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Fatalf("%d problems:\n%s", len(problems), strings.Join(problems[:min(10, len(problems))], "\n"))
	}
}

// javaMurmur2 is Kafka's Utils.murmur2, written from the algorithm
// (MurmurHash2 by Austin Appleby, seed 0x9747b28c) independently of
// franz-go's, with Java's int arithmetic.
func javaMurmur2(data []byte) int32 {
	const m, r = int32(0x5bd1e995), 24
	seed := int32(-1756908916) // 0x9747b28c as a Java int
	h := seed ^ int32(len(data))
	n4 := len(data) / 4
	for i := 0; i < n4; i++ {
		i4 := i * 4
		k := int32(data[i4]) | int32(data[i4+1])<<8 | int32(data[i4+2])<<16 | int32(data[i4+3])<<24
		k *= m
		k ^= int32(uint32(k) >> r)
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n4*4:]
	switch len(tail) {
	case 3:
		h ^= int32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= int32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= int32(tail[0])
		h *= m
	}
	h ^= int32(uint32(h) >> 13)
	h *= m
	h ^= int32(uint32(h) >> 15)
	return h
}

// javaPartition is Kafka's default partition of a keyed record:
// toPositive(murmur2(key)) % numPartitions.
func javaPartition(key []byte, n int) int32 { return (javaMurmur2(key) & 0x7fffffff) % int32(n) }

// The reference values of Kafka's own UtilsTest.testMurmur2.
func TestJavaMurmur2Vectors(t *testing.T) {
	for in, want := range map[string]int32{
		"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
		"a-little-bit-longer-string": -1486304829, "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := javaMurmur2([]byte(in)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
}

// Records land in the partition the Java client would choose. The table
// of expected partitions was computed with Kafka's Utils.murmur2 in Java
// (java M.java on the keys below); the rest are checked against
// javaMurmur2, itself checked against Kafka's test vectors.
func TestPartitionsMatchJavaClient(t *testing.T) {
	c := newCluster(t)
	cfg := sinkConfig(t, c)
	cfg.Topic = "{prefix}.{table}"
	cfg.Topics = []kafka.Output{{Suffix: ".p3", Partitions: 3}, {Suffix: ".p6", Partitions: 6}, {Suffix: ".p12", Partitions: 12}}
	s := newSink(t, cfg, "p")
	open(t, s)

	javaTable := map[string][3]int32{ // key → partition among 3, 6, 12
		`{"id":1}`: {0, 0, 0}, `{"id":2}`: {1, 4, 4}, `{"id":3}`: {0, 3, 3}, `{"id":42}`: {1, 1, 1},
		`{"id":1000}`: {0, 0, 6}, `{"id":-7}`: {2, 2, 2},
		`{"tenant":"acme","id":9}`: {1, 1, 1}, `{"id":"a8f3"}`: {2, 5, 11},
	}
	var evs []connectors.Event
	for _, id := range []int64{1, 2, 3, 42, 1000, -7} {
		evs = append(evs, keyed(1, id, 1)...)
	}
	composite := connectors.MustSchema(connectors.TableID{Schema: "s", Name: "items"}, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeInt64, Key: 2}, {Name: "tenant", Type: connectors.TypeString, Key: 1}})
	evs = append(evs, connectors.Event{Op: connectors.OpCreate, Schema: composite, After: []connectors.Value{int64(9), "acme"}, Position: connectors.Position{1}})
	stringKey := connectors.MustSchema(connectors.TableID{Schema: "s", Name: "items"}, 1, []connectors.Column{
		{Name: "id", Type: connectors.TypeString, Key: 1}})
	evs = append(evs, connectors.Event{Op: connectors.OpCreate, Schema: stringKey, After: []connectors.Value{"a8f3"}, Position: connectors.Position{2}})
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 300; i++ {
		evs = append(evs, keyed(2, rng.Int64N(1<<40)-1<<39, 1)...)
	}
	write(t, s, evs)

	counts := map[int]int{3: 0, 6: 0, 12: 0}
	var problems []string
	for _, n := range []int{3, 6, 12} {
		for _, r := range consume(t, c, true, fmt.Sprintf("%s.items.p%d", cfg.TopicPrefix, n)) {
			counts[n]++
			want := javaPartition(r.Key, n)
			if tab, ok := javaTable[string(r.Key)]; ok {
				want = tab[map[int]int{3: 0, 6: 1, 12: 2}[n]]
				if jp := javaPartition(r.Key, n); jp != want {
					problems = append(problems, fmt.Sprintf("javaMurmur2 disagrees with Java for %s over %d: %d, Java %d", r.Key, n, jp, want))
				}
			}
			if r.Partition != want {
				problems = append(problems, fmt.Sprintf("key %s in partition %d of %d, the Java client uses %d", r.Key, r.Partition, n, want))
			}
		}
		if counts[n] != len(evs) {
			problems = append(problems, fmt.Sprintf("%d records in the topic of %d partitions, want %d", counts[n], n, len(evs)))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("%d problems:\n%s", len(problems), strings.Join(problems[:min(10, len(problems))], "\n"))
	}
}

// Events the sink cannot write are rejected by index, and nothing of the
// batch is written; truncates skip compacted topics.
func TestRejects(t *testing.T) {
	c := newCluster(t)
	cfg := sinkConfig(t, c)
	cfg.MaxMessageBytes = 4096
	cfg.Partitions = 1
	compact := []kafka.Output{{CleanupPolicy: "compact"}, {Suffix: ".history"}}
	cfg.Topics = compact
	s := newSink(t, cfg, "p")
	open(t, s)
	ctx := context.Background()

	noKey := connectors.MustSchema(connectors.TableID{Schema: "conformance", Name: "items"}, 1, []connectors.Column{{Name: "v", Type: connectors.TypeString}})
	big := keyed(1, 1, 3)
	big[1].After[1] = strings.Repeat("x", 5000)
	badDest := keyed(2, 10, 2)
	badDest[0].Destination = "no spaces allowed"
	cases := []struct {
		name  string
		evs   []connectors.Event
		index int
		msg   string
	}{
		{"too large", big, 1, "max_message_bytes"},
		{"bad destination", badDest, 0, "Kafka allows only"},
		{"no key for a compacted topic", append(keyed(3, 20, 1), connectors.Event{Op: connectors.OpCreate, Schema: noKey, After: []connectors.Value{"x"}}), 1, "no primary key"},
	}
	for _, tc := range cases {
		err := s.WriteBatch(ctx, batchOf(tc.evs))
		var rej *connectors.RejectError
		if !errors.As(err, &rej) {
			t.Fatalf("%s: WriteBatch = %v, want a RejectError", tc.name, err)
		}
		if len(rej.Events) != 1 || rej.Events[0].Index != tc.index || !strings.Contains(rej.Error(), tc.msg) {
			t.Fatalf("%s: rejected %v, want event %d with %q", tc.name, rej, tc.index, tc.msg)
		}
	}
	if recs := consume(t, c, false, itemsTopic(cfg), itemsTopic(cfg)+".history"); len(recs) != 0 {
		t.Fatalf("rejected batches wrote %d records", len(recs))
	}
	// A truncate has no key: it goes to the history topic only.
	trunc := connectors.Event{Op: connectors.OpTruncate, Schema: connectortest.Schema, Position: connectors.Position{9}}
	write(t, s, append(keyed(4, 30, 1), trunc))
	if n := len(consume(t, c, true, itemsTopic(cfg))); n != 1 {
		t.Errorf("%d records in the compacted topic, want 1 (the truncate skipped)", n)
	}
	hist := consume(t, c, true, itemsTopic(cfg)+".history")
	if len(hist) != 2 || hist[1].Key != nil || header(hist[1], kafka.HeaderOp) != "t" {
		t.Errorf("history topic holds %d records, want the create and a keyless truncate", len(hist))
	}
}

// A heartbeat event (op h) is one record in <topic_prefix>._heartbeat,
// keyed by its origin, and nothing in the table topics.
func TestHeartbeatRecord(t *testing.T) {
	c := newCluster(t)
	cfg := sinkConfig(t, c)
	s := newSink(t, cfg, "p")
	open(t, s)
	hb := connectors.Event{Op: connectors.OpHeartbeat,
		Source:   connectors.SourceInfo{Connector: "postgres", DB: "shop", Position: "0/3A1C2F8:0"},
		Position: connectors.TxPosition{Commit: 0x3A1C2F8}.Encode()}
	evs := append(connectortest.Changes(1, 5, 1, map[string]string{}), hb)
	write(t, s, evs)
	topic := cfg.TopicPrefix + "." + kafka.HeartbeatSuffix
	recs := consume(t, c, true, topic)
	if len(recs) != 1 || string(recs[0].Key) != "postgres/shop" || header(recs[0], kafka.HeaderOp) != "h" {
		t.Fatalf("heartbeat topic %s holds %d records (first: %+v); want one keyed postgres/shop with op h", topic, len(recs), recs)
	}
	got, err := eventjson.NewDecoder().Decode(recs[0].Value)
	if err != nil || got.Op != connectors.OpHeartbeat || got.Source.Position != "0/3A1C2F8:0" {
		t.Fatalf("heartbeat record decodes to %+v, %v", got, err)
	}
	if n := len(consume(t, c, true, itemsTopic(cfg))); n != 5 {
		t.Fatalf("table topic holds %d records, want the 5 changes", n)
	}
}
