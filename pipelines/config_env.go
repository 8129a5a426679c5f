package pipelines

import (
	"strings"
)

// envProblem is one thing wrong with the ${...} references of a value.
type envProblem struct {
	msg, hint string
}

// expandEnv replaces, in a scalar's text, ${VAR} by the variable's value,
// ${VAR:-default} by the value or, when VAR is unset or empty, by default,
// and $$ by a single $. Any other $ is kept. fromEnv reports whether a
// variable or default was substituted. An unset variable without a default
// is a problem naming the variable; the value is never part of a problem.
func expandEnv(s string, lookup func(string) (string, bool)) (out string, fromEnv bool, problems []envProblem) {
	if !strings.Contains(s, "$") {
		return s, false, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '{':
		default:
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			problems = append(problems, envProblem{msg: `unterminated "${"`, hint: `write ${NAME}, or $$ for a literal "$"`})
			b.WriteString(s[i:])
			break
		}
		ref := s[i+2 : i+2+end]
		i += 2 + end
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			problems = append(problems, envProblem{
				msg:  "bad environment variable reference",
				hint: `want ${NAME} or ${NAME:-default}, NAME made of letters, digits and "_"`,
			})
			continue
		}
		fromEnv = true
		val, ok := lookup(name)
		switch {
		case hasDef && val == "":
			val = def
		case !ok:
			problems = append(problems, envProblem{
				msg:  "environment variable " + name + " is not set",
				hint: "set it, or give a default: ${" + name + ":-default}",
			})
		}
		b.WriteString(val)
	}
	return b.String(), fromEnv, problems
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
