package pulsar_test

import (
	"context"
	"testing"
	"time"

	"edgeagent.dev/transport/pulsar"
	"edgeagent.dev/transport/pulsar/pulsartest"
)

// BenchmarkProduce sends 1 KiB messages through pulsar-client-go to the
// in-process test broker and waits for every receipt; it reports msgs/s.
// The broker is in the same process, so this measures the client, the
// wrapper and loopback TCP, not a real cluster.
func BenchmarkProduce(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts pulsar.ProducerOptions
	}{
		{"batching", pulsar.ProducerOptions{}},
		{"batching-lz4", pulsar.ProducerOptions{Compression: pulsar.CompressionLZ4}},
		{"batching-zstd", pulsar.ProducerOptions{Compression: pulsar.CompressionZstd}},
		{"unbatched", pulsar.ProducerOptions{DisableBatching: true, BatchingMaxDelay: time.Millisecond}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			broker := pulsartest.Start(b)
			c, _ := newClient(b, broker.URL(), func(o *pulsar.Options) { o.Logger = nil })
			ctx := context.Background()
			opts := bc.opts
			opts.Topic, opts.Name = "bench", "bench"
			p, err := c.NewProducer(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 1024)
			for i := range payload {
				payload[i] = byte('a' + i%26) // compressible, like JSON sensor records
			}
			id := flowFileID(1)
			pending := make([]*pulsar.Pending, 0, b.N)
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				pending = append(pending, p.SendAsync(ctx, pulsar.Message{
					FlowFileID: id, Payload: payload, SequenceID: uint64(i + 1),
				}))
			}
			for _, pend := range pending {
				if _, err := pend.Wait(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
