package mqttbroker

import (
	"bytes"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// authHook checks user names and passwords against the password file and
// lets anonymous clients in when allowed. Every client may publish and
// subscribe to every topic.
type authHook struct {
	mochi.HookBase
	users     map[string]credential // nil: no password file
	anonymous bool
	log       *slog.Logger
}

func (h *authHook) ID() string { return "edgeagent-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	if user == "" && !pk.Connect.PasswordFlag {
		if !h.anonymous {
			h.log.Warn("refused anonymous MQTT client", "client_id", cl.ID, "remote", cl.Net.Remote)
		}
		return h.anonymous
	}
	if c, ok := h.users[user]; ok && c.verify(string(pk.Connect.Password)) {
		return true
	}
	h.log.Warn("refused MQTT client: bad user name or password", "client_id", cl.ID, "user", user, "remote", cl.Net.Remote)
	return false
}

func (h *authHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// flowHook keeps QoS 1 and 2 messages from being dropped for slow
// subscribers by pushing back on publishers.
//
// mochi (v2.7.9, publishToClient) acknowledges a QoS 1 message to its
// publisher and then hands it to each subscriber without ever waiting: it
// drops the message when the subscriber's session already holds
// Capabilities.MaximumInflight messages (8192 by default; "client store quota
// reached", counted in Info.InflightDropped), and when the subscriber's
// outbound queue (MaximumClientWritesPending, 8192 by default) is full (a
// debug log, counted in Info.MessagesDropped, and the message is removed from
// the session). MQTT 3.1.1 clients send no Receive Maximum, so mochi's send
// quota does not apply to them either. Measured with the defaults: three
// publishers at full speed for 3s into one subscriber handling about 5,000
// messages/s had 98,492 messages acknowledged, and the subscriber got 15,063;
// 83,429 were dropped.
//
// Raising the limits only moves the problem. Instead this hook runs in
// OnPublish, on the publishing client's read goroutine and before mochi
// acknowledges the message (PUBACK/PUBREC). While any connected subscriber of
// the topic (other than the publisher itself) has window or more QoS 1/2
// messages in flight, it waits: the publisher gets no acknowledgement, its
// in-flight window fills, mochi stops reading its socket and TCP pushes back.
// A subscriber's acknowledgements wake the waiters. The wait ends early when
// the subscriber disconnects (mochi then keeps the messages in the offline
// session) or the broker closes, and after maxWait at the latest (so that two
// clients that publish to each other cannot block each other for good); the
// message then goes through and the outbound queue, 16 times the window,
// takes it. What mochi still drops is logged as an error and counted.
type flowHook struct {
	mochi.HookBase
	server  *mochi.Server
	window  int
	maxWait time.Duration
	log     *slog.Logger
	closing chan struct{}

	waiters atomic.Int32
	mu      sync.Mutex
	wake    chan struct{} // closed and replaced when an acknowledgement may have freed room

	waits   atomic.Uint64 // publishes that had to wait
	dropped atomic.Uint64 // messages mochi dropped anyway (logged)
}

func newFlowHook(window int, maxWait time.Duration, log *slog.Logger) *flowHook {
	return &flowHook{
		window:  window,
		maxWait: maxWait,
		log:     log,
		closing: make(chan struct{}),
		wake:    make(chan struct{}),
	}
}

func (h *flowHook) ID() string { return "edgeagent-flow-control" }

func (h *flowHook) Provides(b byte) bool {
	return bytes.IndexByte([]byte{
		mochi.OnPublish, mochi.OnQosComplete, mochi.OnDisconnect,
		mochi.OnPublishDropped, mochi.OnQosDropped, mochi.OnPacketIDExhausted,
	}, b) >= 0
}

func (h *flowHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || h.slowSubscriber(cl, pk.TopicName) == nil {
		return pk, nil
	}
	h.waits.Add(1)
	h.waiters.Add(1) // before arming wake below, so that wakeWaiters sees us
	defer h.waiters.Add(-1)
	deadline := time.NewTimer(h.maxWait)
	defer deadline.Stop()
	poll := time.NewTicker(100 * time.Millisecond) // in case a wake-up is missed
	defer poll.Stop()
	for {
		h.mu.Lock()
		wake := h.wake
		h.mu.Unlock()
		slow := h.slowSubscriber(cl, pk.TopicName) // checked after arming wake: no ack is missed
		if slow == nil {
			return pk, nil
		}
		select {
		case <-wake:
		case <-poll.C:
		case <-h.closing:
			return pk, nil
		case <-deadline.C:
			h.log.Warn("MQTT subscriber still slow; letting the message through past the flow-control window",
				"subscriber", slow.ID, "publisher", cl.ID, "topic", pk.TopicName, "waited", h.maxWait)
			return pk, nil
		}
	}
}

// slowSubscriber returns a connected subscriber of topic, other than pub,
// that has window or more QoS 1/2 messages in flight, or nil.
func (h *flowHook) slowSubscriber(pub *mochi.Client, topic string) *mochi.Client {
	subs := h.server.Topics.Subscribers(topic)
	if cl := h.slowIn(pub, subs.Subscriptions); cl != nil {
		return cl
	}
	for _, group := range subs.Shared {
		if cl := h.slowIn(pub, group); cl != nil {
			return cl
		}
	}
	return nil
}

// slowIn is slowSubscriber for one set of subscriptions (client ID ->
// subscription).
func (h *flowHook) slowIn(pub *mochi.Client, subs map[string]packets.Subscription) *mochi.Client {
	for id, sub := range subs {
		if sub.Qos == 0 || id == pub.ID {
			continue
		}
		if cl, ok := h.server.Clients.Get(id); ok && !cl.Closed() && cl.State.Inflight.Len() >= h.window {
			return cl
		}
	}
	return nil
}

func (h *flowHook) wakeWaiters() {
	if h.waiters.Load() == 0 {
		return
	}
	h.mu.Lock()
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

func (h *flowHook) OnQosComplete(*mochi.Client, packets.Packet) { h.wakeWaiters() }

func (h *flowHook) OnDisconnect(*mochi.Client, error, bool) { h.wakeWaiters() }

func (h *flowHook) OnPublishDropped(cl *mochi.Client, pk packets.Packet) {
	h.dropped.Add(1)
	h.log.Error("MQTT message dropped: subscriber's outbound queue is full",
		"subscriber", cl.ID, "topic", pk.TopicName, "qos", pk.FixedHeader.Qos)
}

func (h *flowHook) OnQosDropped(cl *mochi.Client, pk packets.Packet) {
	if cl.Properties.Clean {
		return // a clean session ended: its messages go with it, by definition
	}
	h.dropped.Add(1)
	h.log.Error("MQTT in-flight message dropped (expired or refused by the client)",
		"client", cl.ID, "packet_id", pk.PacketID)
}

func (h *flowHook) OnPacketIDExhausted(cl *mochi.Client, pk packets.Packet) {
	h.dropped.Add(1)
	h.log.Error("MQTT message dropped: no free packet ID for the subscriber", "subscriber", cl.ID, "topic", pk.TopicName)
}

// close releases every waiting publisher; the broker is shutting down.
func (h *flowHook) close() { close(h.closing) }
