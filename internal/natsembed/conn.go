package natsembed

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tapline/tapline/connectors"
)

// Conn is the connection part of the nats sink's and source's config,
// embedded inline in both: which server, how to authenticate, TLS. With no
// url (or embedded: true) the connector uses the embedded server.
type Conn struct {
	URL                   string            `yaml:"url" doc:"NATS server URL(s), comma-separated (nats://host:4222); empty means the embedded server"`
	Embedded              bool              `yaml:"embedded" doc:"use the embedded NATS server (JetStream on file storage under <data-dir>/nats), shared by the process's nats connectors; implied when url is empty"`
	EmbeddedPort          int               `yaml:"embedded_port" doc:"port the embedded server listens on, on 127.0.0.1"`
	Creds                 string            `yaml:"creds" doc:"user credentials file (JWT and NKey seed)"`
	NKey                  string            `yaml:"nkey" doc:"NKey seed file"`
	Token                 connectors.Secret `yaml:"token" doc:"authentication token"`
	User                  string            `yaml:"user" doc:"user name"`
	Password              connectors.Secret `yaml:"password" doc:"password for user"`
	TLSCA                 string            `yaml:"tls_ca" doc:"CA certificate file to verify the server with"`
	TLSCert               string            `yaml:"tls_cert" doc:"client certificate file (with tls_key)"`
	TLSKey                string            `yaml:"tls_key" doc:"client key file (with tls_cert)"`
	TLSInsecureSkipVerify bool              `yaml:"tls_insecure_skip_verify" doc:"do not verify the server's certificate (testing only)"`
	ConnectTimeout        time.Duration     `yaml:"connect_timeout" doc:"how long to wait for the connection"`
}

// DefaultConn returns the connection defaults: the embedded server on port
// 4223, a 5s connect timeout.
func DefaultConn() Conn { return Conn{EmbeddedPort: DefaultPort, ConnectTimeout: 5 * time.Second} }

// UsesEmbedded reports whether the connector uses the embedded server.
func (c Conn) UsesEmbedded() bool { return c.Embedded || strings.TrimSpace(c.URL) == "" }

// Validate checks combinations of the connection settings.
func (c Conn) Validate() error {
	switch {
	case c.Embedded && strings.TrimSpace(c.URL) != "":
		return errors.New("embedded: true and url are both set; remove url to use the embedded server, or embedded to use the server at url")
	case c.EmbeddedPort <= 0 || c.EmbeddedPort > 65535:
		return fmt.Errorf("embedded_port: %d is not a TCP port", c.EmbeddedPort)
	case c.Creds != "" && c.NKey != "":
		return errors.New("creds and nkey are both set; give one")
	case c.Token != "" && c.User != "":
		return errors.New("token and user are both set; give one")
	case c.Password != "" && c.User == "":
		return errors.New("password is set without user")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("tls_cert and tls_key go together; give both or neither")
	case c.ConnectTimeout < 0:
		return fmt.Errorf("connect_timeout: %s is negative", c.ConnectTimeout)
	}
	return nil
}

// Describe returns the server the connector connects to, safe to log:
// "embedded (127.0.0.1:4223)" or the URL with any password removed.
func (c Conn) Describe() string {
	if c.UsesEmbedded() {
		return fmt.Sprintf("embedded NATS (127.0.0.1:%d)", c.EmbeddedPort)
	}
	return connectors.RedactDSN(c.URL)
}

// Dial connects to the configured server, or to the embedded one (starting
// it if this process has not), and returns the connection and a function
// that closes it and releases the embedded server. name identifies the
// client to the server (it shows in the server's connection list). The
// connection reconnects forever; disconnections and asynchronous errors are
// logged to rt's logger. Errors never contain credentials; a server that
// cannot be reached is a retryable error.
func (c Conn) Dial(ctx context.Context, rt connectors.Runtime, name string) (*nats.Conn, func(), error) {
	log := rt.Log()
	url := c.URL
	release := func() {}
	if c.UsesEmbedded() {
		var err error
		if url, release, err = Acquire(ctx, rt.DataDir, c.EmbeddedPort, log); err != nil {
			return nil, nil, err
		}
	}
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	where := c.Describe()
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats: disconnected; reconnecting", "server", where, "error", connectors.RedactDSN(err.Error()))
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats: reconnected", "server", where) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats: asynchronous error", "server", where, "subject", subj, "error", connectors.RedactDSN(err.Error()))
		}),
	}
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		opt, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("nkey: read seed file %s: %w", c.NKey, err)
		}
		opts = append(opts, opt)
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token.Reveal()))
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password.Reveal()))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	if c.TLSInsecureSkipVerify {
		opts = append(opts, nats.Secure(&tls.Config{InsecureSkipVerify: true}))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		release()
		err = fmt.Errorf("connect to %s: %s", where, c.scrub(err.Error()))
		if isAuthError(err) {
			return nil, nil, err
		}
		return nil, nil, connectors.Retryable(err)
	}
	return nc, func() { nc.Close(); release() }, nil
}

// scrub removes credentials from a message: passwords in URLs, and the
// token and password themselves should a library ever echo them.
func (c Conn) scrub(msg string) string {
	msg = connectors.RedactDSN(msg)
	for _, s := range []connectors.Secret{c.Token, c.Password} {
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s.Reveal(), "[redacted]")
		}
	}
	return msg
}

// Scrub removes credentials from an error's message, for errors of
// operations on a connection made by Dial.
func (c Conn) Scrub(err error) string { return c.scrub(err.Error()) }

func isAuthError(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "authorization") || strings.Contains(s, "authentication")
}
