package mysql

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// Positions
//
// A streaming position starts like a connectors.TxPosition, so that
// bytes.Compare follows the stream:
//
//	'T' | commit uint64 | event uint32 | row uint32 | kind | payload
//
// commit orders transactions: for GTID positions it is the sum of the
// sequence numbers of the GTID position after the transaction (MariaDB) or
// the number of transactions in the GTID set after it (MySQL), both of
// which grow by at least one per transaction; for file positions it is the
// binlog file's number and the offset of the transaction's first event.
// event counts the rows events of the transaction (1-based, captured tables
// or not, so that a change of the tables list does not shift it) and row
// the row within that event.
//
// What follows resumes the stream exactly: for GTIDs, the position before
// the transaction and the transaction's own GTID, so that the source asks
// the server for everything after "before" and skips the events of the
// transaction already delivered; for files, the server's identity, the
// file and the transaction's offset.
//
// A position at a transaction boundary (after the last event of a
// transaction, or where a stream starts) has event and row MaxUint32 for
// GTID kinds and no current GTID; for files it is the offset of the next
// transaction with event and row 0.
//
// Snapshot positions start with 'S' (before 'T'), then the table's index,
// the rows read, the streaming position the snapshot is consistent with
// and the last primary key read.

const (
	streamTag = 'T'
	snapTag   = 'S'

	kindMaria byte = 'm' // MariaDB GTIDs
	kindMySQL byte = 'y' // MySQL GTIDs
	kindFile  byte = 'f' // binlog file and offset

	headerLen = 1 + 8 + 4 + 4 + 1
	boundary  = math.MaxUint32
)

// streamPos is a decoded streaming position.
type streamPos struct {
	kind    byte
	commit  uint64
	ev, row uint32

	// kindMaria
	before gtidPos
	cur    *gtid // the transaction's GTID; nil at a boundary
	// kindMySQL
	setBefore string // the GTID set before the transaction, as MySQL prints it
	curGTID   string // "uuid:n" (or "uuid:tag:n"); "" at a boundary
	// kindFile
	server string // @@server_uuid (MySQL) or "server_id=N" (MariaDB)
	file   string
	offset uint32 // the transaction's first event, or at a boundary the next one's
}

// atBoundary reports whether the position is between transactions.
func (p streamPos) atBoundary() bool {
	if p.kind == kindFile {
		return p.ev == 0
	}
	return p.cur == nil && p.curGTID == ""
}

// after returns the MariaDB GTID position after the transaction (or p's
// own at a boundary).
func (p streamPos) after() gtidPos {
	if p.cur == nil {
		return p.before
	}
	return p.before.with(*p.cur)
}

func mariaBoundary(state gtidPos) streamPos {
	return streamPos{kind: kindMaria, commit: state.sum(), ev: boundary, row: boundary, before: state}
}

func mysqlBoundary(set string) (streamPos, error) {
	s, err := mysqlSet(set)
	if err != nil {
		return streamPos{}, err
	}
	return streamPos{kind: kindMySQL, commit: mysqlCount(s), ev: boundary, row: boundary, setBefore: s.String()}, nil
}

func fileBoundary(server, file string, offset uint32) streamPos {
	return streamPos{kind: kindFile, commit: fileCommit(file, offset), server: server, file: file, offset: offset}
}

// fileCommit orders file positions: the file's number, then the offset.
func fileCommit(file string, offset uint32) uint64 {
	i := strings.LastIndexByte(file, '.')
	n, _ := strconv.ParseUint(file[i+1:], 10, 32)
	return n<<32 | uint64(offset)
}

// encodeHeader writes the order-preserving part.
func encodeHeader(b []byte, commit uint64, ev, row uint32, kind byte) []byte {
	b = append(b, streamTag)
	b = binary.BigEndian.AppendUint64(b, commit)
	b = binary.BigEndian.AppendUint32(b, ev)
	b = binary.BigEndian.AppendUint32(b, row)
	return append(b, kind)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendGTID(b []byte, g gtid) []byte {
	b = binary.BigEndian.AppendUint32(b, g.Domain)
	b = binary.BigEndian.AppendUint32(b, g.Server)
	return binary.BigEndian.AppendUint64(b, g.Seq)
}

// payload encodes what follows the header.
func (p streamPos) payload() []byte {
	var b []byte
	switch p.kind {
	case kindMaria:
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.before)))
		for _, g := range p.before {
			b = appendGTID(b, g)
		}
		if p.cur != nil {
			b = append(b, 1)
			b = appendGTID(b, *p.cur)
		} else {
			b = append(b, 0)
		}
	case kindMySQL:
		b = appendString(b, p.setBefore)
		b = appendString(b, p.curGTID)
	case kindFile:
		b = appendString(b, p.server)
		b = appendString(b, p.file)
		b = binary.BigEndian.AppendUint32(b, p.offset)
	}
	return b
}

func (p streamPos) encode() connectors.Position {
	pl := p.payload()
	b := make([]byte, 0, headerLen+len(pl))
	b = encodeHeader(b, p.commit, p.ev, p.row, p.kind)
	return append(b, pl...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = errors.New("position ends early")
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }
func (r *reader) str() string {
	n := r.u32()
	if r.err == nil && int64(n) > int64(len(r.b)) {
		r.err = errors.New("position ends early")
		return ""
	}
	return string(r.take(int(n)))
}
func (r *reader) gtid() gtid { return gtid{Domain: r.u32(), Server: r.u32(), Seq: r.u64()} }

func decodeStreamPos(p connectors.Position) (streamPos, error) {
	if len(p) < headerLen || p[0] != streamTag {
		return streamPos{}, fmt.Errorf("position %s is not a MySQL binlog position", p)
	}
	r := &reader{b: p[1:]}
	sp := streamPos{commit: r.u64(), ev: r.u32(), row: r.u32(), kind: r.take(1)[0]}
	switch sp.kind {
	case kindMaria:
		n := int(r.u16())
		if n > len(r.b)/16 {
			return streamPos{}, fmt.Errorf("position %s: bad GTID count", p)
		}
		sp.before = make(gtidPos, n)
		for i := range sp.before {
			sp.before[i] = r.gtid()
		}
		switch r.take(1)[0] {
		case 0:
		case 1:
			g := r.gtid()
			sp.cur = &g
		default:
			return streamPos{}, fmt.Errorf("position %s: bad GTID flag", p)
		}
	case kindMySQL:
		sp.setBefore, sp.curGTID = r.str(), r.str()
	case kindFile:
		sp.server, sp.file, sp.offset = r.str(), r.str(), r.u32()
	default:
		return streamPos{}, fmt.Errorf("position %s: unknown kind %q", p, sp.kind)
	}
	if r.err != nil {
		return streamPos{}, fmt.Errorf("position %s: %w", p, r.err)
	}
	if len(r.b) != 0 {
		return streamPos{}, fmt.Errorf("position %s: %d trailing bytes", p, len(r.b))
	}
	return sp, nil
}

// String is the readable form:
//
//	MariaDB  0-1-100,1-2-7            (a boundary: after these GTIDs)
//	         0-1-100+0-1-101:2.17     (row 17 of rows event 2 of 0-1-101, which follows 0-1-100)
//	MySQL    uuid:1-100               (a boundary)
//	         uuid:1-100+uuid:101:2.17
//	file     server/mysql-bin.000003:4711        (a boundary)
//	         server/mysql-bin.000003:4711:2.17   (in the transaction at 4711)
func (p streamPos) String() string {
	evrow := ":" + strconv.FormatUint(uint64(p.ev), 10) + "." + strconv.FormatUint(uint64(p.row), 10)
	switch p.kind {
	case kindMaria:
		if p.cur == nil {
			if len(p.before) == 0 {
				return "(start of binlog)"
			}
			return p.before.String()
		}
		return p.before.String() + "+" + p.cur.String() + evrow
	case kindMySQL:
		if p.curGTID == "" {
			if p.setBefore == "" {
				return "(start of binlog)"
			}
			return p.setBefore
		}
		return p.setBefore + "+" + p.curGTID + evrow
	case kindFile:
		s := p.server + "/" + p.file + ":" + strconv.FormatUint(uint64(p.offset), 10)
		if p.ev != 0 {
			s += evrow
		}
		return s
	}
	return "?"
}

var (
	mariaPosRE = regexp.MustCompile(`^[0-9]+-[0-9]+-[0-9]+(,\s*[0-9]+-[0-9]+-[0-9]+)*$`)
	evRowRE    = regexp.MustCompile(`^(.*):([0-9]+)\.([0-9]+)$`)
)

// parseStreamPos parses the readable form (see String).
func parseStreamPos(s string) (streamPos, error) {
	s = strings.TrimSpace(s)
	var ev, row uint32
	hasEv := false
	if m := evRowRE.FindStringSubmatch(s); m != nil {
		e, err1 := strconv.ParseUint(m[2], 10, 32)
		r, err2 := strconv.ParseUint(m[3], 10, 32)
		if err1 != nil || err2 != nil {
			return streamPos{}, fmt.Errorf("position %q: bad event.row", s)
		}
		s, ev, row, hasEv = m[1], uint32(e), uint32(r), true
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		server, rest := s[:i], s[i+1:]
		j := strings.LastIndexByte(rest, ':')
		if j < 0 || server == "" {
			return streamPos{}, fmt.Errorf("position %q: want SERVER/FILE:OFFSET", s)
		}
		off, err := strconv.ParseUint(rest[j+1:], 10, 32)
		if err != nil || !strings.Contains(rest[:j], ".") {
			return streamPos{}, fmt.Errorf("position %q: want SERVER/FILE:OFFSET, e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562/mysql-bin.000003:4711", s)
		}
		p := fileBoundary(server, rest[:j], uint32(off))
		if hasEv {
			p.ev, p.row = ev, row
		}
		return p, nil
	}
	before, cur, hasCur := strings.Cut(s, "+")
	if hasCur != hasEv {
		return streamPos{}, fmt.Errorf("position %q: a transaction (BEFORE+GTID) needs :EVENT.ROW and only it has one", s)
	}
	if before == "" || mariaPosRE.MatchString(before) {
		state, err := parseGTIDPos(before)
		if err != nil {
			return streamPos{}, err
		}
		if !hasCur {
			if len(state) == 0 {
				return streamPos{}, fmt.Errorf("position %q: empty", s)
			}
			return mariaBoundary(state), nil
		}
		g, err := parseGTID(cur)
		if err != nil {
			return streamPos{}, fmt.Errorf("position %q: %w", s, err)
		}
		return streamPos{kind: kindMaria, commit: state.with(g).sum(), ev: ev, row: row, before: state, cur: &g}, nil
	}
	p, err := mysqlBoundary(before)
	if err != nil {
		return streamPos{}, fmt.Errorf("position %q: not a MariaDB GTID position, MySQL GTID set or SERVER/FILE:OFFSET: %w", s, err)
	}
	if hasCur {
		set, _ := mysqlSet(p.setBefore)
		if err := set.Update(cur); err != nil {
			return streamPos{}, fmt.Errorf("position %q: bad GTID %q", s, cur)
		}
		p.commit, p.curGTID, p.ev, p.row = mysqlCount(set), cur, ev, row
	}
	return p, nil
}

// snapPos is a position inside the initial snapshot.
type snapPos struct {
	Table uint32
	Row   uint64
	Start streamPos // the streaming position the snapshot is consistent with
	Key   [][]byte  // the last row's key values, as the server printed them
}

func (p *snapPos) encode() connectors.Position {
	b := []byte{snapTag}
	b = binary.BigEndian.AppendUint32(b, p.Table)
	b = binary.BigEndian.AppendUint64(b, p.Row)
	start := p.Start.encode()
	b = binary.BigEndian.AppendUint32(b, uint32(len(start)))
	b = append(b, start...)
	key, _ := json.Marshal(p.Key)
	return append(b, key...)
}

func isSnapPos(p connectors.Position) bool { return len(p) > 0 && p[0] == snapTag }

func decodeSnapPos(p connectors.Position) (snapPos, error) {
	if !isSnapPos(p) {
		return snapPos{}, fmt.Errorf("position %s is not a snapshot position", p)
	}
	r := &reader{b: p[1:]}
	sp := snapPos{Table: r.u32(), Row: r.u64()}
	n := r.u32()
	if r.err != nil || int64(n) > int64(len(r.b)) {
		return snapPos{}, fmt.Errorf("position %s: snapshot position ends early", p)
	}
	start, err := decodeStreamPos(r.take(int(n)))
	if err != nil {
		return snapPos{}, err
	}
	sp.Start = start
	if len(r.b) > 0 {
		if err := json.Unmarshal(r.b, &sp.Key); err != nil {
			return snapPos{}, fmt.Errorf("position %s: bad snapshot key: %w", p, err)
		}
	}
	return sp, nil
}

// formatPosition shows a position in its readable form.
func formatPosition(p connectors.Position) (string, error) {
	if isSnapPos(p) {
		sp, err := decodeSnapPos(p)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("snapshot@%s:table%d:row%d", sp.Start.String(), sp.Table, sp.Row), nil
	}
	sp, err := decodeStreamPos(p)
	if err != nil {
		return "", err
	}
	return sp.String(), nil
}

// parsePosition parses a streaming position's readable form (snapshot
// positions are shown but not parsed: resume a snapshot from its stored
// bytes, or restart it).
func parsePosition(s string) (connectors.Position, error) {
	if strings.HasPrefix(s, "snapshot@") {
		return nil, fmt.Errorf("position %q: a snapshot position cannot be set by hand (give the 0x... form, or a binlog position)", s)
	}
	sp, err := parseStreamPos(s)
	if err != nil {
		return nil, err
	}
	return sp.encode(), nil
}

// PositionFormat is the readable form of this source's positions.
var PositionFormat = connectors.PositionFormat{Format: formatPosition, Parse: parsePosition}

func init() {
	connectors.RegisterOriginOrder("mysql", CompareOrigin)
}

// originPos is a parsed origin position (SourceInfo.Position).
type originPos struct {
	kind   byte
	maria  gtidPos
	mysql  string
	server string
	commit uint64 // file kind: file number and offset
	ord    uint64
}

func parseOrigin(s string) (originPos, bool) {
	var o originPos
	if strings.HasPrefix(s, "snapshot") {
		return o, false
	}
	if i := strings.IndexByte(s, '/'); i >= 0 { // server/file:offset[#k]
		rest := s[i+1:]
		if k, ord, ok := strings.Cut(rest, "#"); ok {
			n, err := strconv.ParseUint(ord, 10, 32)
			if err != nil {
				return o, false
			}
			rest, o.ord = k, n
		}
		j := strings.LastIndexByte(rest, ':')
		if j < 0 || !strings.Contains(rest[:j], ".") {
			return o, false
		}
		off, err := strconv.ParseUint(rest[j+1:], 10, 32)
		if err != nil {
			return o, false
		}
		o.kind, o.server, o.commit = kindFile, s[:i], fileCommit(rest[:j], uint32(off))
		return o, true
	}
	if k, ord, ok := strings.Cut(s, "#"); ok { // MySQL set#k
		n, err := strconv.ParseUint(ord, 10, 32)
		if err != nil {
			return o, false
		}
		s, o.ord = k, n
		if _, err := mysqlSet(s); err != nil {
			return o, false
		}
		o.kind, o.mysql = kindMySQL, s
		return o, true
	}
	state := s
	if k, ord, ok := strings.Cut(s, ":"); ok && mariaPosRE.MatchString(k) {
		n, err := strconv.ParseUint(ord, 10, 32)
		if err != nil {
			return o, false
		}
		state, o.ord = k, n
	}
	if mariaPosRE.MatchString(state) {
		p, err := parseGTIDPos(state)
		if err != nil {
			return o, false
		}
		o.kind, o.maria = kindMaria, p
		return o, true
	}
	if _, err := mysqlSet(s); err == nil && s != "" {
		o.kind, o.mysql = kindMySQL, s
		return o, true
	}
	return o, false
}

// CompareOrigin orders two origin positions of the mysql source
// (SourceInfo.Position, or what a caller read from the server):
//
//   - MariaDB: "0-1-100,1-2-7" (@@gtid_binlog_pos, @@last_gtid) optionally
//     followed by ":k", the k-th event of the transaction that made that
//     position (what events carry). Positions are compared domain by domain
//     on the sequence number (a missing domain is before every GTID of it),
//     as MariaDB's replication does; when each is ahead in some domain they
//     cannot be ordered. A bare position sorts before the events of its
//     last transaction, so a view has "caught up" with @@last_gtid once it
//     applied the first event of that transaction.
//   - MySQL: a GTID set optionally followed by "#k"; ordered by inclusion.
//   - binlog file: "server/file:offset#k", ordered within one server.
//
// Positions of different kinds, of different servers (file kind), and
// snapshot positions cannot be ordered.
func CompareOrigin(a, b string) (int, bool) {
	pa, okA := parseOrigin(a)
	pb, okB := parseOrigin(b)
	if !okA || !okB || pa.kind != pb.kind {
		return 0, false
	}
	var c int
	switch pa.kind {
	case kindMaria:
		var ok bool
		if c, ok = compareGTIDPos(pa.maria, pb.maria); !ok {
			return 0, false
		}
	case kindMySQL:
		sa, _ := mysqlSet(pa.mysql)
		sb, _ := mysqlSet(pb.mysql)
		var ok bool
		if c, ok = compareMySQLSets(sa, sb); !ok {
			return 0, false
		}
	case kindFile:
		if pa.server != pb.server {
			return 0, false
		}
		c = cmpU64(pa.commit, pb.commit)
	}
	if c != 0 {
		return c, true
	}
	return cmpU64(pa.ord, pb.ord), true
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
