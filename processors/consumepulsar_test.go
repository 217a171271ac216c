package processors_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
	"edgeagent.dev/transport/pulsar"
	"edgeagent.dev/transport/pulsar/pulsartest"
)

func consumeProps(b *pulsartest.Broker, extra map[string]string) map[string]string {
	p := map[string]string{
		"service_url": b.URL(), "topics": "in", "subscription": "edge", "initial_position": "earliest",
		"operation_timeout": "5s", "connection_timeout": "2s", "nack_redelivery_delay": "50ms",
	}
	maps.Copy(p, extra)
	return p
}

// produce sends n messages "<prefix>-i" to topic with a bare client, one
// message per entry (so the broker's flow permits count messages).
func produce(t *testing.T, b *pulsartest.Broker, topic, prefix string, n int) {
	t.Helper()
	c, err := pulsar.NewClient(pulsar.Options{ServiceURL: b.URL(), OperationTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: topic, DisableBatching: true, BatchingMaxDelay: time.Millisecond})
	require.NoError(t, err)
	var pend []*pulsar.Pending
	for i := range n {
		pend = append(pend, p.SendAsync(ctx, pulsar.Message{
			Key: fmt.Sprintf("k%d", i%3), Payload: fmt.Appendf(nil, "%s-%d", prefix, i),
			Properties: map[string]string{"n": fmt.Sprint(i), "uuid": "not-an-attribute"},
			EventTime:  time.UnixMilli(1_700_000_000_000),
		}))
	}
	for _, pd := range pend {
		_, err := pd.Wait(ctx)
		require.NoError(t, err)
	}
}

// collect triggers until n flowfiles came out of success.
func collect(t *testing.T, r *enginetest.Runner, n int) []enginetest.Output {
	t.Helper()
	var out []enginetest.Output
	require.Eventually(t, func() bool {
		require.NoError(t, r.Trigger())
		out = append(out, r.Output("success")...)
		return len(out) >= n
	}, 20*time.Second, 5*time.Millisecond)
	return out
}

func TestConsumePulsarCreatesFlowFilesAndAcksAfterCommit(t *testing.T) {
	b := pulsartest.Start(t)
	r := enginetest.NewRunner(t, processors.ConsumePulsarSpec(), consumeProps(b, map[string]string{"batch_size": "20"}))
	produce(t, b, "in", "m", 100)
	out := collect(t, r, 100)
	require.Len(t, out, 100)
	seen := map[string]bool{}
	for _, o := range out {
		a := o.FlowFile.Attributes
		seen[string(o.Content)] = true
		require.Equal(t, "persistent://public/default/in", a[processors.AttrPulsarTopic])
		require.Regexp(t, `^k[0-2]$`, a[processors.AttrPulsarKey])
		require.NotEmpty(t, a[processors.AttrPulsarMessageID])
		_, err := time.Parse(time.RFC3339Nano, a[processors.AttrPulsarPublishTime])
		require.NoError(t, err)
		require.Equal(t, "2023-11-14T22:13:20Z", a[processors.AttrPulsarEventTime])
		require.Equal(t, "0", a[processors.AttrPulsarRedeliveryCount])
		require.NotEmpty(t, a[processors.AttrPulsarProducerName])
		require.Equal(t, "m-"+a["pulsar.property.n"], string(o.Content))
		require.Equal(t, "not-an-attribute", a["pulsar.property.uuid"])
		require.NotEqual(t, "not-an-attribute", o.FlowFile.Attr("uuid"), "a property never overrides an attribute")
	}
	require.Len(t, seen, 100)
	receives := 0
	for _, e := range r.Events() {
		if e.Type == provenance.EventReceive {
			receives++
			require.Equal(t, b.URL()+"/persistent://public/default/in", e.TransitURI)
		}
	}
	require.Equal(t, 100, receives)
	require.Eventually(t, func() bool { return b.Backlog("in", "edge") == 0 }, 5*time.Second, 10*time.Millisecond, "acknowledged after commit")
}

func TestConsumePulsarAcksOnlyAfterCommitAndNacksOnRollback(t *testing.T) {
	b := pulsartest.Start(t)
	r := enginetest.NewRunner(t, processors.ConsumePulsarSpec(), consumeProps(b, nil))
	require.NoError(t, r.Trigger()) // subscribes
	produce(t, b, "in", "m", 10)
	h := r.Harness()
	ctx := context.Background()

	// A session that holds the messages but has not committed: nothing is
	// acknowledged. (It must hold all ten before the rollback: the broker
	// counts a message unacknowledged once it was dispatched, which may be
	// before the client handed it to the processor.)
	s := &countingSession{ProcessSession: h.Session()}
	require.Eventually(t, func() bool {
		require.NoError(t, h.Processor().OnTrigger(ctx, h.Context(), s))
		return s.created == 10 && b.Unacked("in", "edge") == 10 && len(r.Output("success")) == 0
	}, 10*time.Second, 5*time.Millisecond)
	require.Never(t, func() bool { return b.Backlog("in", "edge") < 10 }, 300*time.Millisecond, 20*time.Millisecond)

	// Rolled back: negatively acknowledged, delivered again.
	s.Rollback()
	out := collect(t, r, 10)
	require.Len(t, out, 10)
	for _, o := range out {
		require.Equal(t, "1", o.FlowFile.Attributes[processors.AttrPulsarRedeliveryCount])
	}
	require.Eventually(t, func() bool { return b.Backlog("in", "edge") == 0 }, 5*time.Second, 10*time.Millisecond)
}

// Not running the processor (what the engine does under backpressure) stops
// receiving: the client holds a bounded prefetch, the broker keeps the rest.
func TestConsumePulsarBackpressureStopsReceiving(t *testing.T) {
	b := pulsartest.Start(t)
	r := enginetest.NewRunner(t, processors.ConsumePulsarSpec(), consumeProps(b, map[string]string{"receiver_queue_size": "5", "batch_size": "10"}))
	produce(t, b, "in", "m", 300)
	out := collect(t, r, 1)
	taken := len(out)
	require.LessOrEqual(t, taken, 10)
	// The client groups acknowledgements (up to 100ms): wait for them. The
	// bound counts the messages taken too, whose acknowledgements may still
	// be on their way while the client refills its prefetch.
	require.Eventually(t, func() bool { return b.Unacked("in", "edge") <= 3*5 }, 5*time.Second, 10*time.Millisecond)
	require.Never(t, func() bool { return b.Unacked("in", "edge") > taken+3*5 }, 500*time.Millisecond, 10*time.Millisecond,
		"the prefetch stays bounded by the receiver queue")
	require.GreaterOrEqual(t, b.Backlog("in", "edge"), 300-taken-3*5)
	out = append(out, collect(t, r, 300-taken)...)
	seen := map[string]bool{}
	for _, o := range out {
		seen[string(o.Content)] = true
	}
	require.Len(t, seen, 300, "nothing lost")
}

func TestConsumePulsarTopicPattern(t *testing.T) {
	b := pulsartest.Start(t)
	for _, tp := range []string{"sensor-a", "sensor-b", "camera"} {
		b.CreateTopic(tp)
	}
	props := consumeProps(b, map[string]string{"topic_pattern": "persistent://public/default/sensor-.*", "subscription_type": "shared"})
	delete(props, "topics")
	r := enginetest.NewRunner(t, processors.ConsumePulsarSpec(), props)
	require.NoError(t, r.Trigger())
	produce(t, b, "sensor-a", "a", 5)
	produce(t, b, "sensor-b", "b", 5)
	produce(t, b, "camera", "c", 5)
	out := collect(t, r, 10)
	require.Never(t, func() bool {
		require.NoError(t, r.Trigger())
		return len(r.Output("success")) > 0
	}, 300*time.Millisecond, 20*time.Millisecond, "nothing from topics outside the pattern")
	topics := map[string]int{}
	for _, o := range out {
		topics[o.FlowFile.Attributes[processors.AttrPulsarTopic]]++
	}
	require.Equal(t, map[string]int{"persistent://public/default/sensor-a": 5, "persistent://public/default/sensor-b": 5}, topics)
}

func TestConsumePulsarConfiguration(t *testing.T) {
	b := pulsartest.Start(t)
	for _, tc := range []struct {
		name string
		mod  func(map[string]string)
		want string
	}{
		{"no topic", func(p map[string]string) { delete(p, "topics") }, "topics or a topics pattern"},
		{"both", func(p map[string]string) { p["topic_pattern"] = "x.*" }, "not both"},
		{"bad topic", func(p map[string]string) { p["topics"] = "a,b/c" }, "property topics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := consumeProps(b, nil)
			tc.mod(p)
			_, err := enginetest.TryNewRunner(t, processors.ConsumePulsarSpec(), p)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// countingSession counts the flowfiles a processor creates in it.
type countingSession struct {
	edgeagent.ProcessSession
	created int
}

func (s *countingSession) Create() *edgeagent.FlowFile {
	s.created++
	return s.ProcessSession.Create()
}
