package mqtt

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults applied by Options when a field is left zero.
const (
	DefaultKeepAlive            = 30 * time.Second
	DefaultConnectTimeout       = 10 * time.Second
	DefaultMaxReconnectInterval = 30 * time.Second
	DefaultMaxInFlight          = 1024

	// maxPacketIDs is how many QoS 1/2 messages MQTT can have in flight on
	// one connection (16-bit packet identifiers, 0 excluded).
	maxPacketIDs = 65535
	// initialReconnectInterval is the first wait after a failed attempt;
	// it doubles up to MaxReconnectInterval.
	initialReconnectInterval = time.Second
)

// Options configure a connection to an MQTT 3.1.1 broker. They are shared by
// Publisher and Consumer. The zero value of every field except Broker and
// ClientID means "the default". Options hold no secrets unless Password is
// set directly; String, GoString and LogValue never print it.
type Options struct {
	// Broker is the broker URL: tcp://host:port (default port 1883),
	// ssl://host:port (default port 8883), ws://host:port/path or
	// wss://host:port/path. Credentials in the URL are refused: use
	// Username and PasswordFile / PasswordEnv.
	Broker string
	// ClientID identifies the session at the broker. A Consumer's
	// persistent session is keyed on it, so it must be stable across
	// restarts: see DefaultClientID.
	ClientID string
	// KeepAlive is the MQTT keepalive interval (whole seconds, at least 1s).
	// Default DefaultKeepAlive. It also bounds a single write to the broker:
	// one that cannot complete within 2*KeepAlive (at least ConnectTimeout)
	// drops the connection, so a dead link is noticed even when the socket
	// buffer is full. The bound is generous because a broker pushing back
	// (the embedded one does, for slow subscribers) legitimately stalls
	// writes for a while.
	KeepAlive time.Duration
	// ConnectTimeout bounds the network dial, the TLS handshake and the
	// CONNECT/CONNACK exchange, the wait for SUBACK, and the wait for a
	// PINGRESP. Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// CleanSession applies to a Consumer: false (the default) keeps the
	// session, its subscriptions and its un-acknowledged messages at the
	// broker while the consumer is away. A Publisher always connects with
	// a clean session (see Publisher).
	CleanSession bool
	// Username is sent in CONNECT when not empty.
	Username string
	// Password is the password itself. Prefer PasswordFile or PasswordEnv,
	// which keep it out of configuration files. At most one of the three
	// may be set, and only together with Username.
	Password string
	// PasswordFile names a file holding the password (one trailing newline
	// is ignored). It is read at Connect.
	PasswordFile string
	// PasswordEnv names an environment variable holding the password. It is
	// read at Connect.
	PasswordEnv string
	// CAFile is a PEM bundle of CAs that sign the broker's certificate.
	// Empty means the system roots. TLS fields need an ssl:// or wss:// URL.
	CAFile string
	// CertFile and KeyFile are the client certificate and key (PEM) for
	// mutual TLS. Both or neither.
	CertFile string
	KeyFile  string
	// ServerName overrides the name checked in the broker's certificate
	// (default: the host of Broker).
	ServerName string
	// InsecureSkipVerify disables verification of the broker's
	// certificate. For tests only.
	InsecureSkipVerify bool
	// MaxReconnectInterval caps the exponential backoff between connection
	// attempts (1s, 2s, 4s ... up to this). Default
	// DefaultMaxReconnectInterval.
	MaxReconnectInterval time.Duration
	// MaxInFlight bounds the publishes a Publisher has waiting for their
	// acknowledgement; Publish waits for a free slot. 1..65535, default
	// DefaultMaxInFlight. Ignored by Consumer.
	MaxInFlight int
	// Logger receives connection events (connected, lost, reconnecting).
	// Default: discard.
	Logger *slog.Logger
}

// Validate checks the options without doing any I/O (the password file and
// variable are read by ResolvePassword, at Connect). Every problem is
// reported, joined, each wrapping ErrInvalidOptions.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	u, err := o.brokerURL()
	if err != nil {
		bad("%v", err)
	}
	if o.ClientID == "" {
		bad("client id is empty (see DefaultClientID)")
	} else if len(o.ClientID) > 65535 {
		bad("client id is longer than 65535 bytes")
	}
	if o.KeepAlive < 0 || (o.KeepAlive > 0 && o.KeepAlive < time.Second) {
		bad("keepalive %s is below 1s", o.KeepAlive)
	}
	if o.KeepAlive > 65535*time.Second {
		bad("keepalive %s is above 65535s", o.KeepAlive)
	}
	if o.ConnectTimeout < 0 {
		bad("connect timeout %s is negative", o.ConnectTimeout)
	}
	if o.MaxReconnectInterval < 0 {
		bad("max reconnect interval %s is negative", o.MaxReconnectInterval)
	}
	if o.MaxInFlight < 0 || o.MaxInFlight > maxPacketIDs {
		bad("max in flight %d is outside 1..%d", o.MaxInFlight, maxPacketIDs)
	}
	n := 0
	for _, s := range []string{o.Password, o.PasswordFile, o.PasswordEnv} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		bad("set only one of password, password file and password env")
	}
	if n > 0 && o.Username == "" {
		bad("a password needs a user name (MQTT 3.1.1)")
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		bad("client cert file and key file must be set together")
	}
	if u != nil && !isTLSScheme(u.Scheme) && o.usesTLS() {
		bad("TLS settings need an ssl:// or wss:// broker URL, not %s://", u.Scheme)
	}
	return errors.Join(errs...)
}

// ResolvePassword returns the password from Password, PasswordFile or
// PasswordEnv (whichever is set), or "" when none is. Its errors name the
// file or variable, never the password.
func (o Options) ResolvePassword() (string, error) {
	switch {
	case o.PasswordFile != "":
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("reading password file: %w", err)
		}
		s := strings.TrimSuffix(string(b), "\n")
		s = strings.TrimSuffix(s, "\r")
		if s == "" {
			return "", fmt.Errorf("reading password file %s: the file is empty", o.PasswordFile)
		}
		return s, nil
	case o.PasswordEnv != "":
		s, ok := os.LookupEnv(o.PasswordEnv)
		if !ok || s == "" {
			return "", fmt.Errorf("reading password: environment variable %s is not set", o.PasswordEnv)
		}
		return s, nil
	default:
		return o.Password, nil
	}
}

// String describes the options for logs and errors, without the password.
func (o Options) String() string {
	pw := "none"
	switch {
	case o.PasswordFile != "":
		pw = "file " + o.PasswordFile
	case o.PasswordEnv != "":
		pw = "env " + o.PasswordEnv
	case o.Password != "":
		pw = "[redacted]"
	}
	return fmt.Sprintf("mqtt.Options{broker: %s, client_id: %q, username: %q, password: %s, tls: %t}",
		o.redactedBroker(), o.ClientID, o.Username, pw, o.usesTLS())
}

// GoString is String, so %#v does not print the password either.
func (o Options) GoString() string { return o.String() }

// LogValue implements slog.LogValuer without the password.
func (o Options) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("broker", o.redactedBroker()),
		slog.String("client_id", o.ClientID),
		slog.String("username", o.Username),
	)
}

// DefaultClientID returns a client ID that is stable for one processor of
// one agent: "<agentID>-<processorName>" with characters other than
// [A-Za-z0-9_-] replaced by '-'. When that is longer than 23 characters (the
// length every MQTT 3.1.1 broker must accept) it is shortened to its first 14
// characters, '-' and 8 hex digits of a SHA-256 of both names, so distinct
// pairs still get distinct IDs.
func DefaultClientID(agentID, processorName string) string {
	const maxLen = 23
	if agentID == "" {
		agentID = "edgeagent"
	}
	var b strings.Builder
	for _, r := range agentID + "-" + processorName {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	id := b.String()
	if len(id) <= maxLen && id == agentID+"-"+processorName {
		return id
	}
	sum := sha256.Sum256([]byte(agentID + "\x00" + processorName))
	suffix := hex.EncodeToString(sum[:4])
	if len(id) > maxLen-len(suffix)-1 {
		id = id[:maxLen-len(suffix)-1]
	}
	return id + "-" + suffix
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.MaxReconnectInterval == 0 {
		o.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// writeTimeout is paho's WriteTimeout: see KeepAlive. o has its defaults.
func (o Options) writeTimeout() time.Duration {
	return max(2*o.KeepAlive, o.ConnectTimeout)
}

func isTLSScheme(s string) bool { return s == "ssl" || s == "wss" }

func (o Options) usesTLS() bool {
	return o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" || o.ServerName != "" || o.InsecureSkipVerify
}

// brokerURL parses Broker and adds the default port for tcp and ssl.
func (o Options) brokerURL() (*url.URL, error) {
	if o.Broker == "" {
		return nil, errors.New("broker URL is empty")
	}
	u, err := url.Parse(o.Broker)
	if err != nil {
		return nil, fmt.Errorf("parsing broker URL: %w", errors.Unwrap(err))
	}
	if u.User != nil {
		return nil, errors.New("broker URL must not contain credentials: use username and password_file or password_env")
	}
	if u.Host == "" {
		return nil, fmt.Errorf("broker URL %q has no host (want scheme://host:port)", u.Redacted())
	}
	switch u.Scheme {
	case "tcp", "ssl":
		if u.Port() == "" {
			port := "1883"
			if u.Scheme == "ssl" {
				port = "8883"
			}
			u.Host = net.JoinHostPort(u.Hostname(), port)
		}
	case "ws", "wss":
	default:
		return nil, fmt.Errorf("broker URL scheme %q is not supported (want tcp, ssl, ws or wss)", u.Scheme)
	}
	return u, nil
}

// redactedBroker is the broker URL without user info and query, for logs
// and errors.
func (o Options) redactedBroker() string {
	u, err := url.Parse(o.Broker)
	if err != nil || u.Host == "" {
		return "(invalid broker URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// tlsConfig loads the CA and client certificate files. It returns nil for
// plain tcp:// and ws:// brokers. Errors name the files, never their
// contents.
func (o Options) tlsConfig(u *url.URL) (*tls.Config, error) {
	if !isTLSScheme(u.Scheme) {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.InsecureSkipVerify, //nolint:gosec // documented as test-only
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reading CA file %s: no PEM certificate found", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate %s and key %s: %w", o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
