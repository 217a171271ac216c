package c2_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/c2"
)

// checkHeartbeat checks a heartbeat's JSON against the MiNiFi C2 field
// names and the agent's state: 20 queued flowfiles in backlog, at its
// threshold.
func checkHeartbeat(t *testing.T, raw []byte, flowHash string) {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	for _, k := range []string{"identifier", "created", "deviceInfo", "agentInfo", "flowInfo", "edgeagent"} {
		require.Contains(t, m, k)
	}
	ai := m["agentInfo"].(map[string]any)
	require.Equal(t, "edge-1", ai["identifier"])
	require.Equal(t, "cams", ai["agentClass"])
	repo := ai["status"].(map[string]any)["repositories"].(map[string]any)["flowFileStatus"].(map[string]any)
	require.EqualValues(t, 20, repo["size"])
	require.Greater(t, repo["dataSize"], 0.0)
	require.Greater(t, repo["dataSizeMax"], 0.0)
	fi := m["flowInfo"].(map[string]any)
	require.Equal(t, flowHash, fi["flowId"])
	q := fi["queues"].(map[string]any)["backlog"].(map[string]any)
	require.EqualValues(t, 20, q["size"])
	require.EqualValues(t, 20, q["sizeMax"])
	require.EqualValues(t, 160, q["dataSize"])
	require.Contains(t, fi["components"], "gen")
	si := m["deviceInfo"].(map[string]any)["systemInfo"].(map[string]any)
	for _, k := range []string{"machineArch", "operatingSystem", "physicalMem", "vCores", "memoryUsage", "cpuUtilization"} {
		require.Contains(t, si, k)
	}

	var hb c2.Heartbeat
	require.NoError(t, json.Unmarshal(raw, &hb))
	require.Equal(t, "1.2.3-test", hb.Edge.Version)
	require.Equal(t, []string{"test"}, hb.Edge.BuildTags)
	require.Equal(t, flowHash, hb.Edge.FlowSHA256)
	var backlog bool
	for _, q := range hb.Edge.Queues {
		if q.Name == "backlog" {
			backlog = true
			require.True(t, q.Full, "backpressure state")
			require.EqualValues(t, 20, q.Count)
		}
	}
	require.True(t, backlog)
	require.NotEmpty(t, hb.Edge.Repository.Path)
	require.NotNil(t, hb.Edge.Device, "device stats")
	require.NotNil(t, hb.Edge.Device.Memory)
	require.NotEmpty(t, hb.Edge.Device.Disks)
}

func httpSection(url string) string {
	return "    protocol: http\n    url: " + url + "/c2/api/heartbeat\n    agent_class: cams\n" +
		"    heartbeat_period: 100ms\n    update_timeout: 3s\n" +
		"    allow: [update_configuration, update_asset, describe, transfer_debug, start, stop, clear_connection]\n"
}

func TestHTTPChannel(t *testing.T) {
	srv := newC2Server(t)
	dir := t.TempDir()
	section := httpSection(srv.URL)
	orig := flowYAML(dir, section, "")
	r := startAgent(t, dir, orig)
	require.Eventually(t, func() bool { return r.backlog() == 20 }, 10*time.Second, 10*time.Millisecond)
	r.startC2(nil)

	// Heartbeats arrive with the agent's state.
	require.Eventually(t, func() bool { return srv.lastHeartbeat() != nil }, 5*time.Second, 10*time.Millisecond)
	checkHeartbeat(t, srv.lastHeartbeat(), sha([]byte(orig)))

	// A flow update is applied through the hot-reload path; the previous
	// file is kept; the queue keeps its flowfiles.
	good := flowYAML(dir, section, "  - {name: gen2, type: GenerateFlowFile, schedule: {period: 1h}, auto_terminate: [success]}\n")
	srv.serve("good.yaml", []byte(good))
	srv.push(c2.Operation{Identifier: "op-1", Operation: "UPDATE", Operand: "configuration",
		Args: map[string]string{"location": "/files/good.yaml", "flowId": "flow-v2"}})
	a := srv.ack(t, "op-1")
	require.Equal(t, c2.FullyApplied, a.OperationState.State, a.OperationState.Details)
	require.Equal(t, "flow-v2", a.FlowInfo.FlowID)
	require.Equal(t, sha([]byte(good)), r.runningHash())
	prev, err := os.ReadFile(r.file + ".previous")
	require.NoError(t, err)
	require.Equal(t, orig, string(prev))
	require.EqualValues(t, 20, r.backlog())
	require.Eventually(t, func() bool {
		var hb c2.Heartbeat
		return json.Unmarshal(srv.lastHeartbeat(), &hb) == nil && hb.FlowInfo.FlowID == "flow-v2"
	}, 5*time.Second, 10*time.Millisecond)

	// A flow that validates but does not start is rolled back and
	// reported; the good flow keeps running, from the same file.
	broken := flowYAML(dir, section, "  - {name: cam, type: FailStart, auto_terminate: [success]}\n")
	srv.push(c2.Operation{Identifier: "op-2", Operation: "update", Operand: "CONFIGURATION", Args: map[string]string{"flow": broken}})
	a = srv.ack(t, "op-2")
	require.Equal(t, c2.NotApplied, a.OperationState.State)
	require.Contains(t, a.OperationState.Details, "rolled back")
	require.Contains(t, a.OperationState.Details, "camera not found")
	require.Equal(t, sha([]byte(good)), r.runningHash())
	onDisk, err := os.ReadFile(r.file)
	require.NoError(t, err)
	require.Equal(t, good, string(onDisk))
	require.NoError(t, r.a.Healthy())
	require.EqualValues(t, 20, r.backlog())

	// A flow that does not validate is refused before anything changes.
	srv.push(c2.Operation{Identifier: "op-3", Operation: "UPDATE", Operand: "configuration",
		Args: map[string]string{"flow": "processors:\n  - {name: x, type: NoSuchType}\n"}})
	a = srv.ack(t, "op-3")
	require.Equal(t, c2.NotApplied, a.OperationState.State)
	require.Contains(t, a.OperationState.Details, "does not validate")
	require.Contains(t, a.OperationState.Details, "NoSuchType")
	require.Equal(t, sha([]byte(good)), r.runningHash())
	_, err = os.Stat(r.file + ".c2-staging")
	require.ErrorIs(t, err, os.ErrNotExist)

	// A model whose sha256 does not match is refused; one that matches
	// is installed and reported.
	model := []byte("pretend this is an ONNX model")
	srv.serve("model.onnx", model)
	assets := filepath.Join(dir, "data", "assets")
	srv.push(c2.Operation{Identifier: "op-4", Operation: "UPDATE", Operand: "asset", Args: map[string]string{
		"assetUrl": "/files/model.onnx", "assetFileName": "model.onnx", "sha256": strings.Repeat("ab", 32)}})
	a = srv.ack(t, "op-4")
	require.Equal(t, c2.NotApplied, a.OperationState.State)
	require.Contains(t, a.OperationState.Details, "sha256 mismatch")
	entries, err := os.ReadDir(assets)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing installed, no staging file left")
	srv.push(c2.Operation{Identifier: "op-5", Operation: "UPDATE", Operand: "asset", Args: map[string]string{
		"assetUrl": srv.URL + "/files/model.onnx", "assetFileName": "model.onnx", "sha256": sha(model)}})
	a = srv.ack(t, "op-5")
	require.Contains(t, a.OperationState.Details, "flow restarted to load it")
	require.Equal(t, c2.FullyApplied, a.OperationState.State, a.OperationState.Details)
	got, err := os.ReadFile(filepath.Join(assets, "model.onnx"))
	require.NoError(t, err)
	require.Equal(t, model, got)
	require.Eventually(t, func() bool {
		var hb c2.Heartbeat
		return json.Unmarshal(srv.lastHeartbeat(), &hb) == nil && hb.Edge.Assets["model.onnx"] == sha(model)
	}, 5*time.Second, 10*time.Millisecond)

	// Describe, transfer debug, unsupported, unknown and refused operations.
	srv.push(c2.Operation{Identifier: "op-6", Operation: "DESCRIBE", Operand: "manifest"})
	srv.push(c2.Operation{Identifier: "op-7", Operation: "TRANSFER", Operand: "debug", Args: map[string]string{"target": "/upload"}})
	srv.push(c2.Operation{Identifier: "op-8", Operation: "START", Args: map[string]string{"processor": "gen"}})
	srv.push(c2.Operation{Identifier: "op-8b", Operation: "STOP", Args: map[string]string{"processor": "gen"}})
	srv.push(c2.Operation{Identifier: "op-8c", Operation: "START", Args: map[string]string{"processor": "gen"}})
	srv.push(c2.Operation{Identifier: "op-9", Operation: "PAUSE"})
	srv.push(c2.Operation{Identifier: "op-10", Operation: "RESTART"})
	a = srv.ack(t, "op-6")
	require.Equal(t, c2.FullyApplied, a.OperationState.State, a.OperationState.Details)
	require.Equal(t, good, a.Edge.Flow)
	var types []string
	for _, p := range a.Edge.Manifest {
		types = append(types, p.Type)
	}
	require.Contains(t, types, "GenerateFlowFile")
	require.NotEmpty(t, a.Edge.Status.Queues)
	a = srv.ack(t, "op-7")
	require.Equal(t, c2.FullyApplied, a.OperationState.State, a.OperationState.Details)
	srv.mu.Lock()
	require.Len(t, srv.uploads, 1)
	require.Equal(t, []byte{0x1f, 0x8b}, srv.uploads[0][:2], "gzip")
	srv.mu.Unlock()
	a = srv.ack(t, "op-8")
	require.Equal(t, c2.NotApplied, a.OperationState.State)
	require.Contains(t, a.OperationState.Details, "already running")
	a = srv.ack(t, "op-8b")
	require.Equal(t, c2.FullyApplied, a.OperationState.State, a.OperationState.Details)
	require.Equal(t, "processor gen stopped", a.OperationState.Details)
	a = srv.ack(t, "op-8c")
	require.Equal(t, c2.FullyApplied, a.OperationState.State, a.OperationState.Details)
	a = srv.ack(t, "op-9")
	require.Equal(t, c2.OperationNotUnderstood, a.OperationState.State)
	require.Contains(t, a.OperationState.Details, "not supported")
	a = srv.ack(t, "op-10")
	require.Equal(t, c2.NotApplied, a.OperationState.State)
	require.Contains(t, a.OperationState.Details, "not allowed")

	// Through all of it the queued flowfiles stayed.
	require.EqualValues(t, 20, r.backlog())
}

func TestAckURL(t *testing.T) {
	for _, tc := range []struct{ hb, ack, want string }{
		{"https://c2:10090/c2/api/heartbeat", "", "https://c2:10090/c2/api/acknowledge"},
		{"http://c2/heartbeat", "", "http://c2/acknowledge"},
		{"http://c2/c2/api/heartbeat", "http://other/ack", "http://other/ack"},
	} {
		got, err := c2.AckURL(tc.hb, tc.ack)
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
}

func TestOperationName(t *testing.T) {
	for _, tc := range []struct{ op, operand, want string }{
		{"UPDATE", "configuration", "update_configuration"},
		{"update", "ASSET", "update_asset"},
		{"UPDATE", "properties", ""},
		{"DESCRIBE", "manifest", "describe"},
		{"CLEAR", "connection", "clear_connection"},
		{"TRANSFER", "debug", "transfer_debug"},
		{"RESTART", "", "restart"},
		{"PAUSE", "", ""},
	} {
		require.Equal(t, tc.want, c2.OperationName(c2.Operation{Operation: tc.op, Operand: tc.operand}), tc)
	}
}
