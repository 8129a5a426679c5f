// Package mysql is the MySQL/MariaDB source: it tails a server's binlog
// through github.com/go-mysql-org/go-mysql's replication package and emits
// one event per committed row change, with a lock-free consistent snapshot
// (MariaDB) to start from, GTID positions exact to the row, and the schema
// of every row taken from the TABLE_MAP event before it
// (binlog_row_metadata=FULL; with MINIMAL, names, enum values and keys come
// from a schema history built by parsing the binlog's DDL), so that changes
// before and after an ALTER TABLE carry their own columns. See README.md.
package mysql

import (
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/tapline/tapline/connectors"
)

// Config is the MySQL source's configuration.
type Config struct {
	DSN           connectors.Secret `yaml:"dsn" required:"true" doc:"connection string: user:pass@tcp(host:port)/db or mysql://user:pass@host:port/db; the user needs REPLICATION SLAVE, REPLICATION CLIENT (MariaDB: BINLOG MONITOR) and SELECT on the tables"`
	Tables        []string          `yaml:"tables" required:"true" doc:"tables to capture, as db.table or db.* (every table of the database, also ones created later)"`
	ServerID      uint32            `yaml:"server_id" doc:"the server_id this reader registers with as a replica; it must differ from every other replica's and the server's own; default: derived from the pipeline name"`
	Snapshot      string            `yaml:"snapshot" doc:"initial: read every table at a consistent binlog position, then stream from it; never: stream only; initial_only: read the tables and finish"`
	StartPosition string            `yaml:"start_position" doc:"with no stored position and snapshot never: the position to stream after (a MariaDB GTID position such as 0-1-100, a MySQL GTID set, or SERVER/FILE:OFFSET); default: the server's current position"`
	PositionMode  string            `yaml:"position_mode" doc:"auto: GTIDs when the server has them (MariaDB always, MySQL with gtid_mode=ON), else binlog file and offset; gtid; file"`
	Heartbeat     time.Duration     `yaml:"heartbeat" doc:"the server sends a heartbeat when its binlog is idle this long; a connection silent for 3 heartbeats while tapline waits is taken as dead and reconnected; 0 turns heartbeats off"`
	ReconnectFor  time.Duration     `yaml:"reconnect_for" doc:"after the connection drops, how long to keep reconnecting (each time checking that the server is the one the position belongs to) before failing with a retryable error"`
	ZeroDates     string            `yaml:"zero_dates" doc:"what becomes of zero dates such as 0000-00-00: keep (as text in the ISO layout, lossless) or null"`
	RowImage      string            `yaml:"row_image" doc:"when binlog_row_image is not FULL: fail, or warn and mark the columns an event lacks as unchanged"`
	SnapshotChunk int               `yaml:"snapshot_chunk" doc:"rows per snapshot query, read in primary-key order"`
	LagWarn       time.Duration     `yaml:"lag_warn" doc:"log a warning when the replication lag (metric tapline_mysql_replication_lag_seconds) exceeds this; 0 turns the warning off"`
	// IncrementalChunk and SignalTable serve incremental snapshots
	// (`tapline snapshot PIPELINE --table db.table`).
	IncrementalChunk int    `yaml:"incremental_chunk" doc:"rows per chunk of an incremental snapshot (tapline snapshot), read in primary-key order between two watermarks"`
	SignalTable      string `yaml:"signal_table" doc:"the table (db.table, or a name in the database of the first tables entry) the source writes incremental snapshot watermarks into; created when first needed; never emitted; default: tapline_signal in the database of the first tables entry"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Snapshot:      "initial",
		PositionMode:  "auto",
		Heartbeat:     10 * time.Second,
		ReconnectFor:  time.Minute,
		ZeroDates:     "keep",
		RowImage:      "fail",
		SnapshotChunk: 10000,
		LagWarn:       5 * time.Minute,

		IncrementalChunk: 1024,
	}
}

// Validate checks the config without connecting.
func (c Config) Validate() error {
	var errs []error
	switch c.Snapshot {
	case "initial", "never", "initial_only":
	default:
		errs = append(errs, fmt.Errorf("snapshot: %q: want initial, never or initial_only", c.Snapshot))
	}
	switch c.PositionMode {
	case "auto", "gtid", "file":
	default:
		errs = append(errs, fmt.Errorf("position_mode: %q: want auto, gtid or file", c.PositionMode))
	}
	switch c.ZeroDates {
	case "keep", "null":
	default:
		errs = append(errs, fmt.Errorf("zero_dates: %q: want keep or null", c.ZeroDates))
	}
	switch c.RowImage {
	case "fail", "warn":
	default:
		errs = append(errs, fmt.Errorf("row_image: %q: want fail or warn", c.RowImage))
	}
	if len(c.Tables) == 0 {
		errs = append(errs, errors.New("tables: give at least one table, as db.table or db.*"))
	}
	for _, t := range c.Tables {
		db, name, ok := strings.Cut(t, ".")
		if !ok || db == "" || name == "" {
			errs = append(errs, fmt.Errorf("tables: %q: give the database too, e.g. shop.%s (or shop.* for all its tables)", t, t))
		}
	}
	if c.StartPosition != "" && c.Snapshot != "never" {
		errs = append(errs, errors.New("start_position: only with snapshot: never (a snapshot decides its own start)"))
	}
	if c.StartPosition != "" {
		if _, err := parsePosition(c.StartPosition); err != nil {
			errs = append(errs, fmt.Errorf("start_position: %w", err))
		}
	}
	if c.IncrementalChunk <= 0 {
		errs = append(errs, errors.New("incremental_chunk: must be positive"))
	}
	if c.SignalTable != "" {
		if db, name, ok := strings.Cut(c.SignalTable, "."); ok && (db == "" || name == "" || strings.ContainsAny(name, ".*")) || strings.Contains(c.SignalTable, "*") {
			errs = append(errs, fmt.Errorf("signal_table: %q: want db.table or a table name", c.SignalTable))
		}
	}
	if c.SnapshotChunk <= 0 {
		errs = append(errs, errors.New("snapshot_chunk: must be positive"))
	}
	if c.Heartbeat < 0 || (c.Heartbeat > 0 && c.Heartbeat < 100*time.Millisecond) {
		errs = append(errs, errors.New("heartbeat: 0 (off) or at least 100ms"))
	}
	if c.ReconnectFor < 0 {
		errs = append(errs, errors.New("reconnect_for: must not be negative"))
	}
	if c.DSN != "" {
		if _, err := parseDSN(c.DSN.Reveal()); err != nil {
			errs = append(errs, fmt.Errorf("dsn: %w", err))
		}
	}
	return errors.Join(errs...)
}

// signalTable is the table incremental snapshot watermarks go into.
func (c Config) signalTable() connectors.TableID {
	name := c.SignalTable
	if name == "" {
		name = "tapline_signal"
	}
	if db, t, ok := strings.Cut(name, "."); ok {
		return connectors.TableID{Schema: db, Name: t}
	}
	db := ""
	if len(c.Tables) > 0 {
		db, _, _ = strings.Cut(c.Tables[0], ".")
	}
	return connectors.TableID{Schema: db, Name: name}
}

// defaultServerID derives a replica server_id from the pipeline name, in a
// range real servers rarely use.
func defaultServerID(pipeline string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(pipeline))
	return 0x40000000 | h.Sum32()&0x3FFFFFFF
}

// dsn is a parsed connection string.
type dsn struct {
	cfg  *gomysql.Config // for database/sql connections
	host string
	port uint16
	tls  *tls.Config // for the replication connection; nil for none
}

// parseDSN accepts the go-sql-driver form (user:pass@tcp(host:port)/db?k=v)
// and a mysql:// (or mariadb://) URL. Errors never contain the password.
func parseDSN(s string) (*dsn, error) {
	var cfg *gomysql.Config
	if strings.HasPrefix(s, "mysql://") || strings.HasPrefix(s, "mariadb://") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, errors.New("not a valid URL: " + connectors.RedactDSN(err.Error()))
		}
		cfg = gomysql.NewConfig()
		if u.User != nil {
			cfg.User = u.User.Username()
			cfg.Passwd, _ = u.User.Password()
		}
		cfg.Net = "tcp"
		cfg.Addr = u.Host
		if u.Port() == "" {
			cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
		}
		cfg.DBName = strings.TrimPrefix(u.Path, "/")
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		for k, vs := range u.Query() {
			if len(vs) == 0 {
				continue
			}
			if k == "tls" {
				cfg.TLSConfig = vs[0]
				continue
			}
			cfg.Params[k] = vs[0]
		}
	} else {
		var err error
		cfg, err = gomysql.ParseDSN(s)
		if err != nil {
			return nil, errors.New(connectors.RedactDSN(err.Error()) + " (want user:pass@tcp(host:port)/db or mysql://user:pass@host:port/db)")
		}
	}
	if cfg.Net != "tcp" {
		return nil, fmt.Errorf("network %q: binlog replication needs tcp(host:port)", cfg.Net)
	}
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		host, portStr = cfg.Addr, "3306"
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q is not a number", portStr)
	}
	// Values arrive as text, exactly as the server prints them, in UTF-8
	// and with timestamps in UTC; arguments are interpolated so that every
	// query uses the text protocol.
	cfg.ParseTime = false
	cfg.InterpolateParams = true
	cfg.Loc = time.UTC
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	cfg.Params["character_set_results"] = "utf8mb4"
	d := &dsn{cfg: cfg, host: host, port: uint16(port), tls: cfg.TLS}
	if d.tls == nil {
		switch cfg.TLSConfig {
		case "", "false":
		case "true":
			d.tls = &tls.Config{ServerName: host}
		case "skip-verify", "preferred":
			d.tls = &tls.Config{InsecureSkipVerify: true}
		default:
			return nil, fmt.Errorf("tls=%s: use true, skip-verify, preferred or false (named TLS configs are not supported)", cfg.TLSConfig)
		}
	}
	return d, nil
}
