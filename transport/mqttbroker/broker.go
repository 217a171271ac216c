package mqttbroker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// DefaultListen is the address the broker listens on when Config.Listen is
// empty: loopback only.
const DefaultListen = "127.0.0.1:1883"

// Flow-control and queue settings (see flowHook and New).
const (
	// subscriberWindow is how many QoS 1/2 messages a connected subscriber
	// may have in flight (queued or sent, not acknowledged) before
	// publishers to its topics wait.
	subscriberWindow = 1024
	// maxPublishWait bounds one publisher's wait for one slow subscriber.
	maxPublishWait = 30 * time.Second
	// writesPending is each client's outbound queue (mochi's
	// MaximumClientWritesPending, default 8192): 16 times the window, so
	// the window is reached long before the queue is full.
	writesPending = 16 * subscriberWindow
	// maxInflight is mochi's MaximumInflight, the messages one session may
	// hold: the whole 16-bit packet-ID space, for offline persistent
	// sessions.
	maxInflight = 65535
)

// ErrInsecureListen is returned by New for a listener on a non-loopback
// address without authentication.
var ErrInsecureListen = errors.New("refusing an MQTT listener on a non-loopback address without authentication")

// ErrInvalidConfig is returned by New for a configuration that does not
// validate.
var ErrInvalidConfig = errors.New("invalid embedded MQTT broker configuration")

// Config configures the embedded broker.
type Config struct {
	// Listen is the TCP address, default DefaultListen ("127.0.0.1:1883").
	// Port 0 picks a free port (see Addr).
	Listen string
	// CertFile and KeyFile (PEM) make the listener TLS-only.
	CertFile string
	KeyFile  string
	// ClientCAFile (PEM) turns on mutual TLS: clients must present a
	// certificate signed by one of these CAs. Needs CertFile and KeyFile.
	ClientCAFile string
	// PasswordFile holds users in mosquitto_passwd format ($7$ PBKDF2-SHA512
	// or $6$ SHA-512 hashes; see HashPassword). Clients must then log in,
	// unless AllowAnonymous is set.
	PasswordFile string
	// AllowAnonymous lets clients in without a user name. Without a
	// password file, anonymous clients are always allowed, which New
	// accepts only on a loopback address (or with mutual TLS) unless
	// AllowAnonymous says so explicitly.
	AllowAnonymous bool
	// Logger receives the broker's logs. Default: discard.
	Logger *slog.Logger
}

// Broker is an in-process MQTT broker (github.com/mochi-mqtt/server/v2) for
// on-site devices that publish to the agent, and for the demo. It speaks
// MQTT 3.1.1 and 5 on one TCP listener (optionally TLS / mutual TLS) and
// keeps sessions in memory: persistent sessions survive a client's
// reconnect, not a restart of the agent.
//
// Unlike mochi's defaults, it never drops QoS 1 or 2 messages to a slow
// connected subscriber: publishers are pushed back instead (see flowHook).
// The drops mochi can still make (a persistent session offline long enough
// to hold 65535 messages) are logged as errors and counted in Stats.
//
// Call order: New (no I/O), Start, Addr, Close. Close must be called after
// a successful Start; all goroutines have exited when it returns.
type Broker struct {
	cfg    Config
	listen string
	log    *slog.Logger

	mu     sync.Mutex
	server *mochi.Server
	flow   *flowHook
	addr   string
	closed atomic.Bool
}

// Stats are the broker's counters, for metrics.
type Stats struct {
	ClientsConnected int64
	MessagesReceived int64
	MessagesSent     int64
	// Dropped counts messages mochi dropped or expired despite the flow
	// control (each one is logged as an error).
	Dropped uint64
	// PublishWaits counts publishes that waited for a slow subscriber.
	PublishWaits uint64
}

// New checks cfg without doing any I/O: the address, the TLS file
// combination, and that a listener reachable from other hosts has
// authentication (a password file or mutual TLS) unless AllowAnonymous is
// set explicitly.
func New(cfg Config) (*Broker, error) {
	listen := cfg.Listen
	if listen == "" {
		listen = DefaultListen
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("%w: listen address %q: %v", ErrInvalidConfig, listen, err)
	}
	if port == "" {
		return nil, fmt.Errorf("%w: listen address %q has no port", ErrInvalidConfig, listen)
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, fmt.Errorf("%w: cert file and key file must be set together", ErrInvalidConfig)
	}
	if cfg.ClientCAFile != "" && cfg.CertFile == "" {
		return nil, fmt.Errorf("%w: client CA file (mutual TLS) needs cert file and key file", ErrInvalidConfig)
	}
	authenticated := cfg.PasswordFile != "" || cfg.ClientCAFile != ""
	if !isLoopback(host) && !authenticated && !cfg.AllowAnonymous {
		return nil, fmt.Errorf("%w: %s: set a password file or a client CA file (mutual TLS), "+
			"listen on 127.0.0.1, or allow anonymous clients explicitly", ErrInsecureListen, listen)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Broker{cfg: cfg, listen: listen, log: log.With("component", "mqtt-broker")}, nil
}

// isLoopback reports whether host names the loopback interface only. An
// empty host (all interfaces) and names other than localhost are not.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Start reads the password and TLS files, binds the listener and starts
// serving. ctx is not kept; the broker runs until Close.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.server != nil || b.closed.Load() {
		return errors.New("mqtt broker: Start called twice or after Close")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	auth := &authHook{anonymous: b.cfg.PasswordFile == "" || b.cfg.AllowAnonymous, log: b.log}
	if b.cfg.PasswordFile != "" {
		users, err := readPasswordFile(b.cfg.PasswordFile)
		if err != nil {
			return fmt.Errorf("starting MQTT broker: %w", err)
		}
		auth.users = users
	}
	tlsCfg, err := b.tlsConfig()
	if err != nil {
		return fmt.Errorf("starting MQTT broker: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", b.listen)
	if err != nil {
		return fmt.Errorf("starting MQTT broker: %w", err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}

	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = writesPending
	caps.MaximumInflight = maxInflight
	caps.MaximumMessageExpiryInterval = 0 // never expire queued messages (MQTT 3.1.1 has no expiry)
	server := mochi.New(&mochi.Options{
		Capabilities:           caps,
		Logger:                 b.log,
		InlineClient:           false,
		SysTopicResendInterval: 10,
	})
	flow := newFlowHook(subscriberWindow, maxPublishWait, b.log)
	flow.server = server
	for _, h := range []mochi.Hook{auth, flow} {
		if err := server.AddHook(h, nil); err != nil {
			_ = ln.Close()
			return fmt.Errorf("starting MQTT broker: adding hook %s: %w", h.ID(), err)
		}
	}
	if err := server.AddListener(listeners.NewNet("edgeagent", ln)); err != nil {
		_ = ln.Close()
		return fmt.Errorf("starting MQTT broker: %w", err)
	}
	if err := server.Serve(); err != nil {
		_ = server.Close()
		return fmt.Errorf("starting MQTT broker: %w", err)
	}
	b.server, b.flow, b.addr = server, flow, ln.Addr().String()
	b.log.Info("MQTT broker listening", "addr", b.addr, "tls", tlsCfg != nil,
		"mutual_tls", b.cfg.ClientCAFile != "", "anonymous", auth.anonymous)
	return nil
}

func (b *Broker) tlsConfig() (*tls.Config, error) {
	if b.cfg.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(b.cfg.CertFile, b.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s and key %s: %w", b.cfg.CertFile, b.cfg.KeyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if b.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(b.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reading client CA file %s: no PEM certificate found", b.cfg.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Addr is the address the broker listens on (host:port), after Start.
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

// Stats returns the broker's counters (zero before Start).
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	server, flow := b.server, b.flow
	b.mu.Unlock()
	if server == nil {
		return Stats{}
	}
	return Stats{
		ClientsConnected: atomic.LoadInt64(&server.Info.ClientsConnected),
		MessagesReceived: atomic.LoadInt64(&server.Info.MessagesReceived),
		MessagesSent:     atomic.LoadInt64(&server.Info.MessagesSent),
		Dropped:          flow.dropped.Load() + uint64(atomic.LoadInt64(&server.Info.InflightDropped)),
		PublishWaits:     flow.waits.Load(),
	}
}

// Close releases waiting publishers, disconnects every client and stops
// listening. It waits for the broker's goroutines, bounded by ctx.
func (b *Broker) Close(ctx context.Context) error {
	if b.closed.Swap(true) {
		return nil
	}
	b.mu.Lock()
	server, flow := b.server, b.flow
	b.mu.Unlock()
	if server == nil {
		return nil
	}
	flow.close()
	done := make(chan error, 1)
	go func() { done <- server.Close() }()
	select {
	case err := <-done:
		b.log.Info("MQTT broker stopped")
		return err
	case <-ctx.Done():
		return fmt.Errorf("closing MQTT broker: %w", ctx.Err())
	}
}
