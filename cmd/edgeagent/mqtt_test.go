package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/mqtt"
	"edgeagent.dev/transport/mqtt/mqtttest"
)

// collector is a persistent-session QoS 1 subscriber that records every
// payload it receives (duplicates counted).
type collector struct {
	c     *mqtt.Consumer
	mu    sync.Mutex
	seen  map[string]int
	total int
	stop  chan struct{}
	done  chan struct{}
}

func collect(t *testing.T, broker, topic, clientID string) *collector {
	t.Helper()
	c := mqtt.NewConsumer(mqtt.Options{Broker: broker, ClientID: clientID, MaxReconnectInterval: time.Second}, map[string]byte{topic: 1}, 5000)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	col := &collector{c: c, seen: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(col.done)
		for {
			select {
			case <-col.stop:
				return
			case m := <-c.Messages():
				col.mu.Lock()
				col.seen[string(m.Payload)]++
				col.total++
				col.mu.Unlock()
				m.Ack()
			}
		}
	}()
	t.Cleanup(func() {
		close(col.stop)
		<-col.done
		_ = c.Close(context.Background())
	})
	return col
}

func (c *collector) counts() (unique, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen), c.total
}

// outputLines calls fn with each non-empty line of the files PutFile wrote
// to dir (its hidden temporary files skipped).
func outputLines(dir string, fn func(line string)) {
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if strings.HasPrefix(f.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			continue
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			if len(line) > 0 {
				fn(string(line))
			}
		}
	}
}

// TestPublishMQTTSurvivesBrokerRestartsAndAgentKill sends 20,000 flowfiles
// through GetFile -> PublishMQTT (QoS 1) while mosquitto is stopped and
// restarted twice and the agent is killed with SIGKILL once; a
// persistent-session subscriber receives every content.
func TestPublishMQTTSurvivesBrokerRestartsAndAgentKill(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	const n = 20000
	b := mqtttest.Start(t)
	col := collect(t, b.URL(), "load/#", "collector")
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	require.NoError(t, os.MkdirAll(in, 0o750))
	for i := range n {
		require.NoError(t, os.WriteFile(filepath.Join(in, fmt.Sprintf("m%05d", i)), fmt.Appendf(nil, "msg-%05d", i), 0o600))
	}
	flow := writeFlow(t, dir, "flow.yaml", strings.ReplaceAll(`
agent: {id: pub, data_dir: DIR/data, log: {level: warn}}
processors:
  - name: get
    type: GetFile
    schedule: {yield: 100ms}
    properties: {input_directory: DIR/in, batch_size: 500}
  - name: publish
    type: PublishMQTT
    schedule: {yield: 200ms, penalty: 300ms, concurrency: 2}
    properties: {broker: BROKER, topic: "load/${filename}", qos: "1", max_in_flight: "500", max_reconnect_interval: 1s}
    auto_terminate: [success, failure]
connections:
  - {from: get, relationship: success, to: publish, max_count: 5000}
`, "BROKER", b.URL()))
	p := startAgent(t, "run", "--config", flow)
	progress := func(min int) {
		require.Eventually(t, func() bool { u, _ := col.counts(); return u >= min }, 60*time.Second, 20*time.Millisecond)
	}
	progress(2000)
	b.Stop() // the broker goes away mid-run ...
	time.Sleep(500 * time.Millisecond)
	b.Restart() // ... and comes back with its persistent sessions
	progress(7000)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.wait(t, 10*time.Second)
	p = startAgent(t, "run", "--config", flow)
	progress(12000)
	b.Stop()
	time.Sleep(500 * time.Millisecond)
	b.Restart()
	require.Eventually(t, func() bool { u, _ := col.counts(); return u == n }, 2*time.Minute, 50*time.Millisecond,
		"every one of the %d contents reaches the subscriber", n)
	unique, total := col.counts()
	t.Logf("received %d unique messages, %d in all (%d duplicates)", unique, total, total-unique)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 20*time.Second))
}

// TestConsumeMQTTSurvivesAgentKill publishes QoS 1 messages while the
// consuming agent is killed with SIGKILL: every message ends up in at least
// one flowfile written by PutFile.
func TestConsumeMQTTSurvivesAgentKill(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	const n = 5000
	b := mqtttest.Start(t)
	dir := t.TempDir()
	flow := writeFlow(t, dir, "flow.yaml", strings.ReplaceAll(`
agent: {id: sub, data_dir: DIR/data, log: {level: warn}}
processors:
  - name: consume
    type: ConsumeMQTT
    properties: {broker: BROKER, topics: "in/#", qos: "1", client_id: agent-consumer, max_reconnect_interval: 1s}
  - name: merge
    type: MergeContent
    properties: {min_entries: 1, max_entries: 200, demarcator: "\\n"}
    auto_terminate: [original, failure]
  - name: put
    type: PutFile
    properties: {directory: DIR/out}
    auto_terminate: [success, failure]
connections:
  - {from: consume, relationship: success, to: merge}
  - {from: merge, relationship: merged, to: put}
`, "BROKER", b.URL()))
	p := startAgent(t, "run", "--config", flow)
	pub := mqtt.NewPublisher(mqtt.Options{Broker: b.URL(), ClientID: "device"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, pub.Connect(ctx))
	defer pub.Close(context.Background())
	// Probe until the agent's subscription exists: from then on the broker
	// keeps its messages in the persistent session.
	require.Eventually(t, func() bool {
		_ = pub.Publish(ctx, "in/probe", 1, false, []byte("probe")).Wait(ctx)
		return countFiles(t, filepath.Join(dir, "out")) > 0
	}, 30*time.Second, 200*time.Millisecond)
	var pendings []*mqtt.Pending
	for i := range n {
		pendings = append(pendings, pub.Publish(ctx, "in/dev", 1, false, fmt.Appendf(nil, "reading-%05d", i)))
	}
	seen := map[string]int{}
	scan := func() int {
		clear(seen)
		outputLines(filepath.Join(dir, "out"), func(line string) {
			if line != "probe" {
				seen[line]++
			}
		})
		return len(seen)
	}
	// Kill the agent mid-stream, once part of the messages went through.
	require.Eventually(t, func() bool { return scan() >= n/5 }, time.Minute, 5*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.wait(t, 10*time.Second)
	t.Logf("killed the agent after %d of %d messages", scan(), n)
	p = startAgent(t, "run", "--config", flow)
	for _, pd := range pendings {
		require.NoError(t, pd.Wait(ctx))
	}
	require.Eventually(t, func() bool { return scan() == n }, 2*time.Minute, 200*time.Millisecond, "every published message is in the output")
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	t.Logf("%d messages, %d redelivered duplicates", n, dups)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 20*time.Second))
}

// TestEmbeddedBrokerTakesFullSpeedQoS1 has three devices publish QoS 1 as
// fast as they can for 10 s into the agent's embedded broker, consumed by
// ConsumeMQTT in the same agent: nothing is lost.
func TestEmbeddedBrokerTakesFullSpeedQoS1(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	dir := t.TempDir()
	var brokerAddr string
	p, _, _ := startAgentOnFreePort(t, "site", func(addr string) string {
		brokerAddr = freePort(t)
		return writeFlow(t, dir, "flow.yaml", strings.NewReplacer("BROKER", brokerAddr, "HTTP", addr).Replace(`
agent:
  id: site
  data_dir: DIR/data
  http: HTTP
  log: {level: warn}
  mqtt_broker: {listen: "BROKER"}
processors:
  - name: consume
    type: ConsumeMQTT
    properties: {broker: "tcp://BROKER", topics: "devices/#", qos: "1"}
  - name: merge
    type: MergeContent
    properties: {min_entries: 1, max_entries: 2000, demarcator: "\\n"}
    auto_terminate: [original, failure]
  - name: put
    type: PutFile
    properties: {directory: DIR/out}
    auto_terminate: [success, failure]
connections:
  - {from: consume, relationship: success, to: merge}
  - {from: merge, relationship: merged, to: put}
`))
	})
	// The broker listens before the flow starts: probe until ConsumeMQTT's
	// subscription exists (a message published before it would be lost).
	probe := mqtt.NewPublisher(mqtt.Options{Broker: "tcp://" + brokerAddr, ClientID: "probe"})
	pctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, probe.Connect(pctx))
	require.Eventually(t, func() bool {
		_ = probe.Publish(pctx, "devices/probe", 1, false, []byte("probe")).Wait(pctx)
		return countFiles(t, filepath.Join(dir, "out")) > 0
	}, 30*time.Second, 200*time.Millisecond)
	require.NoError(t, probe.Close(pctx))
	var sent atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(10 * time.Second)
	for d := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pub := mqtt.NewPublisher(mqtt.Options{Broker: "tcp://" + brokerAddr, ClientID: fmt.Sprintf("device-%d", d), MaxInFlight: 200})
			ctx := context.Background()
			if err := pub.Connect(ctx); err != nil {
				t.Errorf("device %d: %v", d, err)
				return
			}
			defer pub.Close(ctx)
			var pendings []*mqtt.Pending
			for i := 0; time.Now().Before(deadline); i++ {
				pendings = append(pendings, pub.Publish(ctx, fmt.Sprintf("devices/%d", d), 1, false, fmt.Appendf(nil, "d%d-%07d", d, i)))
			}
			for _, pd := range pendings {
				if err := pd.Wait(ctx); err != nil {
					t.Errorf("device %d: %v", d, err)
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	total := int(sent.Load())
	t.Logf("devices published %d QoS 1 messages in 10 s (%.0f/s)", total, float64(total)/10)
	seen := map[string]bool{}
	require.Eventually(t, func() bool {
		outputLines(filepath.Join(dir, "out"), func(line string) {
			if line != "probe" {
				seen[line] = true
			}
		})
		return len(seen) >= total
	}, 2*time.Minute, 250*time.Millisecond, "every acknowledged message reaches the flow")
	require.Equal(t, total, len(seen))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 20*time.Second))
}
