package transforms

import (
	"fmt"
	"sort"
	"sync"

	"github.com/tapline/tapline/connectors"
)

// Kind is the kind named in the *connectors.UnknownError that Lookup
// returns for a transform nobody registered, so that its message reads
// `unknown transform type "filtr" (did you mean "filter"?)`.
const Kind connectors.Kind = "transform"

// Registration describes one registered transform. Build it with Register
// or RegisterIn.
type Registration struct {
	Name    string
	Summary string // one line, shown by `tapline connectors`

	newConfig func() any
	build     func(cfg any) (Transform, error)
}

// NewConfig returns a pointer to a fresh config struct holding the
// transform's defaults, ready to be decoded into.
func (r *Registration) NewConfig() any { return r.newConfig() }

// Fields documents the transform's config keys.
func (r *Registration) Fields() []connectors.FieldDoc { return connectors.ConfigFields(r.newConfig()) }

// Build makes the transform from a config made by NewConfig. Errors about
// one config key are *ConfigError values naming it.
func (r *Registration) Build(cfg any) (Transform, error) { return r.build(cfg) }

// ConfigError is returned by a transform's build function when the value of
// one config key is wrong (an expression that does not compile, an unknown
// placeholder). The YAML loader reports it at that key's line.
type ConfigError struct {
	Key string // the YAML key, e.g. "where"
	Err error
}

// Error returns "key: err".
func (e *ConfigError) Error() string { return e.Key + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e *ConfigError) Unwrap() error { return e.Err }

func keyError(key, format string, args ...any) error {
	return &ConfigError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Registry holds transforms by name. The package-level functions use
// Default, which holds the built-in transforms; tests may build their own
// with NewRegistry.
type Registry struct {
	mu  sync.RWMutex
	reg map[string]*Registration
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{reg: map[string]*Registration{}} }

// Default is the registry holding the built-in transforms (filter,
// drop_columns, mask_columns, rename, route) and any registered with
// Register.
var Default = NewRegistry()

// Register adds a transform to Default. It panics on an empty or duplicate
// name, as database/sql.Register does.
func Register[C any](name, summary string, defaults func() C, build func(C) (Transform, error)) {
	RegisterIn(Default, name, summary, defaults, build)
}

// RegisterIn adds a transform to reg. It panics on an empty or duplicate
// name. defaults may be nil, meaning the zero config.
func RegisterIn[C any](reg *Registry, name, summary string, defaults func() C, build func(C) (Transform, error)) {
	if name == "" {
		panic("transforms: Register with an empty name")
	}
	r := &Registration{Name: name, Summary: summary}
	r.newConfig = func() any {
		c := new(C)
		if defaults != nil {
			*c = defaults()
		}
		return c
	}
	r.build = func(cfg any) (Transform, error) {
		c, ok := cfg.(*C)
		if !ok {
			return nil, fmt.Errorf("%s: config is %T, want %T", name, cfg, c)
		}
		return build(*c)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if _, dup := reg.reg[name]; dup {
		panic("transforms: Register called twice for " + name)
	}
	reg.reg[name] = r
}

// Lookup returns the transform of the given name. The error for an unknown
// name is a *connectors.UnknownError of Kind "transform", which suggests
// the nearest registered name.
func (reg *Registry) Lookup(name string) (*Registration, error) {
	reg.mu.RLock()
	r, ok := reg.reg[name]
	reg.mu.RUnlock()
	if ok {
		return r, nil
	}
	return nil, &connectors.UnknownError{Kind: Kind, Name: name, Known: reg.Names()}
}

// Names returns the sorted names of the registered transforms.
func (reg *Registry) Names() []string {
	reg.mu.RLock()
	defer reg.mu.RUnlock()
	names := make([]string, 0, len(reg.reg))
	for n := range reg.reg {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the transform of the given name from Default.
func Lookup(name string) (*Registration, error) { return Default.Lookup(name) }

// Names returns the sorted names of the transforms in Default.
func Names() []string { return Default.Names() }

func init() {
	Register("filter", "keep only events of some tables and ops, or matching an expression",
		nil, NewFilter)
	Register("drop_columns", "remove columns from schemas and rows",
		nil, NewDropColumns)
	Register("mask_columns", "replace column values by a salted hash, a fixed mask or null",
		func() MaskColumnsConfig { return MaskColumnsConfig{Method: MaskHash} }, NewMaskColumns)
	Register("rename", "rename tables and columns (the event's source block keeps the origin)",
		nil, NewRename)
	Register("route", "set the topic or subject a log sink writes an event to, from a template",
		nil, NewRoute)
}
