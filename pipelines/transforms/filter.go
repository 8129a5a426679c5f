package transforms

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	exprast "github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/tapline/tapline/connectors"
)

// FilterConfig configures the filter transform. An event is kept when it
// matches all three conditions; an empty condition matches everything.
type FilterConfig struct {
	Tables []string `yaml:"tables" doc:"tables to keep: \"schema.table\" or \"table\" patterns with * wildcards; empty keeps all"`
	Ops    []string `yaml:"ops" doc:"operations to keep: c, u, d, r, t or insert, update, delete, read, truncate; empty keeps all"`
	Where  string   `yaml:"where" doc:"an expr-lang expression over op, table, before, after and row that must be true, e.g. num(after.amount) > 100"`
}

type filter struct {
	tables tableSet
	ops    [256]bool
	allOps bool

	where   *vm.Program
	src     string
	uses    map[string]bool // which row maps the expression reads
	env     map[string]any
	columns schemaCache[[]string]
}

// NewFilter builds the filter transform. The where expression is compiled
// here, so a syntax error or an unknown name is a build error.
func NewFilter(cfg FilterConfig) (Transform, error) {
	f := &filter{allOps: len(cfg.Ops) == 0}
	var err error
	if f.tables, err = parseTableSet("tables", cfg.Tables); err != nil {
		return nil, err
	}
	for _, s := range cfg.Ops {
		op, err := connectors.ParseOp(s)
		if err != nil {
			return nil, &ConfigError{Key: "ops", Err: err}
		}
		f.ops[op] = true
	}
	if strings.TrimSpace(cfg.Where) != "" {
		if err := f.compile(cfg.Where); err != nil {
			return nil, &ConfigError{Key: "where", Err: err}
		}
	}
	return f, nil
}

// whereEnv is the shape of the expression's environment, for type checks.
var whereEnv = map[string]any{
	"op":     "",
	"table":  "",
	"before": map[string]any{},
	"after":  map[string]any{},
	"row":    map[string]any{},
}

func (f *filter) compile(src string) error {
	prog, err := expr.Compile(src,
		expr.Env(whereEnv),
		expr.AsBool(),
		expr.Function("num", num, new(func(any) float64)),
	)
	if err != nil {
		return fmt.Errorf("cannot compile the expression: %s", firstLine(err.Error()))
	}
	f.where, f.src = prog, src
	f.uses = map[string]bool{}
	node := prog.Node()
	exprast.Walk(&node, identVisitor(f.uses))
	if f.uses["$env"] {
		f.uses["before"], f.uses["after"] = true, true
	}
	f.env = make(map[string]any, len(whereEnv))
	return nil
}

// firstLine keeps expr's message and drops its source excerpt, which the
// YAML loader's own position replaces.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

type identVisitor map[string]bool

// Visit records the identifiers the expression uses.
func (v identVisitor) Visit(n *exprast.Node) {
	if id, ok := (*n).(*exprast.IdentifierNode); ok {
		v[id.Value] = true
	}
}

// num converts a column value to a float64: decimal strings ("19.90") are
// parsed, numbers converted. It is the expression's num() function.
func num(params ...any) (any, error) {
	switch x := params[0].(type) {
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return nil, errors.New("num: the string is not a number")
		}
		return f, nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case float64:
		return x, nil
	case int:
		return float64(x), nil
	case nil:
		return nil, errors.New("num: the value is null")
	}
	return nil, fmt.Errorf("num: cannot convert a %T to a number", params[0])
}

// Apply reports whether ev matches the tables, ops and where expression.
func (f *filter) Apply(ev *connectors.Event) (bool, error) {
	if !f.allOps && !f.ops[ev.Op] {
		return false, nil
	}
	table := ev.Table()
	if !f.tables.match(table) {
		return false, nil
	}
	if f.where == nil {
		return true, nil
	}
	var cols []string
	if ev.Schema != nil {
		cols = f.columns.get(ev.Schema, func(s *connectors.Schema) []string {
			names := make([]string, len(s.Columns))
			for i, c := range s.Columns {
				names[i] = c.Name
			}
			return names
		})
	}
	env := f.env
	env["op"] = ev.Op.String()
	env["table"] = table.String()
	var before, after map[string]any
	if f.uses["before"] || (f.uses["row"] && ev.After == nil) {
		before = rowMap(cols, ev.Before)
	}
	if f.uses["after"] || (f.uses["row"] && ev.After != nil) {
		after = rowMap(cols, ev.After)
	}
	env["before"], env["after"] = before, after
	if ev.After != nil {
		env["row"] = after
	} else {
		env["row"] = before
	}
	out, err := expr.Run(f.where, env)
	if err != nil {
		return false, fmt.Errorf("filter: table %s: where %q: %s", table, f.src, firstLine(err.Error()))
	}
	keep, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("filter: table %s: where %q gave %T, want true or false", table, f.src, out)
	}
	return keep, nil
}

// rowMap maps column names to values. Absent images give an empty map, so
// that after.x is null rather than an error; unchanged (TOASTed) values are
// null too, since their value is not known.
func rowMap(cols []string, row []connectors.Value) map[string]any {
	m := make(map[string]any, len(row))
	for i, v := range row {
		if i >= len(cols) {
			break
		}
		switch x := v.(type) {
		case connectors.UnchangedValue:
			v = nil
		case connectors.JSON:
			v = string(x)
		}
		m[cols[i]] = v
	}
	return m
}
