package mqtt_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/mqtt"
	"edgeagent.dev/transport/mqtt/mqtttest"
)

func TestPublishPipelined5000QoS1(t *testing.T) {
	broker := mqtttest.Start(t)
	const n = 5000
	c := connectConsumer(t, testOptions(broker.URL(), "pipe-sub"), map[string]byte{"pipe/#": 1}, 1000)
	p := connectPublisher(t, testOptions(broker.URL(), "pipe-pub"))

	start := time.Now()
	publishAll(t, p, "pipe/x", 1, 0, n)
	elapsed := time.Since(start)
	st := p.Stats()
	require.Equal(t, uint64(n), st.Published)
	require.Equal(t, uint64(n), st.Acked)
	require.Zero(t, st.Failed)
	t.Logf("%d QoS 1 publishes acknowledged in %s (%.0f msgs/s)", n, elapsed, n/elapsed.Seconds())

	require.Len(t, payloadSet(receive(t, c, n, true, 10*time.Second)), n)
}

// Publishing while disconnected fails at once with ErrNotConnected, naming
// the last connection error, instead of queueing in memory.
func TestPublishWhileDisconnectedFailsFast(t *testing.T) {
	broker := mqtttest.Start(t)
	p := connectPublisher(t, testOptions(broker.URL(), "fast-fail"))
	broker.Kill()
	require.Eventually(t, func() bool { return p.Stats().ConnectionLost == 1 }, 5*time.Second, time.Millisecond)

	start := time.Now()
	err := p.Publish(ctxT(t, time.Second), "a/b", 1, false, []byte("x")).Wait(ctxT(t, time.Second))
	require.ErrorIs(t, err, mqtt.ErrNotConnected)
	require.Less(t, time.Since(start), 100*time.Millisecond)
	require.Contains(t, err.Error(), broker.Addr(), "the last error says which broker")
	require.Zero(t, p.Stats().Published, "nothing handed to paho")
}

// The broker dies mid-stream: every publish completes (none hangs), the ones
// in flight with ErrConnectionLost, the ones made while it is down with
// ErrNotConnected; the publisher reconnects to the restarted broker (same
// port and persistence directory) and later publishes succeed.
func TestPublisherSurvivesBrokerKill(t *testing.T) {
	broker := mqtttest.Start(t)
	p := connectPublisher(t, testOptions(broker.URL(), "kill-pub"))

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var (
		mu      sync.Mutex
		pending []*mqtt.Pending
	)
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		for i := 0; ctx.Err() == nil; i++ {
			pd := p.Publish(ctx, "kill/x", 1, false, payload(i))
			mu.Lock()
			pending = append(pending, pd)
			mu.Unlock()
			if errors.Is(pd.Err(), mqtt.ErrNotConnected) {
				time.Sleep(time.Millisecond) // a processor would penalize the flowfile
			}
		}
	}()
	require.Eventually(t, func() bool { return p.Stats().Acked > 2000 }, 10*time.Second, time.Millisecond)
	// Freeze the broker first so that publishes are in flight, un-acked,
	// when it dies.
	broker.Pause()
	require.Eventually(t, func() bool {
		st := p.Stats()
		return st.Published-st.Acked-st.Failed >= 100
	}, 10*time.Second, time.Millisecond)
	broker.Kill()
	require.Eventually(t, func() bool { return p.Stats().ConnectionLost == 1 }, 5*time.Second, time.Millisecond)
	broker.Restart()
	require.Eventually(t, func() bool { return p.Stats().Reconnects == 1 }, 10*time.Second, 5*time.Millisecond)
	acked := p.Stats().Acked
	require.Eventually(t, func() bool { return p.Stats().Acked > acked+1000 }, 10*time.Second, time.Millisecond,
		"publishing goes on after the restart")
	stop()
	<-pumped

	var ok, lost, notConnected int
	for _, pd := range pending {
		err := pd.Wait(ctxT(t, 10*time.Second))
		switch {
		case err == nil:
			ok++
		case errors.Is(err, mqtt.ErrConnectionLost):
			lost++
		case errors.Is(err, mqtt.ErrNotConnected):
			notConnected++
		case errors.Is(err, context.Canceled): // the pump's last call, after stop
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	t.Logf("%d publishes: %d acked, %d lost with the connection, %d refused while disconnected; %+v",
		len(pending), ok, lost, notConnected, p.Stats())
	require.Positive(t, lost, "the publishes in flight at the kill failed")
	st := p.Stats()
	require.Equal(t, uint64(ok), st.Acked)
}

// Acknowledged means delivered: the network between publisher and broker is
// cut twice mid-stream while the broker keeps running. The test retries what
// failed, as PublishMQTT does with its flowfiles, and a persistent subscriber
// receives every one of the N messages (duplicates allowed, none missing).
func TestPublisherAckedMessagesAreNeverLost(t *testing.T) {
	broker := mqtttest.Start(t)
	proxy := mqtttest.NewProxy(t, broker.Addr())
	c := connectConsumer(t, testOptions(broker.URL(), "nolose-sub"), map[string]byte{"nolose/#": 1}, 1000)
	opts := testOptions(proxy.URL(), "nolose-pub")
	opts.MaxInFlight = 500
	p := connectPublisher(t, opts)

	const n = 6000
	ctx := ctxT(t, 30*time.Second)
	todo := make([]int, n)
	for i := range todo {
		todo[i] = i
	}
	sent, failed := 0, 0
	for round := 0; len(todo) > 0; round++ {
		require.Less(t, round, 10)
		pending := make(map[int]*mqtt.Pending, len(todo))
		for _, i := range todo {
			if sent == n/3 || sent == 2*n/3 {
				require.Eventually(t, func() bool { return p.Stats().Connected }, 5*time.Second, time.Millisecond)
				proxy.CutAll()
			}
			sent++
			for {
				pd := p.Publish(ctx, "nolose/x", 1, false, payload(i))
				if !errors.Is(pd.Err(), mqtt.ErrNotConnected) {
					pending[i] = pd
					break
				}
				failed++
				require.Eventually(t, func() bool { return p.Stats().Connected }, 5*time.Second, time.Millisecond)
			}
		}
		todo = todo[:0]
		for i, pd := range pending {
			if err := pd.Wait(ctx); err != nil {
				require.True(t, errors.Is(err, mqtt.ErrConnectionLost) || errors.Is(err, mqtt.ErrNotConnected), "%v", err)
				failed++
				todo = append(todo, i)
			}
		}
	}
	require.Positive(t, failed, "the cuts failed some publishes")
	require.Equal(t, uint64(2), p.Stats().ConnectionLost)

	received := map[string]int{}
	total := 0
	require.Eventually(t, func() bool {
		for _, m := range c.Poll(1000) {
			m.Ack()
			received[string(m.Payload)]++
			total++
		}
		return len(received) == n
	}, 10*time.Second, 5*time.Millisecond, "every message reaches the subscriber")
	t.Logf("%d messages, %d publish failures retried, %d received (%d duplicates); %+v",
		n, failed, total, total-n, p.Stats())
}

func TestPublisherCloseWaitsForAcks(t *testing.T) {
	broker := mqtttest.Start(t)
	p := mqtt.NewPublisher(testOptions(broker.URL(), "close-pub"))
	require.NoError(t, p.Connect(ctxT(t, 5*time.Second)))
	var pending []*mqtt.Pending
	for i := range 500 {
		pending = append(pending, p.Publish(ctxT(t, 5*time.Second), "close/x", 2, false, payload(i)))
	}
	require.NoError(t, p.Close(ctxT(t, 10*time.Second)))
	for _, pd := range pending {
		select {
		case <-pd.Done():
			require.NoError(t, pd.Err())
		default:
			t.Fatal("a publish is still pending after Close")
		}
	}
	err := p.Publish(ctxT(t, time.Second), "close/x", 1, false, nil).Err()
	require.ErrorIs(t, err, mqtt.ErrClosed)
}

func TestPublishWindowBoundsInFlight(t *testing.T) {
	broker := mqtttest.Start(t)
	opts := testOptions(broker.URL(), "window-pub")
	opts.MaxInFlight = 3
	p := connectPublisher(t, opts)
	publishAll(t, p, "w/x", 1, 0, 100)

	// A hung broker acks nothing: three publishes fill the window, and the
	// fourth waits for a slot until its ctx ends.
	broker.Pause()
	var pending []*mqtt.Pending
	for i := range 3 {
		pending = append(pending, p.Publish(ctxT(t, time.Second), "w/x", 1, false, payload(i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := p.Publish(ctx, "w/x", 1, false, nil).Wait(ctxT(t, time.Second))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "waiting for an in-flight slot")

	broker.Resume()
	for _, pd := range pending {
		require.NoError(t, pd.Wait(ctxT(t, 5*time.Second)))
	}
}
