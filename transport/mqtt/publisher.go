package mqtt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Publisher publishes messages to one broker with pipelined acknowledgements:
// many publishes are in flight at once (up to Options.MaxInFlight) and each
// completes when its own acknowledgement arrives, in any order.
//
// Call order: NewPublisher, Connect, then Publish from any number of
// goroutines, then Close once. Close must be called after Connect even when
// Connect returned an error, because the connection keeps being retried in
// the background.
//
// Delivery: a Pending completes with nil only after the broker acknowledged
// the message (QoS 1: PUBACK; QoS 2: PUBCOMP; QoS 0: the message was written
// to the connection, which is no guarantee at all). It completes with an
// error wrapping ErrNotConnected when nothing was sent, and ErrConnectionLost
// when the connection dropped before the acknowledgement: the broker may or
// may not have the message, so the caller keeps it and publishes it again
// later, which can duplicate it but never lose it.
//
// A Publisher always uses a clean session and paho's reconnect is off (see
// conn): when the connection drops, paho fails every in-flight token, and the
// next Connect with a clean session empties paho's in-memory store, so paho
// never resends on its own a message the caller was told had failed. The
// store only holds messages in flight on the current connection.
type Publisher struct {
	opts   Options
	window chan struct{} // one slot per publish in flight

	lifecycle

	waiters sync.WaitGroup // one count per publish in flight
	// queue feeds the publishes handed to paho, in order, to one goroutine
	// that waits for each acknowledgement (no goroutine per message).
	queue      chan inflight
	waiterDone chan struct{}
}

// inflight is a publish waiting for its acknowledgement.
type inflight struct {
	tok   paho.Token
	pd    *Pending
	topic string
}

// NewPublisher returns a Publisher for opts. It does no I/O; Connect
// validates the options.
func NewPublisher(opts Options) *Publisher {
	return &Publisher{opts: opts, window: make(chan struct{}, opts.withDefaults().MaxInFlight)}
}

// Connect validates the options, reads the password and TLS files and makes
// the first connection attempt, returning its error (for example
// ErrBadCredentials or ErrCertificateVerification). Whatever it returns, the
// Publisher keeps reconnecting in the background with capped exponential
// backoff until Close. Calling Connect again is an error.
func (p *Publisher) Connect(ctx context.Context) error {
	p.mu.Lock()
	if err := p.checkConnect("publisher"); err != nil {
		p.mu.Unlock()
		return err
	}
	c, err := newConn(p.opts, func(po *paho.ClientOptions) {
		po.SetCleanSession(true)
	})
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.conn = c
	p.queue = make(chan inflight, cap(p.window))
	p.waiterDone = make(chan struct{})
	go p.waitAcks(c)
	p.mu.Unlock()
	return c.start(ctx)
}

// Publish sends payload to topic and returns with a Pending that completes
// on the broker's acknowledgement (see Publisher). It waits for a free
// in-flight slot (bounded by ctx) and for paho to take the message, which is
// at once unless the socket is congested (a broker pushing back). While
// disconnected it returns a Pending already failed with ErrNotConnected.
// One paho limitation remains: a Publish that is handing its message to paho
// at the instant the connection drops stays blocked until the next
// connection (then paho sends the message, whose Pending has already failed
// with ErrConnectionLost: a duplicate) or for at most 2*KeepAlive; ctx cannot
// cut that wait short. The caller must not modify payload before the Pending
// completes. Safe for concurrent use.
func (p *Publisher) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) *Pending {
	pd := &Pending{done: make(chan struct{})}
	if err := checkTopic(topic, qos); err != nil {
		return pd.complete(fmt.Errorf("publishing to %q: %w", topic, err))
	}
	p.mu.Lock()
	c, closed := p.conn, p.closed
	if !closed && c != nil {
		p.waiters.Add(1) // under mu, so that Close's Wait cannot miss it
	}
	p.mu.Unlock()
	switch {
	case closed:
		return pd.complete(fmt.Errorf("publishing to %q: %w", topic, ErrClosed))
	case c == nil:
		return pd.complete(fmt.Errorf("publishing to %q: %w (Connect was not called)", topic, ErrNotConnected))
	}
	fail := func(err error) *Pending {
		c.stats.failed.Add(1)
		p.waiters.Done()
		return pd.complete(fmt.Errorf("publishing to %q: %w", topic, err))
	}
	if !c.connected() {
		return fail(c.notConnected())
	}
	select {
	case p.window <- struct{}{}:
	case <-ctx.Done():
		return fail(fmt.Errorf("waiting for an in-flight slot: %w", ctx.Err()))
	case <-c.closing:
		return fail(ErrClosed)
	}
	tok := c.client.Publish(topic, qos, retained, payload)
	c.stats.published.Add(1)
	// Never blocks: the window bounds what is in flight to the queue's size.
	p.queue <- inflight{tok: tok, pd: pd, topic: topic}
	return pd
}

// waitAcks completes the publishes in the order they were handed to paho.
// A broker acknowledges QoS 1/2 messages of one connection in order, and a
// dropped connection fails every token, so waiting in order costs nothing.
func (p *Publisher) waitAcks(c *conn) {
	defer close(p.waiterDone)
	for it := range p.queue {
		<-it.tok.Done()
		<-p.window
		err := it.tok.Error()
		if err == nil {
			c.stats.acked.Add(1)
			it.pd.complete(nil)
			p.waiters.Done()
			continue
		}
		c.stats.failed.Add(1)
		switch {
		case errors.Is(err, paho.ErrNotConnected):
			err = c.notConnected()
		case c.isClosing():
			err = fmt.Errorf("%w before the broker acknowledged the message", ErrClosed)
		default:
			err = fmt.Errorf("%w: %v", ErrConnectionLost, err)
		}
		it.pd.complete(fmt.Errorf("publishing to %q: %w", it.topic, err))
		p.waiters.Done()
	}
}

// Stats returns the connection state and counters.
func (p *Publisher) Stats() Stats { return p.stats() }

// Close waits (bounded by ctx) for the publishes in flight to be
// acknowledged, then stops reconnecting and disconnects; publishes still in
// flight then fail with ErrClosed, and Close returns ctx's error. Every
// goroutine the Publisher started has exited when Close returns.
func (p *Publisher) Close(ctx context.Context) error {
	c := p.markClosed()
	if c == nil {
		return nil
	}
	drained := make(chan struct{})
	go func() {
		p.waiters.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = fmt.Errorf("closing MQTT publisher: waiting for acknowledgements: %w", ctx.Err())
	}
	c.close()
	<-drained // disconnecting completed every paho token
	close(p.queue)
	<-p.waiterDone
	return err
}

// Pending is the outcome of one Publish.
type Pending struct {
	done chan struct{}
	err  error
}

func (pd *Pending) complete(err error) *Pending {
	pd.err = err
	close(pd.done)
	return pd
}

// Done is closed when the publish completed, successfully or not.
func (pd *Pending) Done() <-chan struct{} { return pd.done }

// Err returns the outcome once Done is closed: nil when the broker
// acknowledged the message. Before that it returns nil too; use Wait or Done.
func (pd *Pending) Err() error {
	select {
	case <-pd.done:
		return pd.err
	default:
		return nil
	}
}

// Wait waits for the outcome, or returns ctx's error when ctx ends first
// (the publish stays in flight).
func (pd *Pending) Wait(ctx context.Context) error {
	select {
	case <-pd.done:
		return pd.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkTopic refuses what paho would send anyway and the broker would then
// answer by closing the connection.
func checkTopic(topic string, qos byte) error {
	switch {
	case qos > 2:
		return fmt.Errorf("%w: qos %d is not 0, 1 or 2", ErrInvalidTopic, qos)
	case topic == "":
		return fmt.Errorf("%w: topic is empty", ErrInvalidTopic)
	case strings.ContainsAny(topic, "+#"):
		return fmt.Errorf("%w: topic contains a wildcard (+ or #)", ErrInvalidTopic)
	case len(topic) > 65535:
		return fmt.Errorf("%w: topic is longer than 65535 bytes", ErrInvalidTopic)
	}
	return nil
}
