package ess

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// Defaults of a Client.
const (
	// DefaultDeadline bounds each check: a missed deadline is a denial.
	DefaultDeadline = 5 * time.Millisecond
	// DefaultRPCTimeout bounds the other RPCs when the caller's context has no deadline.
	DefaultRPCTimeout = time.Second
	// DefaultStallAfter: a stream that answers nothing for this long is replaced.
	DefaultStallAfter = time.Second
	// DefaultLogInterval: at most one log line per failure cause per interval.
	DefaultLogInterval = time.Second
	// The channel's reconnect backoff: gRPC's default grows to 120 s; a same-host sidecar
	// restarted by its supervisor should be found again within a second.
	DefaultReconnectBase = 50 * time.Millisecond
	DefaultReconnectMax  = time.Second
)

type options struct {
	deadline      time.Duration
	rpcTimeout    time.Duration
	stallAfter    time.Duration
	logInterval   time.Duration
	logger        *slog.Logger
	token         string
	tlsConfig     *tls.Config
	tlsFiles      *tlsFiles
	reconnectBase time.Duration
	reconnectMax  time.Duration
	dialOptions   []grpc.DialOption
}

type tlsFiles struct{ ca, cert, key, serverName string }

// Option configures a Client.
type Option func(*options)

// WithDeadline sets the default per-check deadline (default 5 ms).
func WithDeadline(d time.Duration) Option { return func(o *options) { o.deadline = d } }

// WithRPCTimeout bounds the RPCs other than checks when the caller's context has no
// deadline (default 1 s); one <= 0 fails New.
func WithRPCTimeout(d time.Duration) Option { return func(o *options) { o.rpcTimeout = d } }

// WithToken sends "authorization: Bearer <token>" with every call (a sidecar with
// authentication on). Space, tab, CR and LF around the token are dropped (a CRLF file's
// "tok\r" is "tok"), as by the sidecar, essctl and every client (review 54e); a byte
// outside printable ASCII (0x20-0x7E) left inside fails New (ErrInvalidToken): no call
// could carry it. A token that is empty once stripped means no token.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS makes the connection TLS (and mutual TLS if config carries a certificate).
func WithTLS(config *tls.Config) Option { return func(o *options) { o.tlsConfig = config } }

// WithTLSFiles makes the connection TLS from PEM files: caFile the CA bundle that signed
// the sidecar's certificate ("" for the system roots), certFile and keyFile the client
// certificate for mutual TLS ("" for none), serverName the name to verify ("" for the
// target's host). A file that cannot be read fails New.
func WithTLSFiles(caFile, certFile, keyFile, serverName string) Option {
	return func(o *options) { o.tlsFiles = &tlsFiles{caFile, certFile, keyFile, serverName} }
}

// WithStallAfter: a stream with a request unanswered for this long is taken for hung and
// replaced (default 1 s); one <= 0 fails New (every late answer would break the stream).
func WithStallAfter(d time.Duration) Option { return func(o *options) { o.stallAfter = d } }

// WithLogger logs failed checks there (default slog.Default()); use
// slog.New(slog.DiscardHandler) for none.
func WithLogger(logger *slog.Logger) Option { return func(o *options) { o.logger = logger } }

// WithLogInterval: at most one log line per failure cause per interval (default 1 s); the
// next line says how many were suppressed.
func WithLogInterval(d time.Duration) Option { return func(o *options) { o.logInterval = d } }

// WithReconnectBackoff sets the reconnect backoff's first and longest delay (default
// 50 ms, 1 s); New fails unless 0 < base <= max (else a refused stream is reopened in a
// tight loop).
func WithReconnectBackoff(base, max time.Duration) Option {
	return func(o *options) { o.reconnectBase, o.reconnectMax = base, max }
}

// WithDialOptions adds gRPC dial options (keepalive, window sizes, a custom dialer, ...).
func WithDialOptions(dialOptions ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, dialOptions...) }
}

func defaultOptions() options {
	return options{
		deadline:      DefaultDeadline,
		rpcTimeout:    DefaultRPCTimeout,
		stallAfter:    DefaultStallAfter,
		logInterval:   DefaultLogInterval,
		reconnectBase: DefaultReconnectBase,
		reconnectMax:  DefaultReconnectMax,
	}
}

func (f *tlsFiles) config() (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.serverName}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("ess: TLS CA: %w", err)
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ess: TLS CA %s: no PEM certificate", f.ca)
		}
	}
	if (f.cert == "") != (f.key == "") {
		return nil, errors.New("ess: a TLS client certificate needs both its cert and key files")
	}
	if f.cert != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("ess: TLS client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}

// CheckOption adjusts one check.
type CheckOption func(*checkOptions)

type checkOptions struct{ deadline time.Duration }

// Within sets this check's deadline instead of the client's default. The context's own
// deadline, when earlier, still applies.
func Within(d time.Duration) CheckOption { return func(o *checkOptions) { o.deadline = d } }

// ErrInvalidToken is the error New returns (wrapped) for a token with a byte outside
// printable ASCII (0x20-0x7E).
var ErrInvalidToken = errors.New("ess: invalid token (WithToken)")

// validate refuses the options no client could work with, naming the option.
func (o *options) validate() error {
	if o.deadline <= 0 {
		return errors.New("ess: the check deadline must be > 0")
	}
	// Else every RPC but the checks (Trigger, heartbeats, fills) would fail unsent.
	if o.rpcTimeout <= 0 {
		return fmt.Errorf("ess: the RPC timeout (WithRPCTimeout) must be > 0, got %v",
			o.rpcTimeout)
	}
	if o.stallAfter <= 0 {
		return fmt.Errorf("ess: WithStallAfter must be > 0, got %v", o.stallAfter)
	}
	if o.reconnectBase <= 0 || o.reconnectMax < o.reconnectBase {
		return fmt.Errorf("ess: WithReconnectBackoff must be 0 < base <= max, got %v, %v",
			o.reconnectBase, o.reconnectMax)
	}
	token, err := validToken(o.token)
	o.token = token
	return err
}

// asciiSpace is what is stripped around a token: Python's client's rule (review 54e).
const asciiSpace = " \t\r\n"

// validToken strips ASCII space around a token and refuses one with a byte outside
// printable ASCII (0x20-0x7E) left, which gRPC would refuse to send, saying where (in the
// token as given) without printing the secret.
func validToken(given string) (string, error) {
	lead := len(given) - len(strings.TrimLeft(given, asciiSpace))
	token := strings.TrimRight(given[lead:], asciiSpace)
	for i := 0; i < len(token); i++ {
		switch b := token[i]; {
		case b < 0x20 || b == 0x7f:
			return "", fmt.Errorf("%w: byte %d is the control character 0x%02x; only"+
				" 0x20-0x7E may be sent", ErrInvalidToken, lead+i, b)
		case b > 0x7f:
			return "", fmt.Errorf("%w: byte %d is not ASCII; only 0x20-0x7E may be sent",
				ErrInvalidToken, lead+i)
		}
	}
	return token, nil
}

// bearer attaches the token to every call on the connection, the raw stub's included.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: a Unix socket on the same host is not TLS.
func (bearer) RequireTransportSecurity() bool { return false }
