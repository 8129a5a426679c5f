package mysql

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	driver "github.com/go-sql-driver/mysql"

	gmysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/tapline/tapline/connectors"
)

// PositionLostError says that the stored position is no longer in the
// server's binlog: the binlog files holding the changes after it were
// purged (or the server never had them). The changes in between cannot be
// read; the pipeline must start again from a snapshot. It is never skipped
// silently.
type PositionLostError struct {
	Stored string // the stored position
	Oldest string // the oldest position the server still has, if known
	Detail string // what the server said, if it said it
}

func (e *PositionLostError) Error() string {
	msg := fmt.Sprintf("mysql: the stored position %s is no longer in the server's binlog", e.Stored)
	if e.Oldest != "" {
		msg += fmt.Sprintf(" (its oldest binlog starts after %s)", e.Oldest)
	}
	if e.Detail != "" {
		msg += ": " + strings.TrimRight(e.Detail, ". ")
	}
	return msg + ". The binlog files were purged (binlog_expire_logs_seconds, PURGE BINARY LOGS) before tapline read them, so " +
		"the changes since cannot be read any more. To start again from a new snapshot, stop the pipeline, delete its position " +
		"(tapline offsets delete PIPELINE) and rebuild the views it feeds; keep binlogs longer than the longest pipeline outage"
}

// ServerMismatchError says that the server tapline connected to is not the
// one the stored position belongs to (a failover to an unrelated server,
// or a DSN pointed elsewhere): its GTID domains or identity differ.
type ServerMismatchError struct {
	Stored string // the stored position or identity
	Found  string // what the server has
	Why    string
}

func (e *ServerMismatchError) Error() string {
	return fmt.Sprintf("mysql: the server is not the one the stored position belongs to: %s (stored %s, server has %s). "+
		"Reading on would skip or misread changes; point the DSN at the right server, or start the pipeline afresh "+
		"(tapline offsets delete PIPELINE, then a new snapshot)", e.Why, e.Stored, e.Found)
}

// ServerBehindError says that the server has not yet written the stored
// position (a failover to a replica that lags behind). It is retryable: the
// replica may catch up.
type ServerBehindError struct {
	Stored, Found string
}

func (e *ServerBehindError) Error() string {
	return fmt.Sprintf("mysql: the server's binlog (%s) has not reached the stored position %s yet: is it a replica that lags behind the server the position came from?", e.Found, e.Stored)
}

// Retryable reports true: a lagging replica catches up.
func (e *ServerBehindError) Retryable() bool { return true }

// ServerIDClashError says that another replica registered with the same
// server_id, which makes the server drop one of the two connections.
type ServerIDClashError struct {
	ServerID uint32
	Detail   string
}

func (e *ServerIDClashError) Error() string {
	return fmt.Sprintf("mysql: another replica connected with server_id %d and the server dropped this one (%s); "+
		"every reader of a server's binlog needs its own server_id: set server_id in the source config to a value no other "+
		"replica or tapline pipeline uses (SHOW SLAVE HOSTS lists the registered ones)", e.ServerID, e.Detail)
}

// SettingError names a server setting that does not allow binlog capture.
type SettingError struct {
	Setting, Value, Want, Fix string
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("mysql: the server's %s is %q; tapline needs %s: %s", e.Setting, e.Value, e.Want, e.Fix)
}

// PrivilegeError names the privileges the user lacks.
type PrivilegeError struct {
	User    string
	Missing []string
	Detail  string
}

func (e *PrivilegeError) Error() string {
	msg := fmt.Sprintf("mysql: user %s lacks %s: GRANT %s ON *.* TO %s", e.User, strings.Join(e.Missing, " and "), strings.Join(e.Missing, ", "), e.User)
	if e.Detail != "" {
		msg += " (server: " + e.Detail + ")"
	}
	return msg
}

// MetadataError says that TABLE_MAP events of a captured table lack the
// column metadata binlog_row_metadata=FULL writes, while the source runs
// without a schema history (the server said FULL when it started).
type MetadataError struct {
	Table string
}

func (e *MetadataError) Error() string {
	return fmt.Sprintf("mysql: the binlog carries no column names for %s: it was written with binlog_row_metadata other than FULL, "+
		"although the server said FULL when the source started (SET GLOBAL binlog_row_metadata = FULL, and in the config file); "+
		"events written before the change cannot be mapped to columns safely: start the pipeline afresh from a snapshot "+
		"(tapline offsets delete PIPELINE), which then keeps a schema history if the server stays at MINIMAL", e.Table)
}

// classify turns a server or connection error into the error tapline
// reports: a lost binlog position, a server_id clash or a missing privilege
// get their types; connection failures are retryable.
func classify(err error, stored string, serverID uint32, user string) error {
	if err == nil {
		return nil
	}
	var my *gmysql.MyError
	if errors.As(err, &my) {
		msg := my.Message
		switch my.Code {
		case 1236: // ER_MASTER_FATAL_ERROR_READING_BINLOG
			low := strings.ToLower(msg)
			switch {
			case strings.Contains(low, "same server") || strings.Contains(low, "server_id") && strings.Contains(low, "already"):
				return &ServerIDClashError{ServerID: serverID, Detail: msg}
			case strings.Contains(low, "purged") || strings.Contains(low, "could not find") || strings.Contains(low, "not in the master's binlog") ||
				strings.Contains(low, "not found in binlog") || strings.Contains(low, "too old") || strings.Contains(low, "first log file name"):
				return &PositionLostError{Stored: stored, Detail: msg}
			case strings.Contains(low, "more recent") || strings.Contains(low, "ahead of"):
				return &ServerBehindError{Stored: stored, Found: msg}
			}
			return fmt.Errorf("mysql: the server stopped sending the binlog: %s (error %d)", msg, my.Code)
		case 4052: // ER_SLAVE_SAME_ID (MariaDB)
			return &ServerIDClashError{ServerID: serverID, Detail: msg}
		case 1227, 1045, 1044, 1142, 1143: // access denied
			return &PrivilegeError{User: user, Missing: []string{"REPLICATION SLAVE"}, Detail: msg}
		}
		return fmt.Errorf("mysql: %s (error %d)", msg, my.Code)
	}
	var ee *replication.EventError
	if errors.As(err, &ee) {
		// Its Error() shows the event's bytes: row data stays out of logs.
		return fmt.Errorf("mysql: cannot parse binlog event %v at %d: %s", ee.Header.EventType, ee.Header.LogPos, ee.Err)
	}
	var dm *driver.MySQLError
	if errors.As(err, &dm) {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, gmysql.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, driver.ErrInvalidConn) ||
		errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "broken pipe") ||
		strings.Contains(err.Error(), "connection reset") {
		return connectors.Retryable(err)
	}
	return err
}
