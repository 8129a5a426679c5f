package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"
)

func newWaitCmd() *cobra.Command {
	var daemon, position, origin string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait PIPELINE --position POS",
		Short: "Wait until a view has applied an origin position (read-your-writes)",
		Long: `Ask the running daemon (--http) to wait until PIPELINE's view sink has
applied the origin position POS, then print what it applied. It exits 0 when
the view has caught up and 3 on timeout.

Get the position of your own write right after it commits:

  Postgres:         SELECT pg_logical_emit_message(false, 'tapline_heartbeat', '');
                    (e.g. 0/16B3748: a heartbeat the source passes on once
                    everything committed before it is emitted)
  MariaDB / MySQL:  SELECT @@gtid_binlog_pos;          (MariaDB GTIDs)

A view reaches a Postgres position when it has applied a change or heartbeat
at or after it. A view fed by a log must read the capture's heartbeat subject
or topic (<prefix>._heartbeat) too. pg_current_wal_lsn() also works, but then
the wait lasts until the next captured change (docs/views.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if position == "" {
				return &exitError{code: 2, msg: "--position is required (Postgres: SELECT pg_logical_emit_message(false, 'tapline_heartbeat', '') after your commit)"}
			}
			q := url.Values{"position": {position}, "timeout": {timeout.String()}}
			if origin != "" {
				q.Set("origin", origin)
			}
			u := fmt.Sprintf("http://%s/v1/pipelines/%s/wait?%s", daemon, url.PathEscape(args[0]), q.Encode())
			client := &http.Client{Timeout: timeout + 10*time.Second}
			resp, err := client.Get(u)
			if err != nil {
				return fmt.Errorf("wait: is the daemon running with --http %s? %w", daemon, err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if err != nil {
				return fmt.Errorf("wait: %w", err)
			}
			switch resp.StatusCode {
			case http.StatusOK:
				os.Stdout.Write(body)
				return nil
			case http.StatusRequestTimeout:
				os.Stdout.Write(body)
				return &exitError{code: 3, msg: fmt.Sprintf("wait: %s has not applied %s after %s", args[0], position, timeout)}
			}
			var e struct{ Error string }
			if json.Unmarshal(body, &e) == nil && e.Error != "" {
				return &exitError{code: 1, msg: "wait: " + e.Error}
			}
			return fmt.Errorf("wait: daemon answered %s", resp.Status)
		},
	}
	cmd.Flags().StringVar(&daemon, "http", "127.0.0.1:7070", "the daemon's --http address")
	cmd.Flags().StringVar(&position, "position", "", "the origin position to wait for")
	cmd.Flags().StringVar(&origin, "origin", "", "the origin to compare with (connector/name, e.g. postgres/shop); any that can order the position when empty")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait")
	return cmd
}
