package mqtt_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/mqtt"
	"edgeagent.dev/transport/mqtt/mqtttest"
)

func TestRoundTrip(t *testing.T) {
	broker := mqtttest.Start(t)
	for _, qos := range []byte{0, 1, 2} {
		t.Run(map[byte]string{0: "qos0", 1: "qos1", 2: "qos2"}[qos], func(t *testing.T) {
			topic := "edge/rt/" + t.Name()
			c := connectConsumer(t, testOptions(broker.URL(), "rt-sub-"+t.Name()), map[string]byte{"edge/rt/#": qos}, 100)
			p := connectPublisher(t, testOptions(broker.URL(), "rt-pub-"+t.Name()))

			publishAll(t, p, topic, qos, 0, 10)
			msgs := receive(t, c, 10, true, 5*time.Second)
			for i, m := range msgs {
				require.Equal(t, topic, m.Topic)
				require.Equal(t, qos, m.QoS)
				require.Equal(t, string(payload(i)), string(m.Payload), "order kept on one connection")
				require.False(t, m.Retained)
				if qos > 0 {
					require.NotZero(t, m.MessageID)
				}
			}
			ps := p.Stats()
			require.True(t, ps.Connected)
			require.Equal(t, uint64(10), ps.Published)
			require.Equal(t, uint64(10), ps.Acked)
			// paho's delivery goroutine counts a message just after the
			// buffer took it, so the reader can be a moment ahead.
			require.Eventually(t, func() bool { return c.Stats().Received == 10 }, 5*time.Second, time.Millisecond)
			cs := c.Stats()
			require.Equal(t, uint64(10), cs.Received)
			if qos > 0 {
				require.Equal(t, uint64(10), cs.Acked)
			}
		})
	}
}

func TestRoundTripWebsocket(t *testing.T) {
	broker := mqtttest.Start(t, mqtttest.WithWebsockets())
	require.Contains(t, broker.URL(), "ws://")
	c := connectConsumer(t, testOptions(broker.URL(), "ws-sub"), map[string]byte{"ws/#": 1}, 10)
	p := connectPublisher(t, testOptions(broker.URL(), "ws-pub"))
	publishAll(t, p, "ws/a", 1, 0, 5)
	require.Len(t, payloadSet(receive(t, c, 5, true, 5*time.Second)), 5)
}

func TestRetainedFlag(t *testing.T) {
	broker := mqtttest.Start(t)
	p := connectPublisher(t, testOptions(broker.URL(), "ret-pub"))
	require.NoError(t, p.Publish(ctxT(t, 5*time.Second), "ret/a", 1, true, []byte("last")).Wait(ctxT(t, 5*time.Second)))
	c := connectConsumer(t, testOptions(broker.URL(), "ret-sub"), map[string]byte{"ret/#": 1}, 10)
	m := receive(t, c, 1, true, 5*time.Second)[0]
	require.True(t, m.Retained)
	require.Equal(t, "last", string(m.Payload))
}

func TestPublishRejectsBadTopicWithoutSending(t *testing.T) {
	broker := mqtttest.Start(t)
	p := connectPublisher(t, testOptions(broker.URL(), "bad-topic"))
	for _, tc := range []struct {
		topic string
		qos   byte
	}{{"", 1}, {"a/+/b", 1}, {"a/#", 0}, {"a/b", 3}} {
		err := p.Publish(ctxT(t, time.Second), tc.topic, tc.qos, false, nil).Wait(ctxT(t, time.Second))
		require.ErrorIs(t, err, mqtt.ErrInvalidTopic, "topic %q qos %d", tc.topic, tc.qos)
	}
	require.Zero(t, p.Stats().Published)
}

func TestConsumerRejectsBadFilters(t *testing.T) {
	for _, topics := range []map[string]byte{
		nil,
		{"a/#/b": 1},
		{"a/b+": 1},
		{"": 0},
		{"a": 3},
	} {
		c := mqtt.NewConsumer(testOptions("tcp://127.0.0.1:1", "f"), topics, 1)
		require.ErrorIs(t, c.Connect(ctxT(t, time.Second)), mqtt.ErrInvalidTopic, "%v", topics)
		require.NoError(t, c.Close(ctxT(t, time.Second)))
	}
}

// Close leaves no goroutine behind.
func TestCloseStopsEveryGoroutine(t *testing.T) {
	broker := mqtttest.Start(t)
	before := runtime.NumGoroutine()

	c := mqtt.NewConsumer(testOptions(broker.URL(), "leak-sub"), map[string]byte{"leak/#": 1}, 2)
	require.NoError(t, c.Connect(ctxT(t, 5*time.Second)))
	p := mqtt.NewPublisher(testOptions(broker.URL(), "leak-pub"))
	require.NoError(t, p.Connect(ctxT(t, 5*time.Second)))
	publishAll(t, p, "leak/x", 1, 0, 20) // the consumer's buffer is full: its handler blocks
	require.Eventually(t, func() bool { return c.Stats().Received == 2 }, 5*time.Second, time.Millisecond)

	require.NoError(t, p.Close(ctxT(t, 5*time.Second)))
	start := time.Now()
	require.NoError(t, c.Close(ctxT(t, 5*time.Second)))
	require.Less(t, time.Since(start), time.Second, "a blocked handler does not hold Close up")
	requireGoroutinesBack(t, before)

	// A publisher that never connected (refused) closes cleanly too.
	refused := mqtt.NewPublisher(testOptions("tcp://127.0.0.1:1", "leak-refused"))
	require.Error(t, refused.Connect(ctxT(t, 5*time.Second)))
	require.NoError(t, refused.Close(ctxT(t, 5*time.Second)))
	requireGoroutinesBack(t, before)
}

// requireGoroutinesBack waits until no more than want goroutines run. It
// polls by hand: require.Eventually runs goroutines of its own.
func requireGoroutinesBack(t *testing.T, want int) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for runtime.NumGoroutine() > want {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%d goroutines still run, want %d", runtime.NumGoroutine(), want)
		}
	}
}
