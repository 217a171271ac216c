package pulsar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Client is a connection to a Pulsar cluster that producers and consumers
// share. Create it with NewClient, make producers and consumers from it and
// Close it last: Close closes what it made.
//
// A Client is safe for concurrent use.
type Client struct {
	pc       pulsar.Client
	opts     Options
	log      *slog.Logger
	registry *prometheus.Registry
	watch    *watcher
	count    counters

	mu        sync.Mutex
	closed    bool
	producers map[*Producer]struct{}
	consumers map[*Consumer]struct{}
	wg        sync.WaitGroup // NewProducer/Subscribe calls abandoned by their ctx
}

// counters are the client's totals, shared by its producers and consumers.
type counters struct {
	sent, duplicates, sendErrors atomic.Uint64
	received, acked, nacked      atomic.Uint64
	ackErrors                    atomic.Uint64
}

// send counts a completed send.
func (c *counters) send(duplicate bool, err error) {
	switch {
	case err != nil:
		c.sendErrors.Add(1)
	case duplicate:
		c.sent.Add(1)
		c.duplicates.Add(1)
	default:
		c.sent.Add(1)
	}
}

// Stats is a snapshot of a client's state and counters, for metrics.
type Stats struct {
	// Connected is true while at least one broker connection is open.
	Connected bool
	// ConnectionsOpened and ConnectionsClosed count broker connections over
	// the client's life (handshake completed / closed for any reason).
	ConnectionsOpened uint64
	ConnectionsClosed uint64
	// ConnectFailures counts connection attempts that failed (TCP, TLS or
	// handshake, authentication included).
	ConnectFailures uint64
	// Reconnects counts producers and consumers that re-attached to a
	// broker after losing their connection.
	Reconnects uint64
	// Sent counts messages the broker acknowledged with a send receipt;
	// Duplicates is the part of those the broker reported as duplicates
	// (de-duplication: acknowledged, not stored again).
	Sent       uint64
	Duplicates uint64
	// SendErrors counts sends that failed (timeout, producer closed, ...).
	SendErrors uint64
	Received   uint64
	Acked      uint64
	Nacked     uint64
	AckErrors  uint64
}

// NewClient validates opts and creates the client. It reads the TLS files
// and the token once to fail early on an unusable one, but opens no
// connection: connections open when the first producer or consumer is
// made. The client's background goroutines stop in Close.
func NewClient(opts Options) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := opts.TLS.Check(); err != nil {
		return nil, err
	}
	if opts.OperationTimeout == 0 {
		opts.OperationTimeout = DefaultOperationTimeout
	}
	if opts.ConnectionTimeout == 0 {
		opts.ConnectionTimeout = DefaultConnectionTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		opts:      opts,
		log:       logger,
		registry:  prometheus.NewRegistry(),
		watch:     &watcher{},
		producers: map[*Producer]struct{}{},
		consumers: map[*Consumer]struct{}{},
	}
	po := pulsar.ClientOptions{
		URL:                        opts.ServiceURL,
		OperationTimeout:           opts.OperationTimeout,
		ConnectionTimeout:          opts.ConnectionTimeout,
		TLSTrustCertsFilePath:      opts.TLS.CAFile,
		TLSCertificateFile:         opts.TLS.CertFile,
		TLSKeyFilePath:             opts.TLS.KeyFile,
		TLSAllowInsecureConnection: opts.TLS.AllowInsecure,
		TLSValidateHostname:        opts.TLS.ValidateHostname,
		Logger: plog.NewLoggerWithSlog(slog.New(&logHandler{
			inner: logger.Handler(), watch: c.watch, debug: opts.LibraryDebugLogs,
		})),
		MetricsRegisterer: c.registry,
	}
	if supplier := opts.tokenSupplier(c.watch.setSecret); supplier != nil {
		if _, err := supplier(); err != nil {
			return nil, err
		}
		po.Authentication = pulsar.NewAuthenticationTokenFromSupplier(supplier)
	}
	pc, err := pulsar.NewClient(po)
	if err != nil {
		return nil, fmt.Errorf("creating pulsar client for %s: %w", opts.ServiceURL, c.watch.redactErr(err))
	}
	c.pc = pc
	return c, nil
}

// Metrics is the registry holding pulsar-client-go's own Prometheus metrics
// for this client, for the agent's metrics endpoint.
func (c *Client) Metrics() prometheus.Gatherer { return c.registry }

// Stats returns the client's connection state and counters.
func (c *Client) Stats() Stats {
	s := Stats{
		Reconnects: c.watch.reconnects.Load(),
		Sent:       c.count.sent.Load(),
		Duplicates: c.count.duplicates.Load(),
		SendErrors: c.count.sendErrors.Load(),
		Received:   c.count.received.Load(),
		Acked:      c.count.acked.Load(),
		Nacked:     c.count.nacked.Load(),
		AckErrors:  c.count.ackErrors.Load(),
	}
	families, err := c.registry.Gather()
	if err != nil {
		return s
	}
	var failed uint64
	for _, f := range families {
		switch f.GetName() {
		case "pulsar_client_connections_opened":
			s.ConnectionsOpened = sumCounter(f)
		case "pulsar_client_connections_closed":
			s.ConnectionsClosed = sumCounter(f)
		case "pulsar_client_connections_establishment_errors", "pulsar_client_connections_handshake_errors":
			failed += sumCounter(f)
		}
	}
	s.ConnectFailures = failed
	// Every failed attempt is closed too; what was opened and not closed is open.
	s.Connected = s.ConnectionsOpened+failed > s.ConnectionsClosed
	return s
}

func sumCounter(f *dto.MetricFamily) uint64 {
	var n float64
	for _, m := range f.GetMetric() {
		n += m.GetCounter().GetValue()
	}
	return uint64(n)
}

// Close closes every producer and consumer made by the client, then the
// client's connections. Sends still pending fail with ErrClosed. With the
// broker unreachable it takes up to the OperationTimeout.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	producers, consumers := c.producers, c.consumers
	c.producers, c.consumers = nil, nil
	c.mu.Unlock()
	// Each close can wait up to OperationTimeout for an unreachable broker;
	// do them together.
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(p.close)
	}
	for cs := range consumers {
		wg.Go(cs.close)
	}
	wg.Wait()
	c.wg.Wait()
	c.pc.Close()
}

// explain adds what the logs told about a failed operation, which
// pulsar-client-go itself reports only as "connection error" or a timeout:
// the broker refused the handshake (authentication above all), or the
// connection could not be made (refused, TLS verification).
func (c *Client) explain(err error) error {
	err = c.watch.redactErr(err)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within the operation timeout %s: %w", c.opts.OperationTimeout, err)
	}
	refusal, dialErr := c.watch.failures()
	switch {
	case refusal != "" && strings.Contains(strings.ToLower(refusal), "authenticat"):
		return fmt.Errorf("%w (broker said %q): %w", ErrAuthentication, refusal, err)
	case refusal != "":
		return fmt.Errorf("broker refused the connection (%q): %w", refusal, err)
	case dialErr != "":
		return fmt.Errorf("connecting to %s: %s: %w", c.opts.ServiceURL, dialErr, err)
	}
	return err
}

// start runs create (pulsar-client-go's blocking, context-free producer or
// consumer creation) and waits for it or ctx. When ctx ends first the
// result is closed once create returns, tracked by c.wg.
func start[T any](ctx context.Context, c *Client, create func() (T, error), closeFn func(T)) (T, error) {
	var zero T
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return zero, ErrClosed
	}
	c.wg.Add(1)
	c.mu.Unlock()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	c.watch.reset()
	go func() {
		v, err := create()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		c.wg.Done()
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			defer c.wg.Done()
			if r := <-done; r.err == nil {
				closeFn(r.v)
			}
		}()
		return zero, ctx.Err()
	}
}

// register records p or cs for Close; false when the client closed meanwhile.
func (c *Client) register(p *Producer, cs *Consumer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if p != nil {
		c.producers[p] = struct{}{}
	}
	if cs != nil {
		c.consumers[cs] = struct{}{}
	}
	return true
}

func (c *Client) unregister(p *Producer, cs *Consumer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.producers, p)
	delete(c.consumers, cs)
}

// ---- logging ----

// watcher is what the client learns from pulsar-client-go's log records
// (the library exposes neither handshake errors nor reconnections
// otherwise), and the token to keep out of logs and errors.
type watcher struct {
	reconnects atomic.Uint64
	mu         sync.Mutex
	refusal    string // the broker's last refusal of a handshake, since reset
	dialErr    string // the last failure to connect, since reset
	secret     string // the token last read
}

// Texts of pulsar-client-go v0.20.0 log records the watcher reacts to
// (internal/connection.go, producer_partition.go, consumer_partition.go;
// the same in v0.19.0).
const (
	logHandshakeRefused    = "Failed to establish connection with broker: "
	logConnectFailed       = "Failed to connect to broker."
	logProducerReconnected = "Reconnected producer to broker"
	logConsumerReconnected = "Reconnected consumer to broker"
)

func (w *watcher) observe(msg string, attrs []slog.Attr) {
	switch {
	case strings.HasPrefix(msg, logHandshakeRefused):
		w.mu.Lock()
		w.refusal = strings.Trim(strings.TrimPrefix(msg, logHandshakeRefused), "'")
		w.mu.Unlock()
	case msg == logConnectFailed:
		for _, a := range attrs {
			if a.Key == "error" {
				w.mu.Lock()
				w.dialErr = a.Value.String()
				w.mu.Unlock()
			}
		}
	case msg == logProducerReconnected || msg == logConsumerReconnected:
		w.reconnects.Add(1)
	}
}

func (w *watcher) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.refusal, w.dialErr = "", ""
}

func (w *watcher) failures() (refusal, dialErr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.refusal, w.dialErr
}

func (w *watcher) setSecret(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.secret = s
}

const redacted = "[REDACTED]"

func (w *watcher) redact(s string) string {
	w.mu.Lock()
	secret := w.secret
	w.mu.Unlock()
	if secret == "" || !strings.Contains(s, secret) {
		return s
	}
	return strings.ReplaceAll(s, secret, redacted)
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr keeps errors.Is and errors.As working (the original error is
// still unwrapped) while the text loses the token.
func (w *watcher) redactErr(err error) error {
	if err == nil {
		return nil
	}
	if msg := w.redact(err.Error()); msg != err.Error() {
		return &redactedError{msg: msg, err: err}
	}
	return err
}

// logHandler sits between pulsar-client-go and the user's slog handler: it
// feeds the watcher, logs the library's Info records at Debug (they are
// per-connection chatter) except reconnections, and removes the token from
// every message and attribute.
type logHandler struct {
	inner slog.Handler
	watch *watcher
	debug bool        // pass the library's own Debug records on
	attrs []slog.Attr // attributes bound with WithAttrs, for the watcher
}

func (h *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	// Info and above are always wanted: the watcher reads them. The
	// library's Debug records (several per message sent) only on request.
	return level >= slog.LevelInfo || (h.debug && h.inner.Enabled(ctx, level))
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	h.watch.observe(r.Message, h.attrs)
	level := r.Level
	if level == slog.LevelInfo && r.Message != logProducerReconnected && r.Message != logConsumerReconnected {
		level = slog.LevelDebug
	}
	if !h.inner.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(r.Time, level, h.watch.redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.redactAttr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h *logHandler) redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		attrs := v.Group()
		out := make([]any, len(attrs))
		for i, g := range attrs {
			out[i] = h.redactAttr(g)
		}
		return slog.Group(a.Key, out...)
	}
	if s := v.String(); h.watch.redact(s) != s {
		return slog.String(a.Key, h.watch.redact(s))
	}
	return a
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = h.redactAttr(a)
	}
	return &logHandler{
		inner: h.inner.WithAttrs(out),
		watch: h.watch,
		debug: h.debug,
		attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], out...),
	}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{inner: h.inner.WithGroup(name), watch: h.watch, debug: h.debug, attrs: h.attrs}
}
