package kafka_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tapline/tapline/connectors"
	"github.com/tapline/tapline/internal/kafkaopts"
	"github.com/tapline/tapline/sinks/kafka"
)

// syncBuffer is a log destination safe for franz-go's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Every SASL mechanism kfake serves authenticates; a wrong password fails
// Open with a hint, and no password reaches an error or the log (franz-go's
// included, at its most detailed level).
func TestSASL(t *testing.T) {
	users := map[string][2]string{
		kafkaopts.MechanismPlain:       {"plain-user", "plain-Secret-1"},
		kafkaopts.MechanismScramSHA256: {"scram256-user", "scram256-Secret-2"},
		kafkaopts.MechanismScramSHA512: {"scram512-user", "scram512-Secret-3"},
	}
	opts := []kfake.Opt{kfake.EnableSASL()}
	for m, up := range users {
		opts = append(opts, kfake.Superuser(m, up[0], up[1]))
	}
	c := newCluster(t, opts...)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
	for m, up := range users {
		t.Run(m, func(t *testing.T) {
			cfg := sinkConfig(t, c)
			cfg.SASLMechanism, cfg.SASLUser, cfg.SASLPassword = m, up[0], connectors.Secret(up[1])
			s, err := kafka.New(cfg, connectors.Runtime{Pipeline: "p", Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			open(t, s)
			write(t, s, keyed(1, 1, 3))
			auth, err := cfg.Conn.Options(nil)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(consumeWith(t, c, auth, true, itemsTopic(cfg))); n != 3 {
				t.Fatalf("read back %d records, want 3", n)
			}

			cfg.SASLPassword = "Wrong-Password-" + connectors.Secret(m)
			bad, err := kafka.New(cfg, connectors.Runtime{Pipeline: "p", Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = bad.Open(ctx)
			bad.Close(ctx)
			// kfake closes the connection on a failed authentication
			// (Kafka answers SASL_AUTHENTICATION_FAILED first; see
			// kafkaopts' tests for that hint).
			if err == nil || !strings.Contains(err.Error(), "sasl_") {
				t.Fatalf("Open with a wrong password: %v; want an error pointing at the sasl_ settings", err)
			}
			for _, secret := range []string{up[1], string(cfg.SASLPassword)} {
				if strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%v %+v", cfg, cfg), secret) {
					t.Fatalf("a password shows in %q or in the printed config", err)
				}
			}
		})
	}
	for _, up := range users {
		if strings.Contains(logs.String(), up[1]) || strings.Contains(logs.String(), "Wrong-Password") {
			t.Fatal("a password shows in the log")
		}
	}
	if !strings.Contains(logs.String(), "franz-go") {
		t.Fatal("franz-go logged nothing through slog")
	}
}

// pki is a test CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type pki struct {
	dir                       string
	ca, clientCert, clientKey string
	server                    tls.Certificate
	pool                      *x509.CertPool
	caCert                    *x509.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), pool: x509.NewCertPool()}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tapline test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(caDER)
	p.pool.AddCert(p.caCert)
	p.ca = p.write(t, "ca.pem", "CERTIFICATE", caDER)

	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	scert, skey := leaf(2, "broker", x509.ExtKeyUsageServerAuth)
	p.server, err = tls.X509KeyPair(scert, skey)
	if err != nil {
		t.Fatal(err)
	}
	ccert, ckey := leaf(3, "tapline", x509.ExtKeyUsageClientAuth)
	p.clientCert = filepath.Join(p.dir, "client.pem")
	p.clientKey = filepath.Join(p.dir, "client.key")
	os.WriteFile(p.clientCert, ccert, 0o600)
	os.WriteFile(p.clientKey, ckey, 0o600)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TLS with a CA file and a client certificate (the broker requires one);
// each missing piece fails Open with an error that says what to fix.
func TestTLS(t *testing.T) {
	p := newPKI(t)
	c := newCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{p.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool, MinVersion: tls.VersionTLS12}))
	ok := sinkConfig(t, c)
	ok.TLSCA, ok.TLSCert, ok.TLSKey = p.ca, p.clientCert, p.clientKey
	s := newSink(t, ok, "p")
	open(t, s)
	write(t, s, keyed(1, 1, 3))

	skip := ok
	skip.TLSCA, skip.TLSInsecureSkipVerify = "", true
	s2 := newSink(t, skip, "p")
	open(t, s2)
	write(t, s2, keyed(2, 4, 3))

	noCA := ok
	noCA.TLSCA = ""
	noCert := ok
	noCert.TLSCert, noCert.TLSKey = "", ""
	for _, tc := range []struct {
		name string
		cfg  kafka.Config
		want string
	}{
		{"without the CA", noCA, "tls_ca"},
		{"without a client certificate", noCert, "tls_cert"},
	} {
		s, err := kafka.New(tc.cfg, connectors.Runtime{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.Open(ctx)
		cancel()
		s.Close(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) || connectors.IsRetryable(err) {
			t.Errorf("Open %s: %v (retryable %v); want a final error mentioning %q", tc.name, err, connectors.IsRetryable(err), tc.want)
		}
	}

	missing := ok
	missing.TLSCA = filepath.Join(p.dir, "nope.pem")
	if _, err := kafka.New(missing, connectors.Runtime{}); err == nil || !strings.Contains(err.Error(), "tls_ca") {
		t.Errorf("New with a missing tls_ca file: %v", err)
	}
}
