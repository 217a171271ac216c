package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Message is one message received by a Consumer.
type Message struct {
	Topic     string
	QoS       byte
	Retained  bool
	Duplicate bool // the broker says it may have sent this message before
	Payload   []byte
	MessageID uint16 // packet identifier; 0 for QoS 0; reused by the broker
	// Ack acknowledges the message to the broker (QoS 1: PUBACK, QoS 2:
	// PUBREC); until then the broker keeps it. Call it once the message is
	// safe (after the session that holds it committed). Ack does nothing
	// for QoS 0, on a second call, or when the connection the message came
	// on has dropped (the broker redelivers the message on the next
	// connection, so it is seen twice). Safe for concurrent use; it may
	// block while the connection is congested.
	Ack func()
}

// Consumer receives messages from subscriptions with manual
// acknowledgements: nothing is acknowledged to the broker until Message.Ack
// is called, so a crash or a full buffer never loses a QoS 1 or 2 message;
// the broker redelivers it (possibly more than once).
//
// Call order: NewConsumer, Connect, then read Messages (or Poll) and Ack
// from any goroutines, then Close once. Close must be called after Connect
// even when Connect returned an error, because the connection keeps being
// retried in the background.
//
// The session is persistent unless Options.CleanSession is set: the broker
// keeps the subscriptions and queues QoS 1/2 messages while the consumer is
// away, and redelivers the un-acknowledged ones when it comes back with the
// same ClientID. The consumer also subscribes again after every connect, so
// a broker that lost the session (restarted without persistence) still
// delivers.
//
// Flow control: messages wait in a buffer of the given size. When it is full,
// paho's delivery goroutine blocks in the handler (paho is configured with
// OrderMatters, so there is one such goroutine), paho stops reading the
// socket and TCP pushes back on the broker, so memory stays bounded. For QoS
// 1/2 the broker's own in-flight window usually stops it first: mosquitto
// sends at most max_inflight_messages (default 20; measured: with nobody
// acknowledging, 20 arrive and no more) un-acknowledged messages to a
// client, so a buffer at least that large never fills with QoS 1/2 messages
// alone. The embedded broker (transport/mqttbroker) allows 1024, so there a
// smaller buffer fills and the blocking handler is the backpressure. If the
// handler stays blocked longer than KeepAlive plus
// ConnectTimeout, paho cannot read the PINGRESP and drops the connection;
// the blocked handler notices within 250ms, gives up its message, and the
// consumer reconnects. Messages still in the buffer from the old connection
// can no longer be acknowledged (paho drops those acks, which is what
// protects a new message that reuses the same packet ID), so the broker
// redelivers them: duplicates, not losses.
type Consumer struct {
	opts   Options
	topics map[string]byte
	ch     chan *Message

	lifecycle
}

// NewConsumer returns a Consumer for opts that subscribes to topics (topic
// filter -> QoS) and buffers up to buffer messages (at least 1). It does no
// I/O; Connect validates.
func NewConsumer(opts Options, topics map[string]byte, buffer int) *Consumer {
	t := make(map[string]byte, len(topics))
	for k, v := range topics {
		t[k] = v
	}
	return &Consumer{opts: opts, topics: t, ch: make(chan *Message, max(buffer, 1))}
}

// Connect validates the options and topics, reads the password and TLS
// files, connects and subscribes, returning the error of that first attempt.
// Whatever it returns, the Consumer keeps reconnecting (and subscribing) in
// the background with capped exponential backoff until Close. Calling
// Connect again is an error.
func (c *Consumer) Connect(ctx context.Context) error {
	if err := checkFilters(c.topics); err != nil {
		return err
	}
	c.mu.Lock()
	if err := c.checkConnect("consumer"); err != nil {
		c.mu.Unlock()
		return err
	}
	var cn *conn // set before paho can call the handler (it starts in start)
	cn, err := newConn(c.opts, func(po *paho.ClientOptions) {
		po.SetAutoAckDisabled(true).
			SetOrderMatters(true). // one delivery goroutine: blocking it is the backpressure
			SetDefaultPublishHandler(func(cl paho.Client, m paho.Message) { c.handle(cn, cl, m) })
	})
	if err != nil {
		c.mu.Unlock()
		return err
	}
	cn.afterConnect = func() error { return c.subscribe(cn) }
	c.conn = cn
	c.mu.Unlock()
	return cn.start(ctx)
}

// subscribe (re)subscribes to every topic filter after a connect. Messages
// of a persistent session may arrive before SUBACK: the default publish
// handler takes them.
func (c *Consumer) subscribe(cn *conn) error {
	tok := cn.client.SubscribeMultiple(c.topics, nil)
	if !tok.WaitTimeout(cn.opts.ConnectTimeout) {
		return fmt.Errorf("subscribing at %s: no SUBACK within %s", cn.broker, cn.opts.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("subscribing at %s: %w", cn.broker, err)
	}
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	var refused []string
	for filter, code := range st.Result() {
		if code == 0x80 {
			refused = append(refused, filter)
		}
	}
	if len(refused) > 0 {
		sort.Strings(refused)
		return fmt.Errorf("subscribing at %s to %s: %w", cn.broker, strings.Join(refused, ", "), ErrSubscriptionRefused)
	}
	return nil
}

// handle is paho's default publish handler. It runs on paho's single
// delivery goroutine; blocking here stops paho reading the connection.
func (c *Consumer) handle(cn *conn, client paho.Client, pm paho.Message) {
	var once sync.Once
	m := &Message{
		Topic:     pm.Topic(),
		QoS:       pm.Qos(),
		Retained:  pm.Retained(),
		Duplicate: pm.Duplicate(),
		Payload:   pm.Payload(),
		MessageID: pm.MessageID(),
	}
	m.Ack = func() {
		once.Do(func() {
			pm.Ack()
			if m.QoS > 0 {
				cn.stats.acked.Add(1)
			}
		})
	}
	select {
	case c.ch <- m:
		cn.stats.received.Add(1)
		return
	default:
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case c.ch <- m:
			cn.stats.received.Add(1)
			return
		case <-cn.closing:
			return // not acknowledged: the broker keeps it
		case <-tick.C:
			if !client.IsConnectionOpen() {
				return // its ack could not be sent any more; the broker redelivers it
			}
		}
	}
}

// Messages returns the buffer. It is never closed; stop reading on Close.
func (c *Consumer) Messages() <-chan *Message { return c.ch }

// Poll returns up to max buffered messages without waiting (nil when none).
func (c *Consumer) Poll(max int) []*Message {
	var out []*Message
	for len(out) < max {
		select {
		case m := <-c.ch:
			out = append(out, m)
		default:
			return out
		}
	}
	return out
}

// Stats returns the connection state and counters.
func (c *Consumer) Stats() Stats { return c.stats() }

// Close stops reconnecting and disconnects cleanly. Messages not yet
// acknowledged stay with the broker (persistent session) and are redelivered
// to the next consumer with this ClientID; acks called after Close are
// dropped. Every goroutine the Consumer started has exited when Close
// returns. The wait is bounded by ConnectTimeout; ctx is accepted for
// symmetry with Publisher.Close.
func (c *Consumer) Close(_ context.Context) error {
	cn := c.markClosed()
	if cn == nil {
		return nil
	}
	cn.stop() // releases the handler if it is blocked on a full buffer
	c.flushAcks(cn)
	cn.close()
	return nil
}

// flushFilter is a topic filter the consumer never subscribes to.
const flushFilter = "edgeagent/-/flush-acks"

// flushAcks makes sure the broker has processed the acknowledgements sent so
// far before Close disconnects: paho closes the socket right after writing
// DISCONNECT, and if messages the broker sent meanwhile are still unread
// the close becomes a TCP reset, which can make the broker drop the last
// PUBACKs it had not read yet (seen with mosquitto: acknowledged messages
// were redelivered). The broker answers packets in order, so its UNSUBACK
// for a filter nobody subscribed to proves the earlier acks were handled.
func (c *Consumer) flushAcks(cn *conn) {
	if _, ok := c.topics[flushFilter]; ok || !cn.connected() {
		return
	}
	cn.client.Unsubscribe(flushFilter).WaitTimeout(cn.opts.ConnectTimeout)
}

// checkFilters validates the subscriptions before anything is sent.
func checkFilters(topics map[string]byte) error {
	if len(topics) == 0 {
		return fmt.Errorf("%w: no topics to subscribe to", ErrInvalidTopic)
	}
	var errs []error
	for filter, qos := range topics {
		if qos > 2 {
			errs = append(errs, fmt.Errorf("%w: %q: qos %d is not 0, 1 or 2", ErrInvalidTopic, filter, qos))
		}
		if err := checkFilter(filter); err != nil {
			errs = append(errs, fmt.Errorf("%w: %q: %s", ErrInvalidTopic, filter, err))
		}
	}
	return errors.Join(errs...)
}

func checkFilter(filter string) error {
	if filter == "" {
		return errors.New("topic filter is empty")
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return errors.New("# must be the last level")
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return errors.New("+ and # must fill a whole level")
		}
	}
	return nil
}
