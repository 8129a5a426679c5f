package main

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tapline/tapline/connectors"
)

// configFlags adds one flag per config key of cfg (a pointer to a connector's
// config struct) to fs: the YAML key in kebab-case, a list as a
// comma-separated value, a map as k=v pairs. It returns the flags' keys so
// that required ones can be checked after parsing.
func configFlags(fs *pflag.FlagSet, cfg any, prefix string) []connectors.FieldDoc {
	fields := connectors.ConfigFields(cfg)
	root := reflect.ValueOf(cfg).Elem()
	var out []connectors.FieldDoc
	for _, f := range fields {
		fv := root.FieldByIndex(f.Index)
		if !settable(fv) {
			continue
		}
		usage := f.Doc
		if f.Required {
			usage += " (required)"
		}
		fs.Var(&fieldValue{v: fv, typ: f.Type}, prefix+f.Flag, usage)
		out = append(out, f)
	}
	return out
}

func settable(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	case reflect.Slice:
		return v.Type().Elem().Kind() == reflect.String
	case reflect.Map:
		return v.Type().Key().Kind() == reflect.String && v.Type().Elem().Kind() == reflect.String
	}
	return false
}

// fieldValue is a pflag.Value that sets a config struct field.
type fieldValue struct {
	v   reflect.Value
	typ string
}

func (f *fieldValue) Type() string {
	switch f.typ {
	case "secret":
		return "string"
	case "list of string":
		return "strings"
	case "map of string":
		return "k=v,..."
	}
	return f.typ
}

func (f *fieldValue) String() string {
	if !f.v.IsValid() {
		return ""
	}
	if f.typ == "secret" {
		return ""
	}
	switch f.v.Kind() {
	case reflect.Slice:
		parts := make([]string, f.v.Len())
		for i := range parts {
			parts[i] = f.v.Index(i).String()
		}
		return strings.Join(parts, ",")
	case reflect.Map:
		return ""
	}
	if f.v.IsZero() {
		return ""
	}
	return fmt.Sprint(f.v.Interface())
}

func (f *fieldValue) IsBoolFlag() bool { return f.v.Kind() == reflect.Bool }

func (f *fieldValue) Set(s string) error {
	v := f.v
	if v.Type() == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 500ms or 2s")
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer")
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a non-negative integer")
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a number")
		}
		v.SetFloat(n)
	case reflect.Slice:
		var items []string
		if s != "" {
			items = strings.Split(s, ",")
		}
		sl := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, it := range items {
			sl.Index(i).SetString(strings.TrimSpace(it))
		}
		v.Set(sl)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for _, kv := range strings.Split(s, ",") {
			if kv == "" {
				continue
			}
			k, val, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("want key=value pairs, got %q", kv)
			}
			m.SetMapIndex(reflect.ValueOf(strings.TrimSpace(k)).Convert(v.Type().Key()), reflect.ValueOf(strings.TrimSpace(val)).Convert(v.Type().Elem()))
		}
		v.Set(m)
	default:
		return fmt.Errorf("cannot be set from the command line")
	}
	return nil
}

// checkConfig reports required keys left empty and runs the config's own
// validation, naming flags rather than YAML keys.
func checkConfig(kind, name string, cfg any, fields []connectors.FieldDoc, prefix string) error {
	root := reflect.ValueOf(cfg).Elem()
	var missing []string
	for _, f := range fields {
		if f.Required && root.FieldByIndex(f.Index).IsZero() {
			missing = append(missing, "--"+prefix+f.Flag)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s %s: missing required flag(s) %s", kind, name, strings.Join(missing, ", "))
	}
	if v, ok := cfg.(connectors.Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("%s %s: %w", kind, name, err)
		}
	}
	return nil
}

func reflectField(cfg any, index []int) reflect.Value {
	return reflect.ValueOf(cfg).Elem().FieldByIndex(index)
}
