package connectors

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Position is an opaque resume point in a source's stream. Only the connector
// that made it decodes it; everybody else stores and compares it.
//
// Sources that read one ordered stream (a database log, one NATS stream)
// encode positions so that bytes.Compare follows stream order; Compare then
// orders them. A nil Position means "no position": start from the beginning
// (or as the source's config says).
type Position []byte

// Compare orders two positions of the same source by their bytes.
func (p Position) Compare(o Position) int { return bytes.Compare(p, o) }

// String returns the hex form of the bytes. Connectors give a readable form
// through their registered PositionFormat.
func (p Position) String() string {
	if p == nil {
		return "(none)"
	}
	return "0x" + hex.EncodeToString(p)
}

// TxPosition is the common shape of a database position: the commit point of
// a transaction plus the event's ordinal within it. It is exact to the event:
// resuming from (Commit, Ordinal) skips the transaction's first Ordinal
// events and delivers the rest, so a restart in the middle of a delivered
// transaction neither loses nor repeats anything.
//
// Ordinal 0 means "before the first event of the transaction"; events are
// numbered from 1. A batch whose last position is (Commit, math.MaxUint32)
// (see TxPosition.End) covers the whole transaction.
type TxPosition struct {
	Commit  uint64 // the transaction's commit position (Postgres: commit LSN)
	Ordinal uint32 // 1-based index of the event in its transaction
}

// TxPositionLen is the length of an encoded TxPosition.
const TxPositionLen = 13

// txPositionTag starts every encoded TxPosition so that a foreign position is
// recognised instead of misread.
const txPositionTag = 'T'

// Encode returns the 13-byte, order-preserving encoding of p.
func (p TxPosition) Encode() Position {
	b := make([]byte, TxPositionLen)
	b[0] = txPositionTag
	binary.BigEndian.PutUint64(b[1:9], p.Commit)
	binary.BigEndian.PutUint32(b[9:13], p.Ordinal)
	return b
}

// End returns the position after the last event of p's transaction.
func (p TxPosition) End() TxPosition { return TxPosition{Commit: p.Commit, Ordinal: ^uint32(0)} }

// Less reports whether p comes before o.
func (p TxPosition) Less(o TxPosition) bool {
	return p.Commit < o.Commit || (p.Commit == o.Commit && p.Ordinal < o.Ordinal)
}

// String returns "commit:ordinal" in decimal, or "commit:end" for End.
func (p TxPosition) String() string {
	if p.Ordinal == ^uint32(0) {
		return strconv.FormatUint(p.Commit, 10) + ":end"
	}
	return strconv.FormatUint(p.Commit, 10) + ":" + strconv.FormatUint(uint64(p.Ordinal), 10)
}

// DecodeTxPosition decodes a position made by TxPosition.Encode.
func DecodeTxPosition(p Position) (TxPosition, error) {
	if len(p) != TxPositionLen || p[0] != txPositionTag {
		return TxPosition{}, fmt.Errorf("position %s is not a transaction position", p)
	}
	return TxPosition{
		Commit:  binary.BigEndian.Uint64(p[1:9]),
		Ordinal: binary.BigEndian.Uint32(p[9:13]),
	}, nil
}

// ParseTxPosition parses the String form "commit:ordinal" or "commit:end".
func ParseTxPosition(s string) (TxPosition, error) {
	c, o, ok := strings.Cut(s, ":")
	if !ok {
		return TxPosition{}, fmt.Errorf("position %q: want COMMIT:ORDINAL, e.g. 1200:3", s)
	}
	commit, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return TxPosition{}, fmt.Errorf("position %q: commit %q is not a number", s, c)
	}
	if o == "end" {
		return TxPosition{Commit: commit}.End(), nil
	}
	ord, err := strconv.ParseUint(o, 10, 32)
	if err != nil {
		return TxPosition{}, fmt.Errorf("position %q: ordinal %q is not a number", s, o)
	}
	return TxPosition{Commit: commit, Ordinal: uint32(ord)}, nil
}

// PositionFormat converts a connector's positions to and from their readable
// form, for logs, `tapline offsets` and the status API.
type PositionFormat struct {
	Format func(Position) (string, error)
	Parse  func(string) (Position, error)
}

// TxPositionFormat is the PositionFormat of TxPosition, in its decimal form.
var TxPositionFormat = PositionFormat{
	Format: func(p Position) (string, error) {
		tp, err := DecodeTxPosition(p)
		if err != nil {
			return "", err
		}
		return tp.String(), nil
	},
	Parse: func(s string) (Position, error) {
		tp, err := ParseTxPosition(s)
		if err != nil {
			return nil, err
		}
		return tp.Encode(), nil
	},
}
