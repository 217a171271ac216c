package pulsar_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/pulsar"
	"edgeagent.dev/transport/pulsar/pulsartest"
)

func produce(t testing.TB, c *pulsar.Client, topic string, first, n int) {
	t.Helper()
	ctx := ctxT(t)
	p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: topic, DisableBatching: true, BatchingMaxDelay: time.Millisecond})
	require.NoError(t, err)
	defer p.Close()
	waitAll(t, ctx, sendAll(ctx, p, first, n, false))
}

func receive(t testing.TB, ctx context.Context, cs *pulsar.Consumer) *pulsar.Received {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := cs.Receive(rctx)
	require.NoError(t, err)
	return m
}

// Ack, nack (redelivered with a redelivery count) and a consumer restart
// (what it did not acknowledge comes again).
func TestConsumerAckNackRestart(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	ctx := ctxT(t)
	opts := pulsar.ConsumerOptions{
		Topics:              []string{"acks"},
		Subscription:        "proc",
		Type:                pulsar.Shared,
		InitialPosition:     pulsar.Earliest,
		NackRedeliveryDelay: 50 * time.Millisecond,
	}
	produce(t, c, "acks", 1, 10)
	cs, err := c.Subscribe(ctx, opts)
	require.NoError(t, err)

	for i := 1; i <= 10; i++ {
		m := receive(t, ctx, cs)
		require.Equal(t, fmt.Sprintf("msg-%d", i), string(m.Payload()))
		require.Zero(t, m.RedeliveryCount())
		switch {
		case i <= 5:
			require.NoError(t, m.Ack())
		case i == 6:
			m.Nack()
		}
	}
	m := receive(t, ctx, cs)
	require.Equal(t, "msg-6", string(m.Payload()))
	require.Equal(t, uint32(1), m.RedeliveryCount())
	require.NoError(t, m.Ack())
	require.Eventually(t, func() bool { return b.Backlog("acks", "proc") == 4 }, 5*time.Second, 10*time.Millisecond)

	cs.Close() // 7..10 received, never acknowledged
	cs2, err := c.Subscribe(ctx, opts)
	require.NoError(t, err)
	for i := 7; i <= 10; i++ {
		m := receive(t, ctx, cs2)
		require.Equal(t, fmt.Sprintf("msg-%d", i), string(m.Payload()))
		require.NoError(t, m.Ack())
	}
	require.Eventually(t, func() bool { return b.Backlog("acks", "proc") == 0 }, 5*time.Second, 10*time.Millisecond)
	s := c.Stats()
	require.Equal(t, uint64(15), s.Received)
	require.Equal(t, uint64(10), s.Acked)
	require.Equal(t, uint64(1), s.Nacked)
}

// The consumer keeps receiving across a broker restart; messages it had not
// acknowledged are delivered again, nothing is lost.
func TestConsumerAcrossBrokerRestart(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	// The producer has a client (a connection) of its own: after the
	// restart the client may resubscribe twice and the broker then grants
	// twice the permits; messages the test does not receive meanwhile can
	// fill the client's queue, which stops it reading that connection, send
	// receipts included.
	pc, _ := newClient(t, b.URL())
	ctx := ctxT(t)
	produce(t, pc, "survive", 1, 20)
	cs, err := c.Subscribe(ctx, pulsar.ConsumerOptions{
		Topics: []string{"survive"}, Subscription: "s", InitialPosition: pulsar.Earliest,
	})
	require.NoError(t, err)
	seen := map[string]int{}
	for range 5 {
		m := receive(t, ctx, cs)
		seen[string(m.Payload())]++
		require.NoError(t, m.Ack())
	}
	require.Eventually(t, func() bool { return b.Backlog("survive", "s") == 15 }, 5*time.Second, 10*time.Millisecond)
	b.Restart()
	produce(t, pc, "survive", 21, 5)
	// At least once: messages received before the restart and not yet
	// acknowledged come again.
	for len(seen) < 25 {
		m := receive(t, ctx, cs)
		seen[string(m.Payload())]++
		require.NoError(t, m.Ack())
	}
	for i := 1; i <= 25; i++ {
		require.Positive(t, seen[fmt.Sprintf("msg-%d", i)], "msg-%d", i)
	}
	// Acknowledgements are grouped by the client and sent a moment later.
	require.Eventually(t, func() bool { return b.Backlog("survive", "s") == 0 }, 5*time.Second, 10*time.Millisecond)
	reconnected(t, c)
}

func TestExclusiveSubscriptionIsBusy(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	ctx := ctxT(t)
	opts := pulsar.ConsumerOptions{Topics: []string{"excl"}, Subscription: "only"}
	_, err := c.Subscribe(ctx, opts)
	require.NoError(t, err)
	_, err = c.Subscribe(ctx, opts)
	require.Error(t, err)
	require.Contains(t, err.Error(), "ConsumerBusy")
}

// Key_Shared sends one key to one consumer; Failover sends everything to
// the active consumer and moves on when it goes.
func TestKeySharedAndFailover(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	ctx := ctxT(t)

	t.Run("key_shared", func(t *testing.T) {
		opts := pulsar.ConsumerOptions{
			Topics: []string{"ks"}, Subscription: "ks", Type: pulsar.KeyShared, InitialPosition: pulsar.Earliest,
		}
		c1, err := c.Subscribe(ctx, opts)
		require.NoError(t, err)
		c2, err := c.Subscribe(ctx, opts)
		require.NoError(t, err)
		p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "ks", DisableBatching: true})
		require.NoError(t, err)
		var pending []*pulsar.Pending
		for i := range 40 {
			pending = append(pending, p.SendAsync(ctx, pulsar.Message{
				Key: fmt.Sprintf("camera-%d", i%4), Payload: []byte(fmt.Sprint(i)),
			}))
		}
		waitAll(t, ctx, pending)
		owner := map[string]int{}
		var (
			mu       sync.Mutex
			wg       sync.WaitGroup
			received int
		)
		// Both consumers receive until the 40 messages arrived (or ctx
		// ends): an idle timeout would stop one whose next message is
		// merely slow to come on a loaded machine.
		all, allIn := context.WithCancel(ctx)
		defer allIn()
		for idx, cs := range []*pulsar.Consumer{c1, c2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					m, err := cs.Receive(all)
					if err != nil {
						return
					}
					_ = m.Ack()
					mu.Lock()
					if prev, ok := owner[m.Key()]; ok && prev != idx {
						owner[m.Key()] = -1 // a key seen by both consumers
					} else {
						owner[m.Key()] = idx
					}
					received++
					if received == len(pending) {
						allIn()
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Equal(t, len(pending), received, "every message was received")
		require.Len(t, owner, 4)
		for k, o := range owner {
			require.NotEqual(t, -1, o, "key %s went to both consumers", k)
		}
		// Acknowledgements are grouped by the client and sent a moment later.
		require.Eventually(t, func() bool { return b.Backlog("ks", "ks") == 0 }, 5*time.Second, 10*time.Millisecond)
	})

	t.Run("failover", func(t *testing.T) {
		opts := pulsar.ConsumerOptions{
			Topics: []string{"fo"}, Subscription: "fo", Type: pulsar.Failover, InitialPosition: pulsar.Earliest,
		}
		active, err := c.Subscribe(ctx, opts)
		require.NoError(t, err)
		standby, err := c.Subscribe(ctx, opts)
		require.NoError(t, err)
		produce(t, c, "fo", 1, 4)
		for i := 1; i <= 2; i++ {
			m := receive(t, ctx, active)
			require.Equal(t, fmt.Sprintf("msg-%d", i), string(m.Payload()))
			require.NoError(t, m.Ack())
		}
		active.Close()
		for i := 3; i <= 4; i++ {
			m := receive(t, ctx, standby)
			require.Equal(t, fmt.Sprintf("msg-%d", i), string(m.Payload()))
			require.NoError(t, m.Ack())
		}
	})
}

func TestTopicsPattern(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	ctx := ctxT(t)
	for _, topic := range []string{"sensor-a", "sensor-b", "other"} {
		b.CreateTopic(topic)
	}
	cs, err := c.Subscribe(ctx, pulsar.ConsumerOptions{
		TopicsPattern:   "persistent://public/default/sensor-.*",
		Subscription:    "pattern",
		InitialPosition: pulsar.Earliest,
	})
	require.NoError(t, err)
	produce(t, c, "sensor-a", 1, 3)
	produce(t, c, "other", 4, 3)
	produce(t, c, "sensor-b", 7, 3)
	got := map[string]string{}
	for range 6 {
		m := receive(t, ctx, cs)
		got[string(m.Payload())] = m.Topic()
		require.NoError(t, m.Ack())
	}
	for i := 1; i <= 9; i++ {
		topic, ok := got[fmt.Sprintf("msg-%d", i)]
		if i >= 4 && i <= 6 {
			require.False(t, ok, "msg-%d from other", i)
			continue
		}
		require.True(t, ok, "msg-%d", i)
		require.True(t, strings.HasPrefix(topic, "persistent://public/default/sensor-"), topic)
	}
	require.Equal(t, -1, b.Backlog("other", "pattern"))
}

// Not calling Receive is backpressure: the broker delivers no more than
// the client's prefetch bound (pulsar-client-go holds up to about three
// receiver queues: its queue channel, its message channel and one batch
// being moved between them).
func TestReceiverQueueBoundsDelivery(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	ctx := ctxT(t)
	produce(t, c, "bp", 1, 50)
	_, err := c.Subscribe(ctx, pulsar.ConsumerOptions{
		Topics: []string{"bp"}, Subscription: "slow", InitialPosition: pulsar.Earliest, ReceiverQueueSize: 5,
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.Unacked("bp", "slow") >= 5 }, 5*time.Second, 10*time.Millisecond)
	require.Never(t, func() bool { return b.Unacked("bp", "slow") > 3*5 }, 300*time.Millisecond, 10*time.Millisecond)
	require.Equal(t, 50, b.Backlog("bp", "slow"))
}
