package viewsql

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// The apply modes.
const (
	// ModeUpsert keeps one row per primary key: the latest state.
	ModeUpsert = "upsert"
	// ModeHistory appends every event as a row.
	ModeHistory = "history"
)

// Config is the part of a SQL view sink's configuration that all of them
// share. Sinks embed it inline, so its keys sit next to their own.
type Config struct {
	Mode         string                 `yaml:"mode" doc:"upsert: one row per primary key, the latest state; history: append every event as a row to the history table"`
	TableName    string                 `yaml:"table_name" doc:"name of each source table's target table; {table} is the source table's name, {schema} its schema (or database), e.g. {schema}_{table}"`
	HistoryTable string                 `yaml:"history_table" doc:"name of the history table in history mode; {table} and {schema} as in table_name"`
	Tables       map[string]TableConfig `yaml:"tables" doc:"per source table (schema.table or table): name, columns, rename, mode; tables not listed are materialized whole"`
	DropColumns  bool                   `yaml:"drop_columns" doc:"drop a target column when the source drops it; by default it is kept, and NULL in rows written after"`
}

// TableConfig adjusts how one source table is materialized. Columns and
// Rename are a projection: the target table holds the listed columns (all
// when empty), named as Rename says.
type TableConfig struct {
	Name    string            `yaml:"name" doc:"the target table's name (overrides table_name and history_table)"`
	Columns []string          `yaml:"columns" doc:"the source columns to keep, by name; empty keeps all. In upsert mode the primary key columns must be kept"`
	Rename  map[string]string `yaml:"rename" doc:"source column → target column name"`
	Mode    string            `yaml:"mode" doc:"upsert or history, for this table only"`
}

// DefaultConfig returns the shared defaults: upsert mode, target tables
// named like the source table, history tables named {table}_history, and
// dropped columns kept.
func DefaultConfig() Config {
	return Config{Mode: ModeUpsert, TableName: "{table}", HistoryTable: "{table}_history"}
}

// Validate checks the modes, name templates and projections.
func (c Config) Validate() error {
	var errs []error
	if err := checkMode(c.Mode); err != nil {
		errs = append(errs, fmt.Errorf("mode: %w", err))
	}
	if err := checkTemplate(c.TableName); err != nil {
		errs = append(errs, fmt.Errorf("table_name: %w", err))
	}
	if err := checkTemplate(c.HistoryTable); err != nil {
		errs = append(errs, fmt.Errorf("history_table: %w", err))
	}
	names := make([]string, 0, len(c.Tables))
	for n := range c.Tables {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tc := c.Tables[n]
		if n == "" {
			errs = append(errs, errors.New("tables: a table name is empty"))
		}
		if tc.Mode != "" {
			if err := checkMode(tc.Mode); err != nil {
				errs = append(errs, fmt.Errorf("tables.%s.mode: %w", n, err))
			}
		}
		seen := map[string]bool{}
		for _, col := range tc.Columns {
			if col == "" {
				errs = append(errs, fmt.Errorf("tables.%s.columns: a column name is empty", n))
			}
			if seen[col] {
				errs = append(errs, fmt.Errorf("tables.%s.columns: %q is listed twice", n, col))
			}
			seen[col] = true
		}
		targets := map[string]string{}
		for from, to := range tc.Rename {
			if to == "" {
				errs = append(errs, fmt.Errorf("tables.%s.rename.%s: the new name is empty", n, from))
			}
			if other, dup := targets[to]; dup {
				errs = append(errs, fmt.Errorf("tables.%s.rename: %q and %q are both renamed to %q", n, other, from, to))
			}
			targets[to] = from
		}
	}
	return errors.Join(errs...)
}

func checkMode(m string) error {
	switch m {
	case ModeUpsert, ModeHistory:
		return nil
	}
	return fmt.Errorf("%q is not a mode (want %s or %s)", m, ModeUpsert, ModeHistory)
}

func checkTemplate(t string) error {
	if t == "" {
		return errors.New("empty; use {table}, or a template such as {schema}_{table}")
	}
	rest := strings.NewReplacer("{table}", "", "{schema}", "").Replace(t)
	if strings.ContainsAny(rest, "{}") {
		return fmt.Errorf("%q: only {table} and {schema} can be used", t)
	}
	if !strings.Contains(t, "{table}") {
		return fmt.Errorf("%q has no {table}: every source table would share one target", t)
	}
	return nil
}

// expand fills a name template for a table. With no schema, a "{schema}"
// followed by one separator character ("_", ".", "-") disappears with it.
func expand(tmpl string, t connectors.TableID) string {
	if t.Schema == "" {
		for _, sep := range []string{"__", "_", ".", "-"} {
			tmpl = strings.ReplaceAll(tmpl, "{schema}"+sep, "")
		}
	}
	return strings.NewReplacer("{table}", t.Name, "{schema}", t.Schema).Replace(tmpl)
}

// tableConfig returns the per-table config for t: by "schema.table" first,
// then by "table".
func (c *Config) tableConfig(t connectors.TableID) (TableConfig, string) {
	if t.Schema != "" {
		if tc, ok := c.Tables[t.String()]; ok {
			return tc, t.String()
		}
	}
	if tc, ok := c.Tables[t.Name]; ok {
		return tc, t.Name
	}
	return TableConfig{}, ""
}

// target returns the live target table name of t and whether it is kept in
// history mode.
func (c *Config) target(t connectors.TableID) (name string, history bool) {
	tc, _ := c.tableConfig(t)
	mode := c.Mode
	if tc.Mode != "" {
		mode = tc.Mode
	}
	history = mode == ModeHistory
	switch {
	case tc.Name != "":
		return tc.Name, history
	case history:
		return expand(c.HistoryTable, t), true
	}
	return expand(c.TableName, t), false
}
