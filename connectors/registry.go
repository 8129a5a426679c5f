package connectors

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
)

// Validator is implemented by config structs that check themselves after
// decoding (required combinations, ranges). The YAML loader calls it and
// reports its error against the connector's block.
type Validator interface {
	Validate() error
}

// Kind says whether a registered connector is a source or a sink.
type Kind string

// The kinds of connector.
const (
	KindSource Kind = "source"
	KindSink   Kind = "sink"
)

// Registration describes one registered connector. Build it with
// RegisterSource or RegisterSink.
type Registration struct {
	Kind    Kind
	Name    string
	Summary string // one line, shown by `tapline connectors`
	// Positions formats this source's positions; the zero value means hex.
	Positions PositionFormat

	newConfig   func() any
	buildSource func(cfg any, rt Runtime) (Source, error)
	buildSink   func(cfg any, rt Runtime) (Sink, error)
}

// NewConfig returns a pointer to a fresh config struct holding the
// connector's defaults, ready to be decoded into.
func (r *Registration) NewConfig() any { return r.newConfig() }

// Fields documents the connector's config keys.
func (r *Registration) Fields() []FieldDoc { return ConfigFields(r.newConfig()) }

// NewSource builds the source from a config made by NewConfig.
func (r *Registration) NewSource(cfg any, rt Runtime) (Source, error) {
	if r.buildSource == nil {
		return nil, fmt.Errorf("%q is a %s, not a source", r.Name, r.Kind)
	}
	return r.buildSource(cfg, rt)
}

// NewSink builds the sink from a config made by NewConfig.
func (r *Registration) NewSink(cfg any, rt Runtime) (Sink, error) {
	if r.buildSink == nil {
		return nil, fmt.Errorf("%q is a %s, not a sink", r.Name, r.Kind)
	}
	return r.buildSink(cfg, rt)
}

// FormatPosition returns the readable form of a position of this source.
func (r *Registration) FormatPosition(p Position) string {
	if p == nil {
		return "(none)"
	}
	if r.Positions.Format != nil {
		if s, err := r.Positions.Format(p); err == nil {
			return s
		}
	}
	return p.String()
}

// ParsePosition parses the readable form of a position of this source; it
// also accepts the "0x..." hex form of any position.
func (r *Registration) ParsePosition(s string) (Position, error) {
	if strings.HasPrefix(s, "0x") {
		var p Position
		if _, err := fmt.Sscanf(s[2:], "%x", (*[]byte)(&p)); err != nil {
			return nil, fmt.Errorf("position %q: bad hex: %v", s, err)
		}
		return p, nil
	}
	if r.Positions.Parse == nil {
		return nil, fmt.Errorf("position %q: %s positions are given in hex (0x...)", s, r.Name)
	}
	return r.Positions.Parse(s)
}

// Registry holds connectors by kind and name. The package-level functions
// use Default; tests may build their own with NewRegistry.
type Registry struct {
	mu  sync.RWMutex
	reg map[Kind]map[string]*Registration
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{reg: map[Kind]map[string]*Registration{KindSource: {}, KindSink: {}}}
}

// Default is the registry connectors add themselves to from their init
// functions.
var Default = NewRegistry()

// Option adjusts a registration.
type Option func(*Registration)

// WithPositions sets how a source's positions are shown and parsed.
func WithPositions(f PositionFormat) Option { return func(r *Registration) { r.Positions = f } }

// RegisterSource adds a source to the Default registry. It panics on an empty
// or duplicate name, as database/sql.Register does.
func RegisterSource[C any](name, summary string, defaults func() C, build func(C, Runtime) (Source, error), opts ...Option) {
	RegisterSourceIn(Default, name, summary, defaults, build, opts...)
}

// RegisterSink adds a sink to the Default registry. It panics on an empty or
// duplicate name.
func RegisterSink[C any](name, summary string, defaults func() C, build func(C, Runtime) (Sink, error), opts ...Option) {
	RegisterSinkIn(Default, name, summary, defaults, build, opts...)
}

// RegisterSourceIn adds a source to reg.
func RegisterSourceIn[C any](reg *Registry, name, summary string, defaults func() C, build func(C, Runtime) (Source, error), opts ...Option) {
	r := &Registration{Kind: KindSource, Name: name, Summary: summary, newConfig: newConfigFunc(defaults)}
	r.buildSource = func(cfg any, rt Runtime) (Source, error) { return build(*cfg.(*C), rt) }
	reg.add(r, opts)
}

// RegisterSinkIn adds a sink to reg.
func RegisterSinkIn[C any](reg *Registry, name, summary string, defaults func() C, build func(C, Runtime) (Sink, error), opts ...Option) {
	r := &Registration{Kind: KindSink, Name: name, Summary: summary, newConfig: newConfigFunc(defaults)}
	r.buildSink = func(cfg any, rt Runtime) (Sink, error) { return build(*cfg.(*C), rt) }
	reg.add(r, opts)
}

func newConfigFunc[C any](defaults func() C) func() any {
	return func() any {
		c := new(C)
		if defaults != nil {
			*c = defaults()
		}
		return c
	}
}

func (reg *Registry) add(r *Registration, opts []Option) {
	if r.Name == "" {
		panic("connectors: Register " + string(r.Kind) + " with an empty name")
	}
	for _, o := range opts {
		o(r)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if _, dup := reg.reg[r.Kind][r.Name]; dup {
		panic("connectors: Register called twice for " + string(r.Kind) + " " + r.Name)
	}
	reg.reg[r.Kind][r.Name] = r
}

// Lookup returns the connector of the given kind and name. The error for an
// unknown name lists the registered ones and suggests the nearest.
func (reg *Registry) Lookup(kind Kind, name string) (*Registration, error) {
	reg.mu.RLock()
	r, ok := reg.reg[kind][name]
	reg.mu.RUnlock()
	if ok {
		return r, nil
	}
	return nil, &UnknownError{Kind: kind, Name: name, Known: reg.Names(kind)}
}

// Names returns the sorted names of the registered connectors of a kind.
func (reg *Registry) Names(kind Kind) []string {
	reg.mu.RLock()
	defer reg.mu.RUnlock()
	names := make([]string, 0, len(reg.reg[kind]))
	for n := range reg.reg[kind] {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Sources returns the sorted names of the sources in Default.
func Sources() []string { return Default.Names(KindSource) }

// Sinks returns the sorted names of the sinks in Default.
func Sinks() []string { return Default.Names(KindSink) }

// UnknownError is returned for a connector name nobody registered.
type UnknownError struct {
	Kind  Kind
	Name  string
	Known []string
}

func (e *UnknownError) Error() string {
	msg := fmt.Sprintf("unknown %s type %q", e.Kind, e.Name)
	if s := Suggest(e.Name, e.Known); s != "" {
		return msg + fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg + " (known: " + strings.Join(e.Known, ", ") + ")"
}

// Suggest returns the candidate nearest to s by edit distance, if it is near
// enough to be a likely typo, or "".
func Suggest(s string, candidates []string) string {
	best, bestD := "", len(s)/2+2
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		// On a tie, prefer the candidate that starts like s ("tabels" is
		// "tables", not "labels"), then the alphabetically first.
		if d < bestD || (d == bestD && best != "" &&
			(commonPrefix(s, c) > commonPrefix(s, best) || (commonPrefix(s, c) == commonPrefix(s, best) && c < best))) {
			best, bestD = c, d
		}
	}
	if bestD > len(s)/2+1 || bestD > 3 {
		return ""
	}
	return best
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// editDistance is the Damerau (optimal string alignment) distance.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// FieldDoc documents one config key, read from the config struct's tags:
//
//	DSN Secret `yaml:"dsn" required:"true" doc:"connection string"`
type FieldDoc struct {
	Key      string // the YAML key
	Flag     string // the CLI flag: the key in kebab-case
	Type     string // "string", "int", "bool", "duration", "list", "secret", ...
	Default  string // the default's readable form; secrets never show
	Doc      string
	Required bool
	// Index is the field's index path in the struct, for setting it.
	Index []int
}

// ConfigFields lists the documented keys of a config struct (or a pointer
// to one), in field order, descending into embedded structs. Fields without
// a yaml tag, or tagged "-", are not config keys.
func ConfigFields(cfg any) []FieldDoc {
	v := reflect.ValueOf(cfg)
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []FieldDoc
	collectFields(v, nil, &out)
	return out
}

func collectFields(v reflect.Value, index []int, out *[]FieldDoc) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		idx := append(append([]int(nil), index...), i)
		tag := f.Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && f.Type.Kind() == reflect.Struct && (name == "" || strings.Contains(tag, "inline")) {
			collectFields(v.Field(i), idx, out)
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		*out = append(*out, FieldDoc{
			Key:      name,
			Flag:     strings.ReplaceAll(name, "_", "-"),
			Type:     typeName(f.Type),
			Default:  defaultString(v.Field(i)),
			Doc:      f.Tag.Get("doc"),
			Required: f.Tag.Get("required") == "true",
			Index:    idx,
		})
	}
}

var (
	secretType   = reflect.TypeFor[Secret]()
	durationType = reflect.TypeFor[time.Duration]()
)

func typeName(t reflect.Type) string {
	switch {
	case t == secretType:
		return "secret"
	case t == durationType:
		return "duration"
	}
	switch t.Kind() {
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Map:
		return "map of " + typeName(t.Elem())
	case reflect.Struct:
		return "object"
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "int"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "uint"
	case reflect.Float32, reflect.Float64:
		return "float"
	}
	return t.Kind().String()
}

func defaultString(v reflect.Value) string {
	if v.Type() == secretType {
		return ""
	}
	if v.IsZero() {
		return ""
	}
	switch v.Kind() {
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return strings.Join(parts, ",")
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return ""
	}
	return fmt.Sprint(v.Interface())
}
