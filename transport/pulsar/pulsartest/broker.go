package pulsartest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Broker is an in-memory Pulsar broker speaking the binary protocol on a
// loopback port. Its topics, subscriptions and de-duplication state live in
// the Broker value, so they survive Stop and Restart within one test, the
// way a real broker's managed ledgers survive a broker restart.
//
// All methods are safe for concurrent use.
type Broker struct {
	t     testing.TB
	cfg   config
	addr  string // host:port, fixed by the first listen
	tls   *tls.Config
	certs *TLSFiles

	mu          sync.Mutex
	ln          net.Listener
	running     bool
	conns       map[*conn]struct{}
	topics      map[string]*topic
	ledger      uint64 // a new ledger per start, like a broker reopening its ledgers
	token       string
	sendDelay   time.Duration
	failSends   int
	dupsDropped int
	sendErrors  int
	authFails   int
	nameSeq     int
	wg          sync.WaitGroup // accept loop and every connection's goroutines
}

type config struct {
	tls          bool
	mutualTLS    bool
	token        string
	pingInterval time.Duration
}

// Option configures Start.
type Option func(*config)

// WithTLS makes the broker listen for pulsar+ssl:// with a certificate
// signed by a test CA generated for the test (see Broker.TLSFiles).
func WithTLS() Option { return func(c *config) { c.tls = true } }

// WithMutualTLS is WithTLS and also requires a client certificate signed by
// the same test CA.
func WithMutualTLS() Option { return func(c *config) { c.tls, c.mutualTLS = true, true } }

// WithToken requires token authentication (see RequireToken).
func WithToken(tok string) Option { return func(c *config) { c.token = tok } }

// WithPingInterval makes the broker send PING on every connection at this
// interval (brokers do this for keep-alive); 0, the default, sends none.
func WithPingInterval(d time.Duration) Option { return func(c *config) { c.pingInterval = d } }

// Start starts a broker on a free loopback port; it is stopped when the test
// ends.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	b := &Broker{
		t:      t,
		conns:  map[*conn]struct{}{},
		topics: map[string]*topic{},
		addr:   "127.0.0.1:0",
	}
	for _, o := range opts {
		o(&b.cfg)
	}
	b.token = b.cfg.token
	if b.cfg.tls {
		files := newTLSFiles(t)
		cfg, err := files.serverConfig(b.cfg.mutualTLS)
		if err != nil {
			t.Fatalf("pulsartest: TLS config: %v", err)
		}
		b.tls = cfg
		b.certs = files
	}
	if err := b.listen(); err != nil {
		t.Fatalf("pulsartest: %v", err)
	}
	t.Cleanup(b.Stop)
	return b
}

// URL is the service URL: pulsar://127.0.0.1:PORT, or pulsar+ssl:// with TLS.
func (b *Broker) URL() string {
	if b.tls != nil {
		return "pulsar+ssl://" + b.addr
	}
	return "pulsar://" + b.addr
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return b.addr }

func (b *Broker) listen() error {
	var ln net.Listener
	var err error
	// Restart reuses the port; give a lingering socket a moment to go away.
	for range 50 {
		ln, err = net.Listen("tcp", b.addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listening on %s: %w", b.addr, err)
	}
	b.mu.Lock()
	if strings.HasSuffix(b.addr, ":0") {
		b.addr = ln.Addr().String() // only the first listen picks the port
	}
	b.ln = ln
	b.running = true
	b.ledger++
	b.mu.Unlock()
	b.wg.Add(1)
	go b.accept(ln)
	return nil
}

func (b *Broker) accept(ln net.Listener) {
	defer b.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		if b.tls != nil {
			nc = tls.Server(nc, b.tls)
		}
		b.mu.Lock()
		if !b.running {
			b.mu.Unlock()
			nc.Close()
			return
		}
		c := newConn(b, nc)
		b.conns[c] = struct{}{}
		b.wg.Add(2)
		b.mu.Unlock()
		go c.writeLoop()
		go c.serve()
	}
}

// Stop closes every producer and consumer the way a broker that unloads its
// topics does (CLOSE_PRODUCER, CLOSE_CONSUMER), closes the connections and
// the listener, and returns when every connection has been cleaned up.
// Clients see the broker go away and start reconnecting. Stop on a stopped
// broker does nothing.
func (b *Broker) Stop() {
	b.mu.Lock()
	if !b.running {
		b.mu.Unlock()
		return
	}
	b.running = false
	ln := b.ln
	for c := range b.conns {
		for id := range c.producers {
			c.send(command(cmdCloseProducer, enc(nil).uint(1, id).uint(2, noID)))
		}
		for id := range c.consumers {
			c.send(command(cmdCloseConsumer, enc(nil).uint(1, id).uint(2, noID)))
		}
		c.shutdown()
	}
	b.mu.Unlock()
	ln.Close()
	b.wg.Wait()
}

// Restart stops the broker (if it runs) and starts it again on the same
// port with the same topics, subscriptions and de-duplication state.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	if err := b.listen(); err != nil {
		b.t.Fatalf("pulsartest: restarting: %v", err)
	}
}

// DelaySends makes the broker wait d before persisting each SEND (0 turns
// it off). A connection closed during the wait loses that SEND, as if the
// broker had not written it.
func (b *Broker) DelaySends(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sendDelay = d
}

// FailSends makes the next n SENDs fail with SEND_ERROR (PersistenceError)
// without storing them. Like a broker that failed a write, the broker then
// drops that producer, and a later SEND from it (already on the wire)
// closes the connection rather than being stored out of order. The Go
// client answers a SEND_ERROR by closing the connection and re-sending its
// pending messages on a new one.
func (b *Broker) FailSends(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failSends = n
}

// RequireToken makes later CONNECTs authenticate with auth method "token"
// and exactly this token; "" turns authentication off. Connections already
// open stay open.
func (b *Broker) RequireToken(tok string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.token = tok
}

// DuplicatesDropped is the number of SENDs acknowledged but not stored
// because their sequence id was at or below the producer's last persisted
// one.
func (b *Broker) DuplicatesDropped() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dupsDropped
}

// SendErrors is the number of SEND_ERRORs the broker answered (FailSends,
// checksum failures, sends from unknown producers).
func (b *Broker) SendErrors() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sendErrors
}

// AuthFailures is the number of CONNECTs refused for a wrong or missing token.
func (b *Broker) AuthFailures() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.authFails
}

// Messages returns every message stored on topic (a short name like "x"
// means persistent://public/default/x), in publish order, batches split and
// payloads decompressed. A message that cannot be decoded fails the test.
func (b *Broker) Messages(topicName string) []Message {
	name := fullTopicName(topicName)
	b.mu.Lock()
	tp := b.topics[name]
	var entries []*entry
	if tp != nil {
		entries = append(entries, tp.entries...)
	}
	b.mu.Unlock()
	var out []Message
	for _, e := range entries {
		ms, err := decodeEntry(name, e)
		if err != nil {
			b.t.Errorf("pulsartest: decoding entry %d:%d of %s: %v", e.ledger, e.id, name, err)
			continue
		}
		out = append(out, ms...)
	}
	return out
}

// LastSequenceID is the highest sequence id persisted for producerName on
// topic, or -1.
func (b *Broker) LastSequenceID(topicName, producerName string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	tp := b.topics[fullTopicName(topicName)]
	if tp == nil {
		return -1
	}
	return tp.last(producerName)
}

// Backlog is the number of messages on the subscription not yet
// acknowledged (delivered or not); -1 when the subscription does not exist.
func (b *Broker) Backlog(topicName, subscription string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	tp := b.topics[fullTopicName(topicName)]
	if tp == nil || tp.subs[subscription] == nil {
		return -1
	}
	return tp.subs[subscription].backlog()
}

// Unacked is the number of messages delivered to the subscription's
// consumers and not yet acknowledged; -1 when the subscription does not
// exist. With a small receiver queue it shows the client's prefetch bound.
func (b *Broker) Unacked(topicName, subscription string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	tp := b.topics[fullTopicName(topicName)]
	if tp == nil || tp.subs[subscription] == nil {
		return -1
	}
	n := 0
	for i := range tp.subs[subscription].pending {
		n += tp.entries[i].meta.numMessages
	}
	return n
}

// CreateTopic makes a topic exist (topics are otherwise created by the
// first producer or subscription), for pattern-subscription tests.
func (b *Broker) CreateTopic(topicName string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.topic(fullTopicName(topicName))
}

// topic returns the topic, creating it. b.mu is held.
func (b *Broker) topic(name string) *topic {
	tp := b.topics[name]
	if tp == nil {
		tp = &topic{
			name:      name,
			producers: map[string]*producer{},
			lastSeq:   map[string]int64{},
			subs:      map[string]*subscription{},
		}
		b.topics[name] = tp
	}
	return tp
}

// fullTopicName expands "x" and "tenant/ns/x" to persistent://... names.
func fullTopicName(s string) string {
	if strings.Contains(s, "://") {
		return s
	}
	if strings.Count(s, "/") == 2 {
		return "persistent://" + s
	}
	return "persistent://public/default/" + s
}
