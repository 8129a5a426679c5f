package transforms

import (
	"fmt"
	"strings"

	"github.com/tapline/tapline/connectors"
)

// RouteConfig configures the route transform.
type RouteConfig struct {
	Destination string   `yaml:"destination" required:"true" doc:"topic or subject template with {schema}, {table}, {op}, {db} and {connector} placeholders, e.g. cdc.{db}.{table}"`
	Tables      []string `yaml:"tables" doc:"route only events of these tables (\"schema.table\" or \"table\" patterns with * wildcards); others keep their destination; empty routes all"`
}

// RoutePlaceholders are the placeholders a route destination may use.
var RoutePlaceholders = []string{"schema", "table", "op", "db", "connector"}

type route struct {
	parts  []routePart
	tables tableSet
}

// routePart is literal text, or a placeholder when ph is set.
type routePart struct {
	text string
	ph   string
}

// NewRoute builds the route transform: it sets Event.Destination, which a
// log sink uses instead of the topic or subject it would choose. {schema}
// and {table} name the table as earlier transforms left it (see rename);
// {db} and {connector} come from the event's source block; {op} is the
// operation's letter.
func NewRoute(cfg RouteConfig) (Transform, error) {
	parts, err := parseRoute(cfg.Destination)
	if err != nil {
		return nil, &ConfigError{Key: "destination", Err: err}
	}
	tables, err := parseTableSet("tables", cfg.Tables)
	if err != nil {
		return nil, err
	}
	return &route{parts: parts, tables: tables}, nil
}

func parseRoute(tmpl string) ([]routePart, error) {
	if tmpl == "" {
		return nil, fmt.Errorf("empty template")
	}
	var parts []routePart
	rest := tmpl
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			parts = append(parts, routePart{text: rest})
			break
		}
		if i > 0 {
			parts = append(parts, routePart{text: rest[:i]})
		}
		if rest[i] == '}' {
			return nil, fmt.Errorf("unmatched \"}\"")
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed \"{\"")
		}
		name := rest[i+1 : i+j]
		if !isPlaceholder(name) {
			msg := fmt.Sprintf("unknown placeholder {%s}", name)
			if s := connectors.Suggest(name, RoutePlaceholders); s != "" {
				return nil, fmt.Errorf("%s (did you mean {%s}?)", msg, s)
			}
			return nil, fmt.Errorf("%s (want one of {%s})", msg, strings.Join(RoutePlaceholders, "}, {"))
		}
		parts = append(parts, routePart{ph: name})
		rest = rest[i+j+1:]
	}
	return parts, nil
}

func isPlaceholder(name string) bool {
	for _, p := range RoutePlaceholders {
		if p == name {
			return true
		}
	}
	return false
}

// Apply sets ev.Destination from the template.
func (r *route) Apply(ev *connectors.Event) (bool, error) {
	table := ev.Table()
	if !r.tables.match(table) {
		return true, nil
	}
	var b strings.Builder
	for _, p := range r.parts {
		switch p.ph {
		case "":
			b.WriteString(p.text)
		case "schema":
			b.WriteString(table.Schema)
		case "table":
			b.WriteString(table.Name)
		case "op":
			b.WriteString(ev.Op.String())
		case "db":
			b.WriteString(ev.Source.DB)
		case "connector":
			b.WriteString(ev.Source.Connector)
		}
	}
	ev.Destination = b.String()
	return true, nil
}
