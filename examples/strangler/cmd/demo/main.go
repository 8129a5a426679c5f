// Command demo runs the strangler example end to end and prints its
// verification report; it exits 1 when a view differs from its source.
// `make demo` runs it through the embedded NATS log, and
// `make demo DEMO_FLAGS=-kafka` through Kafka (a kfake broker in this
// process, or -kafka-brokers).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/tapline/tapline/examples/strangler"
)

func main() {
	o := strangler.Options{Log: os.Stdout}
	flag.StringVar(&o.Tapline, "tapline", "bin/tapline", "the tapline binary")
	flag.StringVar(&o.Pipelines, "pipelines", "examples/strangler/pipelines", "the example's pipeline files")
	flag.StringVar(&o.DataDir, "data-dir", "data/strangler", "tapline's state and the SQLite view (emptied first)")
	flag.StringVar(&o.PostgresDSN, "postgres", env("TAPLINE_DEMO_PG_DSN", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "an administrative DSN of the Postgres server")
	flag.StringVar(&o.ShopDB, "shop-db", "shop", "the legacy database (recreated)")
	flag.StringVar(&o.ReportingDB, "reporting-db", "shop_reporting", "the reporting database (recreated)")
	flag.StringVar(&o.MySQLDSN, "mariadb", env("TAPLINE_DEMO_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/"), "a DSN of the MariaDB server")
	flag.StringVar(&o.MySQLDB, "branch-db", "shop_branch", "the MariaDB branch database (recreated)")
	flag.StringVar(&o.RedisAddr, "redis", env("TAPLINE_DEMO_REDIS", "127.0.0.1:6379"), "the Redis server")
	flag.StringVar(&o.CachePrefix, "cache-prefix", "demo:", "prefix of the cache's keys (deleted first)")
	flag.DurationVar(&o.Load, "load", time.Minute, "how long the legacy application writes")
	flag.IntVar(&o.Rate, "rate", 100, "legacy business transactions per second")
	flag.StringVar(&o.HTTP, "http", "127.0.0.1:7071", "the tapline daemon's API address")
	flag.IntVar(&o.NATSPort, "nats-port", 4223, "the embedded NATS server's port")
	flag.BoolVar(&o.Kafka, "kafka", false, "run the pipelines through Kafka (pipelines/kafka) instead of the embedded NATS server: a kfake broker in this process, or -kafka-brokers")
	flag.IntVar(&o.KafkaPort, "kafka-port", strangler.DefaultKafkaPort, "the port of the kfake broker on 127.0.0.1 (with -kafka)")
	brokers := flag.String("kafka-brokers", "", "an existing Kafka cluster to use instead of kfake, as host:port,... (implies -kafka)")
	flag.StringVar(&o.KafkaPrefix, "kafka-prefix", "", `start of the topic names (default "shop" on kfake, "shop_<unix time>" on -kafka-brokers)`)
	flag.Parse()
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.KafkaBrokers = append(o.KafkaBrokers, b)
		}
	}
	o.Kafka = o.Kafka || len(o.KafkaBrokers) > 0

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := strangler.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	rep.Print(os.Stdout)
	if !rep.OK() {
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
