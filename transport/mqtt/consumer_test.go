package mqtt_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/mqtt"
	"edgeagent.dev/transport/mqtt/mqtttest"
)

// Un-acknowledged QoS 1 messages stay with the broker when the consumer
// closes, and come back to the next consumer with the same client ID; the
// acknowledged ones do not.
func TestConsumerRedeliversUnackedAfterClose(t *testing.T) {
	broker := mqtttest.Start(t)
	const n, acked = 50, 5
	opts := testOptions(broker.URL(), "redeliver-close")

	first := mqtt.NewConsumer(opts, map[string]byte{"r/#": 1}, 100)
	require.NoError(t, first.Connect(ctxT(t, 5*time.Second)))
	p := connectPublisher(t, testOptions(broker.URL(), "redeliver-close-pub"))
	publishAll(t, p, "r/x", 1, 0, n)

	got := receive(t, first, 15, false, 5*time.Second)
	for _, m := range got[:acked] {
		m.Ack()
	}

	require.NoError(t, first.Close(context.Background()))
	for _, m := range got[acked:] {
		m.Ack() // after Close: dropped, must not reach the broker
	}

	second := connectConsumer(t, opts, map[string]byte{"r/#": 1}, 100)
	again := receive(t, second, n-acked, true, 5*time.Second)
	set := payloadSet(again)
	require.Len(t, set, n-acked, "every un-acked message exactly once")
	for i := range n {
		_, ok := set[string(payload(i))]
		require.Equal(t, i >= acked, ok, "message %d", i)
	}
	dups := 0
	for _, m := range again {
		if m.Duplicate {
			dups++
		}
	}
	require.Positive(t, dups, "redelivered messages carry the DUP flag")
	require.Empty(t, second.Poll(10), "nothing more")
}

// When the network drops, the same consumer reconnects by itself, subscribes
// again, and gets the un-acknowledged messages again.
func TestConsumerRedeliversUnackedAfterConnectionCut(t *testing.T) {
	broker := mqtttest.Start(t)
	proxy := mqtttest.NewProxy(t, broker.Addr())
	const n = 30
	c := connectConsumer(t, testOptions(proxy.URL(), "redeliver-cut"), map[string]byte{"r/#": 1}, 100)
	p := connectPublisher(t, testOptions(broker.URL(), "redeliver-cut-pub"))
	publishAll(t, p, "r/x", 1, 0, n)

	before := receive(t, c, 10, false, 5*time.Second) // held, not acked
	proxy.CutAll()
	for _, m := range before {
		m.Ack() // the connection they came on is gone: these acks are dropped
	}
	require.Eventually(t, func() bool { return c.Stats().Reconnects >= 1 }, 5*time.Second, 10*time.Millisecond)

	var all []*mqtt.Message
	require.Eventually(t, func() bool {
		for _, m := range c.Poll(100) {
			m.Ack()
			all = append(all, m)
		}
		return len(payloadSet(all)) == n
	}, 10*time.Second, 10*time.Millisecond, "all %d messages after the reconnect", n)
	set := payloadSet(all)
	for _, m := range before {
		require.Contains(t, set, string(m.Payload), "held message redelivered")
	}
	st := c.Stats()
	require.Equal(t, uint64(1), st.ConnectionLost)
	require.True(t, st.Connected)
}

// A full buffer blocks paho's delivery goroutine: nothing is lost, and
// (measured here) mosquitto stops at its in-flight window of 20.
func TestConsumerBackpressureLosesNothing(t *testing.T) {
	broker := mqtttest.Start(t)
	const n, buffer = 200, 5
	opts := testOptions(broker.URL(), "backpressure")
	opts.KeepAlive = time.Second
	opts.ConnectTimeout = time.Second
	c := connectConsumer(t, opts, map[string]byte{"bp/#": 1}, buffer)
	p := connectPublisher(t, testOptions(broker.URL(), "backpressure-pub"))
	publishAll(t, p, "bp/x", 1, 0, n)

	// Nobody reads: the buffer fills, one more message waits in the
	// handler, and the broker holds back the rest.
	require.Eventually(t, func() bool { return c.Stats().Received == buffer }, 5*time.Second, 10*time.Millisecond)
	// Stay blocked past keepalive + ping timeout: paho cannot read the
	// PINGRESP and drops the connection; the consumer reconnects.
	require.Eventually(t, func() bool { return c.Stats().ConnectionLost >= 1 }, 10*time.Second, 50*time.Millisecond)
	t.Logf("blocked consumer: %+v", c.Stats())

	var all []*mqtt.Message
	require.Eventually(t, func() bool {
		for _, m := range c.Poll(50) {
			m.Ack()
			all = append(all, m)
		}
		return len(payloadSet(all)) == n
	}, 10*time.Second, 5*time.Millisecond)
	t.Logf("received %d messages for %d published (%d duplicates); %+v", len(all), n, len(all)-n, c.Stats())
}

// A consumer's persistent session survives a broker restart (mosquitto saves
// it on SIGTERM): messages published while the consumer was away arrive.
func TestConsumerSessionSurvivesBrokerRestart(t *testing.T) {
	broker := mqtttest.Start(t)
	opts := testOptions(broker.URL(), "restart-sub")
	first := mqtt.NewConsumer(opts, map[string]byte{"rs/#": 1}, 10)
	require.NoError(t, first.Connect(ctxT(t, 5*time.Second)))
	require.NoError(t, first.Close(ctxT(t, 5*time.Second)))

	p := connectPublisher(t, testOptions(broker.URL(), "restart-pub"))
	publishAll(t, p, "rs/x", 1, 0, 10)
	broker.Restart()

	c := connectConsumer(t, opts, map[string]byte{"rs/#": 1}, 10)
	require.Len(t, payloadSet(receive(t, c, 10, true, 5*time.Second)), 10)
}

// A broker killed before it saved anything forgets the session; the
// consumer reconnects by itself and subscribes again, so new messages flow.
func TestConsumerResubscribesAfterBrokerLostSession(t *testing.T) {
	broker := mqtttest.Start(t)
	c := connectConsumer(t, testOptions(broker.URL(), "resub-sub"), map[string]byte{"rsub/#": 1}, 10)
	broker.Kill()
	broker.Restart()
	require.Eventually(t, func() bool { return c.Stats().Reconnects == 1 }, 10*time.Second, 5*time.Millisecond)

	p := connectPublisher(t, testOptions(broker.URL(), "resub-pub"))
	publishAll(t, p, "rsub/x", 1, 0, 5)
	require.Len(t, payloadSet(receive(t, c, 5, true, 5*time.Second)), 5)
}
