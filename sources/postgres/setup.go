package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tapline/tapline/connectors"
)

// SlotMissingError says that a stored position exists but its replication
// slot does not (it was dropped, or lost in a failover): the changes since
// that position are gone, and only a new snapshot can rebuild the data.
type SlotMissingError struct {
	Slot     string
	Position string
}

func (e *SlotMissingError) Error() string {
	return fmt.Sprintf("postgres: replication slot %q does not exist, but the pipeline has a stored position %s: "+
		"the changes since then cannot be read any more (was the slot dropped, or lost in a failover?). "+
		"To start again from a new snapshot, delete the position (tapline offsets delete PIPELINE) and rebuild the views it feeds", e.Slot, e.Position)
}

// checkServer verifies the settings logical replication needs.
func checkServer(ctx context.Context, pool *pgxpool.Pool) error {
	var level string
	if err := pool.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return fmt.Errorf("postgres: SHOW wal_level: %w", err)
	}
	if level != "logical" {
		return fmt.Errorf("postgres: wal_level is %q; logical replication needs wal_level=logical (ALTER SYSTEM SET wal_level = logical; then restart the server)", level)
	}
	var canReplicate bool
	if err := pool.QueryRow(ctx, "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&canReplicate); err != nil {
		return fmt.Errorf("postgres: read the role's privileges: %w", err)
	}
	if !canReplicate {
		return errors.New("postgres: the user has no REPLICATION privilege (ALTER ROLE <user> REPLICATION)")
	}
	return nil
}

// resolveTables expands schema.* and checks that every table exists and can
// be replicated (it has a primary key or a replica identity).
func resolveTables(ctx context.Context, pool *pgxpool.Pool, patterns []string) ([]connectors.TableID, error) {
	var out []connectors.TableID
	seen := map[connectors.TableID]bool{}
	for _, p := range patterns {
		schema, name, _ := strings.Cut(p, ".")
		q := `SELECT n.nspname, c.relname, c.relreplident,
		             EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
		      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		      WHERE c.relkind IN ('r', 'p') AND n.nspname = $1 AND ($2 = '*' OR c.relname = $2)
		        AND NOT c.relispartition
		      ORDER BY 1, 2`
		rows, err := pool.Query(ctx, q, schema, name)
		if err != nil {
			return nil, fmt.Errorf("postgres: look up tables %q: %w", p, err)
		}
		n := 0
		for rows.Next() {
			var t connectors.TableID
			var ident string
			var hasPK bool
			if err := rows.Scan(&t.Schema, &t.Name, &ident, &hasPK); err != nil {
				rows.Close()
				return nil, err
			}
			n++
			if ident == "n" || (ident == "d" && !hasPK) {
				rows.Close()
				return nil, fmt.Errorf("postgres: table %s has no primary key and no replica identity, so its updates and deletes cannot be captured: "+
					"add a primary key, or ALTER TABLE %s REPLICA IDENTITY FULL", t, t)
			}
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		switch {
		case n == 0 && name == "*":
			return nil, fmt.Errorf("postgres: tables: %q matches no table (does schema %q exist in this database?)", p, schema)
		case n == 0:
			return nil, fmt.Errorf("postgres: tables: table %s does not exist in this database (dropped, or misspelt?); "+
				"remove it from the pipeline's tables, or create it, then restart", p)
		}
	}
	return out, nil
}

func quoteTable(t connectors.TableID) string {
	return pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// ensurePublication creates the publication for tables, or adds the tables
// it lacks.
func ensurePublication(ctx context.Context, pool *pgxpool.Pool, name string, tables []connectors.TableID, create bool) error {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: look up publication %q: %w", name, err)
	}
	if !exists {
		if !create {
			return fmt.Errorf("postgres: publication %q does not exist (create it, or set create_publication: true)", name)
		}
		list := make([]string, len(tables))
		for i, t := range tables {
			list[i] = quoteTable(t)
		}
		sql := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish_via_partition_root = true)",
			pgx.Identifier{name}.Sanitize(), strings.Join(list, ", "))
		if _, err := pool.Exec(ctx, sql); err != nil {
			return fmt.Errorf("postgres: create publication %q: %w", name, err)
		}
		return nil
	}
	have := map[connectors.TableID]bool{}
	rows, err := pool.Query(ctx, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", name)
	if err != nil {
		return fmt.Errorf("postgres: read publication %q: %w", name, err)
	}
	for rows.Next() {
		var t connectors.TableID
		if err := rows.Scan(&t.Schema, &t.Name); err != nil {
			rows.Close()
			return err
		}
		have[t] = true
	}
	rows.Close()
	for _, t := range tables {
		if have[t] {
			continue
		}
		if !create {
			return fmt.Errorf("postgres: publication %q lacks table %s (ALTER PUBLICATION %s ADD TABLE %s, or set create_publication: true)", name, t, name, t)
		}
		if _, err := pool.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", pgx.Identifier{name}.Sanitize(), quoteTable(t))); err != nil {
			return fmt.Errorf("postgres: add table %s to publication %q: %w", t, name, err)
		}
	}
	return nil
}

// slotState is what pg_replication_slots says of a slot.
type slotState struct {
	exists    bool
	active    bool
	activePID int32
	plugin    string
	confirmed string
	wrongKind bool
	wrongDB   bool
	currentDB string
	slotDB    string
}

func readSlot(ctx context.Context, pool *pgxpool.Pool, slot string) (slotState, error) {
	var st slotState
	err := pool.QueryRow(ctx, `SELECT true, active, coalesce(active_pid, 0), coalesce(plugin, ''), coalesce(confirmed_flush_lsn::text, ''),
	       slot_type <> 'logical', coalesce(database, ''), current_database()
	  FROM pg_replication_slots WHERE slot_name = $1`, slot).
		Scan(&st.exists, &st.active, &st.activePID, &st.plugin, &st.confirmed, &st.wrongKind, &st.slotDB, &st.currentDB)
	if errors.Is(err, pgx.ErrNoRows) {
		return slotState{}, nil
	}
	if err != nil {
		return st, fmt.Errorf("postgres: look up replication slot %q: %w", slot, err)
	}
	st.wrongDB = st.slotDB != st.currentDB
	return st, nil
}

// outputSettings make the server print values the way internal/pgconv
// decodes them; the walsender and the snapshot's connection both use them,
// so that a snapshot row and a streamed row of the same value agree.
var outputSettings = map[string]string{
	"TimeZone":           "UTC",
	"IntervalStyle":      "iso_8601",
	"DateStyle":          "ISO, YMD",
	"extra_float_digits": "3",
}

// replicationConfig derives the replication connection's config: a
// walsender for logical replication whose output functions print
// timestamps in UTC and intervals in ISO 8601.
func replicationConfig(dsn, workMem string) (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: dsn: %s", connectors.RedactDSN(err.Error()))
	}
	cfg.RuntimeParams["replication"] = "database"
	for k, v := range outputSettings {
		cfg.RuntimeParams[k] = v
	}
	if workMem != "" {
		cfg.RuntimeParams["logical_decoding_work_mem"] = workMem
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "tapline"
	}
	return cfg, nil
}
