package c2_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/c2"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/processors/all"
)

// hold never takes a flowfile: its input queue only grows.
type hold struct{}

func (hold) OnTrigger(_ context.Context, pc edgeagent.ProcessContext, _ edgeagent.ProcessSession) error {
	pc.Yield()
	return nil
}

// failStart is a processor whose Start fails: a flow that validates but
// never runs.
type failStart struct{ hold }

func (failStart) Start(context.Context, edgeagent.ProcessContext) error {
	return errors.New("camera not found")
}

func registry() *edgeagent.Registry {
	reg := all.Registry()
	reg.MustRegister(edgeagent.ProcessorSpec{
		Type: "Hold", Summary: "never takes input", Input: edgeagent.InputRequired,
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		New:           func(*edgeagent.ProcessorConfig) (edgeagent.Processor, error) { return hold{}, nil },
	}, edgeagent.ProcessorSpec{
		Type: "FailStart", Summary: "cannot start", Input: edgeagent.InputAllowed,
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		New:           func(*edgeagent.ProcessorConfig) (edgeagent.Processor, error) { return failStart{}, nil },
	})
	return reg
}

// flowYAML is the test flow: gen fills backlog to its threshold (20) and
// hold never takes anything, so backlog holds 20 queued flowfiles for the
// whole test. C2 is replaced by the agent.c2 section; extra by more
// processors.
func flowYAML(dir, c2section, extra string) string {
	return `agent:
  id: edge-1
  data_dir: ` + dir + `/data
  c2:
` + c2section + `
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 5ms}
    properties: {batch_size: 5, file_size: 8B}
  - {name: hold, type: Hold, auto_terminate: [success]}
` + extra + `connections:
  - {name: backlog, from: gen, relationship: success, to: hold, max_count: 20}
`
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// agentRun is a real agent (engine.RunAgent) with a c2 client beside it.
type agentRun struct {
	t    *testing.T
	dir  string
	file string
	a    *engine.Agent
	reg  *edgeagent.Registry
}

func startAgent(t *testing.T, dir, flow string) *agentRun {
	t.Helper()
	r := &agentRun{t: t, dir: dir, file: filepath.Join(dir, "flow.yaml"), reg: registry()}
	require.NoError(t, os.WriteFile(r.file, []byte(flow), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *engine.Agent, 1)
	done := make(chan error, 1)
	go func() {
		done <- engine.RunAgent(ctx, engine.AgentOptions{
			ConfigPath: r.file, Registry: r.reg, LogOutput: io.Discard, Version: "1.2.3-test",
			OnStart: func(a *engine.Agent) { started <- a },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("the agent did not stop within 15s")
		}
	})
	select {
	case r.a = <-started:
	case err := <-done:
		t.Fatalf("the agent did not start: %v", err)
	}
	require.Eventually(t, func() bool { return r.a.Healthy() == nil }, 10*time.Second, 10*time.Millisecond)
	return r
}

// startC2 runs a c2 client for the agent until the test ends.
func (r *agentRun) startC2(restart func()) *c2.Client {
	r.t.Helper()
	flow, err := config.Load(r.file, r.reg)
	require.NoError(r.t, err)
	cl, err := c2.New(c2.Options{
		Config: flow.Agent.C2, AgentID: flow.Agent.ID, ConfigPath: r.file, DataDir: flow.Agent.DataDir,
		Agent: r.a, Registry: r.reg, BuildTags: []string{"test"}, Restart: restart,
	})
	require.NoError(r.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	r.t.Cleanup(func() {
		cancel()
		require.NoError(r.t, <-done)
	})
	return cl
}

func (r *agentRun) backlog() int64 {
	st, err := r.a.Status()
	require.NoError(r.t, err)
	for _, q := range st.Queues {
		if q.Name == "backlog" {
			return q.Count
		}
	}
	return -1
}

func (r *agentRun) runningHash() string {
	st, err := r.a.Status()
	require.NoError(r.t, err)
	return st.FlowSHA256
}

// c2Server is a MiNiFi C2 server subset: heartbeats are recorded and
// answered with the operations queued since; acks are recorded; files
// under /files/ are served.
type c2Server struct {
	*httptest.Server
	mu         sync.Mutex
	heartbeats []json.RawMessage
	pending    []c2.Operation
	acks       map[string]c2.Ack
	files      map[string][]byte
	uploads    [][]byte
}

func newC2Server(t *testing.T) *c2Server {
	s := &c2Server{acks: map[string]c2.Ack{}, files: map[string][]byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /c2/api/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.heartbeats = append(s.heartbeats, b)
		ops := s.pending
		s.pending = nil
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"requestedOperations": ops})
	})
	mux.HandleFunc("POST /c2/api/acknowledge", func(w http.ResponseWriter, r *http.Request) {
		var a c2.Ack
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		s.mu.Lock()
		s.acks[a.OperationID] = a
		s.mu.Unlock()
	})
	mux.HandleFunc("GET /files/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b, ok := s.files[r.PathValue("name")]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.uploads = append(s.uploads, b)
		s.mu.Unlock()
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *c2Server) serve(name string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = b
}

func (s *c2Server) push(op c2.Operation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, op)
}

// ack waits for the acknowledgement of operation id.
func (s *c2Server) ack(t *testing.T, id string) c2.Ack {
	t.Helper()
	var a c2.Ack
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		var ok bool
		a, ok = s.acks[id]
		return ok
	}, 15*time.Second, 10*time.Millisecond, "no ack for %s", id)
	return a
}

// lastHeartbeat returns the newest heartbeat, raw.
func (s *c2Server) lastHeartbeat() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.heartbeats) == 0 {
		return nil
	}
	return s.heartbeats[len(s.heartbeats)-1]
}
