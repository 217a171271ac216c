package c2_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/c2"
	"edgeagent.dev/transport/mqtt"
	"edgeagent.dev/transport/mqtt/mqtttest"
)

func TestMQTTChannel(t *testing.T) {
	broker := mqtttest.Start(t)
	files := newC2Server(t) // only serves the model
	dir := t.TempDir()
	section := "    protocol: mqtt\n    broker: " + broker.URL() + "\n    agent_class: cams\n    heartbeat_period: 100ms\n    update_timeout: 3s\n"
	orig := flowYAML(dir, section, "")
	r := startAgent(t, dir, orig)
	require.Eventually(t, func() bool { return r.backlog() == 20 }, 10*time.Second, 10*time.Millisecond)
	r.startC2(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := mqtt.Options{Broker: broker.URL()}

	// The operator sees the agent from its retained heartbeat.
	var seen []c2.AgentSeen
	require.Eventually(t, func() bool {
		var err error
		seen, err = c2.Agents(ctx, opts, 300*time.Millisecond)
		require.NoError(t, err)
		return len(seen) == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "edge-1", seen[0].ID)
	require.Equal(t, "cams", seen[0].Class)
	require.EqualValues(t, 20, seen[0].Queued)
	require.Equal(t, []string{"backlog"}, seen[0].Full)
	raw, err := json.Marshal(seen[0].Heartbeat)
	require.NoError(t, err)
	checkHeartbeat(t, raw, sha([]byte(orig)))

	// Acknowledgements, as `edgeagent c2 acks` shows them.
	var mu sync.Mutex
	acks := map[string]c2.Ack{}
	go func() {
		_ = c2.Acks(ctx, opts, "", func(agent string, a c2.Ack) bool {
			if agent != "edge-1" {
				t.Errorf("ack from %q", agent)
			}
			mu.Lock()
			acks[a.OperationID] = a
			mu.Unlock()
			return true
		})
	}()
	ack := func(id string) c2.Ack {
		t.Helper()
		var a c2.Ack
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			var ok bool
			a, ok = acks[id]
			return ok
		}, 15*time.Second, 10*time.Millisecond, "no ack for %s", id)
		return a
	}
	// Until the acks subscription is in place, describe answers go unseen.
	require.Eventually(t, func() bool {
		require.NoError(t, c2.Push(ctx, opts, "edge-1", "", c2.Operation{Identifier: "op-0", Operation: "DESCRIBE"}))
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		_, ok := acks["op-0"]
		return ok
	}, 10*time.Second, 10*time.Millisecond)

	// A flow update to the agent is applied.
	good := flowYAML(dir, section, "  - {name: gen2, type: GenerateFlowFile, schedule: {period: 1h}, auto_terminate: [success]}\n")
	require.NoError(t, c2.Push(ctx, opts, "edge-1", "", c2.Operation{Identifier: "op-1", Operation: "UPDATE", Operand: "configuration",
		Args: map[string]string{"flow": good}}))
	a := ack("op-1")
	require.Equal(t, c2.FullyApplied, a.OperationState.State, a.OperationState.Details)
	require.Equal(t, sha([]byte(good)), r.runningHash())

	// A broken update to the agent's class is rolled back and reported.
	broken := flowYAML(dir, section, "  - {name: cam, type: FailStart, auto_terminate: [success]}\n")
	require.NoError(t, c2.Push(ctx, opts, "", "cams", c2.Operation{Identifier: "op-2", Operation: "UPDATE", Operand: "configuration",
		Args: map[string]string{"flow": broken}}))
	a = ack("op-2")
	require.Equal(t, c2.NotApplied, a.OperationState.State)
	require.Contains(t, a.OperationState.Details, "rolled back")
	require.Equal(t, sha([]byte(good)), r.runningHash())

	// A model with the wrong sha256 is refused.
	files.serve("model.onnx", []byte("model bytes"))
	require.NoError(t, c2.Push(ctx, opts, "", "cams", c2.Operation{Identifier: "op-3", Operation: "UPDATE", Operand: "asset",
		Args: map[string]string{"assetUrl": files.URL + "/files/model.onnx", "assetFileName": "model.onnx", "sha256": strings.Repeat("0", 64)}}))
	a = ack("op-3")
	require.Equal(t, c2.NotApplied, a.OperationState.State)
	require.Contains(t, a.OperationState.Details, "sha256 mismatch")
	_, err = os.Stat(filepath.Join(dir, "data", "assets", "model.onnx"))
	require.ErrorIs(t, err, os.ErrNotExist)

	// An operation for another agent or class is not taken.
	require.NoError(t, c2.Push(ctx, opts, "edge-2", "", c2.Operation{Identifier: "op-other", Operation: "DESCRIBE"}))
	require.NoError(t, c2.Push(ctx, opts, "edge-1", "", c2.Operation{Identifier: "op-4", Operation: "DESCRIBE"}))
	ack("op-4")
	mu.Lock()
	_, other := acks["op-other"]
	mu.Unlock()
	require.False(t, other)

	// The queued flowfiles stayed through all of it.
	require.EqualValues(t, 20, r.backlog())
}
