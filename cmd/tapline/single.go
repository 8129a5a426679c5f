package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
	"github.com/tapline/tapline/pipelines"
)

// newSourceCmd has one subcommand per registered source: it runs that source
// and writes its events as JSON lines to stdout.
func newSourceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "source NAME [flags]",
		Short: "Run one source connector, writing events as JSON lines to stdout",
		Long: `Run one source connector and write its events as JSON lines to stdout.
The flags are the connector's YAML config keys in kebab-case; a list takes a
comma-separated value. Example:

  tapline source generate --tables orders --count 100000 | tapline sink jsonl /tmp/out.jsonl`,
	}
	for _, name := range connectors.Sources() {
		cmd.AddCommand(singleCmd(g, connectors.KindSource, name))
	}
	return cmd
}

// newSinkCmd has one subcommand per registered sink: it reads JSON lines from
// stdin and writes them to that sink.
func newSinkCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sink NAME [flags] [PATH]",
		Short: "Run one sink connector, reading events as JSON lines from stdin",
		Long: `Run one sink connector on events read as JSON lines from stdin. The flags
are the connector's YAML config keys in kebab-case. A sink with a path key
also takes the path as its one argument:

  tapline source generate --count 10 | tapline sink jsonl /tmp/out.jsonl`,
	}
	for _, name := range connectors.Sinks() {
		cmd.AddCommand(singleCmd(g, connectors.KindSink, name))
	}
	return cmd
}

func singleCmd(g *globals, kind connectors.Kind, name string) *cobra.Command {
	reg, _ := connectors.Default.Lookup(kind, name)
	cfg := reg.NewConfig()
	var fields []connectors.FieldDoc
	hasPath := false
	var maxEvents int
	var omitSchema, drop bool
	cmd := &cobra.Command{
		Use:   name,
		Short: reg.Summary,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if err := cmd.Flags().Set("path", args[0]); err != nil {
					return err
				}
			}
			if err := checkConfig(string(kind), name, cfg, fields, ""); err != nil {
				return err
			}
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			job := pipelines.Job{
				Name:    string(kind) + "-" + name,
				Offsets: offsets.NewMemory(),
				Logger:  log.With("pipeline", string(kind)+"-"+name),
				Limits:  pipelines.DefaultLimits,
			}
			if maxEvents > 0 {
				job.Limits.MaxEvents = maxEvents
			}
			rt := connectors.Runtime{Pipeline: job.Name, DataDir: g.dataDir}
			if kind == connectors.KindSource {
				job.FormatPosition = reg.FormatPosition
				rt.Logger = job.Logger.With("connector", name)
				if job.Source, err = reg.NewSource(cfg, rt); err != nil {
					return err
				}
				if drop {
					dropper, ok := job.Source.(connectors.Dropper)
					if !ok {
						return &exitError{code: 2, msg: fmt.Sprintf("--drop-slot: the %s source keeps nothing upstream to drop", name)}
					}
					return dropper.Drop(cmd.Context())
				}
				if job.Sink, err = stdioSink(rt, omitSchema); err != nil {
					return err
				}
			} else {
				rt.Logger = job.Logger.With("connector", name)
				if job.Sink, err = reg.NewSink(cfg, rt); err != nil {
					return err
				}
				if job.Source, err = stdinSource(rt); err != nil {
					return err
				}
			}
			return pipelines.Run(cmd.Context(), job)
		},
	}
	fields = configFlags(cmd.Flags(), cfg, "")
	for _, f := range fields {
		if f.Key == "path" {
			hasPath = true
		}
	}
	if kind == connectors.KindSink && hasPath {
		cmd.Use = name + " [PATH]"
		cmd.Args = cobra.MaximumNArgs(1)
	}
	cmd.Flags().IntVar(&maxEvents, "batch-max-events", 0, fmt.Sprintf("events per batch (default %d)", pipelines.DefaultLimits.MaxEvents))
	if kind == connectors.KindSource {
		cmd.Flags().BoolVar(&omitSchema, "omit-schema", false, "leave the per-event schema block out of the JSON lines")
		cmd.Flags().BoolVar(&drop, "drop-slot", false, "drop what the source keeps upstream (Postgres: the replication slot, and the publication if tapline manages it) and exit; a pipeline's stored position is useless afterwards")
	}
	return cmd
}

// stdioSink is the jsonl sink writing to stdout.
func stdioSink(rt connectors.Runtime, omitSchema bool) (connectors.Sink, error) {
	reg, err := connectors.Default.Lookup(connectors.KindSink, "jsonl")
	if err != nil {
		return nil, err
	}
	cfg := reg.NewConfig()
	if err := setKey(cfg, "path", "-"); err != nil {
		return nil, err
	}
	if omitSchema {
		if err := setKey(cfg, "omit_schema", "true"); err != nil {
			return nil, err
		}
	}
	return reg.NewSink(cfg, rt)
}

// stdinSource is the jsonl source reading stdin.
func stdinSource(rt connectors.Runtime) (connectors.Source, error) {
	reg, err := connectors.Default.Lookup(connectors.KindSource, "jsonl")
	if err != nil {
		return nil, err
	}
	cfg := reg.NewConfig()
	if err := setKey(cfg, "path", "-"); err != nil {
		return nil, err
	}
	return reg.NewSource(cfg, rt)
}

// setKey sets one config key of cfg from its text form.
func setKey(cfg any, key, value string) error {
	for _, f := range connectors.ConfigFields(cfg) {
		if f.Key == key {
			fv := &fieldValue{typ: f.Type}
			fv.v = reflectField(cfg, f.Index)
			return fv.Set(value)
		}
	}
	return fmt.Errorf("config has no key %q", key)
}
