package pipelines

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/tapline/tapline/connectors"
)

// decoder decodes the AST of one YAML document into typed config structs,
// strictly: unknown keys, values of the wrong type and missing required keys
// are errors. It collects every error instead of stopping at the first.
//
// It does the typed decoding itself rather than through goccy/go-yaml's
// decoder, which stops at the first error of a block, reports one unknown key
// of several at random, loses the position of a bad duration, silently
// truncates 1.5 into an int field, and reads `password: 0123` into a string
// field as "83" (YAML 1.1 octal). goccy/go-yaml still parses the file (so
// syntax errors and duplicate keys are its own), and decodes fields whose
// types implement its Unmarshaler interfaces, or are `any`.
type decoder struct {
	file    string
	env     func(string) (string, bool)
	anchors map[string]ast.Node
	errs    ErrorList
	// nodes holds the value node of every key decoded so far, by path,
	// so that checks after decoding can point at the value.
	nodes map[string]ast.Node
	// fromEnv marks scalars whose text came from an environment variable;
	// errors never quote them.
	fromEnv map[ast.Node]bool
}

func newDecoder(file string, doc ast.Node, env func(string) (string, bool)) *decoder {
	d := &decoder{file: file, env: env, anchors: map[string]ast.Node{}, nodes: map[string]ast.Node{}, fromEnv: map[ast.Node]bool{}}
	ast.Walk(anchorCollector(d.anchors), doc)
	return d
}

type anchorCollector map[string]ast.Node

// Visit records the anchors it walks past.
func (c anchorCollector) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		c[a.Name.GetToken().Value] = a.Value
	}
	return c
}

// errorAt records an error at n's position.
func (d *decoder) errorAt(n ast.Node, path, hint, format string, args ...any) {
	line, col := position(n)
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Column: col, Path: path, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// position returns where a node starts: for a mapping, its first key.
func position(n ast.Node) (line, col int) {
	switch x := n.(type) {
	case nil:
		return 0, 0
	case *ast.MappingNode:
		if len(x.Values) > 0 && !x.IsFlowStyle {
			return position(x.Values[0])
		}
	case *ast.MappingValueNode:
		return position(x.Key)
	case *ast.MappingKeyNode:
		return position(x.Value)
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return 0, 0
	}
	return tk.Position.Line, tk.Position.Column
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve looks through anchors, tags and aliases to the node that holds
// the value. An alias to an unknown anchor is returned as is.
func (d *decoder) resolve(n ast.Node) ast.Node {
	for range 64 {
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
		case *ast.TagNode:
			n = x.Value
		case *ast.AliasNode:
			target, ok := d.anchors[aliasName(x)]
			if !ok {
				return x
			}
			n = target
		default:
			return n
		}
	}
	return n
}

// unknownAlias reports an alias to an anchor the document does not define:
// most often a pattern like *.email that YAML reads as an alias.
func (d *decoder) unknownAlias(a *ast.AliasNode, path string) {
	name := aliasName(a)
	hint := "define the anchor &" + name + " earlier in the same document"
	if strings.ContainsAny(name, ".*?[") {
		hint = fmt.Sprintf(`quote it if you meant the text: "*%s"`, name)
	}
	d.errorAt(a, path, hint, "unknown alias *%s", name)
}

func aliasName(a *ast.AliasNode) string {
	if a.Value == nil {
		return ""
	}
	return a.Value.GetToken().Value
}

func isNull(n ast.Node) bool {
	_, null := n.(*ast.NullNode)
	return n == nil || null
}

// kindName names a node's kind for "want X, not Y" messages.
func kindName(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	}
	return "a scalar"
}

// entry is one key of a mapping.
type entry struct {
	key     string
	keyNode ast.Node
	value   ast.Node
}

// entries lists the keys of a mapping node, with merge keys (<<: *base)
// expanded: explicit keys win over merged ones. ok is false when n is not a
// mapping.
func (d *decoder) entries(n ast.Node, path string) (out []entry, ok bool) {
	var values []*ast.MappingValueNode
	switch m := d.resolve(n).(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		return nil, false
	}
	seen := map[string]bool{}
	var merges []ast.Node
	for _, mv := range values {
		if _, merge := mv.Key.(*ast.MergeKeyNode); merge {
			merges = append(merges, mv.Value)
			continue
		}
		key, ok := d.keyText(mv.Key)
		if !ok {
			d.errorAt(mv.Key, path, "", "keys must be strings, not %s", kindName(d.resolve(mv.Key)))
			continue
		}
		seen[key] = true
		out = append(out, entry{key: key, keyNode: mv.Key, value: mv.Value})
	}
	for _, m := range merges {
		var sources []ast.Node
		if seq, isSeq := d.resolve(m).(*ast.SequenceNode); isSeq {
			sources = seq.Values
		} else {
			sources = []ast.Node{m}
		}
		for _, src := range sources {
			merged, ok := d.entries(src, path)
			if !ok {
				d.errorAt(src, path, "", "a merge key (<<) needs a mapping or a list of mappings")
				continue
			}
			for _, e := range merged {
				if !seen[e.key] {
					seen[e.key] = true
					out = append(out, e)
				}
			}
		}
	}
	return out, true
}

func (d *decoder) keyText(n ast.Node) (string, bool) {
	n = d.resolve(n)
	if k, ok := n.(*ast.MappingKeyNode); ok {
		n = d.resolve(k.Value)
	}
	return rawText(n)
}

// rawText returns a scalar's text as written (unquoted): "0123" stays
// "0123", "1.50" stays "1.50". ok is false for mappings and lists.
func rawText(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		if x.Value == nil {
			return "", true
		}
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode, *ast.NullNode:
		return x.GetToken().Value, true
	}
	return "", false
}

// text returns a scalar's text with ${VAR} references expanded. want says
// what the key takes, for the error when n is a mapping or a list.
func (d *decoder) text(n ast.Node, path, want string) (string, bool) {
	s, ok := rawText(n)
	if !ok {
		d.errorAt(n, path, "", "want %s, not %s", want, kindName(n))
		return "", false
	}
	switch n.(type) {
	case *ast.StringNode, *ast.LiteralNode:
	default:
		return s, true // numbers, booleans and nulls hold no ${...}
	}
	out, fromEnv, problems := expandEnv(s, d.env)
	for _, p := range problems {
		d.errorAt(n, path, p.hint, "%s", p.msg)
	}
	if fromEnv {
		d.fromEnv[n] = true
	}
	return out, len(problems) == 0
}

// quote quotes a value for an error message, unless it came from the
// environment.
func (d *decoder) quote(n ast.Node, s string) string {
	if d.fromEnv[d.resolve(n)] {
		return "from the environment"
	}
	return strconv.Quote(s)
}

// envNote marks messages about values that came from the environment, so
// that the reader knows to look there.
func (d *decoder) envNote(n ast.Node) string {
	if d.fromEnv[n] {
		return " (after expanding environment variables)"
	}
	return ""
}

var (
	astNodeType         = reflect.TypeFor[ast.Node]()
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	yamlUnmarshalers    = []reflect.Type{
		reflect.TypeFor[yaml.BytesUnmarshaler](),
		reflect.TypeFor[yaml.BytesUnmarshalerContext](),
		reflect.TypeFor[yaml.InterfaceUnmarshaler](),
		reflect.TypeFor[yaml.InterfaceUnmarshalerContext](),
		reflect.TypeFor[yaml.NodeUnmarshaler](),
		reflect.TypeFor[yaml.NodeUnmarshalerContext](),
	}
)

func implementsAny(t reflect.Type, ifaces []reflect.Type) bool {
	for _, it := range ifaces {
		if t.Implements(it) || reflect.PointerTo(t).Implements(it) {
			return true
		}
	}
	return false
}

// decodeValue decodes n into v (settable). A null value, or an empty one
// ("key:" with nothing after it), leaves v as it is: the default.
func (d *decoder) decodeValue(n ast.Node, v reflect.Value, path string) {
	n = d.resolve(n)
	t := v.Type()
	if t == astNodeType {
		if n != nil {
			v.Set(reflect.ValueOf(n))
		}
		return
	}
	if a, ok := n.(*ast.AliasNode); ok {
		d.unknownAlias(a, path)
		return
	}
	if isNull(n) {
		return
	}
	switch {
	case t == durationType:
		s, ok := d.text(n, path, "a duration")
		if !ok {
			return
		}
		dur, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			d.errorAt(n, path, "", `want a duration such as "100ms", "5s" or "1m30s"%s`, d.envNote(n))
			return
		}
		v.SetInt(int64(dur))
		return
	case implementsAny(t, yamlUnmarshalers) || (t.Kind() == reflect.Interface && t.NumMethod() == 0):
		d.delegate(n, v, path)
		return
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		s, ok := d.text(n, path, "a scalar")
		if !ok {
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.errorAt(n, path, "", "%s%s", err, d.envNote(n))
		}
		return
	}

	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decodeValue(n, v.Elem(), path)
	case reflect.String:
		if s, ok := d.text(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		s, ok := d.text(n, path, "true or false")
		if !ok {
			return
		}
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			d.errorAt(n, path, "", "want true or false%s", d.envNote(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s, ok := d.text(n, path, "an integer")
		if !ok {
			return
		}
		i, err := parseInt(s)
		if err != nil || v.OverflowInt(i) {
			lo, hi := intRange(t)
			if errors.Is(err, strconv.ErrRange) || (err == nil && v.OverflowInt(i)) {
				d.errorAt(n, path, "", "want an integer from %d to %d%s", lo, hi, d.envNote(n))
			} else {
				d.errorAt(n, path, "", "want an integer%s", d.envNote(n))
			}
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		s, ok := d.text(n, path, "a non-negative integer")
		if !ok {
			return
		}
		i, err := parseUint(s)
		if err != nil || v.OverflowUint(i) {
			d.errorAt(n, path, "", "want an integer from 0 to %d%s", uint64(math.MaxUint64)>>(64-t.Bits()), d.envNote(n))
			return
		}
		v.SetUint(i)
	case reflect.Float32, reflect.Float64:
		s, ok := d.text(n, path, "a number")
		if !ok {
			return
		}
		f, err := parseFloat(n, s)
		if err != nil || v.OverflowFloat(f) {
			d.errorAt(n, path, "", "want a number%s", d.envNote(n))
			return
		}
		v.SetFloat(f)
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			d.errorAt(n, path, "", "want a list, not %s", kindName(n))
			return
		}
		out := reflect.MakeSlice(t, len(seq.Values), len(seq.Values))
		for i, item := range seq.Values {
			d.decodeValue(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(out)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			d.errorAt(n, path, "", "cannot decode into %s: map keys must be strings", t)
			return
		}
		ents, ok := d.entries(n, path)
		if !ok {
			d.errorAt(n, path, "", "want a mapping, not %s", kindName(n))
			return
		}
		out := reflect.MakeMapWithSize(t, len(ents))
		for _, e := range ents {
			elem := reflect.New(t.Elem()).Elem()
			d.decodeValue(e.value, elem, join(path, e.key))
			out.SetMapIndex(reflect.ValueOf(e.key).Convert(t.Key()), elem)
		}
		v.Set(out)
	case reflect.Struct:
		ents, ok := d.entries(n, path)
		if !ok {
			d.errorAt(n, path, "", "want a mapping, not %s", kindName(n))
			return
		}
		d.decodeStruct(n, ents, v, path)
	default:
		d.errorAt(n, path, "", "cannot decode into %s", t)
	}
}

// delegate decodes n into v with goccy/go-yaml, strictly, after expanding
// ${VAR} references in n's strings in place.
func (d *decoder) delegate(n ast.Node, v reflect.Value, path string) {
	before := len(d.errs)
	ast.Walk(expandVisitor{d, path}, n)
	if len(d.errs) > before {
		return
	}
	if err := yaml.NodeToValue(n, v.Addr().Interface(), yaml.Strict()); err != nil {
		at, msg := n, err.Error()
		var ye yaml.Error
		if errors.As(err, &ye) {
			msg = ye.GetMessage()
			if tk := ye.GetToken(); tk != nil {
				at = ast.String(tk)
			}
		}
		if d.fromEnv[n] {
			msg = "invalid value (after expanding environment variables)"
		}
		d.errorAt(at, path, "", "%s", connectors.RedactDSN(msg))
	}
}

type expandVisitor struct {
	d    *decoder
	path string
}

// Visit expands ${VAR} references in string scalars in place.
func (e expandVisitor) Visit(n ast.Node) ast.Visitor {
	switch x := n.(type) {
	case *ast.StringNode:
		if s, ok := e.d.text(x, e.path, "a scalar"); ok {
			x.Value = s
		}
	case *ast.LiteralNode:
		if s, ok := e.d.text(x, e.path, "a scalar"); ok && x.Value != nil {
			x.Value.Value = s
		}
		return nil
	}
	return e
}

// parseInt parses a decimal integer, or one with a 0x, 0o or 0b prefix.
// A leading zero does not make it octal.
func parseInt(s string) (int64, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), "_", "")
	body := strings.TrimLeft(s, "+-")
	if len(body) > 2 && body[0] == '0' && strings.ContainsRune("xXoObB", rune(body[1])) {
		return strconv.ParseInt(s, 0, 64)
	}
	return strconv.ParseInt(s, 10, 64)
}

func parseUint(s string) (uint64, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), "_", "")
	if len(s) > 2 && s[0] == '0' && strings.ContainsRune("xXoObB", rune(s[1])) {
		return strconv.ParseUint(s, 0, 64)
	}
	return strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, 64)
}

func parseFloat(n ast.Node, s string) (float64, error) {
	switch x := n.(type) {
	case *ast.InfinityNode:
		return x.Value, nil
	case *ast.NanNode:
		return math.NaN(), nil
	}
	return strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(s), "_", ""), 64)
}

func intRange(t reflect.Type) (lo, hi int64) {
	bits := t.Bits()
	return -1 << (bits - 1), 1<<(bits-1) - 1
}

// structFields caches connectors.ConfigFields by struct type.
var structFields sync.Map // reflect.Type -> []connectors.FieldDoc

func fieldsOf(t reflect.Type) []connectors.FieldDoc {
	if f, ok := structFields.Load(t); ok {
		return f.([]connectors.FieldDoc)
	}
	f := connectors.ConfigFields(reflect.New(t).Interface())
	structFields.Store(t, f)
	return f
}

// decodeStruct decodes the entries of the mapping at into the struct v. The
// keys are those connectors.ConfigFields lists, so that the loader, the
// docs and the CLI agree on them. Required keys that are absent or empty
// are errors.
func (d *decoder) decodeStruct(at ast.Node, ents []entry, v reflect.Value, path string) {
	fields := fieldsOf(v.Type())
	byKey := make(map[string]*connectors.FieldDoc, len(fields))
	keys := make([]string, len(fields))
	for i := range fields {
		byKey[fields[i].Key] = &fields[i]
		keys[i] = fields[i].Key
	}
	present := map[string]bool{}
	suggested := map[string]bool{}
	for _, e := range ents {
		p := join(path, e.key)
		f := byKey[e.key]
		if f == nil {
			var hint string
			switch s := connectors.Suggest(e.key, keys); {
			case s != "":
				hint = fmt.Sprintf("did you mean %q?", s)
				suggested[s] = true
			case len(keys) == 0:
				hint = "this block takes no keys"
			default:
				hint = "known keys: " + strings.Join(keys, ", ")
			}
			d.errorAt(e.keyNode, p, hint, "unknown key")
			continue
		}
		present[e.key] = true
		d.nodes[p] = e.value
		fv := v.FieldByIndex(f.Index)
		before := len(d.errs)
		d.decodeValue(e.value, fv, p)
		if f.Required && len(d.errs) == before && fv.IsZero() {
			d.errorAt(e.value, p, "", "required key is empty")
		}
	}
	for i := range fields {
		f := &fields[i]
		if present[f.Key] || suggested[f.Key] {
			continue
		}
		d.checkRequired(at, v.FieldByIndex(f.Index), f, join(path, f.Key))
	}
}

// checkRequired reports a required key that was not given and has no
// default, descending into nested structs that were not given either.
func (d *decoder) checkRequired(at ast.Node, fv reflect.Value, f *connectors.FieldDoc, path string) {
	if f.Required && fv.IsZero() {
		d.errorAt(at, path, "", "missing required key")
		return
	}
	if fv.Kind() != reflect.Struct || reflect.PointerTo(fv.Type()).Implements(textUnmarshalerType) {
		return
	}
	fields := fieldsOf(fv.Type())
	for i := range fields {
		d.checkRequired(at, fv.FieldByIndex(fields[i].Index), &fields[i], join(path, fields[i].Key))
	}
}
