package transforms

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/tapline/tapline/connectors"
)

// MaskMethod is how mask_columns replaces a value.
type MaskMethod string

// The masking methods.
const (
	// MaskHash replaces a value by the hex SHA-256 of the salt followed by
	// the value's text form. It is stable across runs and sources, so
	// masked values can still be joined and grouped; it keeps keys
	// distinct, so key columns may be hashed.
	MaskHash MaskMethod = "hash"
	// MaskRedact replaces a value by "****".
	MaskRedact MaskMethod = "redact"
	// MaskNull replaces a value by null.
	MaskNull MaskMethod = "null"
)

// Redacted is the value MaskRedact writes.
const Redacted = "****"

// MaskColumnsConfig configures the mask_columns transform.
type MaskColumnsConfig struct {
	Columns []string          `yaml:"columns" required:"true" doc:"columns to mask: \"schema.table.column\", \"table.column\" or \"*.column\", with * wildcards"`
	Method  MaskMethod        `yaml:"method" doc:"hash (salted SHA-256, hex), redact (\"****\") or null"`
	Salt    connectors.Secret `yaml:"salt" doc:"prepended to each value before hashing; keep it secret so that hashes cannot be reversed by guessing"`
}

type maskColumns struct {
	sels   []columnSelector
	method MaskMethod
	salt   []byte
	buf    []byte
	plans  schemaCache[*maskPlan]
}

type maskPlan struct {
	schema *connectors.Schema
	masked []int // input indexes of the masked columns; nil: none
	err    error
}

// NewMaskColumns builds the mask_columns transform. Key columns may only be
// masked with hash; the first event of a table where another method would
// mask a key stops the pipeline with an error naming the table.
func NewMaskColumns(cfg MaskColumnsConfig) (Transform, error) {
	sels, err := parseColumnSelectors("columns", cfg.Columns)
	if err != nil {
		return nil, err
	}
	switch cfg.Method {
	case "":
		cfg.Method = MaskHash
	case MaskHash, MaskRedact, MaskNull:
	default:
		msg := fmt.Sprintf("unknown method %q", string(cfg.Method))
		if s := connectors.Suggest(string(cfg.Method), []string{"hash", "redact", "null"}); s != "" {
			return nil, keyError("method", "%s (did you mean %q?)", msg, s)
		}
		return nil, keyError("method", "%s (want hash, redact or null)", msg)
	}
	return &maskColumns{sels: sels, method: cfg.Method, salt: []byte(cfg.Salt.Reveal())}, nil
}

func (m *maskColumns) plan(s *connectors.Schema) *maskPlan {
	picked := matchColumns(m.sels, s)
	if picked == nil {
		return &maskPlan{schema: s}
	}
	p := &maskPlan{}
	cols := append([]connectors.Column(nil), s.Columns...)
	for i := range cols {
		if !picked[i] {
			continue
		}
		c := &cols[i]
		if c.Key > 0 && m.method != MaskHash {
			p.err = fmt.Errorf("mask_columns: table %s: column %q is part of the primary key; only method hash keeps keys distinct", s.Table, c.Name)
			return p
		}
		p.masked = append(p.masked, i)
		if m.method == MaskNull {
			c.Nullable = true
			continue
		}
		c.Type, c.Native, c.Elem = connectors.TypeString, "", ""
	}
	p.schema, p.err = connectors.NewSchema(s.Table, s.Version, cols)
	if p.err != nil {
		p.err = fmt.Errorf("mask_columns: %w", p.err)
	}
	return p
}

// Apply masks the selected columns of ev's rows.
func (m *maskColumns) Apply(ev *connectors.Event) (bool, error) {
	if ev.Schema == nil {
		return true, nil
	}
	p := m.plans.get(ev.Schema, m.plan)
	if p.err != nil {
		return false, p.err
	}
	if p.masked == nil {
		return true, nil
	}
	ev.Schema = p.schema
	ev.Before = m.maskRow(ev.Before, p.masked)
	ev.After = m.maskRow(ev.After, p.masked)
	return true, nil
}

func (m *maskColumns) maskRow(row []connectors.Value, masked []int) []connectors.Value {
	if row == nil {
		return nil
	}
	row = copyRow(row)
	for _, i := range masked {
		if i < len(row) {
			row[i] = m.mask(row[i])
		}
	}
	return row
}

// mask masks one value. Null stays null, and an unchanged (TOASTed) value
// stays unchanged: the sink keeps what it stored, which was masked.
func (m *maskColumns) mask(v connectors.Value) connectors.Value {
	if v == nil || connectors.IsUnchanged(v) {
		return v
	}
	switch m.method {
	case MaskNull:
		return nil
	case MaskRedact:
		return Redacted
	}
	m.buf = appendText(append(m.buf[:0], m.salt...), v)
	sum := sha256.Sum256(m.buf)
	return hex.EncodeToString(sum[:])
}

// appendText appends the text form of a value: strings and bytes as they
// are, numbers in their shortest decimal form, arrays as JSON.
func appendText(b []byte, v connectors.Value) []byte {
	switch x := v.(type) {
	case string:
		return append(b, x...)
	case []byte:
		return append(b, x...)
	case connectors.JSON:
		return append(b, x...)
	case bool:
		return strconv.AppendBool(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case float64:
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case []connectors.Value:
		if j, err := json.Marshal(x); err == nil {
			return append(b, j...)
		}
	}
	return fmt.Append(b, v)
}
