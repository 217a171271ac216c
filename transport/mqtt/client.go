package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Stats is a snapshot of a client's connection state and counters, for
// metrics. Counters only grow.
type Stats struct {
	// Connected reports whether the client has a connection to the broker now.
	Connected bool
	// Reconnects counts connections established after the first one.
	Reconnects uint64
	// ConnectionLost counts connections that dropped (Close not included).
	ConnectionLost uint64
	// Published counts messages a Publisher handed to the connection.
	Published uint64
	// Acked counts, for a Publisher, publishes the broker acknowledged
	// (QoS 0: written to the connection); for a Consumer, Message.Ack calls
	// on QoS 1 and 2 messages.
	Acked uint64
	// Failed counts publishes that completed with an error.
	Failed uint64
	// Received counts messages a Consumer put into its buffer.
	Received uint64
}

type counters struct {
	reconnects, lost, published, acked, failed, received atomic.Uint64
}

// stableConnection is how long a connection must have lived for the next
// reconnect to be attempted at once rather than after the backoff; it stops a
// broker that drops every new connection from being hammered.
const stableConnection = 5 * time.Second

// conn keeps one paho client connected: it makes the first attempt in
// start, then reconnects with capped exponential backoff until close.
//
// Paho's own AutoReconnect is off on purpose. After an automatic reconnect
// paho resends the in-flight QoS 1/2 publishes from its store and completes
// the original tokens with no error before any PUBACK arrives (claimID calls
// flowComplete on the old token), which would report un-acknowledged messages
// as delivered (paho issue #563; its maintainer's advice there is clean
// session plus AutoReconnect off). With AutoReconnect off, a lost connection
// fails every pending token ("connection lost before Publish completed"), and
// a clean-session Connect empties the store, so nothing stale is resent
// behind the caller's back.
type conn struct {
	opts   Options // with defaults
	broker string  // redacted broker URL, for logs and errors
	tls    bool    // ssl:// or wss://
	client paho.Client
	log    *slog.Logger
	stats  counters

	// afterConnect runs after every successful CONNECT (the consumer
	// subscribes there). An error drops the connection and retries.
	afterConnect func() error

	lost    chan error    // from paho's connection-lost handler
	closing chan struct{} // closed by close
	done    chan struct{} // closed when run returns

	mu      sync.Mutex
	lastErr error

	closeOnce sync.Once
}

// newConn validates opts, reads the password and TLS files, and builds the
// paho client. configure sets the role-specific paho options. No network I/O.
func newConn(opts Options, configure func(*paho.ClientOptions)) (*conn, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	u, err := o.brokerURL()
	if err != nil {
		return nil, err
	}
	// A password or TLS file that cannot be used is a configuration error
	// like a bad option: no retry can mend it.
	password, err := o.ResolvePassword()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	tlsCfg, err := o.tlsConfig(u)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	c := &conn{
		opts:    o,
		broker:  o.redactedBroker(),
		tls:     tlsCfg != nil,
		lost:    make(chan error, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	c.log = o.Logger.With("broker", c.broker, "client_id", o.ClientID)
	po := paho.NewClientOptions().
		AddBroker(u.String()).
		SetClientID(o.ClientID).
		SetProtocolVersion(4). // MQTT 3.1.1 only: no silent fallback to 3.1 after a refusal
		SetKeepAlive(o.KeepAlive).
		SetPingTimeout(o.ConnectTimeout).
		SetConnectTimeout(o.ConnectTimeout).
		SetWriteTimeout(o.writeTimeout()).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetCleanSession(o.CleanSession).
		SetResumeSubs(false).
		SetUsername(o.Username).
		SetPassword(password).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default: // one signal pending is enough
			}
		})
	if tlsCfg != nil {
		po.SetTLSConfig(tlsCfg)
	}
	configure(po)
	c.client = paho.NewClient(po)
	return c, nil
}

// start makes the first connection attempt and returns its error; in both
// cases the connection is then kept up in the background until close.
func (c *conn) start(ctx context.Context) error {
	first := make(chan error, 1)
	go c.run(first)
	select {
	case err := <-first:
		return err
	case <-ctx.Done():
		return fmt.Errorf("connecting to %s: %w", c.broker, ctx.Err())
	}
}

func (c *conn) run(first chan<- error) {
	defer close(c.done)
	initial := min(initialReconnectInterval, c.opts.MaxReconnectInterval)
	backoff := initial
	connectedOnce := false
	for {
		err := c.connectOnce()
		if err != nil && !errors.Is(err, ErrClosed) {
			c.setLastErr(err) // before start returns, so Publish can tell why
		}
		if first != nil {
			first <- err
			first = nil
		}
		switch {
		case errors.Is(err, ErrClosed):
			return
		case err != nil:
			c.log.Warn("connecting to MQTT broker failed", "error", err, "retry_in", backoff)
		default:
			if connectedOnce {
				c.stats.reconnects.Add(1)
			}
			connectedOnce = true
			c.log.Info("connected to MQTT broker", "reconnects", c.stats.reconnects.Load())
			up := time.Now()
			if !c.waitLost() {
				return
			}
			if time.Since(up) >= stableConnection {
				backoff = initial
				continue // reconnect at once after a long-lived connection
			}
		}
		if !c.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, c.opts.MaxReconnectInterval)
	}
}

// waitLost waits until the connection drops (true) or close (false).
func (c *conn) waitLost() bool {
	for {
		select {
		case err := <-c.lost:
			if c.connected() {
				continue // a late signal about an earlier connection (lost during afterConnect)
			}
			c.setLastErr(fmt.Errorf("connection to %s lost: %w", c.broker, err))
			c.stats.lost.Add(1)
			c.log.Warn("MQTT connection lost", "error", err)
			return true
		case <-c.closing:
			return false
		}
	}
}

// connectOnce makes one connection attempt (bounded by ConnectTimeout).
func (c *conn) connectOnce() error {
	tok := c.client.Connect()
	<-tok.Done()
	if err := tok.Error(); err != nil {
		return connectError(c.broker, c.opts.Username != "", c.tls, err)
	}
	select {
	case <-c.closing:
		c.disconnect()
		return ErrClosed
	default:
	}
	if c.afterConnect != nil {
		if err := c.afterConnect(); err != nil {
			c.disconnect()
			return err
		}
	}
	return nil
}

// sleep waits d (±20% jitter) or until close; it reports whether to go on.
func (c *conn) sleep(d time.Duration) bool {
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.closing:
		return false
	}
}

// disconnect sends DISCONNECT and waits (up to ConnectTimeout) for paho's
// goroutines to stop. It does nothing without a connection: paho completes
// a failed Connect's token a moment before its status leaves "connecting",
// and a Disconnect in that moment would wait the whole quiesce time for a
// DISCONNECT packet nobody sends.
func (c *conn) disconnect() {
	if c.connected() {
		c.client.Disconnect(uint(c.opts.ConnectTimeout / time.Millisecond))
	}
}

// close stops reconnecting and disconnects. It waits for a connection
// attempt in progress, which ConnectTimeout bounds.
func (c *conn) close() {
	c.stop()
	c.disconnect()
	c.log.Info("disconnected from MQTT broker")
}

// stop ends reconnecting (and releases a consumer's blocked handler) but
// keeps the current connection; close then disconnects.
func (c *conn) stop() {
	c.closeOnce.Do(func() { close(c.closing) })
	<-c.done
}

func (c *conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

func (c *conn) connected() bool { return c.client.IsConnectionOpen() }

func (c *conn) setLastErr(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// notConnected is ErrNotConnected, with the last connection error when
// there is one.
func (c *conn) notConnected() error {
	c.mu.Lock()
	last := c.lastErr
	c.mu.Unlock()
	if last == nil {
		return ErrNotConnected
	}
	return fmt.Errorf("%w (last error: %w)", ErrNotConnected, last)
}

func (c *conn) snapshot() Stats {
	return Stats{
		Connected:      c.connected(),
		Reconnects:     c.stats.reconnects.Load(),
		ConnectionLost: c.stats.lost.Load(),
		Published:      c.stats.published.Load(),
		Acked:          c.stats.acked.Load(),
		Failed:         c.stats.failed.Load(),
		Received:       c.stats.received.Load(),
	}
}

// lifecycle is the Connect and Close state that Publisher and Consumer
// share. mu guards conn (set once, by Connect) and closed.
type lifecycle struct {
	mu     sync.Mutex
	conn   *conn
	closed bool
}

// checkConnect, called with mu held, refuses a Connect after Close or a
// second Connect.
func (l *lifecycle) checkConnect(role string) error {
	switch {
	case l.closed:
		return ErrClosed
	case l.conn != nil:
		return fmt.Errorf("mqtt %s: Connect called twice", role)
	}
	return nil
}

// stats returns the connection state and counters (zero before Connect).
func (l *lifecycle) stats() Stats {
	l.mu.Lock()
	c := l.conn
	l.mu.Unlock()
	if c == nil {
		return Stats{}
	}
	return c.snapshot()
}

// markClosed marks the client closed and returns the connection Close must
// shut down: nil before Connect and on a second Close.
func (l *lifecycle) markClosed() *conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.conn
}
