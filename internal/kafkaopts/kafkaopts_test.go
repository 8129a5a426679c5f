package kafkaopts_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/kafkaopts"
)

const secret = "s3cr3t-V4lue"

func TestValidate(t *testing.T) {
	ok := kafkaopts.Conn{Brokers: []string{"k1:9092", "k2:9092"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for _, tc := range []struct {
		c    kafkaopts.Conn
		want string
	}{
		{kafkaopts.Conn{}, "brokers: give at least one"},
		{kafkaopts.Conn{Brokers: []string{"kafka://k:9092"}}, "brokers[0]"},
		{kafkaopts.Conn{Brokers: []string{"k:1"}, SASLMechanism: "GSSAPI"}, "sasl_mechanism"},
		{kafkaopts.Conn{Brokers: []string{"k:1"}, SASLMechanism: "plain", SASLUser: "u"}, "sasl_password"},
		{kafkaopts.Conn{Brokers: []string{"k:1"}, SASLMechanism: "SCRAM-SHA-512", SASLPassword: secret}, "sasl_user"},
		{kafkaopts.Conn{Brokers: []string{"k:1"}, SASLMechanism: "OAUTHBEARER"}, "sasl_token"},
		{kafkaopts.Conn{Brokers: []string{"k:1"}, SASLMechanism: "OAUTHBEARER", SASLToken: secret, SASLPassword: secret}, "sasl_password"},
		{kafkaopts.Conn{Brokers: []string{"k:1"}, SASLPassword: secret}, "no mechanism"},
		{kafkaopts.Conn{Brokers: []string{"k:1"}, TLSCert: "c.pem"}, "tls_key"},
	} {
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.c, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%v %+v %#v", tc.c, tc.c, tc.c), secret) {
			t.Errorf("a secret shows in %q or in the printed config", err)
		}
	}
}

// saslOf returns the SASL mechanism the options configure.
func saslOf(t *testing.T, c kafkaopts.Conn) sasl.Mechanism {
	t.Helper()
	opts, err := c.Options(nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ms, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
	if len(ms) != 1 {
		t.Fatalf("%d SASL mechanisms configured, want 1", len(ms))
	}
	return ms[0]
}

// OAUTHBEARER sends the static token (kfake has no OAUTHBEARER, so the
// first message is checked against RFC 7628's form).
func TestOAuthBearer(t *testing.T) {
	m := saslOf(t, kafkaopts.Conn{Brokers: []string{"k:1"}, SASLMechanism: "oauthbearer", SASLToken: secret})
	if m.Name() != "OAUTHBEARER" {
		t.Fatalf("mechanism %s", m.Name())
	}
	_, first, err := m.Authenticate(context.Background(), "k:1")
	if err != nil {
		t.Fatal(err)
	}
	if want := "auth=Bearer " + secret + "\x01"; !bytes.Contains(first, []byte(want)) {
		t.Fatalf("first message %q does not carry the token as %q", first, want)
	}
	for mech, name := range map[string]string{"PLAIN": "PLAIN", "scram-sha-256": "SCRAM-SHA-256", "SCRAM-SHA-512": "SCRAM-SHA-512"} {
		if got := saslOf(t, kafkaopts.Conn{Brokers: []string{"k:1"}, SASLMechanism: mech, SASLUser: "u", SASLPassword: secret}).Name(); got != name {
			t.Errorf("sasl_mechanism %s gives %s", mech, got)
		}
	}
}

func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	key := filepath.Join(dir, "key.pem")
	os.WriteFile(key, []byte("-----BEGIN EC PRIVATE KEY-----\n"+secret+"\n-----END EC PRIVATE KEY-----\n"), 0o600)
	for _, tc := range []struct {
		c    kafkaopts.Conn
		want string
	}{
		{kafkaopts.Conn{Brokers: []string{"k:1"}, TLSCA: filepath.Join(dir, "none.pem")}, "tls_ca"},
		{kafkaopts.Conn{Brokers: []string{"k:1"}, TLSCA: bad}, "no PEM certificate"},
		{kafkaopts.Conn{Brokers: []string{"k:1"}, TLSCert: bad, TLSKey: key}, "tls_cert, tls_key"},
	} {
		_, err := tc.c.Options(nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Options = %v, want %q", err, tc.want)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("the key file's content shows in %q", err)
		}
	}
	if !(kafkaopts.Conn{TLSInsecureSkipVerify: true}).UsesTLS() || (kafkaopts.Conn{}).UsesTLS() {
		t.Error("UsesTLS")
	}
}

func TestErr(t *testing.T) {
	for _, tc := range []struct {
		err       error
		retryable bool
		hint      string
	}{
		{kerr.NotLeaderForPartition, true, ""},
		{kerr.RequestTimedOut, true, ""},
		{kgo.ErrRecordTimeout, true, ""},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true, ""},
		{io.EOF, true, "sasl_"},
		{kerr.SaslAuthenticationFailed, false, "sasl_user and sasl_password"},
		{kerr.TopicAuthorizationFailed, false, "ACL"},
		{kerr.TransactionalIDAuthorizationFailed, false, "transactional id"},
		{kerr.UnknownTopicOrPartition, true, "create_topics"},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}, false, "tls_cert"},
		{context.Canceled, false, ""},
		{kgo.ErrClientClosed, false, ""},
	} {
		err := kafkaopts.Err("kafka: doing", tc.err)
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: Err does not wrap it", tc.err)
		}
		if connectors.IsRetryable(err) != tc.retryable {
			t.Errorf("%v: retryable %v, want %v", tc.err, connectors.IsRetryable(err), tc.retryable)
		}
		if tc.hint != "" && !strings.Contains(err.Error(), tc.hint) {
			t.Errorf("%v: %q has no hint %q", tc.err, err, tc.hint)
		}
		if !strings.HasPrefix(err.Error(), "kafka: doing: ") {
			t.Errorf("%q does not say what was being done", err)
		}
	}
	if kafkaopts.Err("x", nil) != nil {
		t.Error("Err(nil) is not nil")
	}
}

func TestTopicNames(t *testing.T) {
	for in, want := range map[string]string{"orders": "orders", "order items": "order_items", "café": "caf_", "a/b": "a_b", "A.b-c_D9": "A.b-c_D9"} {
		if got := kafkaopts.TopicPart(in); got != want {
			t.Errorf("TopicPart(%q) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"", ".", "..", "a b", strings.Repeat("x", 250)} {
		if kafkaopts.ValidTopic(bad) == nil {
			t.Errorf("ValidTopic(%q) = nil", bad)
		}
	}
	if err := kafkaopts.ValidTopic(strings.Repeat("x", 249)); err != nil {
		t.Error(err)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l := kafkaopts.Logger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if l.Level() != kgo.LogLevelWarn {
		t.Fatalf("level %v at slog warn", l.Level())
	}
	l.Log(kgo.LogLevelError, "broken", "broker", 1)
	l.Log(kgo.LogLevelInfo, "chatty")
	if out := buf.String(); !strings.Contains(out, "level=WARN msg=\"franz-go: broken\" broker=1") || strings.Contains(out, "chatty") {
		t.Fatalf("log %q", out)
	}
	if lvl := kafkaopts.Logger(slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))).Level(); lvl != kgo.LogLevelInfo {
		t.Fatalf("level %v at slog debug", lvl)
	}
	if lvl := kafkaopts.Logger(nil).Level(); lvl != kgo.LogLevelNone {
		t.Fatalf("level %v for no logger", lvl)
	}
}
