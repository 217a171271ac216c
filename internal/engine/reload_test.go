package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/provenance"
)

// syncBuffer is a bytes.Buffer safe for the agent's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// agentRun is an agent started with RunAgent on a flow file in a
// temporary directory.
type agentRun struct {
	t    *testing.T
	dir  string
	file string
	a    *engine.Agent
	logs *syncBuffer
}

// runAgent writes flowYAML (DATA replaced by a temporary directory) and
// runs an agent on it until the test ends; the agent must stop cleanly.
func runAgent(t *testing.T, reg *edgeagent.Registry, flowYAML string, watch time.Duration) *agentRun {
	t.Helper()
	r := &agentRun{t: t, dir: t.TempDir(), logs: &syncBuffer{}}
	r.file = filepath.Join(r.dir, "flow.yaml")
	r.write(flowYAML)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *engine.Agent, 1)
	ready := make(chan struct{}, 1)
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = engine.RunAgent(ctx, engine.AgentOptions{
			ConfigPath: r.file, Registry: reg, LogOutput: r.logs, WatchInterval: watch,
			OnStart: func(a *engine.Agent) { started <- a },
			OnReady: func() {
				select {
				case ready <- struct{}{}:
				default:
				}
			},
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
			require.NoError(t, runErr)
		case <-time.After(15 * time.Second):
			t.Error("the agent did not stop within 15s")
		}
	})
	select {
	case r.a = <-started:
	case <-done:
		t.Fatalf("the agent did not start: %v\n%s", runErr, r.logs)
	}
	select {
	case <-ready:
	case <-done:
		t.Fatalf("the agent did not start: %v\n%s", runErr, r.logs)
	}
	return r
}

// write replaces the flow file (atomically, as editors and install.sh do).
func (r *agentRun) write(flowYAML string) {
	tmp := r.file + ".tmp"
	require.NoError(r.t, os.WriteFile(tmp, []byte(strings.ReplaceAll(flowYAML, "DATA", r.dir)), 0o600))
	require.NoError(r.t, os.Rename(tmp, r.file))
}

func (r *agentRun) status() *engine.Status {
	st, err := r.a.Status()
	require.NoError(r.t, err)
	return st
}

// queue returns the status of a queue the running flow shows, and whether
// it shows it.
func (r *agentRun) queue(name string) (engine.QueueStatus, bool) {
	for _, q := range r.status().Queues {
		if q.Name == name {
			return q, true
		}
	}
	return engine.QueueStatus{}, false
}

func (r *agentRun) processor(name string) engine.ProcessorStatus {
	for _, p := range r.status().Processors {
		if p.Name == name {
			return p
		}
	}
	r.t.Fatalf("no processor %s", name)
	return engine.ProcessorStatus{}
}

// events returns the provenance events through the HTTP API.
func (r *agentRun) events() []provenance.Event {
	rec := httptest.NewRecorder()
	r.a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/provenance?since=1h&limit=100000", nil))
	require.Equal(r.t, 200, rec.Code, rec.Body.String())
	var res engine.ProvenanceResult
	require.NoError(r.t, json.Unmarshal(rec.Body.Bytes(), &res))
	return res.Events
}

// The running flow of the reload tests: gen fills "backlog" up to its
// threshold; hold (a closed gate) never takes anything.
const backlogFlow = `
agent: {id: reload, data_dir: DATA/data}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 5ms}
    properties: {batch_size: 5, file_size: 8B}
  - {name: hold, type: Gate, auto_terminate: [success]}
connections:
  - {name: backlog, from: gen, relationship: success, to: hold, max_count: 20}
`

// retired is the flow after the change: backlog and hold are gone, and
// entry (when set) says what happens to backlog's flowfiles; a drain goes
// to the processor drainer.
func retired(entry string) string {
	f := `
agent: {id: reload, data_dir: DATA/data}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 1h}
    properties: {batch_size: 1, file_size: 8B}
    auto_terminate: [success]
`
	if strings.Contains(entry, "to: drainer") {
		f += "  - {name: drainer, type: UpdateAttribute, properties: {drained: \"yes\"}, auto_terminate: [success]}\n"
	}
	if entry != "" {
		f += "retired_connections:\n  - " + entry + "\n"
	}
	return f
}

func TestReloadThatWouldOrphanAQueue(t *testing.T) {
	r := runAgent(t, registry(&gate{batch: 10}), backlogFlow, 0)
	full := func() bool { q, ok := r.queue("backlog"); return ok && q.Count >= 20 }
	require.Eventually(t, full, 10*time.Second, 10*time.Millisecond)
	first := r.status().FlowSHA256

	// Removing the connection while it holds flowfiles is refused.
	r.write(retired(""))
	require.False(t, r.a.Reload(context.Background()))
	st := r.status()
	require.Equal(t, first, st.FlowSHA256, "the running flow is kept")
	require.Equal(t, int64(1), st.ReloadFailures)
	require.Contains(t, st.LastReloadErr, `connection "backlog" still holds`)
	require.Contains(t, st.LastReloadErr, "retired_connections")
	require.Contains(t, r.logs.String(), "reload refused: queued flowfiles would be orphaned")
	require.True(t, r.a.Engine().Running())

	// keep: accepted; the flowfiles stay on disk, and come back with the
	// connection.
	r.write(retired("{name: backlog, action: keep}"))
	require.True(t, r.a.Reload(context.Background()))
	_, shown := r.queue("backlog")
	require.False(t, shown)
	require.Contains(t, r.logs.String(), "retired connection kept on disk")
	r.write(backlogFlow)
	require.True(t, r.a.Reload(context.Background()))
	q, _ := r.queue("backlog")
	require.GreaterOrEqual(t, q.Count, int64(20), "kept flowfiles are back in the connection")

	// drop: emptied when the new flow starts, each with a DROP event.
	require.Eventually(t, full, 10*time.Second, 10*time.Millisecond)
	r.write(retired("{name: backlog, action: drop}"))
	require.True(t, r.a.Reload(context.Background()))
	drops := 0
	for _, e := range r.events() {
		if e.Type == provenance.EventDrop && e.Component == "backlog" {
			require.Equal(t, "Connection", e.ComponentType)
			require.Contains(t, e.Details, "retired")
			drops++
		}
	}
	require.GreaterOrEqual(t, drops, 20)
	// Back with gen triggering once (5 flowfiles): with its 5ms period it
	// could refill backlog to 20 between Reload and the check.
	r.write(strings.Replace(backlogFlow, "period: 5ms", "period: 1h", 1))
	require.True(t, r.a.Reload(context.Background()))
	q, _ = r.queue("backlog")
	require.Less(t, q.Count, int64(20), "the dropped flowfiles are gone")
	r.write(backlogFlow)
	require.True(t, r.a.Reload(context.Background()))
	require.Eventually(t, full, 10*time.Second, 10*time.Millisecond)

	// drain: another processor takes them until the queue is empty.
	r.write(retired("{name: backlog, to: drainer}"))
	require.True(t, r.a.Reload(context.Background()))
	require.Eventually(t, func() bool {
		q, shown := r.queue("backlog")
		return shown && q.Count == 0 && r.processor("drainer").In >= 20
	}, 10*time.Second, 10*time.Millisecond)

	// An empty connection may simply go.
	r.write(retired(""))
	require.True(t, r.a.Reload(context.Background()), r.logs.String())
	require.Equal(t, int64(1), r.status().ReloadFailures)
	require.Equal(t, int64(7), r.status().Reloads)
}
