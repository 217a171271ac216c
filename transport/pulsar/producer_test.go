package pulsar_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/pulsar"
	"edgeagent.dev/transport/pulsar/pulsartest"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		compression pulsar.Compression
		batching    bool
		want        string
	}{
		{pulsar.CompressionNone, true, "none"},
		{pulsar.CompressionLZ4, true, "lz4"},
		{pulsar.CompressionZstd, true, "zstd"},
		{pulsar.CompressionLZ4, false, "lz4"},
		{"", false, "none"},
	} {
		t.Run(fmt.Sprintf("%s-batching=%v", tc.want, tc.batching), func(t *testing.T) {
			b := pulsartest.Start(t)
			c, _ := newClient(t, b.URL())
			ctx := ctxT(t)
			cons, err := c.Subscribe(ctx, pulsar.ConsumerOptions{
				Topics:          []string{"roundtrip"},
				Subscription:    "sub",
				Type:            pulsar.Shared,
				InitialPosition: pulsar.Earliest,
			})
			require.NoError(t, err)
			p, err := c.NewProducer(ctx, pulsar.ProducerOptions{
				Topic:            "roundtrip",
				Name:             "edge-1",
				Compression:      tc.compression,
				DisableBatching:  !tc.batching,
				BatchingMaxDelay: 5 * time.Millisecond,
			})
			require.NoError(t, err)
			require.Equal(t, "edge-1", p.Name())

			const n = 100
			receipts := waitAll(t, ctx, sendAll(ctx, p, 1, n, true))
			for i, r := range receipts {
				require.False(t, r.Duplicate)
				require.Equal(t, uint64(i+1), r.SequenceID)
				require.NotEmpty(t, r.MessageID)
			}

			stored := b.Messages("roundtrip")
			require.Len(t, stored, n)
			batched := false
			for i, m := range stored {
				require.Equal(t, fmt.Sprintf("msg-%d", i+1), string(m.Payload))
				require.Equal(t, flowFileID(i+1), m.Key, "flowfile id is the key by default")
				require.Equal(t, flowFileID(i+1), m.Properties[pulsar.PropertyFlowFileID])
				require.Equal(t, fmt.Sprint(i+1), m.Properties["n"])
				require.Equal(t, "edge-1", m.ProducerName)
				require.Equal(t, uint64(i+1), m.SequenceID)
				require.Equal(t, tc.want, m.Compression)
				batched = batched || m.BatchSize > 1
			}
			require.Equal(t, tc.batching, batched)

			for i := 1; i <= n; i++ {
				m, err := cons.Receive(ctx)
				require.NoError(t, err)
				require.Equal(t, fmt.Sprintf("msg-%d", i), string(m.Payload()))
				require.Equal(t, flowFileID(i), m.FlowFileID())
				require.Equal(t, flowFileID(i), m.Key())
				require.Equal(t, "edge-1", m.ProducerName())
				require.Equal(t, "persistent://public/default/roundtrip", m.Topic())
				require.Equal(t, fmt.Sprint(i), m.Properties()["n"])
				require.Zero(t, m.RedeliveryCount())
				require.NotEmpty(t, m.MessageID())
				require.WithinDuration(t, time.Now(), m.PublishTime(), time.Minute)
				require.NoError(t, m.Ack())
			}
			require.Eventually(t, func() bool { return b.Backlog("roundtrip", "sub") == 0 },
				5*time.Second, 10*time.Millisecond)
			s := c.Stats()
			require.True(t, s.Connected)
			require.Equal(t, uint64(n), s.Sent)
			require.Equal(t, uint64(n), s.Received)
			require.Equal(t, uint64(n), s.Acked)
			require.Zero(t, s.SendErrors)
		})
	}
}

func TestKeyOptions(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	ctx := ctxT(t)
	p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "keys", NoFlowFileKey: true})
	require.NoError(t, err)
	require.NotEmpty(t, p.Name(), "the broker assigns a name")
	_, err = p.Send(ctx, pulsar.Message{FlowFileID: flowFileID(1), Payload: []byte("a")})
	require.NoError(t, err)
	_, err = p.Send(ctx, pulsar.Message{FlowFileID: flowFileID(2), Key: "camera-7", Payload: []byte("b")})
	require.NoError(t, err)
	ms := b.Messages("keys")
	require.Len(t, ms, 2)
	require.Empty(t, ms[0].Key)
	require.Equal(t, "camera-7", ms[1].Key)
	require.Equal(t, flowFileID(2), ms[1].Properties[pulsar.PropertyFlowFileID])
}

// Broker goes away with sends in flight; they complete after it comes back,
// nothing lost and nothing stored twice.
func TestBrokerRestartMidStream(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	ctx := ctxT(t)
	p, err := c.NewProducer(ctx, pulsar.ProducerOptions{
		Topic:               "restart",
		Name:                "edge-restart",
		BatchingMaxMessages: 10,
		BatchingMaxDelay:    time.Millisecond,
	})
	require.NoError(t, err)

	b.DelaySends(5 * time.Millisecond)
	const n = 500
	pending := sendAll(ctx, p, 1, n, true)
	require.Eventually(t, func() bool { return len(b.Messages("restart")) > 0 }, 5*time.Second, time.Millisecond)
	b.Stop()
	stoppedWith := len(b.Messages("restart"))
	require.Less(t, stoppedWith, n, "the broker stopped mid-stream")
	require.Eventually(t, func() bool { return !c.Stats().Connected }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // let the client fail to reconnect at least once
	b.DelaySends(0)
	b.Restart()

	waitAll(t, ctx, pending)
	stored := b.Messages("restart")
	require.Len(t, stored, n, "every message stored exactly once")
	for i, m := range stored {
		require.Equal(t, uint64(i+1), m.SequenceID)
		require.Equal(t, fmt.Sprintf("msg-%d", i+1), string(m.Payload))
	}
	s := c.Stats()
	reconnected(t, c)
	require.GreaterOrEqual(t, s.ConnectionsOpened, uint64(2))
	require.Equal(t, uint64(n), s.Sent)
	t.Logf("stored %d before the stop; stats %+v", stoppedWith, s)
}

// SEND_ERRORs make the client reconnect and re-send; the broker's
// de-duplication drops what it already stored.
func TestFailedSendsAreResent(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	ctx := ctxT(t)
	p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "fail", Name: "edge-fail", DisableBatching: true})
	require.NoError(t, err)
	waitAll(t, ctx, sendAll(ctx, p, 1, 5, true))
	b.FailSends(2)
	waitAll(t, ctx, sendAll(ctx, p, 6, 20, true))
	require.Len(t, b.Messages("fail"), 25)
	require.Equal(t, 2, b.SendErrors())
	reconnected(t, c)
}

// A restarted agent (new client, same producer name) re-sends messages the
// broker already stored: they are acknowledged as duplicates, not stored.
func TestDeduplicationAcrossProducerRestart(t *testing.T) {
	b := pulsartest.Start(t)
	ctx := ctxT(t)
	topic := "dedup"

	c1, _ := newClient(t, b.URL())
	p1, err := c1.NewProducer(ctx, pulsar.ProducerOptions{Topic: topic, Name: "edge-7", DisableBatching: true})
	require.NoError(t, err)
	waitAll(t, ctx, sendAll(ctx, p1, 1, 10, true))
	c1.Close() // the agent stops; say it had not recorded receipts 6..10
	require.EqualValues(t, 10, b.LastSequenceID(topic, "edge-7"))

	// The restarted agent re-sends 6..10 unbatched (see the package doc),
	// then goes on with new messages, batched.
	c2, _ := newClient(t, b.URL())
	resend, err := c2.NewProducer(ctx, pulsar.ProducerOptions{Topic: topic, Name: "edge-7", DisableBatching: true})
	require.NoError(t, err)
	receipts := waitAll(t, ctx, sendAll(ctx, resend, 6, 5, true))
	for _, r := range receipts {
		require.True(t, r.Duplicate, "sequence %d", r.SequenceID)
	}
	resend.Close()
	p2, err := c2.NewProducer(ctx, pulsar.ProducerOptions{Topic: topic, Name: "edge-7"})
	require.NoError(t, err)
	for _, r := range waitAll(t, ctx, sendAll(ctx, p2, 11, 10, true)) {
		require.False(t, r.Duplicate)
	}

	stored := b.Messages(topic)
	require.Len(t, stored, 20)
	for i, m := range stored {
		require.Equal(t, uint64(i+1), m.SequenceID)
	}
	require.Equal(t, 5, b.DuplicatesDropped())
	require.Equal(t, uint64(5), c2.Stats().Duplicates)
}

// Documents the caveat in the package doc: pulsar-client-go de-duplicates
// a batch by its first sequence ID only, so a batch that starts with an
// already stored ID is dropped whole, newer messages included.
func TestBatchStartingWithStoredSequenceIsDroppedWhole(t *testing.T) {
	b := pulsartest.Start(t)
	ctx := ctxT(t)
	c1, _ := newClient(t, b.URL())
	p1, err := c1.NewProducer(ctx, pulsar.ProducerOptions{Topic: "caveat", Name: "edge-c", DisableBatching: true})
	require.NoError(t, err)
	waitAll(t, ctx, sendAll(ctx, p1, 1, 5, true))
	c1.Close()
	require.EqualValues(t, 5, b.LastSequenceID("caveat", "edge-c"))

	c2, _ := newClient(t, b.URL())
	p2, err := c2.NewProducer(ctx, pulsar.ProducerOptions{
		Topic: "caveat", Name: "edge-c", BatchingMaxMessages: 100, BatchingMaxDelay: time.Hour,
	})
	require.NoError(t, err)
	pending := sendAll(ctx, p2, 5, 5, true) // 5 was stored, 6..9 were not
	require.NoError(t, p2.Flush(ctx))
	for _, r := range waitAll(t, ctx, pending) {
		require.True(t, r.Duplicate)
	}
	require.Len(t, b.Messages("caveat"), 5, "6..9 were acknowledged but not stored")

	// And a stored batch counts as its first sequence ID only.
	pending = sendAll(ctx, p2, 20, 5, true)
	require.NoError(t, p2.Flush(ctx))
	waitAll(t, ctx, pending)
	require.EqualValues(t, 20, b.LastSequenceID("caveat", "edge-c"))
	require.Len(t, b.Messages("caveat"), 10)
}

func TestSendAfterClose(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	ctx := ctxT(t)
	p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "closed"})
	require.NoError(t, err)
	p.Close()
	_, err = p.Send(ctx, pulsar.Message{Payload: []byte("x")})
	require.ErrorIs(t, err, pulsar.ErrClosed)
	c.Close()
	_, err = c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "closed"})
	require.ErrorIs(t, err, pulsar.ErrClosed)
}

// Sends waiting for a broker that does not come back fail when the
// producer closes; none waits forever.
func TestCloseFailsPendingSends(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL(), func(o *pulsar.Options) { o.OperationTimeout = 500 * time.Millisecond })
	ctx := ctxT(t)
	p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "gone", BatchingMaxDelay: time.Hour, BatchingMaxMessages: 1000})
	require.NoError(t, err)
	b.Stop()
	pending := sendAll(ctx, p, 1, 10, true)
	p.Close()
	for _, pend := range pending {
		_, err := pend.Wait(ctx)
		require.ErrorIs(t, err, pulsar.ErrClosed)
	}
	require.Equal(t, uint64(10), c.Stats().SendErrors)
}

func TestNewProducerUnreachable(t *testing.T) {
	b := pulsartest.Start(t)
	b.Stop()
	c, _ := newClient(t, b.URL(), func(o *pulsar.Options) { o.OperationTimeout = 500 * time.Millisecond })
	_, err := c.NewProducer(ctxT(t), pulsar.ProducerOptions{Topic: "x"})
	require.Error(t, err)
	require.Contains(t, err.Error(), "creating producer on topic x")
}
