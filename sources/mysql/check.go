package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// serverInfo is what the source needs to know about the server.
type serverInfo struct {
	flavor   string
	version  string
	serverID uint32
	identity string // MySQL: @@server_uuid; MariaDB: "server_id=N" (file positions are tied to it)
	gtidMode bool   // MySQL gtid_mode=ON
	vars     map[string]string
}

// checkServer reads the server's version and binlog settings and reports
// the ones that do not allow capture.
func (s *Source) checkServer(ctx context.Context) (serverInfo, error) {
	var info serverInfo
	if err := s.db.QueryRowContext(ctx, "SELECT VERSION(), @@server_id").Scan(&info.version, &info.serverID); err != nil {
		return info, classify(fmt.Errorf("mysql: read the server version: %w", err), "", 0, "")
	}
	info.flavor = flavorMySQL
	if strings.Contains(strings.ToLower(info.version), "mariadb") {
		info.flavor = flavorMariaDB
	}
	info.vars = map[string]string{}
	rows, err := s.db.QueryContext(ctx, `SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', 'binlog_row_image',
		'binlog_row_metadata', 'gtid_mode', 'server_uuid', 'binlog_row_value_options', 'gtid_strict_mode')`)
	if err != nil {
		return info, fmt.Errorf("mysql: read the binlog settings: %w", err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return info, err
		}
		info.vars[strings.ToLower(k)] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return info, err
	}
	return info, s.checkSettings(&info)
}

// checkSettings reports the server settings that do not allow capture,
// and fills in what follows from them.
func (s *Source) checkSettings(info *serverInfo) error {
	v := func(k string) string { return strings.ToUpper(info.vars[k]) }
	if v("log_bin") != "ON" && v("log_bin") != "1" {
		return &SettingError{Setting: "log_bin", Value: info.vars["log_bin"], Want: "ON (binary logging)",
			Fix: "start the server with log_bin (and server_id) set; it cannot be turned on while the server runs"}
	}
	if v("binlog_format") != "ROW" {
		return &SettingError{Setting: "binlog_format", Value: info.vars["binlog_format"], Want: "ROW",
			Fix: "SET GLOBAL binlog_format = 'ROW', and set it in the config file; sessions already open keep their format until they reconnect"}
	}
	if _, ok := info.vars["binlog_row_metadata"]; !ok {
		return &SettingError{Setting: "version", Value: info.version, Want: "MariaDB 10.5+ or MySQL 8.0.1+ (binlog_row_metadata)",
			Fix: "upgrade the server: tapline takes column names from the binlog's row metadata"}
	}
	if v("binlog_row_metadata") != "FULL" && v("binlog_row_metadata") != "MINIMAL" {
		return &SettingError{Setting: "binlog_row_metadata", Value: info.vars["binlog_row_metadata"], Want: "FULL (column names, enum values and keys in the binlog), or MINIMAL (signedness and charsets; names from a schema history)",
			Fix: "SET GLOBAL binlog_row_metadata = 'FULL', and set it in the config file"}
	}
	if v("binlog_row_image") != "FULL" {
		err := &SettingError{Setting: "binlog_row_image", Value: info.vars["binlog_row_image"], Want: "FULL (every column in every row event)",
			Fix: "SET GLOBAL binlog_row_image = 'FULL', and set it in the config file; or set row_image: warn to accept events that lack columns (they are marked unchanged)"}
		if s.cfg.RowImage == "fail" {
			return err
		}
		s.log.Warn("binlog_row_image is not FULL: columns a row event leaves out are marked unchanged", "binlog_row_image", info.vars["binlog_row_image"])
	}
	if strings.Contains(v("binlog_row_value_options"), "PARTIAL_JSON") {
		return &SettingError{Setting: "binlog_row_value_options", Value: info.vars["binlog_row_value_options"], Want: "'' (full JSON values)",
			Fix: "SET GLOBAL binlog_row_value_options = ''"}
	}
	info.gtidMode = v("gtid_mode") == "ON"
	if info.flavor == flavorMySQL {
		info.identity = info.vars["server_uuid"]
	} else {
		info.identity = "server_id=" + strconv.FormatUint(uint64(info.serverID), 10)
	}
	if info.serverID == s.serverID {
		return &ServerIDClashError{ServerID: s.serverID, Detail: "it is the server's own server_id"}
	}
	return nil
}

var grantRE = regexp.MustCompile(`(?i)^GRANT (.+) ON \*\.\* TO `)

// checkPrivileges reads the user's global grants and names the
// replication privileges missing. Grants through roles cannot be read this
// way; then the server's own error on connect says it.
func (s *Source) checkPrivileges(ctx context.Context) error {
	var user string
	if err := s.db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&user); err != nil {
		return fmt.Errorf("mysql: CURRENT_USER(): %w", err)
	}
	if u, h, ok := strings.Cut(user, "@"); ok {
		user = "'" + u + "'@'" + h + "'"
	}
	rows, err := s.db.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return fmt.Errorf("mysql: SHOW GRANTS: %w", err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return err
		}
		m := grantRE.FindStringSubmatch(g)
		if m == nil {
			if !strings.Contains(strings.ToUpper(g), " ON ") {
				return nil // a role: its privileges are not listed here
			}
			continue
		}
		for _, p := range strings.Split(m[1], ",") {
			have[strings.ToUpper(strings.TrimSpace(p))] = true
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if have["ALL PRIVILEGES"] {
		return nil
	}
	var missing []string
	if !have["REPLICATION SLAVE"] {
		missing = append(missing, "REPLICATION SLAVE")
	}
	if !have["REPLICATION CLIENT"] && !have["BINLOG MONITOR"] && !have["SUPER"] {
		if s.flavor == flavorMariaDB {
			missing = append(missing, "BINLOG MONITOR")
		} else {
			missing = append(missing, "REPLICATION CLIENT")
		}
	}
	if len(missing) > 0 {
		return &PrivilegeError{User: user, Missing: missing}
	}
	return nil
}

// resolveTables lists the configured tables that exist; every entry must
// match at least one.
func (s *Source) resolveTables(ctx context.Context) ([]connectors.TableID, error) {
	var out []connectors.TableID
	for _, t := range s.cfg.Tables {
		db, name, _ := strings.Cut(t, ".")
		q := "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'"
		args := []any{db}
		if name != "*" {
			q += " AND TABLE_NAME = ?"
			args = append(args, name)
		}
		rows, err := s.db.QueryContext(ctx, q+" ORDER BY TABLE_NAME", args...)
		if err != nil {
			return nil, fmt.Errorf("mysql: list tables: %w", err)
		}
		n := 0
		for rows.Next() {
			var tn string
			if err := rows.Scan(&tn); err != nil {
				rows.Close()
				return nil, err
			}
			if s.filter.isSignal(db, tn) {
				continue // watermarks, not data
			}
			out = append(out, connectors.TableID{Schema: db, Name: tn})
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("mysql: tables: %q matches no table (does it exist, and may the user see it? it needs SELECT on it)", t)
		}
	}
	return out, nil
}

// currentPosition is the server's position now, as a boundary.
func (s *Source) currentPosition(ctx context.Context) (streamPos, error) {
	switch s.kind {
	case kindMaria:
		var pos string
		if err := s.db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos); err != nil {
			return streamPos{}, fmt.Errorf("mysql: read @@gtid_binlog_pos: %w", err)
		}
		state, err := parseGTIDPos(pos)
		if err != nil {
			return streamPos{}, err
		}
		return mariaBoundary(state), nil
	case kindMySQL:
		var set string
		if err := s.db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_executed").Scan(&set); err != nil {
			return streamPos{}, fmt.Errorf("mysql: read @@gtid_executed: %w", err)
		}
		return mysqlBoundary(set)
	}
	file, off, err := s.masterStatus(ctx)
	if err != nil {
		return streamPos{}, err
	}
	return fileBoundary(s.server.identity, file, off), nil
}

// masterStatus returns the binlog file and offset being written.
func (s *Source) masterStatus(ctx context.Context) (string, uint32, error) {
	var lastErr error
	for _, q := range []string{"SHOW BINARY LOG STATUS", "SHOW MASTER STATUS"} {
		rows, err := s.db.QueryContext(ctx, q)
		if err != nil {
			lastErr = err
			continue
		}
		vals, err := firstRow(rows)
		if err != nil || len(vals) < 2 {
			return "", 0, fmt.Errorf("mysql: %s returned nothing: is log_bin on? %v", q, err)
		}
		off, err := strconv.ParseUint(vals[1], 10, 32)
		if err != nil {
			return "", 0, fmt.Errorf("mysql: %s: position %q", q, vals[1])
		}
		return vals[0], uint32(off), nil
	}
	return "", 0, fmt.Errorf("mysql: read the binlog position: %w", lastErr)
}

// firstRow reads the first row of any shape as strings, and closes rows.
func firstRow(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, errors.New("no row")
	}
	raw := make([]sql.RawBytes, len(cols))
	dest := make([]any, len(cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	if err := rows.Scan(dest...); err != nil {
		return nil, err
	}
	out := make([]string, len(raw))
	for i, r := range raw {
		out[i] = string(r)
	}
	return out, nil
}

// checkPosition makes sure the server can continue after p: it is the
// server (or replication topology) p belongs to, it has written p, and it
// still has the binlog after p. It runs before every (re)connect.
func (s *Source) checkPosition(ctx context.Context, p *streamPos) error {
	switch p.kind {
	case kindMaria:
		if s.flavor != flavorMariaDB {
			return &ServerMismatchError{Stored: p.String(), Found: s.server.version, Why: "the position is a MariaDB GTID position and the server is MySQL"}
		}
		var pos string
		if err := s.db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos); err != nil {
			return classify(fmt.Errorf("mysql: read @@gtid_binlog_pos: %w", err), "", 0, "")
		}
		server, err := parseGTIDPos(pos)
		if err != nil {
			return err
		}
		need := p.before
		if p.cur != nil {
			need = need.with(*p.cur)
		}
		for _, g := range need {
			sg, ok := server.get(g.Domain)
			if !ok {
				return &ServerMismatchError{Stored: p.String(), Found: "gtid_binlog_pos " + quoteEmpty(server.String()),
					Why: fmt.Sprintf("the server has never written GTID domain %d", g.Domain)}
			}
			if g.Seq > sg.Seq {
				return &ServerBehindError{Stored: p.String(), Found: "gtid_binlog_pos " + server.String()}
			}
		}
		oldest, err := s.oldestGTIDList(ctx)
		if err != nil {
			s.log.Debug("cannot read the oldest binlog's GTID list; the server will refuse a purged position itself", "error", err)
			return nil
		}
		for _, o := range oldest {
			b, ok := p.before.get(o.Domain)
			if !ok || b.Seq < o.Seq {
				return &PositionLostError{Stored: p.String(), Oldest: oldest.String()}
			}
		}
	case kindMySQL:
		if s.flavor != flavorMySQL {
			return &ServerMismatchError{Stored: p.String(), Found: s.server.version, Why: "the position is a MySQL GTID set and the server is MariaDB"}
		}
		var executed, purged string
		if err := s.db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_purged").Scan(&executed, &purged); err != nil {
			return classify(fmt.Errorf("mysql: read @@gtid_executed: %w", err), "", 0, "")
		}
		ex, err := mysqlSet(executed)
		if err != nil {
			return err
		}
		pu, err := mysqlSet(purged)
		if err != nil {
			return err
		}
		before, err := mysqlSet(p.setBefore)
		if err != nil {
			return err
		}
		if !ex.Contain(before) {
			for u := range *before {
				if _, ok := (*ex)[u]; !ok {
					return &ServerMismatchError{Stored: p.String(), Found: "gtid_executed " + quoteEmpty(executed),
						Why: fmt.Sprintf("the server has no transaction of source %s", u)}
				}
			}
			return &ServerBehindError{Stored: p.String(), Found: "gtid_executed " + executed}
		}
		if !before.Contain(pu) {
			return &PositionLostError{Stored: p.String(), Oldest: "gtid_purged " + purged}
		}
	case kindFile:
		if p.server != s.server.identity {
			return &ServerMismatchError{Stored: p.String(), Found: s.server.identity,
				Why: "binlog file positions belong to one server and mean nothing on another"}
		}
		files, err := s.binlogFiles(ctx)
		if err != nil {
			return err
		}
		if len(files) > 0 {
			found := false
			for _, f := range files {
				if f == p.file {
					found = true
				}
			}
			if !found {
				if fileCommit(p.file, 0) < fileCommit(files[0], 0) {
					return &PositionLostError{Stored: p.String(), Oldest: files[0]}
				}
				return &ServerMismatchError{Stored: p.String(), Found: "binlogs " + files[0] + ".." + files[len(files)-1],
					Why: "the server has no binlog file " + p.file}
			}
		}
	}
	return nil
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// binlogFiles lists the server's binlog files, oldest first.
func (s *Source) binlogFiles(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, classify(fmt.Errorf("mysql: SHOW BINARY LOGS: %w", err), "", 0, "")
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		raw := make([]sql.RawBytes, len(cols))
		dest := make([]any, len(cols))
		for i := range raw {
			dest[i] = &raw[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, string(raw[0]))
	}
	return out, rows.Err()
}

// oldestGTIDList returns the GTID position at the start of the oldest
// binlog file the server has (MariaDB's Gtid_list event): transactions
// before it are purged.
func (s *Source) oldestGTIDList(ctx context.Context) (gtidPos, error) {
	files, err := s.binlogFiles(ctx)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, errors.New("no binlog files")
	}
	rows, err := s.db.QueryContext(ctx, "SHOW BINLOG EVENTS IN '"+strings.ReplaceAll(files[0], "'", "''")+"' LIMIT 10")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		raw := make([]sql.RawBytes, len(cols))
		dest := make([]any, len(cols))
		for i := range raw {
			dest[i] = &raw[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		if len(raw) >= 6 && string(raw[2]) == "Gtid_list" {
			info := strings.Trim(strings.TrimSpace(string(raw[5])), "[]")
			return parseGTIDPos(info)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("no Gtid_list event at the start of " + files[0])
}

// Check connects and verifies what capture needs, without reading or
// changing anything: the binlog settings, the user's replication
// privileges, the tables (`tapline validate --connect`).
func (s *Source) Check(ctx context.Context) error {
	if err := s.connectDB(ctx); err != nil {
		return err
	}
	defer func() {
		s.db.Close()
		s.db = nil
	}()
	info, err := s.checkServer(ctx)
	if err != nil {
		return err
	}
	s.server, s.flavor = info, info.flavor
	var errs []error
	if err := s.checkPrivileges(ctx); err != nil {
		errs = append(errs, err)
	}
	if _, err := s.resolveTables(ctx); err != nil {
		errs = append(errs, err)
	}
	if _, err := s.positionKind(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
