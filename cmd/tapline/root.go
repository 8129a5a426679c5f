package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// globals are the flags every command shares.
type globals struct {
	dataDir   string
	logFormat string
	logLevel  string
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "tapline",
		Short: "Change data capture: database logs to event streams to views",
		Long: `tapline tails Postgres and MySQL/MariaDB replication logs into event streams
(Kafka, NATS JetStream) and materializes those streams into views (SQLite,
Postgres, MySQL, Redis). Run pipelines from YAML with 'tapline run', or one
connector at a time with 'tapline source' and 'tapline sink'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.dataDir, "data-dir", envOr("TAPLINE_DATA_DIR", "./data"), "directory for offsets, locks and embedded state (env TAPLINE_DATA_DIR)")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(
		newRunCmd(g),
		newValidateCmd(g),
		newOffsetsCmd(g),
		newConnectorsCmd(),
		newSourceCmd(g),
		newSinkCmd(g),
		newWaitCmd(),
		newRebuildCmd(g),
		newSnapshotCmd(g),
		newVersionCmd(),
	)
	return root
}

func envOr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok && v != "" {
		return v
	}
	return def
}

// logger builds the process logger on stderr.
func (g *globals) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(g.logFormat) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
}

// version is set at build time with -ldflags "-X main.version=..."; the
// module's build info is used otherwise.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		if v != "" {
			return v
		}
	}
	return "(devel)"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tapline's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "tapline", versionString())
		},
	}
}
