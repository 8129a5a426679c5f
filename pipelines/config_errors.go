package pipelines

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a pipeline file, with its place:
//
//	pipelines/orders.yaml:7:5: source.tabels: unknown key (did you mean "tables"?)
//
// Messages never quote a value that came from an environment variable, so
// that the expansion of a secret cannot leak through an error.
type Error struct {
	File   string
	Line   int    // 1-based; 0 when the problem concerns the whole file
	Column int    // 1-based; 0 when unknown
	Path   string // the key, e.g. "source.tables" or "transforms[1].where"; empty for syntax errors
	Msg    string
	Hint   string // e.g. `did you mean "tables"?`; may be empty
}

// Error returns "file:line:col: path: msg (hint)", leaving out the parts
// that are unknown or empty.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// ErrorList is every problem found in a set of pipeline files. Load
// returns it, sorted by file, line and column, when there is at least one.
type ErrorList []*Error

// Error returns the errors one per line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the errors, for errors.As and errors.Is.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}
