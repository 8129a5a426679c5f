// Package kafkaopts holds what tapline's Kafka source and sink share: the
// connection settings (brokers, client id, SASL, TLS) as a config block that
// both embed, their translation into franz-go client options, the routing of
// franz-go's log through slog, the classification of Kafka errors as
// retryable or not, and the rules for topic names.
package kafkaopts

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tapline/tapline/connectors"
)

// The SASL mechanisms Conn accepts.
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
	MechanismOAuthBearer = "OAUTHBEARER"
)

// Conn is how a Kafka connector reaches the cluster. Connector configs embed
// it inline, so its keys sit next to the connector's own.
type Conn struct {
	Brokers               []string          `yaml:"brokers" required:"true" doc:"bootstrap brokers as host:port; the others are found from their metadata"`
	ClientID              string            `yaml:"client_id" doc:"client id sent to the brokers (their logs, metrics and quotas show it)"`
	SASLMechanism         string            `yaml:"sasl_mechanism" doc:"SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER; empty for none"`
	SASLUser              string            `yaml:"sasl_user" doc:"SASL user name (PLAIN and SCRAM)"`
	SASLPassword          connectors.Secret `yaml:"sasl_password" doc:"SASL password (PLAIN and SCRAM)"`
	SASLToken             connectors.Secret `yaml:"sasl_token" doc:"OAUTHBEARER token, used as is for every connection (restart to change it)"`
	TLS                   bool              `yaml:"tls" doc:"connect with TLS; implied by any other tls_ key"`
	TLSCA                 string            `yaml:"tls_ca" doc:"PEM file of the CA certificates that signed the brokers' certificates; default the system's roots"`
	TLSCert               string            `yaml:"tls_cert" doc:"PEM file of the client certificate, for brokers that require one (needs tls_key)"`
	TLSKey                string            `yaml:"tls_key" doc:"PEM file of the client certificate's private key"`
	TLSInsecureSkipVerify bool              `yaml:"tls_insecure_skip_verify" doc:"accept any broker certificate without verifying it (for tests only: it allows a man in the middle)"`
}

// DefaultClientID is the client id when the config gives none.
const DefaultClientID = "tapline"

// Validate checks the connection settings without connecting. Its errors
// name the config key and never contain a secret.
func (c Conn) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: give at least one broker as host:port"))
	}
	for i, b := range c.Brokers {
		if b = strings.TrimSpace(b); b == "" || strings.Contains(b, "://") {
			errs = append(errs, fmt.Errorf("brokers[%d]: %q is not host:port (no scheme, e.g. kafka-1:9092)", i, connectors.RedactDSN(b)))
		}
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "":
		if c.SASLUser != "" || c.SASLPassword != "" || c.SASLToken != "" {
			errs = append(errs, errors.New("sasl_mechanism: sasl_user, sasl_password or sasl_token is set but no mechanism; set sasl_mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)"))
		}
	case MechanismPlain, MechanismScramSHA256, MechanismScramSHA512:
		if c.SASLUser == "" || c.SASLPassword == "" {
			errs = append(errs, fmt.Errorf("sasl_user, sasl_password: %s needs both", strings.ToUpper(c.SASLMechanism)))
		}
		if c.SASLToken != "" {
			errs = append(errs, fmt.Errorf("sasl_token: only OAUTHBEARER takes a token, not %s", strings.ToUpper(c.SASLMechanism)))
		}
	case MechanismOAuthBearer:
		if c.SASLToken == "" {
			errs = append(errs, errors.New("sasl_token: OAUTHBEARER needs a token"))
		}
		if c.SASLPassword != "" {
			errs = append(errs, errors.New("sasl_password: OAUTHBEARER takes sasl_token, not a password"))
		}
	default:
		errs = append(errs, fmt.Errorf("sasl_mechanism: %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", c.SASLMechanism))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert, tls_key: a client certificate needs both"))
	}
	return errors.Join(errs...)
}

// UsesTLS reports whether connections use TLS.
func (c Conn) UsesTLS() bool {
	return c.TLS || c.TLSCA != "" || c.TLSCert != "" || c.TLSInsecureSkipVerify
}

// Options returns the franz-go options for the connection: seed brokers,
// client id, SASL, TLS (reading the PEM files now) and a logger that routes
// franz-go's log to log (see Logger).
func (c Conn) Options(log *slog.Logger) ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	brokers := make([]string, len(c.Brokers))
	for i, b := range c.Brokers {
		brokers[i] = strings.TrimSpace(b)
	}
	id := c.ClientID
	if id == "" {
		id = DefaultClientID
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID(id), kgo.WithLogger(Logger(log))}
	if m := c.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	if c.UsesTLS() {
		cfg, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	return opts, nil
}

// mechanism returns the SASL mechanism, or nil for none.
func (c Conn) mechanism() sasl.Mechanism {
	switch strings.ToUpper(c.SASLMechanism) {
	case MechanismPlain:
		return plain.Auth{User: c.SASLUser, Pass: c.SASLPassword.Reveal()}.AsMechanism()
	case MechanismScramSHA256:
		return scram.Auth{User: c.SASLUser, Pass: c.SASLPassword.Reveal()}.AsSha256Mechanism()
	case MechanismScramSHA512:
		return scram.Auth{User: c.SASLUser, Pass: c.SASLPassword.Reveal()}.AsSha512Mechanism()
	case MechanismOAuthBearer:
		return oauth.Auth{Token: c.SASLToken.Reveal()}.AsMechanism()
	}
	return nil
}

func (c Conn) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLSInsecureSkipVerify} //nolint:gosec // opt-in, documented as for tests
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("tls_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_ca: %s holds no PEM certificate", c.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			// The key file's content never reaches the message: the
			// standard library reports only what is wrong with it.
			return nil, fmt.Errorf("tls_cert, tls_key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// MaxTopicLen is the longest topic name Kafka accepts.
const MaxTopicLen = 249

// ValidTopic checks a topic name against Kafka's rules: 1 to 249 of
// [a-zA-Z0-9._-], and not "." or "..".
func ValidTopic(name string) error {
	switch {
	case name == "":
		return errors.New("empty topic name")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > MaxTopicLen:
		return fmt.Errorf("topic name %q is %d bytes long; Kafka allows %d", name, len(name), MaxTopicLen)
	}
	for i := 0; i < len(name); i++ {
		if !topicChar(name[i]) {
			return fmt.Errorf("topic name %q holds %q; Kafka allows only letters, digits, '.', '_' and '-'", name, name[i])
		}
	}
	return nil
}

func topicChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// TopicPart returns s with every byte Kafka does not allow in a topic name
// replaced by '_' (a multi-byte UTF-8 character becomes one '_'), for
// building topic names out of database, schema and table names.
func TopicPart(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if !topicChar(s[i]) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 && topicChar(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
