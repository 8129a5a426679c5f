package kafka

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/kafkaopts"
)

// Offsets is a position of the Kafka source: for each topic and partition,
// the offset of the next record to read. Everything before it, in that
// partition, is covered by the position.
type Offsets map[string]map[int32]int64

// The encoding of a position:
//
//	'K' 0x01                      tag and version
//	uvarint                       number of topics, then per topic, by name:
//	  uvarint len, name             the topic
//	  uvarint                       number of partitions, then per partition, by id:
//	    uint32 partition, uint64 offset   big endian
//
// It is canonical (sorted, no duplicates, no empty topic, nothing after),
// so that equal positions have equal bytes. Partitions and offsets are
// fixed-width big endian so that two positions over the same partitions
// compare with bytes.Compare as their offsets do: the view sinks, which
// skip batches at or before their stored position that way, rely on it.
// Positions over different partition sets (after a rebalance) have no
// order.
const (
	positionTag     = 'K'
	positionVersion = 2
)

// Position encodes o.
func (o Offsets) Position() connectors.Position {
	topics := make([]string, 0, len(o))
	for t, ps := range o {
		if len(ps) > 0 {
			topics = append(topics, t)
		}
	}
	sort.Strings(topics)
	b := []byte{positionTag, positionVersion}
	b = binary.AppendUvarint(b, uint64(len(topics)))
	var parts []int32
	for _, t := range topics {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
		parts = parts[:0]
		for p := range o[t] {
			parts = append(parts, p)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		b = binary.AppendUvarint(b, uint64(len(parts)))
		for _, p := range parts {
			b = binary.BigEndian.AppendUint32(b, uint32(p))
			b = binary.BigEndian.AppendUint64(b, uint64(o[t][p]))
		}
	}
	return b
}

// DecodePosition decodes a position made by Offsets.Position. It checks
// every declared length against the bytes left before allocating.
func DecodePosition(p connectors.Position) (Offsets, error) {
	if len(p) < 3 || p[0] != positionTag {
		return nil, fmt.Errorf("position %s is not a Kafka source position", p)
	}
	if p[1] != positionVersion {
		return nil, fmt.Errorf("position %s: unknown version %d of the Kafka source position", p, p[1])
	}
	d := decoder{b: p[2:]}
	nt := d.count(2) // a topic takes at least 2 bytes more
	o := make(Offsets, nt)
	prevTopic := ""
	for i := uint64(0); i < nt && d.err == nil; i++ {
		n := d.count(1)
		if n > kafkaopts.MaxTopicLen {
			d.fail("topic name of %d bytes", n)
		}
		t := d.bytes(n)
		if d.err == nil {
			if err := kafkaopts.ValidTopic(t); err != nil {
				d.fail("%v", err)
			} else if i > 0 && t <= prevTopic {
				d.fail("topics out of order at %q", t)
			}
		}
		prevTopic = t
		np := d.count(12) // a partition takes 12 bytes
		if np == 0 {
			d.fail("topic %q without partitions", t)
		}
		ps := make(map[int32]int64, np)
		prev := int64(-1)
		for j := uint64(0); j < np && d.err == nil; j++ {
			part, off := d.uint32(), d.uint64()
			if part > math.MaxInt32 || off > math.MaxInt64 {
				d.fail("partition %d or offset %d out of range", part, off)
			}
			if int64(part) <= prev {
				d.fail("partitions of %q out of order at %d", t, part)
			}
			prev = int64(part)
			ps[int32(part)] = int64(off)
		}
		o[t] = ps
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d bytes after the end", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("position %s: %w", p, d.err)
	}
	return o, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) uint32() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.fail("truncated")
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return uint64(v)
}

func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated")
		return 0
	}
	if n > 1 && d.b[n-1] == 0 {
		d.fail("varint with padding") // not canonical: another encoding of the same value
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items that take at least size bytes each, and
// checks that the bytes left can hold them.
func (d *decoder) count(size uint64) uint64 {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b))/size {
		d.fail("count %d larger than the %d bytes left allow", n, len(d.b))
		return 0
	}
	return n
}

func (d *decoder) bytes(n uint64) string {
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// noPartitions is the readable form of a position of no partition.
const noPartitions = "(no partitions)"

// String returns the readable form of o: topic/partition=offset, sorted,
// separated by commas, e.g. "orders/0=1200,orders/1=977".
func (o Offsets) String() string {
	var parts []string
	for t, ps := range o {
		for p, off := range ps {
			parts = append(parts, t+"/"+strconv.Itoa(int(p))+"="+strconv.FormatInt(off, 10))
		}
	}
	if len(parts) == 0 {
		return noPartitions
	}
	sort.Slice(parts, func(i, j int) bool { return lessEntry(parts[i], parts[j]) })
	return strings.Join(parts, ",")
}

// lessEntry orders "topic/partition=offset" entries by topic, then by
// partition as a number.
func lessEntry(a, b string) bool {
	ta, ra, _ := strings.Cut(a, "/")
	tb, rb, _ := strings.Cut(b, "/")
	if ta != tb {
		return ta < tb
	}
	pa, _, _ := strings.Cut(ra, "=")
	pb, _, _ := strings.Cut(rb, "=")
	na, _ := strconv.Atoi(pa)
	nb, _ := strconv.Atoi(pb)
	return na < nb
}

// ParseOffsets parses the readable form made by Offsets.String.
func ParseOffsets(s string) (Offsets, error) {
	o := Offsets{}
	s = strings.TrimSpace(s)
	if s == noPartitions || s == "" {
		return o, nil
	}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		slash := strings.LastIndexByte(e, '/')
		eq := strings.LastIndexByte(e, '=')
		if slash <= 0 || eq < slash {
			return nil, fmt.Errorf("position %q: entry %q is not topic/partition=offset", s, e)
		}
		t := e[:slash]
		if err := kafkaopts.ValidTopic(t); err != nil {
			return nil, fmt.Errorf("position %q: %w", s, err)
		}
		p, err1 := strconv.ParseInt(e[slash+1:eq], 10, 32)
		off, err2 := strconv.ParseInt(e[eq+1:], 10, 64)
		if err1 != nil || err2 != nil || p < 0 || off < 0 {
			return nil, fmt.Errorf("position %q: entry %q: partition and offset must be non-negative integers", s, e)
		}
		if _, dup := o[t][int32(p)]; dup {
			return nil, fmt.Errorf("position %q: %s/%d appears twice", s, t, p)
		}
		if o[t] == nil {
			o[t] = map[int32]int64{}
		}
		o[t][int32(p)] = off
	}
	return o, nil
}

// PositionFormat shows the source's positions as topic/partition=offset
// lists and parses them back.
var PositionFormat = connectors.PositionFormat{
	Format: func(p connectors.Position) (string, error) {
		o, err := DecodePosition(p)
		if err != nil {
			return "", err
		}
		return o.String(), nil
	},
	Parse: func(s string) (connectors.Position, error) {
		o, err := ParseOffsets(s)
		if err != nil {
			return nil, err
		}
		return o.Position(), nil
	},
}

// cursors holds the next offset of each partition the source reads, sorted
// by topic and partition, so that each event's position is encoded in one
// pass without sorting.
type cursors struct {
	list []cursor
}

type cursor struct {
	topic string
	part  int32
	next  int64
}

func (c *cursors) search(topic string, part int32) (int, bool) {
	i := sort.Search(len(c.list), func(i int) bool {
		e := &c.list[i]
		return e.topic > topic || (e.topic == topic && e.part >= part)
	})
	return i, i < len(c.list) && c.list[i].topic == topic && c.list[i].part == part
}

// get returns the next offset of a partition, if known.
func (c *cursors) get(topic string, part int32) (int64, bool) {
	if i, ok := c.search(topic, part); ok {
		return c.list[i].next, true
	}
	return 0, false
}

// set sets the next offset of a partition.
func (c *cursors) set(topic string, part int32, next int64) {
	i, ok := c.search(topic, part)
	if ok {
		c.list[i].next = next
		return
	}
	c.list = append(c.list, cursor{})
	copy(c.list[i+1:], c.list[i:])
	c.list[i] = cursor{topic: topic, part: part, next: next}
}

// remove forgets a partition.
func (c *cursors) remove(topic string, part int32) {
	if i, ok := c.search(topic, part); ok {
		c.list = append(c.list[:i], c.list[i+1:]...)
	}
}

// position encodes the cursors as Offsets.Position does.
func (c *cursors) position() connectors.Position {
	ntopics := 0
	for i := range c.list {
		if i == 0 || c.list[i].topic != c.list[i-1].topic {
			ntopics++
		}
	}
	b := make([]byte, 0, 3+len(c.list)*12+ntopics*24)
	b = append(b, positionTag, positionVersion)
	b = binary.AppendUvarint(b, uint64(ntopics))
	for i := 0; i < len(c.list); {
		t := c.list[i].topic
		j := i
		for j < len(c.list) && c.list[j].topic == t {
			j++
		}
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
		b = binary.AppendUvarint(b, uint64(j-i))
		for ; i < j; i++ {
			b = binary.BigEndian.AppendUint32(b, uint32(c.list[i].part))
			b = binary.BigEndian.AppendUint64(b, uint64(c.list[i].next))
		}
	}
	return b
}

// offsets returns a copy of the cursors as Offsets.
func (c *cursors) offsets() Offsets {
	o := Offsets{}
	for _, e := range c.list {
		if o[e.topic] == nil {
			o[e.topic] = map[int32]int64{}
		}
		o[e.topic][e.part] = e.next
	}
	return o
}
