package kafkaopts

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/connectors"
)

// Err wraps err with what the connector was doing and, for the failures a
// user can fix (authentication, authorization, TLS), a hint naming the
// config key or the broker setting to look at. The result is marked
// connectors.Retryable when trying again may succeed (see IsRetryable).
// It returns nil for a nil err.
func Err(what string, err error) error {
	if err == nil {
		return nil
	}
	if h := hint(err); h != "" {
		err = fmt.Errorf("%s: %w (%s)", what, err, h)
	} else {
		err = fmt.Errorf("%s: %w", what, err)
	}
	if IsRetryable(err) {
		return connectors.Retryable(err)
	}
	return err
}

// IsRetryable reports whether the same request may succeed later: a lost
// or refused connection, a timeout, a leader or coordinator moving, a
// transaction to abort and redo. Authentication, authorization, TLS and
// configuration errors, a closed client and a cancelled context are not.
func IsRetryable(err error) bool {
	var firstRead *kgo.ErrFirstReadEOF
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case err == nil,
		tlsAlert(err),
		errors.Is(err, context.Canceled),
		errors.Is(err, kgo.ErrClientClosed),
		errors.As(err, &firstRead),
		errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid):
		return false
	case kerr.IsRetriable(err),
		errors.Is(err, kerr.TransactionAbortable),
		errors.Is(err, kerr.ConcurrentTransactions),
		errors.Is(err, kerr.RebalanceInProgress),
		errors.Is(err, kgo.ErrRecordTimeout),
		errors.Is(err, kgo.ErrRecordRetries),
		errors.Is(err, kgo.ErrAborting),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// tlsAlert reports a TLS alert from the broker: it refused the handshake.
func tlsAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// hint says what to check for errors a user can fix.
func hint(err error) string {
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return "check sasl_user and sasl_password, or sasl_token"
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return "the brokers do not enable this sasl_mechanism (broker setting sasl.enabled.mechanisms)"
	case errors.Is(err, kerr.IllegalSaslState):
		return "check that sasl_mechanism matches the listener's security protocol"
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return "the principal lacks an ACL on the topic (Describe, Read or Write)"
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		return "the principal lacks a Read ACL on the consumer group"
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return "the principal lacks a cluster ACL (Create for create_topics, IdempotentWrite for the producer)"
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return "the principal lacks a Write ACL on the transactional id (delivery: exactly_once)"
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return "the topic does not exist: create it, or set create_topics: true on the sink"
	case errors.As(err, &unknownAuthority):
		return "the broker's certificate is not signed by a CA in tls_ca (or the system's roots)"
	case tlsAlert(err):
		return "the broker refused the TLS handshake: does it require a client certificate (tls_cert, tls_key) it trusts?"
	case errors.As(err, &hostname):
		return "the broker's certificate does not name the host in brokers"
	case errors.Is(err, io.EOF):
		return "the broker closed the connection; if this persists, check the tls and sasl_ settings against the listener (some brokers close it on a failed authentication)"
	}
	return ""
}
