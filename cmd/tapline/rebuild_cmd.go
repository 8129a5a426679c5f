package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/pipelines"
)

func newRebuildCmd(g *globals) *cobra.Command {
	var daemon, config string
	cmd := &cobra.Command{
		Use:   "rebuild PIPELINE",
		Short: "Rebuild a view by replaying its log into shadow tables, then swap them in",
		Long: `Re-materialize PIPELINE's view from the start of its log (a nats or kafka
source) into shadow tables while the current view keeps serving; once the
shadow has caught up, pause the live pipeline for a moment, promote the
shadow in one transaction, and resume the live pipeline from there. Readers
see the old view, then the new one, never a partial one.

With a daemon running the pipeline, the rebuild runs inside it (through
--http). With none, give --config: the rebuild runs here, holding the
pipeline's lock for the hand-over.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			resp, err := http.Post(fmt.Sprintf("http://%s/v1/pipelines/%s/rebuild", daemon, url.PathEscape(name)), "application/json", nil)
			if err == nil {
				defer resp.Body.Close()
				return printRebuild(resp)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) || config == "" {
				if config == "" {
					return fmt.Errorf("rebuild: no daemon answers at --http %s (%v); give --config to rebuild without one", daemon, err)
				}
				return fmt.Errorf("rebuild: %w", err)
			}
			log, err := g.logger(os.Stderr)
			if err != nil {
				return err
			}
			ps, err := pipelines.Load(config, connectors.Default, os.LookupEnv)
			if err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			for _, p := range ps {
				if p.Name != name {
					continue
				}
				st, err := pipelines.Rebuild(cmd.Context(), pipelines.RebuildOptions{
					Pipeline: p, DataDir: g.dataDir, Logger: log,
					Pause: pipelines.PauseByLock(filepath.Clean(g.dataDir), name),
				})
				if err != nil {
					return err
				}
				return json.NewEncoder(os.Stdout).Encode(st)
			}
			return &exitError{code: 1, msg: fmt.Sprintf("rebuild: no pipeline %q in %s", name, config)}
		},
	}
	cmd.Flags().StringVar(&daemon, "http", "127.0.0.1:7070", "the daemon's --http address")
	cmd.Flags().StringVar(&config, "config", "", "pipeline file or directory, to rebuild without a daemon")
	return cmd
}

// printRebuild copies the daemon's progress lines to stdout and fails on
// an error line.
func printRebuild(resp *http.Response) error {
	sc := bufio.NewScanner(resp.Body)
	var last struct {
		Error string `json:"error"`
	}
	for sc.Scan() {
		fmt.Println(sc.Text())
		last.Error = ""
		json.Unmarshal(sc.Bytes(), &last)
	}
	if last.Error != "" {
		return &exitError{code: 1, msg: "rebuild: " + last.Error}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("rebuild: daemon answered %s", resp.Status)
	}
	return sc.Err()
}
