package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
	"github.com/tapline/tapline/pipelines"
)

func newRunCmd(g *globals) *cobra.Command {
	var httpAddr string
	var shutdown time.Duration
	cmd := &cobra.Command{
		Use:   "run PATH",
		Short: "Run the pipelines defined in a YAML file or directory (the daemon)",
		Long: `Run every pipeline found in PATH (a YAML file, or a directory of them), each
isolated: a pipeline that fails is restarted with backoff and does not stop
the others. SIGINT or SIGTERM stops reading, makes what was read durable,
commits and acknowledges it, and exits 0.

The daemon serves /healthz, /readyz, /metrics (Prometheus) and
/v1/pipelines (status as JSON) on --http, and
/v1/pipelines/NAME/wait?position=P for read-your-writes (see tapline wait).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			ps, err := pipelines.Load(args[0], connectors.Default, os.LookupEnv)
			if err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			if err := os.MkdirAll(g.dataDir, 0o755); err != nil {
				return fmt.Errorf("data directory: %w", err)
			}
			store, err := offsets.OpenSQLite(filepath.Join(g.dataDir, "offsets.db"))
			if err != nil {
				return err
			}
			defer store.Close()

			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			d := &pipelines.Daemon{
				Pipelines:       ps,
				DataDir:         g.dataDir,
				Offsets:         store,
				Logger:          log,
				Metrics:         pipelines.NewMetrics(reg),
				ShutdownTimeout: shutdown,
			}
			srv, err := serveHTTP(cmd.Context(), httpAddr, d, reg, log)
			if err != nil {
				return err
			}
			log.Info("tapline running", "version", versionString(), "pipelines", len(ps), "data_dir", g.dataDir, "http", srv)
			err = d.Run(cmd.Context())
			log.Info("tapline stopped")
			return err
		},
	}
	cmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:7070", "address for health, metrics and the API; empty to disable")
	cmd.Flags().DurationVar(&shutdown, "shutdown-timeout", 10*time.Second, "how long to keep writing what was read after a stop signal")
	return cmd
}

// serveHTTP starts the daemon's HTTP server and stops it when ctx is done.
// It returns the address it listens on.
func serveHTTP(ctx context.Context, addr string, d *pipelines.Daemon, reg *prometheus.Registry, log *slog.Logger) (string, error) {
	if addr == "" {
		return "", nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			writeJSON(w, d.Statuses())
			return
		}
		writeJSON(w, d.Statuses())
	})
	mux.HandleFunc("GET /v1/pipelines", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, d.Statuses())
	})
	mux.HandleFunc("GET /v1/pipelines/{name}/wait", func(w http.ResponseWriter, r *http.Request) {
		serveWait(w, r, d)
	})
	mux.HandleFunc("POST /v1/pipelines/{name}/rebuild", func(w http.ResponseWriter, r *http.Request) {
		serveRebuild(w, r, d)
	})
	mux.HandleFunc("POST /v1/pipelines/{name}/snapshot", func(w http.ResponseWriter, r *http.Request) {
		tables := r.URL.Query()["table"]
		if len(tables) == 0 {
			httpError(w, http.StatusBadRequest, "name the tables to re-read: ?table=schema.name")
			return
		}
		if !d.Has(r.PathValue("name")) {
			httpError(w, http.StatusNotFound, fmt.Sprintf("no pipeline %q", r.PathValue("name")))
			return
		}
		if err := connectors.RequestSnapshot(d.DataDir, r.PathValue("name"), tables); err != nil {
			httpError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.WriteHeader(http.StatusAccepted)
		writeJSON(w, map[string]any{"pipeline": r.PathValue("name"), "tables": tables, "requested": true})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("--http %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "error", err)
		}
	}()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	return ln.Addr().String(), nil
}

// maxWaitTimeout caps the timeout a wait request may ask for.
const maxWaitTimeout = 5 * time.Minute

// serveWait answers GET /v1/pipelines/{name}/wait?position=P[&origin=O]
// [&timeout=D]: 200 once the view has applied P, 408 on timeout, with the
// applied positions in both cases.
func serveWait(w http.ResponseWriter, r *http.Request, d *pipelines.Daemon) {
	q := r.URL.Query()
	timeout := 10 * time.Second
	if t := q.Get("timeout"); t != "" {
		v, err := time.ParseDuration(t)
		if err != nil || v <= 0 || v > maxWaitTimeout {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("timeout %q: want a duration between 1ms and %s, e.g. 5s", t, maxWaitTimeout))
			return
		}
		timeout = v
	}
	pos := q.Get("position")
	if pos == "" {
		httpError(w, http.StatusBadRequest, "position is required, e.g. ?position=0/16B3748 (Postgres: SELECT pg_logical_emit_message(false, 'tapline_heartbeat', '') after your commit)")
		return
	}
	res, err := d.Wait(r.Context(), r.PathValue("name"), q.Get("origin"), pos, timeout)
	switch {
	case errors.Is(err, pipelines.ErrUnknownPipeline):
		httpError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, pipelines.ErrNotView):
		httpError(w, http.StatusConflict, err.Error())
	case err != nil:
		httpError(w, http.StatusServiceUnavailable, err.Error())
	case !res.Reached:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestTimeout)
		json.NewEncoder(w).Encode(res)
	default:
		writeJSON(w, res)
	}
}

// serveRebuild runs a rebuild and streams its progress as JSON lines; the
// last line is the final status, or {"error": ...}.
func serveRebuild(w http.ResponseWriter, r *http.Request, d *pipelines.Daemon) {
	name := r.PathValue("name")
	w.Header().Set("Content-Type", "application/x-ndjson")
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	var mu sync.Mutex
	last := time.Time{}
	st, err := d.Rebuild(r.Context(), name, func(s pipelines.RebuildStatus) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		enc.Encode(s)
		if flusher != nil {
			flusher.Flush()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		enc.Encode(map[string]string{"error": connectors.RedactDSN(err.Error())})
		return
	}
	enc.Encode(st)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
