package nats

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/tapline/tapline/connectors"
)

// A position is a stream sequence: the tag byte 'N' and the sequence as 8
// bytes big endian, so that bytes.Compare orders positions as the stream
// does. Its readable form is the sequence in decimal.

// PositionLen is the length of an encoded position.
const PositionLen = 9

const positionTag = 'N'

// EncodePosition returns the position of stream sequence seq.
func EncodePosition(seq uint64) connectors.Position {
	p := make(connectors.Position, PositionLen)
	p[0] = positionTag
	binary.BigEndian.PutUint64(p[1:], seq)
	return p
}

// DecodePosition returns the stream sequence of a position made by
// EncodePosition.
func DecodePosition(p connectors.Position) (uint64, error) {
	if len(p) != PositionLen || p[0] != positionTag {
		return 0, fmt.Errorf("position %s is not a nats stream position (did the pipeline's source change? reset its offset with tapline offsets delete)", p)
	}
	return binary.BigEndian.Uint64(p[1:]), nil
}

// PositionFormat shows positions as their stream sequence in decimal.
var PositionFormat = connectors.PositionFormat{
	Format: func(p connectors.Position) (string, error) {
		seq, err := DecodePosition(p)
		if err != nil {
			return "", err
		}
		return strconv.FormatUint(seq, 10), nil
	},
	Parse: func(s string) (connectors.Position, error) {
		seq, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("position %q: want a stream sequence, e.g. 1200", s)
		}
		return EncodePosition(seq), nil
	},
}
