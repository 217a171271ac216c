package pulsartest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/pulsar/pulsartest"
)

func newClient(t *testing.T, url string, mod ...func(*pulsar.ClientOptions)) pulsar.Client {
	t.Helper()
	opts := pulsar.ClientOptions{
		URL:               url,
		OperationTimeout:  5 * time.Second,
		ConnectionTimeout: 2 * time.Second,
		Logger:            log.DefaultNopLogger(),
		MetricsRegisterer: prometheus.NewRegistry(),
	}
	for _, m := range mod {
		m(&opts)
	}
	c, err := pulsar.NewClient(opts)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func TestProduceConsumeRaw(t *testing.T) {
	for _, tc := range []struct {
		name     string
		batching bool
		codec    pulsar.CompressionType
		want     string
	}{
		{"single", false, pulsar.NoCompression, "none"},
		{"batch", true, pulsar.NoCompression, "none"},
		{"batch-lz4", true, pulsar.LZ4, "lz4"},
		{"batch-zstd", true, pulsar.ZSTD, "zstd"},
		{"batch-zlib", true, pulsar.ZLib, "zlib"},
		{"single-lz4", false, pulsar.LZ4, "lz4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := pulsartest.Start(t)
			c := newClient(t, b.URL())
			cons, err := c.Subscribe(pulsar.ConsumerOptions{
				Topic:                       "raw",
				SubscriptionName:            "s",
				Type:                        pulsar.Shared,
				SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
			})
			require.NoError(t, err)
			defer cons.Close()
			p, err := c.CreateProducer(pulsar.ProducerOptions{
				Topic:                   "raw",
				Name:                    "p1",
				DisableBatching:         !tc.batching,
				CompressionType:         tc.codec,
				BatchingMaxPublishDelay: 5 * time.Millisecond,
			})
			require.NoError(t, err)
			defer p.Close()
			ctx := context.Background()
			const n = 50
			done := make(chan error, n)
			for i := range n {
				p.SendAsync(ctx, &pulsar.ProducerMessage{
					Payload:    []byte(fmt.Sprintf("payload-%d", i)),
					Key:        fmt.Sprintf("k%d", i),
					Properties: map[string]string{"i": fmt.Sprint(i)},
				}, func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) { done <- err })
			}
			for range n {
				require.NoError(t, <-done)
			}
			msgs := b.Messages("raw")
			require.Len(t, msgs, n)
			for i, m := range msgs {
				require.Equal(t, fmt.Sprintf("payload-%d", i), string(m.Payload))
				require.Equal(t, fmt.Sprintf("k%d", i), m.Key)
				require.Equal(t, fmt.Sprint(i), m.Properties["i"])
				require.Equal(t, "p1", m.ProducerName)
				require.Equal(t, uint64(i), m.SequenceID)
				require.Equal(t, tc.want, m.Compression)
			}
			for i := range n {
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				m, err := cons.Receive(rctx)
				cancel()
				require.NoError(t, err)
				require.Equal(t, fmt.Sprintf("payload-%d", i), string(m.Payload()))
				require.NoError(t, cons.Ack(m))
			}
			require.Eventually(t, func() bool { return b.Backlog("raw", "s") == 0 }, 5*time.Second, 10*time.Millisecond)
		})
	}
}

func produceRaw(t *testing.T, c pulsar.Client, topic string, n int) {
	t.Helper()
	p, err := c.CreateProducer(pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	require.NoError(t, err)
	defer p.Close()
	for i := range n {
		_, err := p.Send(context.Background(), &pulsar.ProducerMessage{Payload: []byte(fmt.Sprint(i))})
		require.NoError(t, err)
	}
}

func TestCumulativeAckAndUnsubscribe(t *testing.T) {
	b := pulsartest.Start(t)
	c := newClient(t, b.URL())
	produceRaw(t, c, "cumulative", 10)
	cons, err := c.Subscribe(pulsar.ConsumerOptions{
		Topic: "cumulative", SubscriptionName: "s", SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
	})
	require.NoError(t, err)
	ctx := context.Background()
	var fifth pulsar.Message
	for i := range 10 {
		m, err := cons.Receive(ctx)
		require.NoError(t, err)
		if i == 4 {
			fifth = m
		}
	}
	require.NoError(t, cons.AckCumulative(fifth))
	require.Eventually(t, func() bool { return b.Backlog("cumulative", "s") == 5 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, cons.Unsubscribe())
	require.Equal(t, -1, b.Backlog("cumulative", "s"))
}

func TestReaderAndLastMessageID(t *testing.T) {
	b := pulsartest.Start(t)
	c := newClient(t, b.URL())
	produceRaw(t, c, "reader", 5)
	r, err := c.CreateReader(pulsar.ReaderOptions{Topic: "reader", StartMessageID: pulsar.EarliestMessageID()})
	require.NoError(t, err)
	defer r.Close()
	ctx := context.Background()
	for i := range 5 {
		require.True(t, r.HasNext())
		m, err := r.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint(i), string(m.Payload()))
	}
	require.False(t, r.HasNext())
}

// A producer name can be used by one producer at a time.
func TestProducerBusy(t *testing.T) {
	b := pulsartest.Start(t)
	c := newClient(t, b.URL())
	p, err := c.CreateProducer(pulsar.ProducerOptions{Topic: "busy", Name: "same"})
	require.NoError(t, err)
	defer p.Close()
	_, err = c.CreateProducer(pulsar.ProducerOptions{Topic: "busy", Name: "same"})
	require.ErrorContains(t, err, "ProducerBusy")
}
