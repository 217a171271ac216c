package pulsartest

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// conn is one client connection. serve reads and handles commands in order;
// writeLoop writes what send queued, so that the broker never blocks on a
// client while it holds b.mu.
type conn struct {
	b  *Broker
	nc net.Conn

	// Owned by b.mu.
	producers map[uint64]*producer
	consumers map[uint64]*consumer

	outMu   sync.Mutex
	outCond *sync.Cond
	out     [][]byte
	closing bool
	closed  chan struct{} // closed when writeLoop has closed nc
}

func newConn(b *Broker, nc net.Conn) *conn {
	c := &conn{
		b:         b,
		nc:        nc,
		producers: map[uint64]*producer{},
		consumers: map[uint64]*consumer{},
		closed:    make(chan struct{}),
	}
	c.outCond = sync.NewCond(&c.outMu)
	return c
}

// send queues a command frame without payload.
func (c *conn) send(cmd enc) { c.sendFrame(simpleFrame(cmd)) }

func (c *conn) sendFrame(f []byte) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.closing {
		return
	}
	c.out = append(c.out, f)
	c.outCond.Signal()
}

// shutdown makes writeLoop flush what is queued and close the connection.
func (c *conn) shutdown() {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if !c.closing {
		c.closing = true
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.outCond.Signal()
	}
}

func (c *conn) writeLoop() {
	defer c.b.wg.Done()
	defer close(c.closed)
	defer c.nc.Close()
	var ping <-chan time.Time
	if d := c.b.cfg.pingInterval; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		ping = t.C
		c.b.wg.Add(1)
		go func() {
			defer c.b.wg.Done()
			// Wake the writer for pings; exits with the connection.
			for {
				select {
				case <-ping:
					c.send(command(cmdPing, nil))
				case <-c.closed:
					return
				}
			}
		}()
	}
	for {
		c.outMu.Lock()
		for len(c.out) == 0 && !c.closing {
			c.outCond.Wait()
		}
		batch, closing := c.out, c.closing
		c.out = nil
		c.outMu.Unlock()
		for _, f := range batch {
			if _, err := c.nc.Write(f); err != nil {
				c.shutdown()
				return
			}
		}
		if closing {
			return
		}
	}
}

// serve reads commands until the connection ends, then releases everything
// the connection held: its producers go away, its consumers' unacknowledged
// messages go back to their subscriptions.
func (c *conn) serve() {
	defer c.b.wg.Done()
	defer c.cleanup()
	if err := c.handshake(); err != nil {
		return
	}
	for {
		f, err := readFrame(c.nc)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !c.isClosing() {
				c.b.logf("reading from %s: %v", c.nc.RemoteAddr(), err)
			}
			return
		}
		if f.typ == cmdSend && !c.waitSendDelay() {
			return
		}
		if c.isClosing() {
			return // a stopped broker handles nothing more
		}
		c.handle(f)
	}
}

func (c *conn) isClosing() bool {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.closing
}

func (c *conn) waitSendDelay() bool {
	c.b.mu.Lock()
	d := c.b.sendDelay
	c.b.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !c.isClosing()
	case <-c.closed:
		return false
	}
}

func (c *conn) cleanup() {
	c.shutdown()
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range c.producers {
		p.remove()
	}
	for _, cs := range c.consumers {
		cs.sub.removeConsumer(cs)
	}
	c.producers, c.consumers = map[uint64]*producer{}, map[uint64]*consumer{}
	delete(b.conns, c)
}

// handshake expects CONNECT, checks the protocol version and the token, and
// answers CONNECTED or ERROR.
func (c *conn) handshake() error {
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := readFrame(c.nc)
	if err != nil {
		return err
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	if f.typ != cmdConnect {
		c.fail(noID, errNotAllowed, fmt.Sprintf("expected CONNECT, got command type %d", f.typ))
		return errors.New("no CONNECT")
	}
	version := f.body.int(4, 0)
	if version < minProtocolVersion {
		c.fail(noID, errUnsupportedVersion, fmt.Sprintf("protocol version %d is too old", version))
		return errors.New("old protocol")
	}
	version = min(version, maxProtocolVersion)

	b := c.b
	b.mu.Lock()
	want := b.token
	b.mu.Unlock()
	if want != "" {
		method, data := f.body.str(5), f.body.bytes(3)
		if method != "token" || subtle.ConstantTimeCompare(data, []byte(want)) != 1 {
			b.mu.Lock()
			b.authFails++
			b.mu.Unlock()
			// The same text a Java broker answers; never echo the token.
			c.fail(noID, errAuthentication, "Unable to authenticate")
			return errors.New("authentication failed")
		}
	}
	c.send(command(cmdConnected, enc(nil).
		str(1, "pulsartest").
		int(2, version).
		int(3, defaultMaxMessageSize)))
	return nil
}

// fail answers ERROR and closes the connection.
func (c *conn) fail(requestID uint64, code int, msg string) {
	c.sendError(requestID, code, msg)
	c.shutdown()
}

func (c *conn) sendError(requestID uint64, code int, msg string) {
	c.send(command(cmdError, enc(nil).uint(1, requestID).uint(2, uint64(code)).str(3, msg)))
}

func (c *conn) success(requestID uint64) {
	c.send(command(cmdSuccess, enc(nil).uint(1, requestID)))
}

func (c *conn) handle(f *frame) {
	b := c.b
	body := f.body
	switch f.typ {
	case cmdPing:
		c.send(command(cmdPong, nil))
	case cmdPong:
	case cmdPartitionedMetadata:
		c.send(command(cmdPartitionedMetaResp, enc(nil).
			uint(1, 0). // partitions: every topic here is non-partitioned
			uint(2, body.uint(2, 0)).
			uint(3, 0))) // Success
	case cmdLookup:
		c.send(command(cmdLookupResponse, enc(nil).
			str(1, "pulsar://"+b.addr).
			str(2, "pulsar+ssl://"+b.addr).
			uint(3, 1). // Connect
			uint(4, body.uint(2, 0)).
			bool(5, true).
			bool(8, false)))
	case cmdGetTopicsOfNS:
		b.mu.Lock()
		prefix := "persistent://" + body.str(2) + "/"
		var names []string
		for name := range b.topics {
			if strings.HasPrefix(name, prefix) {
				names = append(names, name)
			}
		}
		b.mu.Unlock()
		resp := enc(nil).uint(1, body.uint(1, 0))
		for _, n := range names {
			resp = resp.str(2, n)
		}
		c.send(command(cmdGetTopicsOfNSResp, resp.bool(3, false).bool(5, true)))
	case cmdProducer:
		c.handleProducer(body)
	case cmdSend:
		c.handleSend(body, f.headersAndPayload)
	case cmdCloseProducer:
		b.mu.Lock()
		if p := c.producers[body.uint(1, 0)]; p != nil {
			p.remove()
			delete(c.producers, p.id)
		}
		b.mu.Unlock()
		c.success(body.uint(2, 0))
	case cmdSubscribe:
		c.handleSubscribe(body)
	case cmdFlow:
		b.mu.Lock()
		if cs := c.consumers[body.uint(1, 0)]; cs != nil {
			cs.permits += int(body.uint(2, 0))
			cs.sub.dispatch()
		}
		b.mu.Unlock()
	case cmdAck:
		b.mu.Lock()
		cs := c.consumers[body.uint(1, 0)]
		if cs != nil {
			cs.sub.ack(body.uint(2, 0) == 1, body.msgs(3))
		}
		b.mu.Unlock()
		if body.has(8) {
			resp := enc(nil).uint(1, body.uint(1, 0)).uint(6, body.uint(8, 0))
			if cs == nil {
				resp = resp.uint(4, errConsumerNotFound).str(5, "consumer not found")
			}
			c.send(command(cmdAckResponse, resp))
		}
	case cmdRedeliverUnacked:
		b.mu.Lock()
		if cs := c.consumers[body.uint(1, 0)]; cs != nil {
			cs.sub.redeliver(cs, body.msgs(2))
		}
		b.mu.Unlock()
	case cmdCloseConsumer:
		b.mu.Lock()
		if cs := c.consumers[body.uint(1, 0)]; cs != nil {
			cs.sub.removeConsumer(cs)
			delete(c.consumers, cs.id)
		}
		b.mu.Unlock()
		c.success(body.uint(2, 0))
	case cmdUnsubscribe:
		c.handleUnsubscribe(body)
	case cmdGetLastMessageID:
		c.handleGetLastMessageID(body)
	case cmdSeek:
		c.sendError(body.uint(2, 0), errNotAllowed, "seek is not supported by pulsartest")
	default:
		b.logf("ignoring command type %d from %s", f.typ, c.nc.RemoteAddr())
	}
}

func (c *conn) handleProducer(body fields) {
	b := c.b
	reqID := body.uint(3, 0)
	id := body.uint(2, 0)
	b.mu.Lock()
	defer b.mu.Unlock()
	tp := b.topic(fullTopicName(body.str(1)))
	if p := c.producers[id]; p != nil && p.topic == tp {
		// A repeated PRODUCER for a producer this connection already has.
		c.send(command(cmdProducerSuccess, enc(nil).uint(1, reqID).str(2, p.name).int(3, tp.last(p.name))))
		return
	}
	name := body.str(4)
	if name == "" {
		b.nameSeq++
		name = fmt.Sprintf("pulsartest-%d-%d", b.ledger, b.nameSeq)
	}
	if other := tp.producers[name]; other != nil {
		c.sendError(reqID, errProducerBusy,
			fmt.Sprintf("Producer with name '%s' is already connected to topic", name))
		return
	}
	p := &producer{id: id, name: name, topic: tp, c: c}
	tp.producers[name] = p
	c.producers[id] = p
	c.send(command(cmdProducerSuccess, enc(nil).uint(1, reqID).str(2, name).int(3, tp.last(name))))
}

// failSend answers SEND_ERROR and drops the producer from the connection,
// as a broker that failed to persist a message fences the topic and
// disconnects its producers: later SENDs of that producer, already on the
// wire, close the connection instead of being stored out of order.
func (c *conn) failSend(p *producer, seq uint64, code int, msg string) {
	c.b.sendErrors++
	c.send(command(cmdSendError, enc(nil).uint(1, p.id).uint(2, seq).uint(3, uint64(code)).str(4, msg)))
	p.remove()
	delete(c.producers, p.id)
}

func (c *conn) handleSend(body fields, hp []byte) {
	b := c.b
	producerID, seq := body.uint(1, 0), body.uint(2, 0)
	highest := max(body.uint(6, 0), seq)
	b.mu.Lock()
	defer b.mu.Unlock()
	p := c.producers[producerID]
	if p == nil {
		// A Java broker closes the connection on a SEND from a producer
		// that is not ready (unknown, or disconnected after a failure).
		b.logf("SEND from unknown producer %d on %s: closing the connection", producerID, c.nc.RemoteAddr())
		c.shutdown()
		return
	}
	if b.failSends > 0 {
		b.failSends--
		c.failSend(p, seq, errPersistence, "injected failure: pulsartest FailSends")
		return
	}
	rawMeta, _, err := splitPayload(hp)
	if err != nil {
		code := errUnknown
		if errors.Is(err, errChecksum) {
			code = errChecksumCode
		}
		c.failSend(p, seq, code, err.Error())
		return
	}
	meta, err := parseEntryMeta(rawMeta)
	if err != nil {
		c.failSend(p, seq, errUnknown, err.Error())
		return
	}
	tp := p.topic
	receipt := enc(nil).uint(1, producerID).uint(2, seq)
	if last, ok := tp.lastSeq[p.name]; ok && int64(seq) <= last {
		// De-duplication: acknowledged, not stored again. A Java broker
		// answers a duplicate with message id -1:-1.
		b.dupsDropped++
		c.send(command(cmdSendReceipt, receipt.msg(3, messageIDData(noID, noID)).uint(4, highest)))
		return
	}
	e := tp.append(b.ledger, hp, meta)
	tp.lastSeq[p.name] = int64(highest)
	c.send(command(cmdSendReceipt, receipt.msg(3, messageIDData(e.ledger, e.id)).uint(4, highest)))
	for _, s := range tp.subs {
		s.dispatch()
	}
}

func (c *conn) handleSubscribe(body fields) {
	b := c.b
	reqID, id := body.uint(5, 0), body.uint(4, 0)
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := c.consumers[id]; ok {
		c.success(reqID) // repeated SUBSCRIBE for a consumer this connection has
		return
	}
	tp := b.topic(fullTopicName(body.str(1)))
	name, typ := body.str(2), int(body.uint(3, subExclusive))
	durable := body.uint(8, 1) != 0
	s := tp.subs[name]
	if s == nil {
		start := len(tp.entries)   // Latest
		if body.uint(13, 0) == 1 { // Earliest
			start = 0
		}
		if !durable && body.has(9) {
			// A reader: start at the given entry (the client drops what
			// precedes an exclusive start id itself).
			if e := int64(body.msg(9).uint(2, 0)); e < 0 {
				start = 0
			} else {
				start = min(int(e), len(tp.entries))
			}
		}
		s = newSubscription(tp, name, typ, durable, start)
		tp.subs[name] = s
	}
	if len(s.consumers) > 0 {
		switch {
		case s.typ != typ:
			c.sendError(reqID, errConsumerBusy, "Subscription is of different type")
			return
		case typ == subExclusive:
			c.sendError(reqID, errConsumerBusy, "Exclusive consumer is already connected")
			return
		}
	}
	s.typ = typ
	cs := &consumer{id: id, c: c, sub: s}
	s.consumers = append(s.consumers, cs)
	c.consumers[id] = cs
	c.success(reqID)
	if typ == subFailover {
		c.send(command(cmdActiveConsumerChg, enc(nil).uint(1, id).bool(2, s.consumers[0] == cs)))
	}
}

func (c *conn) handleUnsubscribe(body fields) {
	b := c.b
	reqID := body.uint(2, 0)
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := c.consumers[body.uint(1, 0)]
	if cs == nil {
		c.sendError(reqID, errConsumerNotFound, "consumer not found")
		return
	}
	s := cs.sub
	if len(s.consumers) > 1 && !body.bool(3) {
		c.sendError(reqID, errConsumerBusy, "Subscription has other connected consumers")
		return
	}
	for _, other := range append([]*consumer(nil), s.consumers...) {
		s.removeConsumer(other)
		delete(other.c.consumers, other.id)
		if other != cs {
			other.c.send(command(cmdCloseConsumer, enc(nil).uint(1, other.id).uint(2, noID)))
		}
	}
	delete(s.topic.subs, s.name)
	c.success(reqID)
}

func (c *conn) handleGetLastMessageID(body fields) {
	b := c.b
	reqID := body.uint(2, 0)
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := c.consumers[body.uint(1, 0)]
	if cs == nil {
		c.sendError(reqID, errConsumerNotFound, "consumer not found")
		return
	}
	tp := cs.sub.topic
	last := enc(nil).uint(1, b.ledger).uint(2, noID)
	if n := len(tp.entries); n > 0 {
		e := tp.entries[n-1]
		last = messageIDData(e.ledger, e.id)
		if e.meta.batched {
			last = last.int(4, int64(e.meta.numMessages-1))
		}
	}
	resp := enc(nil).msg(1, last).uint(2, reqID)
	if md := cs.sub.markDelete; md > 0 {
		e := tp.entries[md-1]
		resp = resp.msg(3, messageIDData(e.ledger, e.id))
	}
	c.send(command(cmdGetLastMessageIDRes, resp))
}

func (b *Broker) logf(format string, args ...any) {
	b.t.Logf("pulsartest: "+format, args...)
}
