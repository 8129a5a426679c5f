package pipelines

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/pipelines/transforms"
)

// Pipeline is one pipeline as defined in YAML, validated and with every
// connector's config decoded and every transform built. Nothing has been
// connected to: building and opening the source and sink is the engine's
// work (Spec.Reg.NewSource, Spec.Reg.NewSink).
//
// Secrets in connector configs are connectors.Secret values, so printing a
// Pipeline (even with %+v) never shows them.
type Pipeline struct {
	Name string
	File string // the file it was defined in
	Line int    // the line its document starts on

	Source     Spec
	Transforms []TransformSpec
	Sink       Spec

	Batch   connectors.Limits // batch.*; DefaultLimits where not set
	OnError Policy            // on_error; PolicyFail when not set
	DLQ     *Spec             // dlq; set exactly when OnError is PolicyDLQ
	Retry   Retry             // retry.*: transient sink and offset errors
}

// Spec is a decoded source, sink or dead-letter sink block.
type Spec struct {
	Type   string                   // the connector's registered name
	Reg    *connectors.Registration // the connector
	Config any                      // a pointer to the connector's config (what Reg.NewConfig returns), decoded
	File   string
	Line   int
	Column int
}

// TransformSpec is a decoded and built entry of a pipeline's transforms.
type TransformSpec struct {
	Type      string
	Reg       *transforms.Registration
	Config    any // a pointer to the transform's config, decoded
	Transform transforms.Transform
	File      string
	Line      int
	Column    int
}

// TransformChain returns the pipeline's transforms in order, as a Job
// takes them.
func (p *Pipeline) TransformChain() []transforms.Transform {
	out := make([]transforms.Transform, len(p.Transforms))
	for i, t := range p.Transforms {
		out[i] = t.Transform
	}
	return out
}

// DefaultRetry is the retry policy of a pipeline that sets none.
var DefaultRetry = Retry{Initial: 100 * time.Millisecond, Max: 30 * time.Second}

// Loader loads pipeline files. Its zero value uses connectors.Default,
// transforms.Default and the process environment.
type Loader struct {
	Connectors *connectors.Registry
	Transforms *transforms.Registry
	// Env looks up environment variables for ${VAR} references;
	// os.LookupEnv when nil.
	Env func(string) (string, bool)
}

// Load reads the pipelines defined in path: a YAML file, or a directory
// whose *.yaml and *.yml files are read in name order (not recursively;
// hidden files are skipped). A file may hold several pipelines separated by
// "---". Source and sink types are looked up in reg, transforms in
// transforms.Default, and ${VAR} references with env (os.LookupEnv when
// nil).
//
// Every problem in every file is reported: the error is an ErrorList
// sorted by file and line, and no pipelines are returned with it.
func Load(path string, reg *connectors.Registry, env func(string) (string, bool)) ([]*Pipeline, error) {
	return (&Loader{Connectors: reg, Env: env}).Load(path)
}

// LoadBytes is Load for the contents of one file; name is used in errors.
func LoadBytes(name string, data []byte, reg *connectors.Registry, env func(string) (string, bool)) ([]*Pipeline, error) {
	return (&Loader{Connectors: reg, Env: env}).LoadBytes(name, data)
}

// Load is the package-level Load with l's registries and environment.
func (l *Loader) Load(path string) ([]*Pipeline, error) {
	st := l.start()
	info, err := os.Stat(path)
	if err != nil {
		return nil, ErrorList{{File: path, Msg: pathErrorMsg(err)}}
	}
	if !info.IsDir() {
		st.file(path, nil)
		return st.result()
	}
	list, err := os.ReadDir(path)
	if err != nil {
		return nil, ErrorList{{File: path, Msg: pathErrorMsg(err)}}
	}
	n := 0
	for _, e := range list {
		name := e.Name()
		ext := filepath.Ext(name)
		if e.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		n++
		st.file(filepath.Join(path, name), nil)
	}
	if n == 0 {
		st.errs = append(st.errs, &Error{File: path, Msg: "no pipeline files (*.yaml, *.yml) in the directory"})
	}
	return st.result()
}

// LoadBytes is the package-level LoadBytes with l's registries and
// environment.
func (l *Loader) LoadBytes(name string, data []byte) ([]*Pipeline, error) {
	st := l.start()
	st.file(name, data)
	return st.result()
}

func pathErrorMsg(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// loadState is one Load: the pipelines and errors of every file so far.
type loadState struct {
	conns *connectors.Registry
	trans *transforms.Registry
	env   func(string) (string, bool)

	pipelines []*Pipeline
	errs      ErrorList
	names     map[string]string // pipeline name -> "file:line:col" of its definition
}

func (l *Loader) start() *loadState {
	st := &loadState{conns: l.Connectors, trans: l.Transforms, env: l.Env, names: map[string]string{}}
	if st.conns == nil {
		st.conns = connectors.Default
	}
	if st.trans == nil {
		st.trans = transforms.Default
	}
	if st.env == nil {
		st.env = os.LookupEnv
	}
	return st
}

func (st *loadState) result() ([]*Pipeline, error) {
	if len(st.errs) > 0 {
		st.errs.sort()
		return nil, st.errs
	}
	return st.pipelines, nil
}

// file loads the pipelines of one file; data nil means read it.
func (st *loadState) file(name string, data []byte) {
	if data == nil {
		var err error
		if data, err = os.ReadFile(name); err != nil {
			st.errs = append(st.errs, &Error{File: name, Msg: pathErrorMsg(err)})
			return
		}
	}
	f, err := parse(data)
	if err != nil {
		e := &Error{File: name, Msg: "syntax error: " + err.Error()}
		var ye yaml.Error
		if errors.As(err, &ye) {
			e.Msg = "syntax error: " + ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				e.Line, e.Column = tk.Position.Line, tk.Position.Column
			}
		}
		if l := lineOf(data, e.Line); strings.Contains(l, "${") && strings.ContainsAny(l, "[{") {
			e.Hint = `inside [...] or {...}, quote values that hold ${...}: "${VAR}"`
		}
		st.errs = append(st.errs, e)
		return
	}
	n := 0
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue // an empty document, e.g. before a leading "---"
		}
		n++
		d := newDecoder(name, doc.Body, st.env)
		if p := st.pipeline(d, doc.Body); p != nil && len(d.errs) == 0 {
			st.pipelines = append(st.pipelines, p)
		}
		st.errs = append(st.errs, d.errs...)
	}
	if n == 0 {
		st.errs = append(st.errs, &Error{File: name, Msg: "no pipelines: the file is empty"})
	}
}

// lineOf returns the n-th (1-based) line of data, or "".
func lineOf(data []byte, n int) string {
	if n < 1 {
		return ""
	}
	lines := strings.SplitN(string(data), "\n", n+1)
	if len(lines) < n {
		return ""
	}
	return lines[n-1]
}

// parse parses YAML into an AST, turning a panic of the parser on odd input
// into an error.
func parse(data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("cannot parse the file: %v", r)
		}
	}()
	return parser.ParseBytes(data, 0)
}

// envelope is stage one of decoding a pipeline: its own keys, with the
// connector and transform blocks kept as nodes for stage two.
type envelope struct {
	Name       string      `yaml:"name" required:"true"`
	Source     ast.Node    `yaml:"source" required:"true"`
	Transforms []ast.Node  `yaml:"transforms"`
	Sink       ast.Node    `yaml:"sink" required:"true"`
	Batch      batchConfig `yaml:"batch"`
	OnError    Policy      `yaml:"on_error"`
	DLQ        ast.Node    `yaml:"dlq"`
	Retry      retryConfig `yaml:"retry"`
}

type batchConfig struct {
	MaxEvents int           `yaml:"max_events"`
	MaxBytes  byteSize      `yaml:"max_bytes"`
	MaxWait   time.Duration `yaml:"max_wait"`
}

type retryConfig struct {
	Initial     time.Duration `yaml:"initial"`
	Max         time.Duration `yaml:"max"`
	MaxAttempts int           `yaml:"max_attempts"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

var policies = []string{string(PolicyFail), string(PolicySkip), string(PolicyDLQ)}

// pipeline decodes and checks one document. Its errors are in d.errs.
func (st *loadState) pipeline(d *decoder, body ast.Node) *Pipeline {
	ents, ok := d.entries(body, "")
	if !ok {
		d.errorAt(body, "", "a pipeline has name, source, sink and optionally transforms, batch, on_error, dlq, retry",
			"want a mapping, not %s", kindName(d.resolve(body)))
		return nil
	}
	env := envelope{
		Batch:   batchConfig{MaxEvents: DefaultLimits.MaxEvents, MaxBytes: byteSize(DefaultLimits.MaxBytes), MaxWait: DefaultLimits.MaxWait},
		OnError: PolicyFail,
		Retry:   retryConfig{Initial: DefaultRetry.Initial, Max: DefaultRetry.Max, MaxAttempts: DefaultRetry.MaxAttempts},
	}
	d.decodeStruct(body, ents, reflect.ValueOf(&env).Elem(), "")
	line, _ := position(body)
	p := &Pipeline{
		Name:    env.Name,
		File:    d.file,
		Line:    line,
		Batch:   connectors.Limits{MaxEvents: env.Batch.MaxEvents, MaxBytes: int(env.Batch.MaxBytes), MaxWait: env.Batch.MaxWait},
		OnError: env.OnError,
		Retry:   Retry{Initial: env.Retry.Initial, Max: env.Retry.Max, MaxAttempts: env.Retry.MaxAttempts},
	}

	if n := d.nodes["name"]; n != nil && env.Name != "" {
		l, c := position(d.resolve(n))
		here := fmt.Sprintf("%s:%d:%d", d.file, l, c)
		switch first, dup := st.names[env.Name]; {
		case !nameRE.MatchString(env.Name):
			d.errorAt(n, "name", "", `invalid pipeline name %s: want lowercase letters, digits, "_", "." and "-", starting with a letter or digit`,
				d.quote(n, env.Name))
		case dup:
			d.errorAt(n, "name", "first defined at "+first, "duplicate pipeline name %s", d.quote(n, env.Name))
		default:
			st.names[env.Name] = here
		}
	}

	if env.Source != nil {
		p.Source, _ = st.spec(d, connectors.KindSource, env.Source, "source")
	}
	for i, tn := range env.Transforms {
		if ts, ok := st.transform(d, tn, fmt.Sprintf("transforms[%d]", i)); ok {
			p.Transforms = append(p.Transforms, ts)
		}
	}
	if env.Sink != nil {
		p.Sink, _ = st.spec(d, connectors.KindSink, env.Sink, "sink")
	}

	at := func(path string) ast.Node { return d.nodes[path] }
	if p.Batch.MaxEvents < 1 {
		d.errorAt(at("batch.max_events"), "batch.max_events", "", "must be at least 1")
	}
	if p.Batch.MaxBytes < 1 {
		d.errorAt(at("batch.max_bytes"), "batch.max_bytes", "", "must be at least 1 byte")
	}
	if p.Batch.MaxWait <= 0 {
		d.errorAt(at("batch.max_wait"), "batch.max_wait", "", "must be more than 0")
	}
	if p.Retry.Initial <= 0 {
		d.errorAt(at("retry.initial"), "retry.initial", "", "must be more than 0")
	}
	if p.Retry.Max < p.Retry.Initial {
		d.errorAt(at("retry.max"), "retry.max", "", "must not be less than retry.initial (%s)", p.Retry.Initial)
	}
	if p.Retry.MaxAttempts < 0 {
		d.errorAt(at("retry.max_attempts"), "retry.max_attempts", "", "must be 0 (retry until stopped) or more")
	}

	switch p.OnError {
	case PolicyFail, PolicySkip, PolicyDLQ:
		if p.OnError == PolicyDLQ && env.DLQ == nil {
			d.errorAt(at("on_error"), "on_error", "add a dlq block: a sink, e.g. {type: jsonl, path: data/dlq.jsonl}",
				"dlq needs a dead-letter sink")
		}
		if p.OnError != PolicyDLQ && env.DLQ != nil && !isNull(d.resolve(env.DLQ)) {
			d.errorAt(env.DLQ, "dlq", "set on_error: dlq, or remove the dlq block",
				"a dead-letter sink is set but on_error is %q", string(p.OnError))
		}
	default:
		n := at("on_error")
		hint := "want " + strings.Join(policies, ", ")
		if s := connectors.Suggest(string(p.OnError), policies); s != "" && !d.fromEnv[d.resolve(n)] {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		d.errorAt(n, "on_error", hint, "unknown policy %s", d.quote(n, string(p.OnError)))
	}
	if p.OnError == PolicyDLQ && env.DLQ != nil {
		if dlq, ok := st.spec(d, connectors.KindSink, env.DLQ, "dlq"); ok {
			p.DLQ = &dlq
		}
	}
	return p
}

// block decodes stage one of a connector or transform block: it finds the
// type and returns it with the block's other keys.
func (st *loadState) block(d *decoder, n ast.Node, path, what string) (typ string, typeNode ast.Node, rest []entry, ok bool) {
	n = d.resolve(n)
	if a, ok := n.(*ast.AliasNode); ok {
		d.unknownAlias(a, path)
		return "", nil, nil, false
	}
	ents, isMap := d.entries(n, path)
	if !isMap {
		d.errorAt(n, path, "", "want a mapping with the %s's type and settings, not %s", what, emptyOr(n))
		return "", nil, nil, false
	}
	for _, e := range ents {
		if e.key == "type" {
			typeNode = d.resolve(e.value)
			continue
		}
		rest = append(rest, e)
	}
	if typeNode == nil {
		d.errorAt(n, join(path, "type"), "", "missing required key")
		return "", nil, nil, false
	}
	d.nodes[join(path, "type")] = typeNode
	if isNull(typeNode) {
		d.errorAt(typeNode, join(path, "type"), "", "required key is empty")
		return "", nil, nil, false
	}
	typ, ok = d.text(typeNode, join(path, "type"), "a "+what+" type name")
	if ok && typ == "" {
		d.errorAt(typeNode, join(path, "type"), "", "required key is empty")
		ok = false
	}
	return typ, typeNode, rest, ok
}

func emptyOr(n ast.Node) string {
	if isNull(n) {
		return "nothing"
	}
	return kindName(n)
}

// spec decodes a source, sink or dlq block into its connector's config.
func (st *loadState) spec(d *decoder, kind connectors.Kind, n ast.Node, path string) (Spec, bool) {
	n = d.resolve(n)
	line, col := position(n)
	s := Spec{File: d.file, Line: line, Column: col}
	typ, typeNode, rest, ok := st.block(d, n, path, string(kind))
	if !ok {
		return s, false
	}
	s.Type = typ
	reg, err := st.conns.Lookup(kind, typ)
	if err != nil {
		msg := err.Error()
		if d.fromEnv[typeNode] {
			msg = fmt.Sprintf("unknown %s type (value from the environment; known: %s)", kind, strings.Join(st.conns.Names(kind), ", "))
		}
		d.errorAt(typeNode, join(path, "type"), "", "%s", msg)
		return s, false
	}
	s.Reg = reg
	s.Config = reg.NewConfig()
	before := len(d.errs)
	d.decodeStruct(n, rest, reflect.ValueOf(s.Config).Elem(), path)
	if len(d.errs) > before {
		return s, false
	}
	if v, ok := s.Config.(connectors.Validator); ok {
		if err := v.Validate(); err != nil {
			d.errorAt(n, path, "", "%s", connectors.RedactDSN(err.Error()))
			return s, false
		}
	}
	return s, true
}

// transform decodes a transforms entry and builds the transform.
func (st *loadState) transform(d *decoder, n ast.Node, path string) (TransformSpec, bool) {
	n = d.resolve(n)
	line, col := position(n)
	ts := TransformSpec{File: d.file, Line: line, Column: col}
	typ, typeNode, rest, ok := st.block(d, n, path, "transform")
	if !ok {
		return ts, false
	}
	ts.Type = typ
	reg, err := st.trans.Lookup(typ)
	if err != nil {
		msg := err.Error()
		if d.fromEnv[typeNode] {
			msg = "unknown transform type (value from the environment; known: " + strings.Join(st.trans.Names(), ", ") + ")"
		}
		d.errorAt(typeNode, join(path, "type"), "", "%s", msg)
		return ts, false
	}
	ts.Reg = reg
	ts.Config = reg.NewConfig()
	before := len(d.errs)
	d.decodeStruct(n, rest, reflect.ValueOf(ts.Config).Elem(), path)
	if len(d.errs) > before {
		return ts, false
	}
	if v, ok := ts.Config.(connectors.Validator); ok {
		if err := v.Validate(); err != nil {
			d.errorAt(n, path, "", "%s", err)
			return ts, false
		}
	}
	ts.Transform, err = reg.Build(ts.Config)
	if err != nil {
		var ce *transforms.ConfigError
		if errors.As(err, &ce) {
			p := join(path, ce.Key)
			at := d.nodes[p]
			if at == nil {
				at = n
			}
			d.errorAt(at, p, "", "%s", ce.Err)
		} else {
			d.errorAt(n, path, "", "%s", err)
		}
		return ts, false
	}
	return ts, true
}

// byteSize is a size in bytes, written as a number of bytes or with a unit:
// B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000).
type byteSize int

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
	"kb": 1e3, "mb": 1e6, "gb": 1e9,
}

// UnmarshalText parses a size such as "4MiB", "512 KiB" or "1048576".
func (s *byteSize) UnmarshalText(text []byte) error {
	str := strings.ReplaceAll(strings.TrimSpace(string(text)), "_", "")
	i := strings.IndexFunc(str, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(str)
	}
	num, unit := str[:i], strings.ToLower(strings.TrimSpace(str[i:]))
	mult, ok := sizeUnits[unit]
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || f*mult >= 1<<62 {
		return errors.New(`want a size such as "4MiB", "512KiB" or 1048576 (bytes); units are B, KiB, MiB, GiB, KB, MB, GB`)
	}
	*s = byteSize(f * mult)
	return nil
}
