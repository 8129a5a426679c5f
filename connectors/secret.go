package connectors

import (
	"log/slog"
	"net/url"
	"regexp"
	"strings"
)

// Secret is a config string that must never be printed: passwords, tokens,
// connection strings with credentials. Its String, GoString, LogValue and
// MarshalText forms are "[redacted]"; use Reveal to get the value.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret's value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString returns the quoted redacted form, for %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue keeps the secret out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps the secret out of JSON and YAML output.
//
// fmt cannot call methods on unexported struct fields, so a Secret held in an
// unexported field is printed as is by %v: keep secrets in exported fields.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

var (
	kvPassword  = regexp.MustCompile(`(?i)(password|passwd|pwd|secret|token)\s*=\s*('[^']*'|"[^"]*"|\S+)`)
	dsnPassword = regexp.MustCompile(`([A-Za-z0-9_.$-]+):[^@\s/]*@((?:tcp|unix)\(|/)`) // go-sql-driver "user:pass@tcp(...)/db"
	urlLike     = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"']+`)
)

// RedactDSN removes passwords from connection strings of the usual forms
// (URLs, "key=value" lists and the MySQL driver's "user:pass@tcp(...)"),
// also when they are embedded in a longer message such as an error.
func RedactDSN(s string) string {
	s = urlLike.ReplaceAllStringFunc(s, func(u string) string {
		pu, err := url.Parse(u)
		if err != nil || pu.User == nil {
			return u
		}
		if _, has := pu.User.Password(); has {
			pu.User = url.UserPassword(pu.User.Username(), "xxxxx")
			return pu.String()
		}
		return u
	})
	s = kvPassword.ReplaceAllString(s, "${1}=xxxxx")
	s = dsnPassword.ReplaceAllStringFunc(s, func(m string) string {
		if strings.Contains(m, "://") {
			return m
		}
		sub := dsnPassword.FindStringSubmatch(m)
		return sub[1] + ":xxxxx@" + sub[2]
	})
	return s
}
