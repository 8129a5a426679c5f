package kafka_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tapline/tapline/connectors/eventjson"
)

// kcat runs kcat (librdkafka) with args and stdin, and returns its output.
func kcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed (%v): the interop test needs it; install it with `apt-get install kcat`", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out.String()
}

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A non-Go client reads what the sink wrote: kcat (librdkafka) consumes
// the topics, whatever the compression, and sees the keys, values and
// headers written; and librdkafka's Java-compatible partitioner
// (murmur2_random) puts the same keys in the same partitions as the sink.
func TestKcatInterop(t *testing.T) {
	port := freePort(t)
	c := newCluster(t, kfake.Ports(port))
	broker := fmt.Sprintf("127.0.0.1:%d", port)
	if addrs := c.ListenAddrs(); len(addrs) != 1 || !strings.HasSuffix(addrs[0], fmt.Sprintf(":%d", port)) {
		t.Fatalf("kfake listens on %v, want port %d", addrs, port)
	}
	evs := keyed(1, 1, 40)
	for i := range evs {
		evs[i].After[1] = fmt.Sprintf("naïve ☃ \"quoted\" item %d", i+1)
	}
	var prefix string
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		cfg := sinkConfig(t, c)
		cfg.Brokers = []string{broker}
		cfg.Compression = codec
		cfg.Partitions = 6
		cfg.TopicPrefix += "." + codec
		prefix = cfg.TopicPrefix
		s := newSink(t, cfg, "p")
		open(t, s)
		write(t, s, evs)

		out := kcat(t, "", "-C", "-b", broker, "-t", itemsTopic(cfg), "-e", "-q", "-X", "isolation.level=read_committed",
			"-f", "%p\t%k\t%h\t%s\n")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(evs) {
			t.Fatalf("%s: kcat read %d records, want %d:\n%s", codec, len(lines), len(evs), out)
		}
		byKey := map[string][]string{}
		for _, l := range lines {
			f := strings.SplitN(l, "\t", 4)
			if len(f) != 4 {
				t.Fatalf("%s: kcat line %q", codec, l)
			}
			byKey[f[1]] = f
		}
		for i := range evs {
			key, _ := eventjson.MarshalKey(&evs[i])
			val, _ := eventjson.Marshal(&evs[i])
			f, ok := byKey[string(key)]
			if !ok {
				t.Fatalf("%s: kcat did not see key %s", codec, key)
			}
			if f[3] != string(val) {
				t.Fatalf("%s: kcat read value\n %s\nwant\n %s", codec, f[3], val)
			}
			if want := strconv.Itoa(int(javaPartition(key, 6))); f[0] != want {
				t.Errorf("%s: key %s in partition %s, want %s", codec, key, f[0], want)
			}
			if !strings.Contains(f[2], "op=c") || !strings.Contains(f[2], "table=conformance.items") ||
				!strings.Contains(f[2], "position="+evs[i].Position.String()) {
				t.Errorf("%s: kcat headers %q", codec, f[2])
			}
			var decoded map[string]any
			if err := json.Unmarshal([]byte(f[3]), &decoded); err != nil || decoded["op"] != "c" {
				t.Errorf("%s: the value kcat read is not the event JSON: %v", codec, err)
			}
		}
	}

	// librdkafka's murmur2_random partitioner is Kafka's default
	// partitioner for keyed records: the same key must land in the same
	// partition of a topic with the same partition count.
	ref := prefix + ".librdkafka"
	cl := client(t, c)
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 6, 1, nil, ref); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	for i := range evs {
		key, _ := eventjson.MarshalKey(&evs[i])
		fmt.Fprintf(&in, "%s\tv\n", key)
	}
	kcat(t, in.String(), "-P", "-b", broker, "-t", ref, "-K", "\t", "-X", "topic.partitioner=murmur2_random")
	out := kcat(t, "", "-C", "-b", broker, "-t", ref, "-e", "-q", "-f", "%k\t%p\n")
	sinkParts := map[string]int32{}
	for _, r := range consume(t, c, true, prefix+".conformance.items") {
		sinkParts[string(r.Key)] = r.Partition
	}
	seen := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, p, _ := strings.Cut(l, "\t")
		want, ok := sinkParts[k]
		if !ok {
			t.Fatalf("librdkafka wrote key %q the sink did not", k)
		}
		if p != strconv.Itoa(int(want)) {
			t.Errorf("key %s: librdkafka chose partition %s, the sink %d", k, p, want)
		}
		seen++
	}
	if seen != len(evs) {
		t.Fatalf("librdkafka wrote %d records, want %d", seen, len(evs))
	}
}
