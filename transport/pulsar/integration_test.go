package pulsar_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/pulsar"
)

// TestRealBroker runs the produce/consume round trip against a real Pulsar
// broker. It is skipped unless PULSAR_URL is set (pulsar://host:6650 or
// pulsar+ssl://host:6651); PULSAR_TOKEN (the token itself) and
// PULSAR_CA_FILE are used when set. Example:
//
//	docker run -d -p 6650:6650 apachepulsar/pulsar:4.0.0 bin/pulsar standalone
//	PULSAR_URL=pulsar://localhost:6650 go test -run TestRealBroker ./transport/pulsar/
func TestRealBroker(t *testing.T) {
	url := os.Getenv("PULSAR_URL")
	if url == "" {
		t.Skip("PULSAR_URL is not set")
	}
	c, _ := newClient(t, url, func(o *pulsar.Options) {
		o.OperationTimeout = 30 * time.Second
		o.ConnectionTimeout = 10 * time.Second
		if os.Getenv("PULSAR_TOKEN") != "" {
			o.TokenEnv = "PULSAR_TOKEN"
		}
		if ca := os.Getenv("PULSAR_CA_FILE"); ca != "" {
			o.TLS.CAFile = ca
		}
	})
	ctx := ctxT(t)
	topic := fmt.Sprintf("edgeagent-it-%d", time.Now().UnixNano())
	cs, err := c.Subscribe(ctx, pulsar.ConsumerOptions{
		Topics: []string{topic}, Subscription: "it", Type: pulsar.Shared, InitialPosition: pulsar.Earliest,
	})
	require.NoError(t, err)
	for _, codec := range []pulsar.Compression{pulsar.CompressionLZ4, pulsar.CompressionZstd} {
		p, err := c.NewProducer(ctx, pulsar.ProducerOptions{
			Topic: topic, Name: fmt.Sprintf("%s-%s", topic, codec), Compression: codec,
		})
		require.NoError(t, err)
		receipts := waitAll(t, ctx, sendAll(ctx, p, 1, 100, true))
		for _, r := range receipts {
			require.False(t, r.Duplicate)
		}
		for i := 1; i <= 100; i++ {
			m := receive(t, ctx, cs)
			require.Equal(t, fmt.Sprintf("msg-%d", i), string(m.Payload()))
			require.Equal(t, flowFileID(i), m.FlowFileID())
			require.Equal(t, flowFileID(i), m.Key())
			require.NoError(t, m.Ack())
		}
		p.Close()
	}
}
