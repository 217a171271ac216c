package mqtt_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/mqtt"
	"edgeagent.dev/transport/mqtt/mqtttest"
)

// BenchmarkPublishQoS1 publishes 256-byte QoS 1 messages to a local
// mosquitto with a pipelined window of 1000 messages in flight, and reports
// acknowledged messages per second.
//
//	go test -run '^$' -bench PublishQoS1 -benchtime 50000x ./transport/mqtt/
func BenchmarkPublishQoS1(b *testing.B) {
	const window = 1000
	broker := mqtttest.Start(b)
	opts := testOptions(broker.URL(), "bench-pub")
	opts.MaxInFlight = window
	p := connectPublisher(b, opts)
	body := make([]byte, 256)
	ctx := context.Background()

	inflight := make(chan *mqtt.Pending, window)
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for pd := range inflight {
			if err := pd.Wait(ctx); err != nil {
				errs <- err
				return
			}
		}
	}()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		inflight <- p.Publish(ctx, "bench/qos1", 1, false, body)
	}
	close(inflight)
	require.NoError(b, <-errs)
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
