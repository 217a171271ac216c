package processors_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
	"edgeagent.dev/transport/mqtt"
	"edgeagent.dev/transport/mqtt/mqtttest"
)

func mqttSubscriber(t *testing.T, broker, topic string, extra func(*mqtt.Options)) *mqtt.Consumer {
	t.Helper()
	o := mqtt.Options{Broker: broker, ClientID: fmt.Sprintf("sub-%d", time.Now().UnixNano()), CleanSession: true}
	if extra != nil {
		extra(&o)
	}
	c := mqtt.NewConsumer(o, map[string]byte{topic: 1}, 10000)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func receiveN(t *testing.T, c *mqtt.Consumer, n int) []*mqtt.Message {
	t.Helper()
	var got []*mqtt.Message
	require.Eventually(t, func() bool {
		for _, m := range c.Poll(n) {
			m.Ack()
			got = append(got, m)
		}
		return len(got) >= n
	}, 20*time.Second, 10*time.Millisecond)
	return got
}

func TestPublishMQTTDeliversAndRecordsSend(t *testing.T) {
	b := mqtttest.Start(t)
	sub := mqttSubscriber(t, b.URL(), "edge/#", nil)
	r := enginetest.NewRunner(t, processors.PublishMQTTSpec(), map[string]string{
		"broker": b.URL(), "topic": "edge/${agent.id}/${kind}", "qos": "1", "max_in_flight": "64",
	})
	for i := range 200 {
		r.Enqueue(fmt.Appendf(nil, "m%03d", i), map[string]string{"kind": "temp"})
	}
	require.Eventually(t, func() bool { _ = r.Trigger(); return r.InputCount() == 0 }, 20*time.Second, 10*time.Millisecond)
	require.Len(t, r.Output("success"), 200)
	mr, ok := r.Harness().Processor().(edgeagent.MetricsReporter)
	require.True(t, ok)
	got := map[string]float64{}
	for _, m := range mr.ProcessorMetrics() {
		got[m.Name] = m.Value
	}
	require.Equal(t, 1.0, got["broker_connected"])
	require.Equal(t, 200.0, got["mqtt_acknowledged_total"])
	msgs := receiveN(t, sub, 200)
	seen := map[string]bool{}
	for _, m := range msgs {
		require.Equal(t, "edge/"+enginetest.AgentID+"/temp", m.Topic)
		seen[string(m.Payload)] = true
	}
	require.Len(t, seen, 200)
	sends := eventsOf(r.Events(), provenance.EventSend)
	for _, e := range sends {
		require.Equal(t, b.URL()+"/edge/"+enginetest.AgentID+"/temp", e.TransitURI)
	}
	require.Equal(t, 200, len(sends))
}

func TestPublishMQTTEnvelope(t *testing.T) {
	b := mqtttest.Start(t)
	sub := mqttSubscriber(t, b.URL(), "env", nil)
	r := enginetest.NewRunner(t, processors.PublishMQTTSpec(), map[string]string{
		"broker": b.URL(), "topic": "env", "payload": "envelope", "envelope_attributes": "kind|uuid",
	})
	id := r.Enqueue([]byte("hello"), map[string]string{"kind": "k", "secret": "s"})
	require.Eventually(t, func() bool { _ = r.Trigger(); return r.InputCount() == 0 }, 10*time.Second, 10*time.Millisecond)
	m := receiveN(t, sub, 1)[0]
	var env struct {
		FlowFileID string            `json:"flowfile_id"`
		Attributes map[string]string `json:"attributes"`
		Content    []byte            `json:"content"`
	}
	require.NoError(t, json.Unmarshal(m.Payload, &env))
	require.Equal(t, id.String(), env.FlowFileID)
	require.Equal(t, map[string]string{"kind": "k", "uuid": id.String()}, env.Attributes)
	require.Equal(t, "hello", string(env.Content))
}

func TestPublishMQTTKeepsFlowFilesWhileBrokerIsDown(t *testing.T) {
	b := mqtttest.Start(t)
	r := enginetest.NewRunner(t, processors.PublishMQTTSpec(), map[string]string{
		"broker": b.URL(), "topic": "t", "max_reconnect_interval": "1s",
	})
	require.NoError(t, r.Trigger()) // starts and connects
	b.Stop()
	for range 20 {
		r.Enqueue([]byte("x"), nil)
	}
	require.Eventually(t, func() bool { _ = r.Trigger(); return r.Yielded() }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 20, r.InputCount(), "nothing leaves the queue without an acknowledgement")
	require.Empty(t, r.Output("success"))
	require.Empty(t, r.Output("failure"))
	b.Restart()
	require.Eventually(t, func() bool { _ = r.Trigger(); return r.InputCount() == 0 }, 30*time.Second, 50*time.Millisecond)
	require.Len(t, r.Output("success"), 20)
}

func TestPublishMQTTBadTopicGoesToFailure(t *testing.T) {
	b := mqtttest.Start(t)
	r := enginetest.NewRunner(t, processors.PublishMQTTSpec(), map[string]string{"broker": b.URL(), "topic": "a/${kind}"})
	r.Enqueue([]byte("x"), map[string]string{"kind": "+"})
	require.Eventually(t, func() bool { _ = r.Trigger(); return r.InputCount() == 0 }, 10*time.Second, 10*time.Millisecond)
	out := r.Output("failure")
	require.Len(t, out, 1)
	require.Contains(t, out[0].FlowFile.Attributes[edgeagent.AttrErrorMessage], "wildcard")
}

func TestConsumeMQTTCreatesFlowFilesAndAcksAfterCommit(t *testing.T) {
	b := mqtttest.Start(t)
	r := enginetest.NewRunner(t, processors.ConsumeMQTTSpec(), map[string]string{
		"broker": b.URL(), "topics": "sensors/#", "qos": "1", "client_id": "consumer-under-test",
	})
	require.NoError(t, r.Trigger()) // connect and subscribe
	pub := mqtt.NewPublisher(mqtt.Options{Broker: b.URL(), ClientID: "pub"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, pub.Connect(ctx))
	defer pub.Close(context.Background())
	for i := range 100 {
		require.NoError(t, pub.Publish(ctx, "sensors/room1", 1, false, fmt.Appendf(nil, "r%03d", i)).Wait(ctx))
	}
	var out []enginetest.Output
	require.Eventually(t, func() bool {
		require.NoError(t, r.Trigger())
		out = append(out, r.Output("success")...)
		return len(out) >= 100
	}, 20*time.Second, 10*time.Millisecond)
	seen := map[string]bool{}
	for _, o := range out {
		seen[string(o.Content)] = true
		require.Equal(t, "sensors/room1", o.FlowFile.Attributes["mqtt.topic"])
		require.Equal(t, "1", o.FlowFile.Attributes["mqtt.qos"])
		require.Equal(t, b.URL(), o.FlowFile.Attributes["mqtt.broker"])
		require.NotEmpty(t, o.FlowFile.Attributes[edgeagent.AttrCaptureTime])
	}
	require.Len(t, seen, 100)
	receives := eventsOf(r.Events(), provenance.EventReceive)
	for _, e := range receives {
		require.Equal(t, b.URL()+"/sensors/room1", e.TransitURI)
	}
	require.Equal(t, len(out), len(receives))
}

func TestMQTTProcessorsOverMutualTLSAndPasswords(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.WithMutualTLS(), mqtttest.WithPassword("edge", "s3cret-pw"))
	client := b.CA().IssueClientCert(t, "edge-client")
	pwFile := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte("s3cret-pw\n"), 0o600))
	props := map[string]string{
		"broker": b.URL(), "topic": "secure", "username": "edge", "password_file": pwFile,
		"tls_ca_file": b.CA().CertFile, "tls_cert_file": client.CertFile, "tls_key_file": client.KeyFile,
	}
	sub := mqttSubscriber(t, b.URL(), "secure", func(o *mqtt.Options) {
		o.Username, o.PasswordFile = "edge", pwFile
		o.CAFile, o.CertFile, o.KeyFile = b.CA().CertFile, client.CertFile, client.KeyFile
	})
	r := enginetest.NewRunner(t, processors.PublishMQTTSpec(), props)
	r.Enqueue([]byte("over tls"), nil)
	require.Eventually(t, func() bool { _ = r.Trigger(); return r.InputCount() == 0 }, 15*time.Second, 20*time.Millisecond)
	require.Equal(t, "over tls", string(receiveN(t, sub, 1)[0].Payload))

	// A wrong password: the flowfile stays queued, the log says why, and
	// the password never appears.
	bad := filepath.Join(t.TempDir(), "bad")
	require.NoError(t, os.WriteFile(bad, []byte("wrong-pw-value"), 0o600))
	props["password_file"] = bad
	r2 := enginetest.NewRunner(t, processors.PublishMQTTSpec(), props)
	r2.Enqueue([]byte("x"), nil)
	require.NoError(t, r2.Trigger())
	require.Equal(t, 1, r2.InputCount())
	require.True(t, r2.Yielded())
	for _, s := range []string{"wrong-pw-value", "s3cret-pw"} {
		require.False(t, strings.Contains(fmt.Sprint(r2.Harness().Processor()), s), "no secret in the processor's printed form")
	}
}

// Credential files that exist but cannot be used stop the processor from
// starting, with the file named; they are not taken for an unreachable
// broker (which would leave the flow running, never connecting).
func TestMQTTProcessorsRefuseUnusableCredentialFiles(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.WithMutualTLS(), mqtttest.WithPassword("edge", "s3cret-pw"))
	client := b.CA().IssueClientCert(t, "edge-client")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	good := map[string]string{
		"broker": b.URL(), "username": "edge", "password_file": write("pw", "s3cret-pw\n"),
		"tls_ca_file": b.CA().CertFile, "tls_cert_file": client.CertFile, "tls_key_file": client.KeyFile,
	}
	for _, tc := range []struct {
		name, key, value, want string
	}{
		{"CA file without a certificate", "tls_ca_file", write("ca.pem", "not a certificate\n"), "no PEM certificate found"},
		{"key that is not the certificate's", "tls_key_file", write("key.pem", "junk"), "loading client certificate"},
		{"empty password file", "password_file", write("empty", "\n"), "the file is empty"},
	} {
		for _, spec := range []edgeagent.ProcessorSpec{processors.PublishMQTTSpec(), processors.ConsumeMQTTSpec()} {
			t.Run(spec.Type+"/"+tc.name, func(t *testing.T) {
				props := map[string]string{}
				for k, v := range good {
					props[k] = v
				}
				if spec.Type == "ConsumeMQTT" {
					props["topics"] = "secure/#"
				} else {
					props["topic"] = "secure"
				}
				props[tc.key] = tc.value
				err := enginetest.NewRunner(t, spec, props).Trigger()
				require.ErrorIs(t, err, mqtt.ErrInvalidOptions)
				require.ErrorContains(t, err, tc.want)
				require.NotContains(t, err.Error(), "s3cret-pw")
			})
		}
	}
}
