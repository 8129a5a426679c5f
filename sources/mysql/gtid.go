package mysql

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	gmysql "github.com/go-mysql-org/go-mysql/mysql"
)

// gtid is one MariaDB GTID: domain-server-sequence.
type gtid struct {
	Domain, Server uint32
	Seq            uint64
}

func (g gtid) String() string {
	return strconv.FormatUint(uint64(g.Domain), 10) + "-" + strconv.FormatUint(uint64(g.Server), 10) + "-" + strconv.FormatUint(g.Seq, 10)
}

func parseGTID(s string) (gtid, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 3 {
		return gtid{}, fmt.Errorf("%q is not a MariaDB GTID (domain-server-sequence, e.g. 0-1-100)", s)
	}
	d, err1 := strconv.ParseUint(parts[0], 10, 32)
	sv, err2 := strconv.ParseUint(parts[1], 10, 32)
	seq, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return gtid{}, fmt.Errorf("%q is not a MariaDB GTID (domain-server-sequence, e.g. 0-1-100)", s)
	}
	return gtid{Domain: uint32(d), Server: uint32(sv), Seq: seq}, nil
}

// gtidPos is a MariaDB GTID position: the last GTID of each replication
// domain, sorted by domain, as @@gtid_binlog_pos prints it. It is never
// modified once made (with returns a copy).
type gtidPos []gtid

// parseGTIDPos parses "0-1-100,1-2-7" (spaces and an empty string allowed).
func parseGTIDPos(s string) (gtidPos, error) {
	var p gtidPos
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		g, err := parseGTID(part)
		if err != nil {
			return nil, err
		}
		if _, dup := p.get(g.Domain); dup {
			return nil, fmt.Errorf("GTID position %q names domain %d twice", s, g.Domain)
		}
		p = append(p, g)
	}
	slices.SortFunc(p, func(a, b gtid) int { return cmp.Compare(a.Domain, b.Domain) })
	return p, nil
}

func (p gtidPos) String() string {
	var b strings.Builder
	for i, g := range p {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(g.String())
	}
	return b.String()
}

func (p gtidPos) get(domain uint32) (gtid, bool) {
	for _, g := range p {
		if g.Domain == domain {
			return g, true
		}
	}
	return gtid{}, false
}

// with returns a copy of p with g as its domain's last GTID.
func (p gtidPos) with(g gtid) gtidPos {
	out := make(gtidPos, 0, len(p)+1)
	done := false
	for _, x := range p {
		switch {
		case x.Domain == g.Domain:
			out = append(out, g)
			done = true
		case x.Domain > g.Domain && !done:
			out = append(out, g, x)
			done = true
		default:
			out = append(out, x)
		}
	}
	if !done {
		out = append(out, g)
	}
	return out
}

// sum is the sum of the sequence numbers: it grows with every transaction
// of the stream (each one raises its domain's sequence), so it orders the
// positions of one stream whatever the domains.
func (p gtidPos) sum() uint64 {
	var s uint64
	for _, g := range p {
		s += g.Seq
	}
	return s
}

// compareGTIDPos compares two MariaDB positions domain by domain (a missing
// domain counts as before every GTID of it): -1 or +1 when one is at or
// before the other in every domain, 0 when equal, and ok false when each
// is ahead in some domain.
func compareGTIDPos(a, b gtidPos) (int, bool) {
	less, more := false, false
	seen := map[uint32]bool{}
	for _, x := range a {
		seen[x.Domain] = true
		y, ok := b.get(x.Domain)
		switch {
		case !ok || x.Seq > y.Seq:
			more = true
		case x.Seq < y.Seq:
			less = true
		}
	}
	for _, y := range b {
		if !seen[y.Domain] {
			less = true
		}
	}
	switch {
	case less && more:
		return 0, false
	case less:
		return -1, true
	case more:
		return 1, true
	}
	return 0, true
}

// mysqlSet parses a MySQL GTID set ("uuid:1-100,uuid2:1-5").
func mysqlSet(s string) (*gmysql.MysqlGTIDSet, error) {
	set, err := gmysql.ParseMysqlGTIDSet(strings.ReplaceAll(strings.TrimSpace(s), "\n", ""))
	if err != nil {
		return nil, fmt.Errorf("%q is not a MySQL GTID set (uuid:1-100,...): %v", s, err)
	}
	return set.(*gmysql.MysqlGTIDSet), nil
}

// mysqlCount is how many transactions a MySQL GTID set holds; it grows by
// one with every transaction of the stream.
func mysqlCount(s *gmysql.MysqlGTIDSet) uint64 {
	var n uint64
	for _, tags := range *s {
		for _, ivs := range tags {
			for _, iv := range ivs {
				n += uint64(iv.Stop - iv.Start)
			}
		}
	}
	return n
}

// compareMySQLSets orders two MySQL GTID sets by inclusion.
func compareMySQLSets(a, b *gmysql.MysqlGTIDSet) (int, bool) {
	ab, ba := b.Contain(a), a.Contain(b)
	switch {
	case ab && ba:
		return 0, true
	case ab:
		return -1, true
	case ba:
		return 1, true
	}
	return 0, false
}
