package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/engine"
)

// TestMain lets the tests run this binary as the agent: with
// EDGEAGENT_TEST_CHILD=1 it is the edgeagent command itself.
func TestMain(m *testing.M) {
	if os.Getenv("EDGEAGENT_TEST_CHILD") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// agentProc is an agent child process.
type agentProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

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

func startAgent(t *testing.T, args ...string) *agentProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "EDGEAGENT_TEST_CHILD=1")
	p := &agentProc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	require.NoError(t, cmd.Start())
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("agent output:\n%s", p.out.String())
		}
	})
	return p
}

func (p *agentProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("agent did not exit within %s", d)
	}
	return p.cmd.ProcessState.ExitCode()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// startAgentOnFreePort starts an agent whose HTTP API listens on a free
// port: flowFor writes the flow for that address (it may pick more ports)
// and returns its file. It returns once the API answers for agent id. A
// port from freePort is free only until the child binds it, and a test in
// another package can take it meanwhile: the agent then exits at start,
// and this tries again with new ports.
func startAgentOnFreePort(t *testing.T, id string, flowFor func(addr string) string) (p *agentProc, addr, flow string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr = freePort(t)
		flow = flowFor(addr)
		p = startAgent(t, "run", "--config", flow)
		exited := func() bool {
			select {
			case <-p.done:
				return true
			default:
				return false
			}
		}
		require.Eventually(t, func() bool {
			var st engine.Status
			return exited() || getJSON(t, "http://"+addr+"/api/status", &st) == nil && st.AgentID == id
		}, 30*time.Second, 20*time.Millisecond, "agent %s did not serve its API on %s", id, addr)
		if !exited() {
			return p, addr, flow
		}
		require.Contains(t, p.out.String(), "address already in use", "the agent exited at start")
		require.Less(t, attempt, 5, "no free port")
	}
}

func writeFlow(t *testing.T, dir, name, flow string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(strings.ReplaceAll(flow, "DIR", dir)), 0o600))
	return p
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestCrashLosesNothing kills the agent with SIGKILL at random moments while
// it moves 10,000 files through GetFile -> UpdateAttribute -> PutFile; after
// the last restart drains, the output holds exactly the inputs.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test takes a while")
	}
	const n = 10000
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	require.NoError(t, os.MkdirAll(in, 0o750))
	want := map[string][]byte{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		name := fmt.Sprintf("f%05d.dat", i)
		b := make([]byte, 64+rng.IntN(4096))
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		copy(b, name)
		want[name] = b
		require.NoError(t, os.WriteFile(filepath.Join(in, name), b, 0o600))
	}
	flow := writeFlow(t, dir, "flow.yaml", `
agent: {id: crash, data_dir: DIR/data, log: {level: warn}}
processors:
  - name: get
    type: GetFile
    schedule: {yield: 50ms}
    properties: {input_directory: DIR/in, batch_size: 50}
  - name: tag
    type: UpdateAttribute
    properties: {stage: tagged}
  - name: put
    type: PutFile
    schedule: {concurrency: 2}
    properties: {directory: DIR/out, conflict_resolution: replace}
    auto_terminate: [success]
connections:
  - {from: get, relationship: success, to: tag, max_count: 500}
  - {from: tag, relationship: success, to: put, max_count: 500}
  - {from: put, relationship: failure, to: put}
`)
	for kill := range 4 {
		p := startAgent(t, "run", "--config", flow)
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
		p.wait(t, 10*time.Second)
		t.Logf("kill %d: %d inputs left, %d outputs", kill+1, countFiles(t, in), countFiles(t, out))
	}
	p := startAgent(t, "run", "--config", flow)
	require.Eventually(t, func() bool {
		return countFiles(t, in) == 0 && countFiles(t, out) >= n
	}, 4*time.Minute, 100*time.Millisecond, "the restarted agent drains everything")
	// Let the last sessions commit, then stop cleanly.
	require.Eventually(t, func() bool { return countFiles(t, in) == 0 }, time.Minute, 100*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 20*time.Second))

	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	got := 0
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(out, e.Name()))
		require.NoError(t, err)
		w, ok := want[e.Name()]
		require.True(t, ok, "unexpected output file %s", e.Name())
		require.True(t, bytes.Equal(w, b), "output %s is corrupt", e.Name())
		got++
	}
	require.Equal(t, n, got, "every input arrived exactly once in the output directory")
	left, err := os.ReadDir(in)
	require.NoError(t, err)
	require.Empty(t, left)
}

func getJSON(t *testing.T, url string, v any) error {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestSignalsDrainAndReload runs an agent, reloads it with an invalid and
// then a valid flow (SIGHUP), and stops it with SIGTERM: it exits 0 and the
// queued flowfiles stay in the repository.
func TestSignalsDrainAndReload(t *testing.T) {
	dir := t.TempDir()
	flowV1 := `
agent: {id: sig, data_dir: DIR/data, http: ADDR}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 20ms}
    properties: {batch_size: 2, file_size: 10B}
  - name: hold
    type: UpdateAttribute
    schedule: {period: 1h}
    properties: {x: "1"}
    auto_terminate: [success]
connections:
  - {name: backlog, from: gen, relationship: success, to: hold, max_count: 40}
`
	p, addr, flow := startAgentOnFreePort(t, "sig", func(addr string) string {
		return writeFlow(t, dir, "flow.yaml", strings.ReplaceAll(flowV1, "ADDR", addr))
	})
	var st engine.Status
	require.Eventually(t, func() bool {
		return getJSON(t, "http://"+addr+"/api/status", &st) == nil && len(st.Queues) == 1 && st.Queues[0].Count >= 20
	}, 20*time.Second, 50*time.Millisecond)
	firstHash := st.FlowSHA256

	// An invalid flow is refused; the running flow is kept.
	writeFlow(t, dir, "flow.yaml", strings.ReplaceAll(flowV1, "ADDR", addr)+"\nbogus_key: 1\n")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return getJSON(t, "http://"+addr+"/api/status", &st) == nil && st.ReloadFailures == 1
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, firstHash, st.FlowSHA256)
	require.Contains(t, st.LastReloadErr, "bogus_key")
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "reload refused") }, 10*time.Second, 20*time.Millisecond)

	// A valid new flow replaces it; the connection keeps its flowfiles.
	flowV2 := strings.ReplaceAll(flowV1, "max_count: 40", "max_count: 60")
	writeFlow(t, dir, "flow.yaml", strings.ReplaceAll(flowV2, "ADDR", addr))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return getJSON(t, "http://"+addr+"/api/status", &st) == nil && st.Reloads == 1 && st.Queues[0].MaxCount == 60
	}, 10*time.Second, 50*time.Millisecond)
	require.NotEqual(t, firstHash, st.FlowSHA256)
	require.Eventually(t, func() bool {
		return getJSON(t, "http://"+addr+"/api/status", &st) == nil && st.Queues[0].Count >= 50
	}, 10*time.Second, 50*time.Millisecond)

	// While the agent runs, the CLI reads queues through its HTTP API.
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"queues", "--config", flow, "--json"}, &stdout, &stderr), stderr.String())
	var qs []engine.QueueStatus
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &qs))
	require.Equal(t, "backlog", qs[0].Name)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 15*time.Second))
	require.Contains(t, p.out.String(), "agent stopped")

	stdout.Reset()
	require.Equal(t, 0, run([]string{"queues", "--data-dir", filepath.Join(dir, "data"), "--json"}, &stdout, &stderr), stderr.String())
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &qs))
	require.GreaterOrEqual(t, qs[0].Count, int64(50), "queued flowfiles survive the shutdown")
}

func TestValidateAndStartRefusals(t *testing.T) {
	dir := t.TempDir()
	bad := writeFlow(t, dir, "bad.yaml", `
agent: {id: x, data_dir: DIR/data}
processors:
  - name: gen
    type: GenerateFlowFile
    properties: {file_size: lots}
  - name: gen
    type: NoSuchThing
`)
	var stdout, stderr bytes.Buffer
	require.Equal(t, 1, run([]string{"validate", bad}, &stdout, &stderr))
	require.Contains(t, stderr.String(), bad+":6:29: processors[0].properties.file_size:")
	require.Contains(t, stderr.String(), "file_size")

	stderr.Reset()
	require.Equal(t, 1, run([]string{"run", "--config", bad}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "nothing was started")
	_, err := os.Stat(filepath.Join(dir, "data"))
	require.True(t, os.IsNotExist(err), "an invalid flow creates nothing")

	// A second agent on the same data directory fails at once.
	good := writeFlow(t, dir, "good.yaml", `
agent: {id: x, data_dir: DIR/data}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 1h}
    auto_terminate: [success]
`)
	p := startAgent(t, "run", "--config", good)
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "agent running") }, 20*time.Second, 20*time.Millisecond)
	second := startAgent(t, "run", "--config", good)
	require.Equal(t, 1, second.wait(t, 10*time.Second))
	require.Contains(t, second.out.String(), "another edgeagent process is using this data directory")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 10*time.Second))
}

func TestProcessorsAndVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"processors"}, &stdout, &stderr))
	for _, typ := range []string{"GetFile", "PutFile", "GenerateFlowFile", "UpdateAttribute", "RouteOnAttribute", "LogAttribute", "MergeContent", "CompressContent"} {
		require.Contains(t, stdout.String(), typ+" — ")
	}
	require.Contains(t, stdout.String(), "input_directory")
	stdout.Reset()
	require.Equal(t, 0, run([]string{"processors", "--json"}, &stdout, &stderr))
	var docs []map[string]any
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &docs))
	require.NotEmpty(t, docs)
	stdout.Reset()
	require.Equal(t, 0, run([]string{"version"}, &stdout, &stderr))
	require.Contains(t, stdout.String(), "repository format: 1")
	require.Equal(t, 2, run([]string{"nope"}, &stdout, &stderr))
}

// TestSystemdNotifyAndMetrics runs the agent as systemd would (Type=notify,
// WatchdogSec=1s): READY=1 once the flow runs, keep-alives, RELOADING=1 and
// READY=1 around a reload (a refused one too), STOPPING=1 on SIGTERM; and
// /metrics in the Prometheus text format while the flow runs.
func TestSystemdNotifyAndMetrics(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "1000000") // a keep-alive every 500ms
	t.Setenv("WATCHDOG_PID", "")
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	// next returns the next notification that is not a keep-alive,
	// counting the keep-alives seen on the way.
	keepAlives := 0
	next := func() string {
		t.Helper()
		for {
			select {
			case m := <-msgs:
				if m == "WATCHDOG=1" {
					keepAlives++
					continue
				}
				return m
			case <-time.After(10 * time.Second):
				t.Fatal("no notification within 10s")
			}
		}
	}

	flow := `
agent: {id: notify, data_dir: DIR/data, http: ADDR}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 50ms}
    properties: {file_size: 10B}
    auto_terminate: [success]
`
	p, addr, _ := startAgentOnFreePort(t, "notify", func(addr string) string {
		return writeFlow(t, dir, "flow.yaml", strings.ReplaceAll(flow, "ADDR", addr))
	})
	require.Equal(t, "READY=1\nSTATUS=flow running", next())

	// Metrics while the flow runs.
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") &&
			strings.Contains(string(b), "edgeagent_status_up 1") &&
			strings.Contains(string(b), `edgeagent_processor_flowfiles_out_total{processor="gen",type="GenerateFlowFile"}`)
	}, 10*time.Second, 100*time.Millisecond)

	// A valid reload and a refused one: RELOADING=1, then READY=1 again.
	writeFlow(t, dir, "flow.yaml", strings.ReplaceAll(strings.ReplaceAll(flow, "ADDR", addr), "50ms", "100ms"))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.True(t, strings.HasPrefix(next(), "RELOADING=1\nMONOTONIC_USEC="))
	require.Equal(t, "READY=1\nSTATUS=flow running", next())
	writeFlow(t, dir, "flow.yaml", strings.ReplaceAll(flow, "ADDR", addr)+"\nbogus_key: 1\n")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.True(t, strings.HasPrefix(next(), "RELOADING=1\nMONOTONIC_USEC="))
	require.Equal(t, "READY=1\nSTATUS=flow running", next())

	time.Sleep(1200 * time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, "STOPPING=1\nSTATUS=draining", next())
	require.Equal(t, 0, p.wait(t, 15*time.Second))
	require.GreaterOrEqual(t, keepAlives, 2, "keep-alives every WatchdogSec/2 while the flow runs")
}

func TestDemoRunsAndReports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for a few seconds")
	}
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"demo", "--dir", dir, "--duration", "4s", "--http", ""}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	out := stdout.String()
	require.Contains(t, out, "alert files")
	require.Regexp(t, `MQTT: [1-9][0-9]* alerts published \(SEND after PUBACK\), [1-9][0-9]* received`, out)
	require.Contains(t, out, "lineage of the last batch file")
	require.Contains(t, out, "SEND")
}

// TestC2RestartReexecs pushes a RESTART operation from a test C2 server: the
// agent acknowledges it, drains, and runs again in the same process.
func TestC2RestartReexecs(t *testing.T) {
	var mu sync.Mutex
	var acks []string
	sent := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/acknowledge"):
			acks = append(acks, string(b))
			w.WriteHeader(http.StatusOK)
		case !sent:
			sent = true
			fmt.Fprint(w, `{"requestedOperations":[{"identifier":"r1","operation":"RESTART"}]}`)
		default:
			fmt.Fprint(w, `{}`)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	flow := writeFlow(t, dir, "flow.yaml", `
agent:
  id: restarts
  data_dir: DIR/data
  c2: {protocol: http, url: "`+srv.URL+`/c2/heartbeat", heartbeat_period: 100ms, allow: [restart]}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 1h}
    auto_terminate: [success]
`)
	p := startAgent(t, "run", "--config", flow)
	require.Eventually(t, func() bool {
		return strings.Contains(p.out.String(), "restarting (C2 restart operation)") &&
			strings.Count(p.out.String(), "agent running") >= 2
	}, 30*time.Second, 50*time.Millisecond, "the agent drained and came back in the same process")
	mu.Lock()
	require.NotEmpty(t, acks)
	require.Contains(t, acks[0], "FULLY_APPLIED")
	mu.Unlock()
	select {
	case <-p.done:
		t.Fatal("the process exited instead of re-executing")
	default:
	}
	pid := p.cmd.Process.Pid
	t.Logf("agent %d output:\n%s", pid, p.out.String())
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 15*time.Second))
}
