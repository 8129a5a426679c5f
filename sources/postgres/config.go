// Package postgres is the Postgres source: it tails a database's logical
// replication stream (pgoutput, through github.com/jackc/pglogrepl) and
// emits one event per committed row change.
//
// Work in progress: streaming of committed changes, exact restarts, slot and
// publication management, heartbeats and acknowledgement are here; the
// initial snapshot, pgoutput v2 streaming of in-progress transactions,
// incremental snapshots and the full type mapping are still to come (see
// README.md).
package postgres

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/tapline/tapline/connectors"
)

// Config is the Postgres source's configuration.
type Config struct {
	DSN               connectors.Secret `yaml:"dsn" required:"true" doc:"connection string (URL or key=value); the user needs REPLICATION and SELECT on the tables"`
	Tables            []string          `yaml:"tables" required:"true" doc:"tables to capture, as schema.table or schema.* (every table of the schema)"`
	Slot              string            `yaml:"slot" doc:"replication slot name; default tapline_<pipeline>"`
	Publication       string            `yaml:"publication" doc:"publication name; default tapline_<pipeline>"`
	Snapshot          string            `yaml:"snapshot" doc:"initial: read every table at the slot's consistent point, then stream; never: stream only; initial_only: read the tables and finish"`
	Heartbeat         time.Duration     `yaml:"heartbeat" doc:"interval of heartbeat messages written through the slot so that it advances while the captured tables are idle; 0 turns them off"`
	HeartbeatEvents   bool              `yaml:"heartbeat_events" doc:"emit each heartbeat message seen in the WAL (tapline's own, or a caller's pg_logical_emit_message(false, 'tapline_heartbeat', '')) as a heartbeat event (op h) that log and view sinks carry, so read-your-writes waits end on an idle database; false only advances the position"`
	StatusInterval    time.Duration     `yaml:"status_interval" doc:"interval of standby status updates (the acknowledged position) to the server"`
	SlotLagWarn       int64             `yaml:"slot_lag_warn" doc:"log a warning when the slot holds back more than this many bytes of WAL (metric tapline_postgres_slot_lag_bytes); 0 turns the warning off"`
	DecodingWorkMem   string            `yaml:"decoding_work_mem" doc:"the walsender's logical_decoding_work_mem (e.g. 64MB); a transaction larger than this is streamed to tapline before it commits and kept on disk until it does; empty keeps the server's setting"`
	IncrementalChunk  int               `yaml:"incremental_chunk" doc:"rows per chunk of an incremental snapshot (tapline snapshot PIPELINE --table T), read between two watermarks while streaming goes on"`
	DropSlotOnClose   bool              `yaml:"drop_slot_on_close" doc:"drop the replication slot when the source closes (for throwaway pipelines; a dropped slot loses its position)"`
	CreatePublication bool              `yaml:"create_publication" doc:"create the publication, and add missing tables to it, if needed"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Snapshot:          "initial",
		Heartbeat:         10 * time.Second,
		HeartbeatEvents:   true,
		IncrementalChunk:  1024,
		StatusInterval:    10 * time.Second,
		CreatePublication: true,
		SlotLagWarn:       1 << 30,
	}
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_$]{0,62}$`)

// Validate checks the config without connecting.
func (c Config) Validate() error {
	var errs []error
	if c.IncrementalChunk <= 0 {
		errs = append(errs, fmt.Errorf("incremental_chunk: %d: want a positive number of rows", c.IncrementalChunk))
	}
	switch c.Snapshot {
	case "initial", "never", "initial_only":
	default:
		errs = append(errs, fmt.Errorf("snapshot: %q: want initial, never or initial_only", c.Snapshot))
	}
	for _, t := range c.Tables {
		if !strings.Contains(t, ".") {
			errs = append(errs, fmt.Errorf("tables: %q: give the schema too, e.g. public.%s", t, t))
		}
	}
	for key, v := range map[string]string{"slot": c.Slot, "publication": c.Publication} {
		if v != "" && !identRE.MatchString(v) {
			errs = append(errs, fmt.Errorf("%s: %q must be a lower-case identifier (letters, digits, _)", key, v))
		}
	}
	if c.StatusInterval <= 0 {
		errs = append(errs, errors.New("status_interval: must be positive"))
	}
	return errors.Join(errs...)
}

// defaultName turns a pipeline name into a slot or publication name.
func defaultName(pipeline string) string {
	var b strings.Builder
	b.WriteString("tapline_")
	for _, r := range strings.ToLower(pipeline) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}
