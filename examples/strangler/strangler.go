// Package strangler runs the strangler-pattern example end to end: a legacy
// shop in Postgres and a branch system in MariaDB under load, tapline
// capturing both into a log (the embedded NATS server, or Kafka: a kfake
// broker in this process or an existing cluster) and materializing views
// from the log (an orders read model in SQLite, a customer cache in Redis,
// a reporting copy in another Postgres database, the branch's orders in
// SQLite), a new service reading its view with read-your-writes, and a
// verification that each view equals its source. `make demo` runs it
// through cmd/demo; the package's tests run it with a shorter load, once
// per log.
package strangler

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/mattn/go-sqlite3"
	"github.com/redis/go-redis/v9"

	"github.com/tapline/tapline/examples/strangler/newservice"
	"github.com/tapline/tapline/examples/strangler/shop"
)

// Options configures a run.
type Options struct {
	// Tapline is the tapline binary.
	Tapline string
	// Pipelines is the directory of the example's pipeline files; the
	// Kafka variants are in its kafka subdirectory.
	Pipelines string
	// DataDir holds tapline's state and the SQLite view; it is emptied.
	DataDir string
	// PostgresDSN is an administrative DSN of the Postgres server; the
	// legacy and reporting databases are created on it.
	PostgresDSN string
	// ShopDB and ReportingDB name the two databases (recreated).
	ShopDB, ReportingDB string
	// MySQLDSN is a DSN of the MariaDB server (go-sql-driver form); the
	// branch database MySQLDB is created on it (recreated).
	MySQLDSN, MySQLDB string
	// RedisAddr is the Redis server; CachePrefix starts every cache key.
	RedisAddr, CachePrefix string
	// Load is how long the legacy application writes; Rate its business
	// transactions per second.
	Load time.Duration
	Rate int
	// HTTP and NATSPort are the daemon's API address and the embedded NATS
	// server's port.
	HTTP     string
	NATSPort int
	// Kafka runs the Kafka variants of the pipelines (Pipelines/kafka)
	// instead of the NATS ones. With no KafkaBrokers, Run starts a kfake
	// broker in this process on 127.0.0.1:KafkaPort (DefaultKafkaPort
	// when 0), and stops it when the daemon has stopped.
	Kafka bool
	// KafkaBrokers is an existing cluster to use instead of kfake; the
	// daemon bootstraps from the first that answers.
	KafkaBrokers []string
	KafkaPort    int
	// KafkaPrefix starts the topic names: <prefix>.public.orders,
	// m<prefix>.<branch db>.orders, <prefix>.offsets. Empty: "shop" on
	// kfake; on KafkaBrokers "shop_<unix time>", so that no earlier run's
	// topics, group offsets or exactly-once positions feed this one.
	KafkaPrefix string
	// Log receives progress lines and the daemon's log goes to
	// DataDir/tapline.log.
	Log io.Writer
}

// Report is what a run found.
type Report struct {
	// Log says which log the pipelines ran through.
	Log   string
	Views []ViewResult
	// Topics are the Kafka topics the run wrote (none on NATS).
	Topics []Topic
	// Events is the number of events captured from the legacy database
	// and EventsPerSec their rate over the load.
	Events       float64
	EventsPerSec float64
	// LagP50/P99: from a commit in the legacy database to the row being
	// visible in the SQLite view, sampled during the load.
	LagP50, LagP99 time.Duration
	LagSamples     int
	// RYWP50/P99: the new service's order placement, from before the
	// legacy write to the answer read from its view.
	RYWP50, RYWP99 time.Duration
	RYWSamples     int
	Transactions   int64
}

// ViewResult compares one view with its source.
type ViewResult struct {
	Name         string
	Source, View shop.Digest
	// Diff holds the first differing rows, when they differ.
	Diff []string
}

// Equal reports whether the view holds exactly its source's content.
func (v ViewResult) Equal() bool { return v.Source == v.View }

// OK reports whether every view equals its source.
func (r Report) OK() bool {
	for _, v := range r.Views {
		if !v.Equal() {
			return false
		}
	}
	return len(r.Views) > 0
}

// Print writes the verification report.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nlog: %s\n", r.Log)
	fmt.Fprintf(w, "\n%-34s %10s %10s  %-12s %-12s %s\n", "view", "source", "view", "source sum", "view sum", "")
	for _, v := range r.Views {
		verdict := "EQUAL"
		if !v.Equal() {
			verdict = "DIFFERENT"
		}
		fmt.Fprintf(w, "%-34s %10d %10d  %-12s %-12s %s\n", v.Name, v.Source.Rows, v.View.Rows, v.Source.Short(), v.View.Short(), verdict)
		for _, d := range v.Diff {
			fmt.Fprintf(w, "    %s\n", d)
		}
	}
	fmt.Fprintf(w, "\nlegacy transactions: %d; events captured: %.0f (%.0f events/s)\n", r.Transactions, r.Events, r.EventsPerSec)
	fmt.Fprintf(w, "end-to-end lag, commit to visible in the SQLite view: p50 %s, p99 %s (%d samples)\n", round(r.LagP50), round(r.LagP99), r.LagSamples)
	fmt.Fprintf(w, "read-your-writes, place an order and read it from the view: p50 %s, p99 %s (%d samples)\n", round(r.RYWP50), round(r.RYWP99), r.RYWSamples)
	if len(r.Topics) > 0 {
		width := len("topic")
		for _, t := range r.Topics {
			width = max(width, len(t.Name))
		}
		fmt.Fprintf(w, "\n%-*s %10s  %-15s %s\n", width, "topic", "partitions", "cleanup.policy", "end offset (records + transaction markers)")
		for _, t := range r.Topics {
			fmt.Fprintf(w, "%-*s %10d  %-15s %d\n", width, t.Name, t.Partitions, t.CleanupPolicy, t.EndOffset)
		}
	}
	if r.OK() {
		fmt.Fprintln(w, "\nstrangler demo: OK: every view equals its source")
	} else {
		fmt.Fprintln(w, "\nstrangler demo: FAILED: a view differs from its source")
	}
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

// Run runs the example and returns its report; an error means it could not
// run (a view that differs is reported, not an error).
func Run(ctx context.Context, o Options) (Report, error) {
	var rep Report
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "demo: "+format+"\n", args...)
		}
	}
	if err := os.RemoveAll(o.DataDir); err != nil {
		return rep, err
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return rep, err
	}
	shopDSN, err := recreateDB(ctx, o.PostgresDSN, o.ShopDB)
	if err != nil {
		return rep, err
	}
	reportingDSN, err := recreateDB(ctx, o.PostgresDSN, o.ReportingDB)
	if err != nil {
		return rep, err
	}
	legacy, err := pgxpool.New(ctx, shopDSN)
	if err != nil {
		return rep, err
	}
	defer legacy.Close()
	if err := shop.Setup(ctx, legacy, 1); err != nil {
		return rep, err
	}
	branchDSN, err := recreateMariaDB(ctx, o.MySQLDSN, o.MySQLDB)
	if err != nil {
		return rep, err
	}
	branch, err := sql.Open("mysql", branchDSN)
	if err != nil {
		return rep, err
	}
	defer branch.Close()
	if err := shop.MariaDBSetup(ctx, branch, 1); err != nil {
		return rep, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: o.RedisAddr})
	defer rdb.Close()
	if err := dropKeys(ctx, rdb, o.CachePrefix+"*"); err != nil {
		return rep, fmt.Errorf("redis %s: %w", o.RedisAddr, err)
	}
	logf("legacy shop in database %s; views in %s, Redis %s (keys %s*), database %s", o.ShopDB, o.DataDir, o.RedisAddr, o.CachePrefix, o.ReportingDB)

	// tapline: the daemon with the example's six pipelines.
	logFile, err := os.Create(filepath.Join(o.DataDir, "tapline.log"))
	if err != nil {
		return rep, err
	}
	defer logFile.Close()
	// The slot keeps WAL for as long as it exists: drop it when the demo
	// ends (after tapline has stopped: this defer runs last).
	defer dropSlots(o.PostgresDSN, o.ShopDB)
	// The log; a kfake broker stops after tapline (defers run in reverse).
	elog, err := openLog(ctx, o)
	if err != nil {
		return rep, err
	}
	defer elog.close()
	rep.Log = elog.desc
	logf("log: %s; pipelines in %s", elog.desc, elog.pipelines)
	cmd := exec.Command(o.Tapline, "run", elog.pipelines, "--data-dir", o.DataDir, "--http", o.HTTP)
	cmd.Env = append(os.Environ(),
		"SHOP_PG_DSN="+shopDSN, "REPORTING_PG_DSN="+reportingDSN, "SHOP_SLOT=tapline_"+o.ShopDB,
		"VIEWS_DIR="+o.DataDir, "REDIS_ADDR="+o.RedisAddr, "CACHE_PREFIX="+o.CachePrefix,
		"SHOP_MYSQL_DSN="+branchDSN, "SHOP_MYSQL_DB="+o.MySQLDB)
	cmd.Env = append(cmd.Env, elog.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return rep, fmt.Errorf("start tapline: %w", err)
	}
	var waitErr error
	exited := make(chan struct{}) // closed when tapline has exited; waitErr says how
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	if err := waitReady(ctx, o.HTTP, exited, &waitErr); err != nil {
		return rep, fmt.Errorf("tapline did not become ready: %w (see %s)", err, logFile.Name())
	}
	logf("tapline is running: %s", strings.Join(pipelineNames(ctx, o.HTTP), ", "))

	// Start the load once the initial snapshot has reached the SQLite view,
	// so that lag and read-your-writes are measured in the steady state.
	// The view is opened read-only only once the sink has created it.
	var legacyOrders int
	if err := legacy.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&legacyOrders); err != nil {
		return rep, err
	}
	views, err := waitView(ctx, filepath.Join(o.DataDir, "views.db"), "orders_by_customer", legacyOrders, exited, &waitErr)
	if err != nil {
		return rep, fmt.Errorf("%w (see %s)", err, logFile.Name())
	}
	defer views.Close()
	branchViews, err := waitView(ctx, filepath.Join(o.DataDir, "branch.db"), "branch_orders", 100, exited, &waitErr)
	if err != nil {
		return rep, fmt.Errorf("%w (see %s)", err, logFile.Name())
	}
	defer branchViews.Close()
	logf("the views hold the initial snapshots")
	svc := &newservice.Service{Legacy: legacy, View: views, Tapline: o.HTTP, Pipeline: "orders-view"}

	// The legacy application under load, with probes measuring lag and
	// read-your-writes while it runs.
	before, _ := capturedEvents(ctx, o.HTTP)
	loadCtx, stopLoad := context.WithTimeout(ctx, o.Load)
	defer stopLoad()
	load := &shop.Load{DB: legacy, Rate: o.Rate, SchemaChangeAfter: o.Load / 2, BigTxEvery: o.Load / 3, Seed: 42}
	branchLoad := &shop.MariaDBLoad{DB: branch, Rate: max(5, o.Rate/4), Seed: 43}
	var branchTxs int64
	var branchErr error
	var lags, ryws []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	probeErr := make(chan error, 2)
	wg.Go(func() { branchTxs, branchErr = branchLoad.Run(loadCtx) })
	wg.Go(func() {
		if err := probeLag(loadCtx, legacy, views, func(d time.Duration) { mu.Lock(); lags = append(lags, d); mu.Unlock() }); err != nil {
			probeErr <- fmt.Errorf("lag probe: %w", err)
		}
	})
	wg.Go(func() {
		r := rand.New(rand.NewPCG(3, 3))
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-t.C:
			}
			start := time.Now()
			if _, err := svc.Place(loadCtx, 1+r.Int64N(200)); err != nil {
				if loadCtx.Err() == nil {
					probeErr <- fmt.Errorf("read-your-writes: %w", err)
					return
				}
				return
			}
			mu.Lock()
			ryws = append(ryws, time.Since(start))
			mu.Unlock()
		}
	})
	logf("the legacy applications write for %s: Postgres at %d transactions/s (a schema change at %s, a large transaction every %s), MariaDB at %d/s", o.Load, o.Rate, o.Load/2, o.Load/3, branchLoad.Rate)
	started := time.Now()
	st, err := load.Run(loadCtx)
	elapsed := time.Since(started)
	wg.Wait()
	if err != nil {
		return rep, fmt.Errorf("legacy load: %w", err)
	}
	if branchErr != nil {
		return rep, branchErr
	}
	select {
	case err := <-probeErr:
		return rep, err
	default:
	}
	rep.Transactions = st.Transactions + branchTxs
	after, _ := capturedEvents(ctx, o.HTTP)
	rep.Events = after - before
	rep.EventsPerSec = rep.Events / elapsed.Seconds()
	rep.LagP50, rep.LagP99, rep.LagSamples = percentiles(lags)
	rep.RYWP50, rep.RYWP99, rep.RYWSamples = percentiles(ryws)
	logf("load done: %d Postgres transactions (%d dropped on conflicts), %d MariaDB transactions; waiting for the views to catch up", st.Transactions, st.Errors, branchTxs)

	// Compare each view with its source until they agree or time runs out.
	reporting, err := pgxpool.New(ctx, reportingDSN)
	if err != nil {
		return rep, err
	}
	defer reporting.Close()
	checks := viewChecks(legacy, views, rdb, reporting, o.CachePrefix)
	checks = append(checks, branchCheck(branch, branchViews))
	deadline := time.Now().Add(60 * time.Second)
	for {
		rep.Views = rep.Views[:0]
		for _, c := range checks {
			res, err := c.compare(ctx)
			if err != nil {
				return rep, fmt.Errorf("%s: %w", c.name, err)
			}
			rep.Views = append(rep.Views, res)
		}
		if rep.OK() || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-exited:
			return rep, fmt.Errorf("tapline exited: %v (see %s)", waitErr, logFile.Name())
		case <-time.After(500 * time.Millisecond):
		}
	}
	if after, err := capturedEvents(ctx, o.HTTP); err == nil {
		rep.Events = after - before
	}
	if elog.topics != nil {
		if rep.Topics, err = elog.topics(ctx); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// recreateDB drops and creates a database (dropping its replication slots
// first) and returns its DSN.
func recreateDB(ctx context.Context, admin, name string) (string, error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active`, name); err != nil {
		return "", err
	}
	for i := 0; i < 50; i++ {
		var active int
		conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1 AND active`, name).Scan(&active)
		if active == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, name); err != nil {
		return "", fmt.Errorf("drop the replication slots of %s: %w", name, err)
	}
	id := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+id); err != nil {
		return "", err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", fmt.Errorf("postgres DSN must be a URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// recreateMariaDB drops and creates database name on the MariaDB server of
// dsn and returns a DSN for it.
func recreateMariaDB(ctx context.Context, dsn, name string) (string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("mariadb DSN: %w", err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return "", err
	}
	defer admin.Close()
	quoted := "`" + strings.ReplaceAll(name, "`", "``") + "`"
	for _, q := range []string{"DROP DATABASE IF EXISTS " + quoted, "CREATE DATABASE " + quoted} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			return "", fmt.Errorf("mariadb: %s: %w", q, err)
		}
	}
	cfg.DBName = name
	return cfg.FormatDSN(), nil
}

// waitView opens a SQLite view read-only once its sink has created it and
// waits until table holds at least rows rows.
func waitView(ctx context.Context, path, table string, rows int, exited <-chan struct{}, waitErr *error) (*sql.DB, error) {
	var db *sql.DB
	deadline := time.Now().Add(60 * time.Second)
	for {
		if db == nil {
			if _, err := os.Stat(path); err == nil {
				if db, err = sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000"); err != nil {
					return nil, err
				}
			}
		}
		var n int
		if db != nil && db.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n) == nil && n >= rows {
			return db, nil
		}
		if time.Now().After(deadline) {
			if db != nil {
				db.Close()
			}
			return nil, fmt.Errorf("the initial snapshot did not reach %s in %s within 60s", table, path)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-exited:
			return nil, fmt.Errorf("tapline exited: %v", *waitErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dropSlots drops the replication slots of database db, waiting for their
// readers to let go.
func dropSlots(admin, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	for i := 0; i < 100; i++ {
		var active int
		if conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1 AND active`, db).Scan(&active) != nil || active == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, db)
}

func dropKeys(ctx context.Context, rdb *redis.Client, pattern string) error {
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		if err := rdb.Del(ctx, keys[:n]...).Err(); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

func waitReady(ctx context.Context, addr string, exited <-chan struct{}, waitErr *error) error {
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("tapline exited: %v", *waitErr)
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = string(b)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return errors.New(last)
}

func pipelineNames(ctx context.Context, addr string) []string {
	resp, err := http.Get("http://" + addr + "/v1/pipelines")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var names []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, `"name":`) {
			names = append(names, strings.Trim(strings.TrimSuffix(strings.TrimPrefix(l, `"name":`), ","), ` "`))
		}
	}
	return names
}

// capturedEvents reads the capture pipeline's written-events counter from
// the daemon's metrics.
func capturedEvents(ctx context.Context, addr string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "tapline_pipeline_events_total{") && strings.Contains(l, `pipeline="shop-capture"`) {
			f := strings.Fields(l)
			return strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	return 0, fmt.Errorf("no tapline_pipeline_events_total for shop-capture in /metrics")
}

// probeLag places a marker order in the legacy database every 100ms and
// measures how long after its commit the SQLite view shows it.
func probeLag(ctx context.Context, legacy *pgxpool.Pool, views *sql.DB, sample func(time.Duration)) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var id int64
		err := legacy.QueryRow(ctx, `INSERT INTO orders (customer_id, note) VALUES (1, 'lag probe') RETURNING id`).Scan(&id)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		committed := time.Now()
		for {
			var n int
			if err := views.QueryRowContext(ctx, `SELECT count(*) FROM orders_by_customer WHERE id = ?`, id).Scan(&n); err == nil && n == 1 {
				sample(time.Since(committed))
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if time.Since(committed) > 30*time.Second {
				return fmt.Errorf("order %d not visible in the view after 30s", id)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func percentiles(ds []time.Duration) (p50, p99 time.Duration, n int) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)], len(s)
}
