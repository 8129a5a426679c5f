package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests build the tapline binary once and drive it as a user would.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tapline-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tapline")
	// Without -race: the engine and daemon are race-tested in process; this
	// binary pushes 100,000 events through a pipe, which -race slows tenfold.
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tapline:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tapline runs the binary to completion and returns stdout, stderr and the
// exit code.
func tapline(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run tapline %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPipeGenerateIntoJSONL(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	cmd := exec.Command("bash", "-o", "pipefail", "-c",
		fmt.Sprintf("%q source generate --tables orders --count 100000 | %q sink jsonl %q", binary, binary, out))
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pipe failed: %v\n%s", err, b)
	}
	if n := countLines(t, out); n != 100000 {
		t.Fatalf("%s has %d lines, want 100000", out, n)
	}
	// Every line is an event of the orders table, ids 1..100000 once each.
	f, _ := os.Open(out)
	defer f.Close()
	sc := bufio.NewScanner(f)
	seen := make(map[float64]bool, 100000)
	for sc.Scan() {
		var ev struct {
			Op     string         `json:"op"`
			After  map[string]any `json:"after"`
			Source struct {
				Table string `json:"table"`
			} `json:"source"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		if ev.Op != "c" || ev.Source.Table != "orders" {
			t.Fatalf("unexpected event %s", sc.Text())
		}
		seen[ev.After["id"].(float64)] = true
	}
	if len(seen) != 100000 {
		t.Fatalf("%d distinct ids, want 100000", len(seen))
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// daemon is a running `tapline run`.
type daemon struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	done chan error
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine of exec.Cmd and
// the test reading it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startDaemon(t *testing.T, dir, config string) *daemon {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(binary, "run", config, "--http", addr, "--data-dir", filepath.Join(dir, "data"), "--log-level", "debug")
	cmd.Dir = dir
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, cmd: cmd, addr: addr, logs: logs, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

func (d *daemon) get(path string) (int, string) {
	resp, err := http.Get("http://" + d.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond every 20ms for up to 30s: the daemon is another
// process, so there is nothing to synchronise on but what it serves.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func metricValue(body, name, pipeline string) float64 {
	prefix := fmt.Sprintf(`%s{pipeline="%s"} `, name, pipeline)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(line, prefix), 64)
			return v
		}
	}
	return -1
}

// The daemon exposes metrics; SIGTERM drains, commits and exits 0, and the
// committed position matches exactly what the sink holds.
func TestRunServesMetricsAndStopsCleanlyOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), `
name: gen
source:
  type: generate
  tables: [public.orders]
  rate: 5000
sink:
  type: jsonl
  path: out.jsonl
batch:
  max_events: 100
  max_wait: 20ms
`)
	d := startDaemon(t, dir, "p.yaml")
	waitFor(t, "readyz", func() bool { code, _ := d.get("/readyz"); return code == 200 })
	var metrics string
	waitFor(t, "events in /metrics", func() bool {
		_, metrics = d.get("/metrics")
		return metricValue(metrics, "tapline_pipeline_events_total", "gen") >= 500
	})
	for _, m := range []string{"tapline_pipeline_batches_total", "tapline_pipeline_lag_seconds", "tapline_pipeline_up"} {
		if metricValue(metrics, m, "gen") < 0 {
			t.Errorf("/metrics has no %s for pipeline gen", m)
		}
	}
	if !strings.Contains(metrics, `tapline_pipeline_errors_total{kind="fatal",pipeline="gen"} 0`) {
		t.Errorf("/metrics has no errors counter for pipeline gen")
	}
	_, st := d.get("/v1/pipelines")
	if !strings.Contains(st, `"state": "running"`) {
		t.Errorf("/v1/pipelines = %s, want gen running", st)
	}

	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("tapline run exited with %v after SIGTERM\n%s", err, d.logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("tapline run did not exit within 20s of SIGTERM\n%s", d.logs)
	}
	lines := countLines(t, filepath.Join(dir, "out.jsonl"))
	out, stderr, code := tapline(t, dir, "offsets", "get", "gen", "--data-dir", "data", "--config", "p.yaml")
	if code != 0 {
		t.Fatalf("offsets get: exit %d: %s", code, stderr)
	}
	// generate's positions are "N:1" for event N.
	n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(out), ":1"))
	if n != lines {
		t.Fatalf("committed position %q but the sink holds %d events; after a clean stop they must agree", strings.TrimSpace(out), lines)
	}
	if !strings.Contains(d.logs.String(), "pipeline stopped") {
		t.Errorf("logs do not report the stop:\n%s", d.logs)
	}
}

// `tapline offsets set` refuses while the pipeline runs; a second daemon
// waits as a standby instead of running the pipeline twice.
func TestOffsetsRefuseWhileRunningAndSecondDaemonStandsBy(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), `
name: gen
source: {type: generate, rate: 1000}
sink: {type: jsonl, path: out.jsonl}
`)
	d := startDaemon(t, dir, "p.yaml")
	waitFor(t, "readyz", func() bool { code, _ := d.get("/readyz"); return code == 200 })
	_, stderr, code := tapline(t, dir, "offsets", "set", "gen", "0x00", "--data-dir", "data")
	if code == 0 || !strings.Contains(stderr, `pipeline "gen" is running`) {
		t.Fatalf("offsets set while running: exit %d, stderr %q; want a refusal naming the pipeline", code, stderr)
	}
	standby := startDaemon(t, dir, "p.yaml")
	waitFor(t, "standby status", func() bool {
		_, st := standby.get("/v1/pipelines")
		return strings.Contains(st, `"state": "waiting"`)
	})
	if code, _ := standby.get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("standby /readyz = %d, want 503", code)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	// The standby takes over.
	waitFor(t, "standby takes over", func() bool {
		_, st := standby.get("/v1/pipelines")
		return strings.Contains(st, `"state": "running"`)
	})
	standby.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-standby.done; err != nil {
		t.Fatalf("standby exit: %v", err)
	}
}

// One failing pipeline is restarted with backoff and does not stop the
// others.
func TestDaemonIsolatesAFailingPipeline(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), `
name: good
source: {type: generate, count: 2000}
sink: {type: jsonl, path: good.jsonl}
---
name: bad
source: {type: generate, count: 2000}
sink: {type: jsonl, path: /proc/tapline-cannot-write-here/bad.jsonl}
`)
	d := startDaemon(t, dir, "p.yaml")
	waitFor(t, "good finishes and bad restarts", func() bool {
		_, st := d.get("/v1/pipelines")
		var sts []struct {
			Name     string `json:"name"`
			State    string `json:"state"`
			Restarts int    `json:"restarts"`
		}
		json.Unmarshal([]byte(st), &sts)
		ok := 0
		for _, s := range sts {
			if s.Name == "good" && s.State == "finished" {
				ok++
			}
			if s.Name == "bad" && s.Restarts >= 1 {
				ok++
			}
		}
		return ok == 2
	})
	if n := countLines(t, filepath.Join(dir, "good.jsonl")); n != 2000 {
		t.Errorf("good pipeline wrote %d events, want 2000", n)
	}
	if !strings.Contains(d.logs.String(), "pipeline failed; restarting") {
		t.Errorf("logs do not report the restart:\n%s", d.logs)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-d.done; err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func TestValidateReportsPlaceAndSuggestion(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad.yaml"), `name: gen
source:
  type: generate
  tabels: [orders]
sink:
  type: jsonl
`)
	_, stderr, code := tapline(t, dir, "validate", "bad.yaml")
	if code != 1 {
		t.Fatalf("validate exit %d, want 1; stderr %q", code, stderr)
	}
	want := `bad.yaml:4:3: source.tabels: unknown key (did you mean "tables"?)`
	if !strings.Contains(stderr, want) {
		t.Fatalf("validate said %q; want it to contain %q", stderr, want)
	}
	writeFile(t, filepath.Join(dir, "good.yaml"), "name: gen\nsource: {type: generate}\nsink: {type: jsonl}\n")
	out, stderr, code := tapline(t, dir, "validate", "good.yaml")
	if code != 0 || !strings.Contains(out, "ok  gen (generate -> jsonl)") {
		t.Fatalf("validate good.yaml: exit %d, out %q, err %q", code, out, stderr)
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), "name: gen\nsource: {type: generate, count: ${COUNT}}\nsink: {type: jsonl}\n")
	cmd := exec.Command(binary, "validate", "p.yaml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COUNT=hunter2-secret")
	out, _ := cmd.CombinedOutput()
	if strings.Contains(string(out), "hunter2") {
		t.Fatalf("validate echoed an expanded environment value: %s", out)
	}
	if !strings.Contains(string(out), "p.yaml:2:") {
		t.Fatalf("validate did not name the place: %s", out)
	}
}

func TestConnectorsListsConfigKeys(t *testing.T) {
	out, stderr, code := tapline(t, t.TempDir(), "connectors")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"source generate", "source jsonl", "sink jsonl", "transform filter", "count", "tables"} {
		if !strings.Contains(out, want) {
			t.Errorf("tapline connectors lacks %q:\n%s", want, out)
		}
	}
	_, stderr, code = tapline(t, t.TempDir(), "connectors", "generat")
	if code != 1 || !strings.Contains(stderr, `did you mean "generate"?`) {
		t.Errorf("connectors generat: exit %d, %q", code, stderr)
	}
}

// offsets set places a position before the first run (creating the store),
// in the source's own form; the pipeline then resumes after it.
func TestOffsetsSetBeforeFirstRun(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), "name: gen\nsource: {type: generate, count: 1000}\nsink: {type: jsonl, path: out.jsonl}\n")
	out, stderr, code := tapline(t, dir, "offsets", "set", "gen", "900:1", "--config", "p.yaml")
	if code != 0 || !strings.Contains(out, "gen: position set to 900:1") {
		t.Fatalf("offsets set: exit %d, out %q, err %q", code, out, stderr)
	}
	if _, stderr, code := tapline(t, dir, "run", "p.yaml", "--http", ""); code != 0 {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}
	if n := countLines(t, filepath.Join(dir, "out.jsonl")); n != 100 {
		t.Fatalf("resumed run wrote %d events, want the last 100", n)
	}
	out, _, _ = tapline(t, dir, "offsets", "list", "--config", "p.yaml")
	if !strings.Contains(out, "gen") || !strings.Contains(out, "1000:1") {
		t.Fatalf("offsets list = %q, want gen at 1000:1", out)
	}
	_, stderr, code = tapline(t, dir, "offsets", "get", "nope")
	if code != 1 || !strings.Contains(stderr, `pipeline "nope" has no committed position`) {
		t.Fatalf("offsets get nope: exit %d, %q", code, stderr)
	}
}
