package postgres

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/tapline/tapline/connectors"
)

// Positions during the initial snapshot are snapshot positions (see
// snapPos), which sort before every streaming position. Streaming positions
// are connectors.TxPosition values:
//
//   - an event: (the transaction's commit LSN, its 1-based ordinal);
//   - the end of a transaction, and heartbeats: (an LSN L, 0), meaning
//     "everything that committed before L".
//
// Acknowledging a position confirms its LSN as flushed: the server then
// resends only transactions that commit at or after it, and the source
// drops the events of those at or before the stored position.

// formatPosition shows a position as "LSN:ordinal", e.g. "0/16B3748:3".
func formatPosition(p connectors.Position) (string, error) {
	if isSnapPos(p) {
		sp, err := decodeSnapPos(p)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("snapshot@%s:table%d:row%d", pglogrepl.LSN(sp.CP), sp.Table, sp.Row), nil
	}
	tp, err := connectors.DecodeTxPosition(p)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:%d", pglogrepl.LSN(tp.Commit), tp.Ordinal), nil
}

// parsePosition parses "LSN:ordinal" or a bare LSN (ordinal 0).
func parsePosition(s string) (connectors.Position, error) {
	l, o, hasOrd := strings.Cut(s, ":")
	lsn, err := pglogrepl.ParseLSN(l)
	if err != nil {
		return nil, fmt.Errorf("position %q: want LSN[:ORDINAL], e.g. 0/16B3748:3", s)
	}
	var ord uint32
	if hasOrd {
		if _, err := fmt.Sscanf(o, "%d", &ord); err != nil {
			return nil, fmt.Errorf("position %q: ordinal %q is not a number", s, o)
		}
	}
	return connectors.TxPosition{Commit: uint64(lsn), Ordinal: ord}.Encode(), nil
}

// PositionFormat is the readable form of this source's positions.
var PositionFormat = connectors.PositionFormat{Format: formatPosition, Parse: parsePosition}

func init() {
	connectors.RegisterOriginOrder("postgres", CompareLSNPosition)
}

// CompareLSNPosition orders two Postgres origin positions: an LSN
// ("16/B374D848", as pg_current_wal_lsn() prints it) optionally followed by
// ":ORDINAL" (the form events carry). A bare LSN sorts before every event
// of a transaction committed at that LSN. Snapshot positions cannot be
// ordered.
func CompareLSNPosition(a, b string) (int, bool) {
	la, oa, okA := parseLSNPosition(a)
	lb, ob, okB := parseLSNPosition(b)
	if !okA || !okB {
		return 0, false
	}
	switch {
	case la != lb:
		return cmpUint(la, lb), true
	default:
		return cmpUint(oa, ob), true
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func parseLSNPosition(s string) (lsn, ord uint64, ok bool) {
	l, o, hasOrd := strings.Cut(s, ":")
	v, err := pglogrepl.ParseLSN(l)
	if err != nil {
		return 0, 0, false
	}
	if hasOrd {
		if ord, err = strconv.ParseUint(o, 10, 32); err != nil {
			return 0, 0, false
		}
	}
	return uint64(v), ord, true
}
