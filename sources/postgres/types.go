package postgres

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pglogrepl"

	"github.com/tapline/tapline/internal/pgconv"
)

// types caches what pg_type says of the non-built-in types the captured
// tables use (enums, domains, arrays of them), loaded on first sight.
type types struct {
	mu sync.Mutex
	m  pgconv.TypeMap
}

// columns resolves Relation message columns (or catalog columns) to decoders,
// loading the TypeInfo of types not seen before in one query.
func (s *Source) columns(ctx context.Context, cols []*pglogrepl.RelationMessageColumn) ([]pgconv.Column, error) {
	s.types.mu.Lock()
	defer s.types.mu.Unlock()
	if s.types.m == nil {
		s.types.m = pgconv.TypeMap{}
	}
	var missing []uint32
	for _, c := range cols {
		if _, ok := s.types.m[c.DataType]; !ok && !pgconv.IsBuiltin(c.DataType) {
			missing = append(missing, c.DataType)
		}
	}
	if len(missing) > 0 {
		rows, err := s.pool.Query(ctx, pgconv.TypeQuery, missing)
		if err != nil {
			return nil, fmt.Errorf("postgres: load type information: %w", err)
		}
		for rows.Next() {
			ti, err := pgconv.ScanTypeInfo(rows.Scan)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("postgres: load type information: %w", err)
			}
			s.types.m[ti.OID] = ti
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("postgres: load type information: %w", err)
		}
	}
	out := make([]pgconv.Column, len(cols))
	for i, c := range cols {
		out[i] = pgconv.NewColumn(c.Name, c.DataType, c.TypeModifier, s.types.m.Lookup)
	}
	return out, nil
}

// primaryKey returns the primary-key column names of a table, in key order.
func (s *Source) primaryKey(ctx context.Context, relid uint32) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT a.attname FROM pg_index i
		JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.n`, relid)
	if err != nil {
		return nil, fmt.Errorf("postgres: read the primary key of relation %d: %w", relid, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
