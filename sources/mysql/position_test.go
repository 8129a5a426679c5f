package mysql

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	gmysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/tapline/tapline/connectors"
)

func mariaEvent(before string, cur string, ev, row uint32) streamPos {
	b, err := parseGTIDPos(before)
	if err != nil {
		panic(err)
	}
	g, err := parseGTID(cur)
	if err != nil {
		panic(err)
	}
	return streamPos{kind: kindMaria, commit: b.with(g).sum(), ev: ev, row: row, before: b, cur: &g}
}

func TestPositionsRoundTripAndOrder(t *testing.T) {
	mb, _ := parseGTIDPos("0-1-100,1-2-7")
	my, err := mysqlBoundary("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100")
	if err != nil {
		t.Fatal(err)
	}
	myEv, err := parseStreamPos("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100+3e11fa47-71ca-11e1-9e33-c80aa9429562:101:2.17")
	if err != nil {
		t.Fatal(err)
	}
	fileEv := fileBoundary("server_id=1", "mysql-bin.000003", 4711)
	fileEv.ev, fileEv.row = 2, 3
	// In stream order.
	ordered := []streamPos{
		mariaBoundary(mb),
		mariaEvent("0-1-100,1-2-7", "0-1-101", 1, 1),
		mariaEvent("0-1-100,1-2-7", "0-1-101", 1, 2),
		mariaEvent("0-1-100,1-2-7", "0-1-101", 2, 1),
		mariaBoundary(mb.with(gtid{0, 1, 101})),
		mariaEvent("0-1-101,1-2-7", "1-2-8", 1, 1),
		mariaEvent("0-1-101,1-2-8", "2-3-1", 1, 1), // a new domain
	}
	var prev connectors.Position
	for i, p := range ordered {
		enc := p.encode()
		dec, err := decodeStreamPos(enc)
		if err != nil {
			t.Fatalf("%d: decode: %v", i, err)
		}
		if !bytes.Equal(dec.encode(), enc) || dec.String() != p.String() {
			t.Errorf("%d: %s does not round-trip: %s", i, p.String(), dec.String())
		}
		parsed, err := parsePosition(p.String())
		if err != nil || !bytes.Equal(parsed, enc) {
			t.Errorf("%d: parse(%q) = %x, %v; want %x", i, p.String(), parsed, err, enc)
		}
		if prev != nil && bytes.Compare(prev, enc) >= 0 {
			t.Errorf("%d: %s does not sort after the position before it", i, p.String())
		}
		prev = enc
	}
	for _, p := range []streamPos{my, myEv, fileEv, fileBoundary("3e11fa47-71ca-11e1-9e33-c80aa9429562", "binlog.000001", 4)} {
		enc := p.encode()
		dec, err := decodeStreamPos(enc)
		if err != nil || !bytes.Equal(dec.encode(), enc) {
			t.Errorf("%s: decode: %v", p.String(), err)
		}
		parsed, err := parsePosition(p.String())
		if err != nil || !bytes.Equal(parsed, enc) {
			t.Errorf("parse(%q) = %v; want the same position", p.String(), err)
		}
	}
	if myEv.commit != 101 || myEv.ev != 2 || myEv.row != 17 {
		t.Errorf("MySQL event position %+v", myEv)
	}
	// File positions: an event, then the boundary after its transaction,
	// then the next transaction's events.
	end := fileBoundary("s", "mysql-bin.000003", 5000)
	next := fileBoundary("s", "mysql-bin.000003", 5000)
	next.ev, next.row = 1, 1
	rotated := fileBoundary("s", "mysql-bin.000004", 4)
	for i, pair := range [][2]streamPos{{fileEv, end}, {end, next}, {next, rotated}} {
		if bytes.Compare(pair[0].encode(), pair[1].encode()) >= 0 {
			t.Errorf("file pair %d: %s does not sort before %s", i, pair[0].String(), pair[1].String())
		}
	}
	// Snapshot positions sort before every streaming position and keep
	// their key.
	snap := snapPos{Table: 2, Row: 99, Start: mariaBoundary(mb), Key: [][]byte{[]byte("42"), {0, 0xff}}}
	enc := snap.encode()
	if bytes.Compare(enc, ordered[0].encode()) >= 0 {
		t.Errorf("a snapshot position sorts after a streaming one")
	}
	back, err := decodeSnapPos(enc)
	if err != nil || back.Table != 2 || back.Row != 99 || back.Start.String() != "0-1-100,1-2-7" || !bytes.Equal(back.Key[1], []byte{0, 0xff}) {
		t.Errorf("snapshot position round trip: %+v, %v", back, err)
	}
	if s, _ := formatPosition(enc); s != "snapshot@0-1-100,1-2-7:table2:row99" {
		t.Errorf("snapshot position shows as %q", s)
	}
	for _, bad := range []string{"", "0-1", "0-1-1+0-1-2", "x/y", "snapshot@0-1-1:table1:row1", "0-1-1:1.1"} {
		if _, err := parsePosition(bad); err == nil {
			t.Errorf("parse(%q) succeeded", bad)
		}
	}
	if _, err := decodeStreamPos(connectors.TxPosition{Commit: 1}.Encode()); err == nil {
		t.Errorf("a plain TxPosition decoded as a MySQL position")
	}
}

func FuzzDecodePosition(f *testing.F) {
	f.Add([]byte(mariaEvent("0-1-100,1-2-7", "0-1-101", 1, 1).encode()))
	f.Add([]byte((&snapPos{Table: 1, Row: 2, Start: fileBoundary("s", "b.000001", 4), Key: [][]byte{[]byte("1")}}).encode()))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := decodeStreamPos(b); err == nil {
			if !bytes.Equal(p.encode(), b) {
				t.Fatalf("%x decodes but does not encode back", b)
			}
		}
		decodeSnapPos(b)
		formatPosition(b)
	})
}

func TestCompareOrigin(t *testing.T) {
	u := "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	for _, c := range []struct {
		a, b string
		want int
		ok   bool
	}{
		{"0-1-100:1", "0-1-100:2", -1, true},
		{"0-1-100", "0-1-100:1", -1, true}, // a bare position is before its transaction's events
		{"0-1-101:1", "0-1-100:9", 1, true},
		{"0-2-101:1", "0-1-100", 1, true}, // one domain: the sequence decides, whatever the server
		{"0-1-100,1-2-7", "0-1-100", 1, true},
		{"0-1-100", "0-1-100,1-2-7:3", -1, true},
		{"0-1-100,1-2-9", "0-1-101,1-2-7", 0, false}, // each ahead in one domain
		{"0-1-5:1", "1-1-5:1", 0, false},
		{u + ":1-100#2", u + ":1-100#3", -1, true},
		{u + ":1-101", u + ":1-100#3", 1, true},
		{u + ":1-100", u + ":1-50:60-100", 1, true},
		{u + ":1-100", "0-1-100", 0, false},
		{"s/mysql-bin.000003:500#1", "s/mysql-bin.000003:400#7", 1, true},
		{"s/mysql-bin.000003:500#1", "t/mysql-bin.000003:400#7", 0, false},
		{"snapshot:db.t:1", "0-1-1:1", 0, false},
		{"0-1-100:3", "0-1-100:3", 0, true},
	} {
		got, ok := CompareOrigin(c.a, c.b)
		if got != c.want || ok != c.ok {
			t.Errorf("CompareOrigin(%q, %q) = %d, %v; want %d, %v", c.a, c.b, got, ok, c.want, c.ok)
		}
		if back, ok := CompareOrigin(c.b, c.a); ok != c.ok || back != -c.want {
			t.Errorf("CompareOrigin(%q, %q) = %d, %v; want %d, %v", c.b, c.a, back, ok, -c.want, c.ok)
		}
	}
	if c, ok := connectors.CompareOrigin("mysql", "0-1-2:1", "0-1-1"); !ok || c != 1 {
		t.Errorf("the mysql origin order is not registered")
	}
}

func TestCheckSettingsNamesTheFix(t *testing.T) {
	good := map[string]string{"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
	for _, c := range []struct {
		change  map[string]string
		drop    string
		rowWarn bool
		want    string // "" for no error
	}{
		{want: ""},
		{change: map[string]string{"log_bin": "OFF"}, want: "log_bin is \"OFF\""},
		{change: map[string]string{"binlog_format": "MIXED"}, want: "SET GLOBAL binlog_format = 'ROW'"},
		{change: map[string]string{"binlog_row_metadata": "MINIMAL"}, want: ""}, // the schema history
		{change: map[string]string{"binlog_row_metadata": "NO_LOG"}, want: "SET GLOBAL binlog_row_metadata = 'FULL'"},
		{drop: "binlog_row_metadata", want: "MariaDB 10.5+ or MySQL 8.0.1+"},
		{change: map[string]string{"binlog_row_image": "MINIMAL"}, want: "SET GLOBAL binlog_row_image = 'FULL'"},
		{change: map[string]string{"binlog_row_image": "NOBLOB"}, rowWarn: true, want: ""},
		{change: map[string]string{"binlog_row_value_options": "PARTIAL_JSON"}, want: "binlog_row_value_options = ''"},
	} {
		vars := map[string]string{}
		for k, v := range good {
			vars[k] = v
		}
		for k, v := range c.change {
			vars[k] = v
		}
		delete(vars, c.drop)
		s := &Source{log: connectors.Runtime{}.Log(), serverID: 7}
		s.cfg.RowImage = "fail"
		if c.rowWarn {
			s.cfg.RowImage = "warn"
		}
		err := s.checkSettings(&serverInfo{flavor: flavorMariaDB, serverID: 1, vars: vars, version: "10.4.1-MariaDB"})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: unexpected %v", c.change, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v %s: %v; want an error with %q", c.change, c.drop, err, c.want)
		}
	}
	s := &Source{log: connectors.Runtime{}.Log(), serverID: 1}
	err := s.checkSettings(&serverInfo{flavor: flavorMariaDB, serverID: 1, vars: good})
	var clash *ServerIDClashError
	if !errors.As(err, &clash) {
		t.Errorf("server_id equal to the server's own: %v", err)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err       error
		want      any
		retryable bool
	}{
		{&gmysql.MyError{Code: 1236, Message: "Could not find GTID state requested by slave in any binlog files."}, &PositionLostError{}, false},
		{&gmysql.MyError{Code: 1236, Message: "A slave with the same server_uuid/server_id as this slave has connected to the master"}, &ServerIDClashError{}, false},
		{&gmysql.MyError{Code: 4052, Message: "A slave with the same server_uuid/server_id is already connected"}, &ServerIDClashError{}, false},
		{&gmysql.MyError{Code: 1227, Message: "Access denied; you need (at least one of) the REPLICATION SLAVE privilege(s)"}, &PrivilegeError{}, false},
		{fmt.Errorf("read: %w", gmysql.ErrBadConn), nil, true},
	} {
		got := classify(c.err, "0-1-5", 9, "u")
		if connectors.IsRetryable(got) != c.retryable {
			t.Errorf("%v: retryable %v", c.err, !c.retryable)
		}
		switch c.want.(type) {
		case *PositionLostError:
			var e *PositionLostError
			if !errors.As(got, &e) || e.Stored != "0-1-5" {
				t.Errorf("%v → %v", c.err, got)
			}
		case *ServerIDClashError:
			var e *ServerIDClashError
			if !errors.As(got, &e) || e.ServerID != 9 {
				t.Errorf("%v → %v", c.err, got)
			}
		case *PrivilegeError:
			var e *PrivilegeError
			if !errors.As(got, &e) {
				t.Errorf("%v → %v", c.err, got)
			}
		}
	}
}

func TestConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DSN = "root:s3cret@tcp(db.example:3307)/shop"
	cfg.Tables = []string{"shop.orders", "crm.*"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := parseDSN("mysql://app:p%40ss@db.example/shop?tls=skip-verify")
	if err != nil || d.host != "db.example" || d.port != 3306 || d.cfg.User != "app" || d.cfg.Passwd != "p@ss" || d.cfg.DBName != "shop" || d.tls == nil {
		t.Fatalf("URL DSN: %+v %v", d, err)
	}
	d, err = parseDSN("root:s3cret@tcp(db.example:3307)/shop")
	if err != nil || d.host != "db.example" || d.port != 3307 || d.tls != nil {
		t.Fatalf("driver DSN: %+v %v", d, err)
	}
	bad := DefaultConfig()
	bad.DSN = "root:s3cret@unix(/tmp/x.sock)/shop"
	bad.Tables = []string{"orders"}
	bad.Snapshot = "sometimes"
	bad.StartPosition = "0-1-5"
	err = bad.Validate()
	for _, want := range []string{"tables: \"orders\": give the database too", "snapshot: \"sometimes\"", "start_position: only with snapshot: never", "needs tcp"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v; want %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error shows the password: %v", err)
	}
	f := newTableFilter([]string{"shop.orders", "crm.*"})
	if !f.match("shop", "orders") || f.match("shop", "items") || !f.match("crm", "anything") || f.match("crm2", "x") {
		t.Errorf("table filter")
	}
	if a, b := defaultServerID("p1"), defaultServerID("p2"); a == b || a < 1<<30 {
		t.Errorf("server ids %d %d", a, b)
	}
}

// go-mysql keeps compression and the exact event type of a rows event
// unexported; the decoder reads them by reflection.
func TestRowsEventFieldsExist(t *testing.T) {
	if compressedField == nil || eventTypeField == nil {
		t.Fatal("go-mysql's RowsEvent lost its compressed or eventType field: compressed MariaDB events and partial JSON updates would go unnoticed")
	}
}
