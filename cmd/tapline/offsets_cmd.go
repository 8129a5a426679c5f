package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/offsets"
	"github.com/tapline/tapline/pipelines"
)

func newOffsetsCmd(g *globals) *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "offsets",
		Short: "Inspect and move the committed positions of pipelines",
		Long: `Inspect and move the positions pipelines have committed in the offset store
(<data-dir>/offsets.db). 'set' and 'delete' refuse while the pipeline runs.
With --config, positions are shown and parsed in the pipeline source's own
form (e.g. a Postgres LSN); without it, in hex (0x...).

Note: a sink that stores its own position (an exactly-once view) resumes from
that position, not from the offset store; rebuild the view to replay it.`,
	}
	cmd.PersistentFlags().StringVar(&config, "config", "", "pipeline file or directory, for readable positions")

	// openExisting opens the store for reading; it does not create one in
	// a mistyped --data-dir.
	openExisting := func() (*offsets.SQLite, error) {
		path := filepath.Join(g.dataDir, "offsets.db")
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no offset store at %s (is --data-dir right?)", path)
		}
		return offsets.OpenSQLite(path)
	}
	// openOrCreate lets `set` place a position before a pipeline first runs.
	openOrCreate := func() (*offsets.SQLite, error) {
		return offsets.OpenSQLite(filepath.Join(g.dataDir, "offsets.db"))
	}
	regFor := func(name string) (*connectors.Registration, error) {
		if config == "" {
			return nil, nil
		}
		ps, err := pipelines.Load(config, connectors.Default, os.LookupEnv)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if p.Name == name {
				return p.Source.Reg, nil
			}
		}
		return nil, fmt.Errorf("no pipeline %q in %s", name, config)
	}
	format := func(reg *connectors.Registration, p connectors.Position) string {
		if reg == nil {
			return p.String()
		}
		return reg.FormatPosition(p)
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List every pipeline's committed position",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openExisting()
			if err != nil {
				return err
			}
			defer st.Close()
			entries, err := st.List(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PIPELINE\tPOSITION\tUPDATED")
			for _, e := range entries {
				reg, _ := regFor(e.Pipeline)
				fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Pipeline, format(reg, e.Position), e.Updated.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	get := &cobra.Command{
		Use:   "get PIPELINE",
		Short: "Print one pipeline's committed position",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := regFor(args[0])
			if err != nil {
				return err
			}
			st, err := openExisting()
			if err != nil {
				return err
			}
			defer st.Close()
			p, err := st.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if p == nil {
				return &exitError{code: 1, msg: fmt.Sprintf("pipeline %q has no committed position", args[0])}
			}
			fmt.Fprintln(cmd.OutOrStdout(), format(reg, p))
			return nil
		},
	}
	set := &cobra.Command{
		Use:   "set PIPELINE POSITION",
		Short: "Move a pipeline's position (the pipeline must be stopped)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := regFor(args[0])
			if err != nil {
				return err
			}
			var pos connectors.Position
			if reg != nil {
				pos, err = reg.ParsePosition(args[1])
			} else {
				pos, err = (&connectors.Registration{Name: "this pipeline's source"}).ParsePosition(args[1])
			}
			if err != nil {
				return fmt.Errorf("%w (give --config to use the source's own form)", err)
			}
			return withLock(cmd.Context(), g, args[0], openOrCreate, func(ctx context.Context, st offsets.Store) error {
				if err := st.Commit(ctx, args[0], pos); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: position set to %s\n", args[0], format(reg, pos))
				return nil
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete PIPELINE",
		Short: "Forget a pipeline's position (it starts afresh; the pipeline must be stopped)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withLock(cmd.Context(), g, args[0], openExisting, func(ctx context.Context, st offsets.Store) error {
				if err := st.Delete(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: position deleted\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(list, get, set, del)
	return cmd
}

// withLock runs fn holding the pipeline's lock, so that it refuses while
// the pipeline runs.
func withLock(ctx context.Context, g *globals, name string, open func() (*offsets.SQLite, error), fn func(context.Context, offsets.Store) error) error {
	lock, err := offsets.Lock(g.dataDir, name)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	st, err := open()
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(ctx, st)
}
