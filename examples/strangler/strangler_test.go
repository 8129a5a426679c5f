package strangler_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/examples/strangler"
	"github.com/tapline/tapline/internal/servicetest"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The strangler example end to end, with a shorter load than `make demo`:
// every view must equal its source row by row, read-your-writes must have
// worked, and the lag must have been measured.
func TestStranglerDemo(t *testing.T) {
	rep, _ := runDemo(t, "demo", 12*time.Second, nil)
	if !strings.Contains(rep.Log, "NATS") || len(rep.Topics) != 0 {
		t.Errorf("log %q with %d Kafka topics; want the embedded NATS server", rep.Log, len(rep.Topics))
	}
}

// The same through Kafka (`make demo DEMO_FLAGS=-kafka`): a kfake broker
// in this process on a port of its own, the pipelines of pipelines/kafka,
// exactly-once captures. Its databases, slot, cache prefix and ports are
// its own, so it can run beside TestStranglerDemo.
func TestStranglerDemoKafka(t *testing.T) {
	rep, o := runDemo(t, "demok", 10*time.Second, func(o *strangler.Options) {
		o.Kafka = true
		o.KafkaPort = freePort(t)
	})
	if !strings.Contains(rep.Log, "kfake") {
		t.Errorf("log %q; want the kfake broker", rep.Log)
	}
	// Every table topic is held twice: compacted, and a history topic,
	// one partition each, both written.
	topics := map[string]strangler.Topic{}
	for _, tp := range rep.Topics {
		topics[tp.Name] = tp
	}
	for _, table := range []string{"shop.public.customers", "shop.public.products", "shop.public.orders", "shop.public.order_lines", "mshop." + o.MySQLDB + ".orders", "mshop." + o.MySQLDB + ".customers"} {
		for name, policy := range map[string]string{table: "compact", table + ".history": "delete"} {
			tp, ok := topics[name]
			switch {
			case !ok:
				t.Errorf("topic %s is missing (topics: %v)", name, rep.Topics)
			case tp.CleanupPolicy != policy || tp.Partitions != 1 || tp.EndOffset == 0:
				t.Errorf("topic %s: %+v; want cleanup.policy %s, 1 partition, records", name, tp, policy)
			}
		}
	}
	if tp := topics["shop.offsets"]; tp.CleanupPolicy != "compact" || tp.EndOffset == 0 {
		t.Errorf("offsets topic shop.offsets: %+v; want the exactly-once captures' positions in a compacted topic", tp)
	}
}

// runDemo runs the example with its own databases, cache prefix and ports
// (names starting with prefix), changed by mod, checks the report and
// returns it with the options it ran with.
func runDemo(t *testing.T, prefix string, load time.Duration, mod func(*strangler.Options)) (strangler.Report, strangler.Options) {
	t.Helper()
	dsn := servicetest.PostgresDSN(t)
	rdb := servicetest.Redis(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "tapline")
	build := exec.Command("go", "build", "-o", bin, "github.com/tapline/tapline/cmd/tapline")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tapline: %v\n%s", err, out)
	}
	name := servicetest.Name(t, prefix)
	o := strangler.Options{
		Tapline:     bin,
		Pipelines:   "pipelines",
		DataDir:     filepath.Join(dir, "data"),
		PostgresDSN: dsn,
		ShopDB:      name + "_shop",
		ReportingDB: name + "_rep",
		MySQLDSN:    servicetest.MySQLDSN(t),
		MySQLDB:     name + "_branch",
		RedisAddr:   "127.0.0.1:6379",
		CachePrefix: name + ":",
		Load:        load,
		Rate:        60,
		HTTP:        fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		NATSPort:    freePort(t),
		Log:         os.Stderr,
	}
	if mod != nil {
		mod(&o)
	}
	t.Cleanup(func() {
		if db, err := sql.Open("mysql", o.MySQLDSN); err == nil {
			db.Exec("DROP DATABASE IF EXISTS `" + o.MySQLDB + "`")
			db.Close()
		}
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, o.CachePrefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	servicetest.PostgresDatabaseCleanup(t, dsn, o.ShopDB)
	servicetest.PostgresDatabaseCleanup(t, dsn, o.ReportingDB)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := strangler.Run(ctx, o)
	if err != nil {
		if b, rerr := os.ReadFile(filepath.Join(o.DataDir, "tapline.log")); rerr == nil {
			t.Logf("tapline log:\n%s", tail(b, 4000))
		}
		t.Fatal(err)
	}
	rep.Print(testWriter{t})
	if !rep.OK() {
		if b, rerr := os.ReadFile(filepath.Join(o.DataDir, "tapline.log")); rerr == nil {
			t.Logf("tapline log:\n%s", tail(b, 4000))
		}
		t.Fatal("a view differs from its source")
	}
	if rep.RYWSamples == 0 || rep.LagSamples == 0 || rep.Events == 0 {
		t.Errorf("read-your-writes samples %d, lag samples %d, events %.0f: the demo measured nothing", rep.RYWSamples, rep.LagSamples, rep.Events)
	}
	return rep, o
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
