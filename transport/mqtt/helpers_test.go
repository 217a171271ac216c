package mqtt_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/mqtt"
)

// testOptions are quick to fail and to reconnect, for tests.
func testOptions(broker, clientID string) mqtt.Options {
	return mqtt.Options{
		Broker:               broker,
		ClientID:             clientID,
		KeepAlive:            5 * time.Second,
		ConnectTimeout:       2 * time.Second,
		MaxReconnectInterval: 200 * time.Millisecond,
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// connectPublisher connects a Publisher and closes it when the test ends.
func connectPublisher(t testing.TB, opts mqtt.Options) *mqtt.Publisher {
	t.Helper()
	p := mqtt.NewPublisher(opts)
	t.Cleanup(func() { require.NoError(t, p.Close(ctxT(t, 10*time.Second))) })
	require.NoError(t, p.Connect(ctxT(t, 5*time.Second)))
	return p
}

// connectConsumer connects a Consumer and closes it when the test ends.
func connectConsumer(t testing.TB, opts mqtt.Options, topics map[string]byte, buffer int) *mqtt.Consumer {
	t.Helper()
	c := mqtt.NewConsumer(opts, topics, buffer)
	t.Cleanup(func() { require.NoError(t, c.Close(context.Background())) })
	require.NoError(t, c.Connect(ctxT(t, 5*time.Second)))
	return c
}

// receive reads n messages (failing after timeout), acking each when ack is set.
func receive(t testing.TB, c *mqtt.Consumer, n int, ack bool, timeout time.Duration) []*mqtt.Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	out := make([]*mqtt.Message, 0, n)
	for len(out) < n {
		select {
		case m := <-c.Messages():
			if ack {
				m.Ack()
			}
			out = append(out, m)
		case <-deadline.C:
			t.Fatalf("received %d of %d messages in %s", len(out), n, timeout)
		}
	}
	return out
}

// publishAll publishes n numbered payloads on topic and waits for every ack.
func publishAll(t testing.TB, p *mqtt.Publisher, topic string, qos byte, from, n int) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	pending := make([]*mqtt.Pending, 0, n)
	for i := from; i < from+n; i++ {
		pending = append(pending, p.Publish(ctx, topic, qos, false, payload(i)))
	}
	for i, pd := range pending {
		require.NoError(t, pd.Wait(ctx), "message %d", from+i)
	}
}

func payload(i int) []byte { return fmt.Appendf(nil, "msg-%07d", i) }

// payloadSet is the set of payloads received, with how often each came.
func payloadSet(msgs []*mqtt.Message) map[string]int {
	s := make(map[string]int, len(msgs))
	for _, m := range msgs {
		s[string(m.Payload)]++
	}
	return s
}
