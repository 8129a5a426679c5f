package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/pipelines"
)

func newValidateCmd(g *globals) *cobra.Command {
	var connect bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "validate PATH",
		Short: "Check pipeline files without running them (exit 1 on errors)",
		Long: `Check the pipelines in PATH (a YAML file or a directory): syntax, unknown or
misspelled keys, types, required fields, connector names and environment
variables. Errors name the file, line and column. With --connect, also
connect to every source and sink and check the server settings they need.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ps, err := pipelines.Load(args[0], connectors.Default, os.LookupEnv)
			if err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			out := cmd.OutOrStdout()
			if !connect {
				for _, p := range ps {
					fmt.Fprintf(out, "ok  %s (%s -> %s)\n", p.Name, p.Source.Type, p.Sink.Type)
				}
				return nil
			}
			var failed []string
			for _, p := range ps {
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				problems := checkPipeline(ctx, g, p)
				cancel()
				if len(problems) == 0 {
					fmt.Fprintf(out, "ok  %s (%s -> %s): connected\n", p.Name, p.Source.Type, p.Sink.Type)
					continue
				}
				for _, pr := range problems {
					failed = append(failed, fmt.Sprintf("%s: %s", p.Name, pr))
				}
			}
			if len(failed) > 0 {
				return &exitError{code: 1, msg: strings.Join(failed, "\n")}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&connect, "connect", false, "also connect and check server settings")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "time allowed for each pipeline's checks")
	return cmd
}

// checkPipeline builds the pipeline's connectors and runs the checks of
// those that implement connectors.Checker. It reads and writes nothing.
func checkPipeline(ctx context.Context, g *globals, p *pipelines.Pipeline) []string {
	var problems []string
	rt := connectors.Runtime{Pipeline: p.Name, DataDir: g.dataDir}
	if log, err := g.logger(os.Stderr); err == nil {
		rt.Logger = log.With("pipeline", p.Name) // checks log their warnings (e.g. Redis without persistence)
	}
	src, err := p.Source.Reg.NewSource(p.Source.Config, rt)
	if err != nil {
		problems = append(problems, fmt.Sprintf("source %s: %v", p.Source.Type, err))
	} else {
		problems = append(problems, check(ctx, "source", p.Source.Type, src)...)
		src.Close(ctx)
	}
	sink, err := p.Sink.Reg.NewSink(p.Sink.Config, rt)
	if err != nil {
		problems = append(problems, fmt.Sprintf("sink %s: %v", p.Sink.Type, err))
	} else {
		problems = append(problems, check(ctx, "sink", p.Sink.Type, sink)...)
		sink.Close(ctx)
	}
	return problems
}

func check(ctx context.Context, kind, typ string, c any) []string {
	ch, ok := c.(connectors.Checker)
	if !ok {
		return nil // nothing to connect to (generate, jsonl) or no check yet
	}
	if err := ch.Check(ctx); err != nil {
		return []string{fmt.Sprintf("%s %s: %s", kind, typ, connectors.RedactDSN(err.Error()))}
	}
	return nil
}
