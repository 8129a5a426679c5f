package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/connectors"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	var tables []string
	cmd := &cobra.Command{
		Use:   "snapshot PIPELINE --table SCHEMA.TABLE",
		Short: "Re-read tables of a running database pipeline while it streams (incremental snapshot)",
		Long: `Ask PIPELINE's source (postgres or mysql) to re-read the given tables in primary-key
chunks while streaming goes on, without locks: each chunk is read between two
watermarks written into the WAL (Postgres) or a signal table (MySQL), and rows the stream changed meanwhile are
left to the stream, so a snapshot row never overwrites a newer change.

The request is a file under --data-dir that the running source takes within a
second, also when the daemon runs in another process; progress survives
restarts. Use it to fill a view added later, or to repair one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(tables) == 0 {
				return &exitError{code: 2, msg: "snapshot: name a table with --table schema.name"}
			}
			if err := connectors.RequestSnapshot(g.dataDir, args[0], tables); err != nil {
				return err
			}
			fmt.Printf("requested an incremental snapshot of %v for pipeline %s; the running source takes it within a second (progress: its logs and tapline_postgres_snapshot_rows or tapline_mysql_snapshot_rows)\n", tables, args[0])
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&tables, "table", nil, "table to re-read, schema.name (repeat or comma-separate)")
	return cmd
}
