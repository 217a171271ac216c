package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/engine"
	"edgeagent.dev/processors/all"
	"edgeagent.dev/transport/mqtt/mqtttest"
)

// TestC2Commands runs an agent with agent.c2 over mosquitto (wired as
// cmdRun wires it, through startC2) and drives it with `edgeagent c2`.
func TestC2Commands(t *testing.T) {
	broker := mqtttest.Start(t)
	dir := t.TempDir()
	flow := `agent:
  id: cli-1
  data_dir: DIR/data
  c2: {protocol: mqtt, broker: ` + broker.URL() + `, agent_class: line3, heartbeat_period: 100ms}
processors:
  - {name: gen, type: GenerateFlowFile, schedule: {period: 1h}, auto_terminate: [success]}
`
	file := writeFlow(t, dir, "flow.yaml", flow)
	reg := all.Registry()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stopC2 func()
	started := make(chan struct{})
	go func() {
		done <- engine.RunAgent(ctx, engine.AgentOptions{ConfigPath: file, Registry: reg, LogOutput: io.Discard,
			OnStart: func(a *engine.Agent) {
				go func() {
					require.Eventually(t, func() bool { return a.Healthy() == nil }, 10*time.Second, 10*time.Millisecond)
					stopC2 = startC2(ctx, reg, a, nil, io.Discard)
					close(started)
				}()
			},
			OnStopping: func() { <-started; stopC2() },
		})
	}()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	<-started

	c2run := func(args ...string) (string, error) {
		var out syncBuffer
		err := cmdC2(args, reg, &out)
		return out.String(), err
	}
	require.Eventually(t, func() bool {
		out, err := c2run("agents", "--broker", broker.URL(), "--wait", "300ms")
		require.NoError(t, err)
		return strings.Contains(out, "cli-1") && strings.Contains(out, "line3")
	}, 10*time.Second, 10*time.Millisecond)

	// An invalid flow is refused here, before it reaches any agent.
	bad := writeFlow(t, dir, "bad.yaml", "processors:\n  - {name: x, type: NoSuchType}\n")
	_, err := c2run("push-flow", "--broker", broker.URL(), "--class", "line3", bad)
	require.ErrorContains(t, err, "NoSuchType")
	_, err = c2run("push-flow", "--broker", broker.URL(), filepath.Join(dir, "flow.yaml"))
	require.ErrorContains(t, err, "--agent ID or --class CLASS")

	// A valid flow pushed to the class is applied and acknowledged.
	newFlow := writeFlow(t, dir, "new.yaml", strings.Replace(flow, "period: 1h", "period: 2h", 1))
	var acks syncBuffer
	acksDone := make(chan error, 1)
	go func() {
		acksDone <- cmdC2([]string{"acks", "--broker", broker.URL(), "--agent", "cli-1", "--count", "1", "--timeout", "20s"}, reg, &acks)
	}()
	require.Eventually(t, func() bool {
		out, err := c2run("push-flow", "--broker", broker.URL(), "--class", "line3", newFlow)
		require.NoError(t, err)
		require.Contains(t, out, "sent to class line3")
		time.Sleep(200 * time.Millisecond)
		return strings.Contains(acks.String(), "FULLY_APPLIED")
	}, 15*time.Second, 10*time.Millisecond)
	require.NoError(t, <-acksDone)
	require.Contains(t, acks.String(), "cli-1\tupdate-")
	got, err := os.ReadFile(file)
	require.NoError(t, err)
	want, err := os.ReadFile(newFlow)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "the pushed flow is the agent's flow file")

	out, err := c2run("agents", "--broker", broker.URL(), "--wait", "300ms", "--json")
	require.NoError(t, err)
	require.Contains(t, out, `"agentClass": "line3"`)
}
