package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/engine"
	"edgeagent.dev/processors/all"
	"edgeagent.dev/transport/pulsar"
	"edgeagent.dev/transport/pulsar/pulsartest"
)

// requirePulsarProcessors fails when processors/all lacks the Pulsar
// processors (the agent child process uses that registry).
func requirePulsarProcessors(t *testing.T) {
	t.Helper()
	for _, typ := range []string{"PublishPulsar", "ConsumePulsar"} {
		_, ok := all.Registry().Lookup(typ)
		require.True(t, ok, "%s is not registered in processors/all", typ)
	}
}

// queuesDrained reports whether the agent's HTTP API shows every queue empty.
func queuesDrained(t *testing.T, addr string) bool {
	var st engine.Status
	if getJSON(t, "http://"+addr+"/api/status", &st) != nil || len(st.Queues) == 0 {
		return false
	}
	for _, q := range st.Queues {
		if q.Count != 0 {
			return false
		}
	}
	return true
}

// TestPulsarPublishSurvivesBrokerRestartsAndAgentCrash moves 20,000 files
// through GetFile -> PublishPulsar while the test broker is restarted twice
// and the agent is killed with SIGKILL once, with sends on the wire whose
// receipts it never processed (a run of 500 in batches of 50). Every file
// must be at the broker. A flowfile
// stored twice is accepted only where the broker's de-duplication could not
// apply, and each kind is counted: a re-send (same sequence ID, alone in its
// entry) of a message that was a later member of a stored batch (the broker
// records only a batch's first ID), or a flowfile given a new sequence ID.
// Files GetFile picked up twice (a crash between its commit and deleting
// the file) are different flowfiles, counted separately.
func TestPulsarPublishSurvivesBrokerRestartsAndAgentCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test takes a while")
	}
	requirePulsarProcessors(t)
	const n = 20000
	b := pulsartest.Start(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	require.NoError(t, os.MkdirAll(in, 0o750))
	for i := range n {
		name := fmt.Sprintf("f%05d.dat", i)
		require.NoError(t, os.WriteFile(filepath.Join(in, name), []byte(name+strings.Repeat(".", 100)), 0o600))
	}
	stored := func() int { return len(b.Messages("crash")) }
	p, addr, flow := startAgentOnFreePort(t, "pulsar-crash", func(addr string) string {
		return writeFlow(t, dir, "flow.yaml", strings.NewReplacer("URL", b.URL(), "ADDR", addr).Replace(`
agent: {id: pulsar-crash, data_dir: DIR/data, http: ADDR, log: {level: info}}
processors:
  - name: get
    type: GetFile
    schedule: {yield: 20ms}
    properties: {input_directory: DIR/in, batch_size: 500}
  - name: publish
    type: PublishPulsar
    properties: {service_url: "URL", topic: crash, properties: filename, max_in_flight: 500, batching_max_messages: 50, operation_timeout: 5s, connection_timeout: 2s}
    auto_terminate: [success]
  - name: failed
    type: PutFile
    properties: {directory: DIR/failed}
    auto_terminate: [success, failure]
connections:
  - {from: get, relationship: success, to: publish, max_count: 2000}
  - {from: publish, relationship: failure, to: failed}
`))
	})
	for i, at := range []int{n / 5, 2 * n / 5} {
		require.Eventually(t, func() bool { return stored() >= at }, 60*time.Second, 5*time.Millisecond)
		b.Restart()
		t.Logf("broker restart %d at %d stored messages", i+1, stored())
	}

	// Slow the broker down so that each send waits in it, wait until one
	// does (nothing stored for a while), freeze the agent, let the broker
	// store that send (its receipt goes unread), then kill the agent: those
	// flowfiles are at the broker but still queued in the agent.
	require.Eventually(t, func() bool { return stored() >= 3*n/5 }, 60*time.Second, 5*time.Millisecond)
	b.DelaySends(2 * time.Second)
	last, since := stored(), time.Now()
	require.Eventually(t, func() bool {
		if now := stored(); now != last {
			last, since = now, time.Now()
		}
		return time.Since(since) > 300*time.Millisecond
	}, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGSTOP))
	require.Eventually(t, func() bool { return stored() > last }, 10*time.Second, 10*time.Millisecond,
		"the broker stores what the frozen agent had sent")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.wait(t, 10*time.Second)
	b.DelaySends(0)
	dropsBefore := b.DuplicatesDropped()
	t.Logf("agent killed at %d stored messages", stored())

	p = startAgent(t, "run", "--config", flow)
	require.Eventually(t, func() bool { return countFiles(t, in) == 0 && queuesDrained(t, addr) }, 90*time.Second, 50*time.Millisecond,
		"the restarted agent drains everything")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 20*time.Second))
	require.Contains(t, p.out.String(), "will be re-sent alone under their sequence IDs", "the crash left sends to recover")
	require.Zero(t, countFiles(t, filepath.Join(dir, "failed")))

	msgs := b.Messages("crash")
	byID := map[string][]pulsartest.Message{}
	files := map[string]map[string]bool{} // filename -> flowfile IDs
	for _, m := range msgs {
		id, name := m.Properties[pulsar.PropertyFlowFileID], m.Properties["filename"]
		require.NotEmpty(t, id)
		byID[id] = append(byID[id], m)
		if files[name] == nil {
			files[name] = map[string]bool{}
		}
		files[name][id] = true
	}
	require.Len(t, files, n, "every file is at the broker")
	var batchTail, renumbered, reingested int
	for id, ms := range byID {
		for _, m := range ms[1:] {
			switch {
			case m.SequenceID != ms[0].SequenceID:
				renumbered++
			case ms[0].BatchSize > 1 && !strings.HasSuffix(ms[0].ID, ":0") && m.BatchSize == 1:
				batchTail++
			default:
				t.Errorf("flowfile %s stored twice where de-duplication applies: %+v and %+v", id, ms[0], m)
			}
		}
	}
	for _, ids := range files {
		reingested += len(ids) - 1
	}
	require.Positive(t, b.DuplicatesDropped()-dropsBefore, "re-sends after the crash were dropped by the broker")
	t.Logf("%d files, %d messages stored; broker dropped %d duplicate sends (%d after the crash); duplicates stored: %d later members of a batch stored before the crash, %d re-numbered, %d files picked up twice by GetFile",
		n, len(msgs), b.DuplicatesDropped(), b.DuplicatesDropped()-dropsBefore, batchTail, renumbered, reingested)
	require.Zero(t, renumbered, "nothing was overtaken in this flow")
	require.LessOrEqual(t, batchTail, 49, "at most the rest of one batch (batching_max_messages 50) is stored twice")
	require.LessOrEqual(t, reingested, 500, "at most one GetFile batch is picked up twice")
}

// TestPulsarConsumeSurvivesAgentCrash kills the agent with SIGKILL while
// ConsumePulsar -> PutFile moves 2,000 messages: after the restart every
// message is in the output; redeliveries (committed, acknowledgement not yet
// sent when the agent died) are counted.
func TestPulsarConsumeSurvivesAgentCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test takes a while")
	}
	requirePulsarProcessors(t)
	const m = 2000
	b := pulsartest.Start(t)
	c, err := pulsar.NewClient(pulsar.Options{ServiceURL: b.URL()})
	require.NoError(t, err)
	defer c.Close()
	ctx := t.Context()
	prod, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "in", BatchingMaxMessages: 50})
	require.NoError(t, err)
	var pend []*pulsar.Pending
	for i := range m {
		pend = append(pend, prod.SendAsync(ctx, pulsar.Message{Payload: fmt.Appendf(nil, "m%05d", i)}))
	}
	for _, pd := range pend {
		_, err := pd.Wait(ctx)
		require.NoError(t, err)
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	p, addr, flow := startAgentOnFreePort(t, "pulsar-consume", func(addr string) string {
		return writeFlow(t, dir, "flow.yaml", strings.NewReplacer("URL", b.URL(), "ADDR", addr).Replace(`
agent: {id: pulsar-consume, data_dir: DIR/data, http: ADDR, log: {level: warn}}
processors:
  - name: consume
    type: ConsumePulsar
    properties: {service_url: "URL", topics: in, subscription: edge, initial_position: earliest, batch_size: 100, receiver_queue_size: 50}
  - name: put
    type: PutFile
    schedule: {concurrency: 2}
    properties: {directory: DIR/out, conflict_resolution: replace}
    auto_terminate: [success]
connections:
  - {from: consume, relationship: success, to: put, max_count: 5000}
  - {from: put, relationship: failure, to: put}
`))
	})
	// Kill it while it consumes: a third of the messages acknowledged.
	require.Eventually(t, func() bool { n := b.Backlog("in", "edge"); return n >= 0 && n <= 2*m/3 }, 60*time.Second, time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.wait(t, 10*time.Second)
	t.Logf("agent killed with %d files written, broker backlog %d", countFiles(t, out), b.Backlog("in", "edge"))

	p = startAgent(t, "run", "--config", flow)
	require.Eventually(t, func() bool { return b.Backlog("in", "edge") == 0 && queuesDrained(t, addr) }, 60*time.Second, 50*time.Millisecond,
		"the restarted agent consumes and acknowledges everything")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 20*time.Second))

	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	seen := map[string]int{}
	for _, e := range entries {
		body, err := os.ReadFile(filepath.Join(out, e.Name()))
		require.NoError(t, err)
		seen[string(body)]++
	}
	require.Len(t, seen, m, "no message lost")
	redelivered := len(entries) - m
	t.Logf("%d messages, %d flowfiles written: %d redeliveries (committed before the kill, acknowledgement not yet sent)", m, len(entries), redelivered)
	require.LessOrEqual(t, redelivered, 500, "redeliveries are bounded by what was in flight")
}

// TestPulsarAgentTLSAndToken runs PublishPulsar over TLS with token
// authentication against the test broker; with a wrong token the agent does
// not start, says why, and never prints the token.
func TestPulsarAgentTLSAndToken(t *testing.T) {
	requirePulsarProcessors(t)
	const good, wrong = "eyJhbGciOiJIUzI1NiJ9.agent-good-token", "eyJhbGciOiJIUzI1NiJ9.agent-WRONG-token"
	b := pulsartest.Start(t, pulsartest.WithTLS(), pulsartest.WithToken(good))
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "good"), []byte(good+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wrong"), []byte(wrong+"\n"), 0o600))
	flowFor := func(name, tokenFile string) string {
		return writeFlow(t, dir, name+".yaml", strings.NewReplacer("URL", b.URL(), "CA", b.TLSFiles().CAFile, "TOKEN", tokenFile, "NAME", name).Replace(`
agent: {id: pulsar-tls, data_dir: DIR/data-NAME, log: {level: debug}}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 50ms}
    properties: {batch_size: 10, file_size: 64B}
  - name: publish
    type: PublishPulsar
    properties: {service_url: "URL", topic: secure, tls_ca_file: CA, token_file: TOKEN, operation_timeout: 3s, connection_timeout: 2s}
    auto_terminate: [success, failure]
connections:
  - {from: gen, relationship: success, to: publish}
`))
	}
	p := startAgent(t, "run", "--config", flowFor("good", filepath.Join(dir, "good")))
	require.Eventually(t, func() bool { return len(b.Messages("secure")) >= 20 }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 20*time.Second))
	require.NotContains(t, p.out.String(), good, "the token never appears in the logs, even at debug level")

	bad := startAgent(t, "run", "--config", flowFor("bad", filepath.Join(dir, "wrong")))
	require.Equal(t, 1, bad.wait(t, 30*time.Second))
	stderr := bad.out.String()
	require.Contains(t, stderr, "starting processor publish (PublishPulsar)")
	require.Contains(t, stderr, "refused authentication")
	require.Contains(t, stderr, "Unable to authenticate")
	require.NotContains(t, stderr, wrong)
	require.NotContains(t, stderr, good)
	require.Positive(t, b.AuthFailures())
}
