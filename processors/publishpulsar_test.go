package processors_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
	"edgeagent.dev/transport/pulsar"
	"edgeagent.dev/transport/pulsar/pulsartest"
)

// pulsarProps are PublishPulsar properties with short timeouts for tests.
func pulsarProps(b *pulsartest.Broker, extra map[string]string) map[string]string {
	p := map[string]string{
		"service_url": b.URL(), "topic": "out",
		"operation_timeout": "5s", "connection_timeout": "2s",
	}
	maps.Copy(p, extra)
	return p
}

// drain triggers until the input queue is empty.
func drain(t *testing.T, r *enginetest.Runner, d time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { _ = r.Trigger(); return r.InputCount() == 0 }, d, 5*time.Millisecond)
}

// byFlowFile groups a topic's stored messages by the flowfile ID they carry.
func byFlowFile(t *testing.T, msgs []pulsartest.Message) map[string][]pulsartest.Message {
	t.Helper()
	out := map[string][]pulsartest.Message{}
	for _, m := range msgs {
		id := m.Properties[pulsar.PropertyFlowFileID]
		require.NotEmpty(t, id, "every message carries its flowfile ID")
		out[id] = append(out[id], m)
	}
	return out
}

func TestPublishPulsarDeliversAndRecordsSend(t *testing.T) {
	b := pulsartest.Start(t)
	r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), pulsarProps(b, map[string]string{
		"topic": "sensors-${kind}", "properties": "kind|uuid", "max_in_flight": "64",
	}))
	ids := map[string]bool{}
	for i := range 300 {
		ids[r.Enqueue(fmt.Appendf(nil, "m%03d", i), map[string]string{"kind": "temp", "secret": "s"}).String()] = true
	}
	drain(t, r, 20*time.Second)
	require.Len(t, r.Output("success"), 300)
	require.Empty(t, r.Output("failure"))

	msgs := b.Messages("sensors-temp")
	require.Len(t, msgs, 300)
	batched := false
	for i, m := range msgs {
		id := m.Properties[pulsar.PropertyFlowFileID]
		require.True(t, ids[id])
		require.Equal(t, id, m.Key, "the key defaults to the flowfile ID")
		require.Equal(t, map[string]string{"kind": "temp", "uuid": id, pulsar.PropertyFlowFileID: id}, m.Properties)
		require.Equal(t, "test-agent.under-test", m.ProducerName, "default producer name: agent.id and processor name")
		require.Equal(t, fmt.Sprintf("m%03d", i), string(m.Payload), "queue order is kept")
		if i > 0 {
			require.Greater(t, m.SequenceID, msgs[i-1].SequenceID, "explicit sequence IDs increase")
		}
		batched = batched || m.BatchSize > 1
	}
	require.True(t, batched, "batching is on by default")
	require.Greater(t, msgs[0].SequenceID, uint64(time.Now().Add(-time.Hour).UnixMicro()), "new IDs start above the clock")

	sends := 0
	for _, e := range r.Events() {
		if e.Type == provenance.EventSend {
			sends++
			require.Equal(t, b.URL()+"/persistent://public/default/sensors-temp", e.TransitURI)
			require.Contains(t, e.Details, "sequence_id=")
		}
	}
	require.Equal(t, 300, sends)
}

func TestPublishPulsarKeyAndCompression(t *testing.T) {
	for _, codec := range []string{"none", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			b := pulsartest.Start(t)
			r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), pulsarProps(b, map[string]string{
				"compression": codec, "key": "${kind}-key", "batching": "false",
			}))
			payload := bytes.Repeat([]byte("compressible sensor record "), 40)
			for range 5 {
				r.Enqueue(payload, map[string]string{"kind": "k"})
			}
			drain(t, r, 10*time.Second)
			msgs := b.Messages("out")
			require.Len(t, msgs, 5)
			for _, m := range msgs {
				require.Equal(t, codec, m.Compression)
				require.Equal(t, payload, m.Payload)
				require.Equal(t, "k-key", m.Key)
				require.Equal(t, 1, m.BatchSize)
			}
		})
	}
}

func TestPublishPulsarBadTopicOrKeyGoesToFailure(t *testing.T) {
	b := pulsartest.Start(t)
	for _, tc := range []struct {
		name, topic, key, kind, want string
	}{
		{"topic expression fails", "t-${kind:toNumber()}", "", "x", "evaluating topic"},
		{"topic with two parts", "${kind}/x", "", "a", "use name, tenant/namespace/name"},
		{"topic with a space", "t-${kind}", "", "a b", "contains a space"},
		{"empty topic", "${kind}", "", "", "the topic is empty"},
		{"key expression fails", "t", "${kind:toNumber()}", "x", "evaluating key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			props := pulsarProps(b, map[string]string{"topic": tc.topic})
			if tc.key != "" {
				props["key"] = tc.key
			}
			r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), props)
			r.Enqueue([]byte("x"), map[string]string{"kind": tc.kind})
			drain(t, r, 10*time.Second)
			out := r.Output("failure")
			require.Len(t, out, 1)
			require.Contains(t, out[0].FlowFile.Attributes[edgeagent.AttrErrorMessage], tc.want)
			require.Empty(t, r.Output("success"))
		})
	}
	_, err := enginetest.TryNewRunner(t, processors.PublishPulsarSpec(), pulsarProps(b, map[string]string{"topic": "a/b"}))
	require.ErrorContains(t, err, "property topic")
	_, err = enginetest.TryNewRunner(t, processors.PublishPulsarSpec(), pulsarProps(b, map[string]string{"service_url": "http://x:1"}))
	require.ErrorContains(t, err, "pulsar://")
	_, err = enginetest.TryNewRunner(t, processors.PublishPulsarSpec(), pulsarProps(b, map[string]string{"tls_ca_file": "/ca.pem"}))
	require.ErrorContains(t, err, "pulsar+ssl://")
}

func TestPublishPulsarKeepsFlowFilesWhileBrokerIsDown(t *testing.T) {
	b := pulsartest.Start(t)
	r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), pulsarProps(b, map[string]string{
		"operation_timeout": "1s", "connection_timeout": "500ms",
	}))
	require.NoError(t, r.Trigger()) // starts: the producer is created
	b.Stop()
	for range 20 {
		r.Enqueue([]byte("x"), nil)
	}
	require.NoError(t, r.Trigger())
	require.True(t, r.Yielded())
	require.Equal(t, 20, r.InputCount(), "nothing leaves the queue without a receipt")
	require.Empty(t, r.Output("success"))
	require.Empty(t, r.Output("failure"))
	b.Restart()
	drain(t, r, 30*time.Second)
	require.Len(t, r.Output("success"), 20)
	require.Len(t, byFlowFile(t, b.Messages("out")), 20)
	require.Len(t, b.Messages("out"), 20, "re-sent after the reconnection, stored once")
}

// The broker restarts twice and fails sends while runs go on: every
// flowfile is stored exactly once (the client re-sends with the same
// sequence IDs and the broker drops what it already had).
func TestPublishPulsarSurvivesBrokerRestartsWithoutDuplicates(t *testing.T) {
	const n = 3000
	b := pulsartest.Start(t)
	r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), pulsarProps(b, map[string]string{"max_in_flight": "200"}))
	for i := range n {
		r.Enqueue(fmt.Appendf(nil, "%05d", i), nil)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(60 * time.Second)
		for r.InputCount() > 0 && time.Now().Before(deadline) {
			_ = r.Trigger()
		}
	}()
	for _, at := range []int{n / 4, n / 2} {
		require.Eventually(t, func() bool { return len(b.Messages("out")) >= at }, 30*time.Second, time.Millisecond)
		b.Restart()
	}
	b.FailSends(2)
	<-done
	require.Zero(t, r.InputCount())
	require.Len(t, r.Output("success"), n)
	got := byFlowFile(t, b.Messages("out"))
	require.Len(t, got, n)
	for id, ms := range got {
		require.Len(t, ms, 1, "flowfile %s stored more than once", id)
	}
	t.Logf("broker dropped %d duplicate sends, answered %d send errors", b.DuplicatesDropped(), b.SendErrors())
}

// pulsarHarness builds PublishPulsar on an existing runner's repository and
// state directory: a new process after a crash of the runner's one.
func pulsarHarness(t *testing.T, r *enginetest.Runner, props map[string]string, log *slog.Logger) *engine.Harness {
	t.Helper()
	spec := processors.PublishPulsarSpec()
	cfg, err := enginetest.BuildConfig(&spec, props, filepath.Join(r.Dir(), "state"), log)
	require.NoError(t, err)
	h, err := engine.NewHarness(r.Repo, &spec, cfg, spec.Relationships, log)
	require.NoError(t, err)
	require.NoError(t, h.Start(context.Background()))
	t.Cleanup(func() { _ = h.Stop(context.Background()) })
	return h
}

// sendWithoutCommit runs one OnTrigger whose session is never committed,
// then stops the processor: the broker got the messages, the agent "died"
// before its commit.
func sendWithoutCommit(t *testing.T, h *engine.Harness) {
	t.Helper()
	s := h.Session()
	require.NoError(t, h.Processor().OnTrigger(context.Background(), h.Context(), s))
	s.Rollback()
	require.NoError(t, h.Stop(context.Background()))
}

// The agent dies after the broker stored a run's messages, before its
// commit. If it had read the receipts, the restart sends nothing again. If
// not, the flowfiles are re-sent alone under their journaled sequence IDs:
// unbatched, the broker drops every re-send; batched, it drops all but the
// later messages of the last batch it stored (it records only a batch's
// first ID): those are the duplicates de-duplication cannot catch.
func TestPublishPulsarCrashBeforeCommitReusesSequenceIDs(t *testing.T) {
	for _, tc := range []struct {
		batching, receiptsRead bool
	}{{false, true}, {true, true}, {false, false}, {true, false}} {
		t.Run(fmt.Sprintf("batching=%v,receipts_read=%v", tc.batching, tc.receiptsRead), func(t *testing.T) {
			const n = 200
			b := pulsartest.Start(t)
			props := pulsarProps(b, map[string]string{"batching": fmt.Sprint(tc.batching), "max_in_flight": "500", "operation_timeout": "1s"})
			r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), props)
			for i := range n {
				r.Enqueue(fmt.Appendf(nil, "%03d", i), nil)
			}
			log := slog.New(slog.DiscardHandler)
			h1 := pulsarHarness(t, r, props, log)
			if !tc.receiptsRead {
				// The run stops waiting (operation_timeout, 1s) before the
				// first receipt; the process dies after the broker stored.
				// The delay leaves the run 2s to return after its timeout
				// (a loaded machine): a run that returned after the first
				// receipt would have read it, and later SENDs read before
				// DelaySends(0) would wait too.
				b.DelaySends(3 * time.Second)
			}
			s := h1.Session()
			require.NoError(t, h1.Processor().OnTrigger(context.Background(), h1.Context(), s))
			b.DelaySends(0)
			require.Eventually(t, func() bool { return len(b.Messages("out")) == n }, 10*time.Second, 5*time.Millisecond,
				"the broker stored everything before the crash")
			s.Rollback()
			require.NoError(t, h1.Stop(context.Background()))
			first := b.Messages("out")
			// The broker drops a re-send at or below the first ID of the
			// last batch it stored.
			last := b.LastSequenceID("out", "test-agent.under-test")
			undetectable := 0
			for _, m := range first {
				if int64(m.SequenceID) > last {
					undetectable++
				}
			}

			h := pulsarHarness(t, r, props, log)
			require.Eventually(t, func() bool {
				_ = h.Trigger(context.Background())
				return r.InputCount() == 0
			}, 20*time.Second, 5*time.Millisecond)
			require.Len(t, r.Output("success"), n)
			all := b.Messages("out")
			got := byFlowFile(t, all)
			require.Len(t, got, n, "every flowfile at the broker")
			dups := len(all) - n
			for _, ms := range got {
				for _, m := range ms[1:] {
					require.Equal(t, ms[0].SequenceID, m.SequenceID, "a re-send keeps its sequence ID")
					require.Equal(t, 1, m.BatchSize, "a re-send is alone in its entry")
				}
			}
			switch {
			case tc.receiptsRead:
				require.Zero(t, dups, "acknowledged before the crash: not sent again")
				require.Zero(t, b.DuplicatesDropped())
			case !tc.batching:
				require.Zero(t, dups)
				require.Equal(t, n, b.DuplicatesDropped(), "the broker dropped every re-send")
			default:
				require.Equal(t, undetectable, dups, "duplicates only where a batch hid the ID from de-duplication")
				require.Equal(t, n-undetectable, b.DuplicatesDropped(), "the broker dropped every other re-send")
			}
			t.Logf("%d flowfiles: %d re-sends dropped by the broker, %d duplicates stored", n, b.DuplicatesDropped(), dups)
		})
	}
}

// A flowfile whose journaled ID was overtaken by a later epoch (the broker's
// last ID is now above it) must not be re-sent under that ID: the broker
// would drop it as a duplicate although it never stored it.
func TestPublishPulsarOvertakenSequenceIDsAreRenewed(t *testing.T) {
	b := pulsartest.Start(t)
	props := pulsarProps(b, map[string]string{"batching": "false", "operation_timeout": "1s", "connection_timeout": "500ms"})
	r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), props)
	log := slog.New(slog.DiscardHandler)
	var a []string
	for i := range 10 {
		a = append(a, r.Enqueue(fmt.Appendf(nil, "a%d", i), nil).String())
	}
	// Run 1: A is journaled and handed to the producer while the broker
	// is down; the process dies before anything is stored.
	h1 := pulsarHarness(t, r, props, log)
	b.Stop()
	sendWithoutCommit(t, h1)
	b.Restart()
	require.Empty(t, b.Messages("out"))

	// Run 2: new flowfiles C are sent first (A is held by another
	// session), then the process dies again before A is sent.
	h2 := pulsarHarness(t, r, props, log)
	hold := h2.Session()
	require.Len(t, hold.GetBatch(10), 10)
	var c []string
	for i := range 5 {
		c = append(c, r.Enqueue(fmt.Appendf(nil, "c%d", i), nil).String())
	}
	require.NoError(t, h2.Trigger(context.Background()))
	require.Len(t, b.Messages("out"), 5)
	hold.Rollback()
	require.NoError(t, h2.Stop(context.Background()))

	// Run 3: A's records are older than C's IDs: A gets new IDs.
	h3 := pulsarHarness(t, r, props, log)
	require.Eventually(t, func() bool {
		_ = h3.Trigger(context.Background())
		return r.InputCount() == 0
	}, 20*time.Second, 5*time.Millisecond)
	got := byFlowFile(t, b.Messages("out"))
	for _, id := range slices.Concat(a, c) {
		require.Len(t, got[id], 1, "flowfile %s stored exactly once", id)
	}
	require.Len(t, got, 15)
}

// captureLog is a slog handler target safe for concurrent writes.
type captureLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *captureLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *captureLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func TestPublishPulsarTLSAndToken(t *testing.T) {
	const token = "eyJhbGciOiJIUzI1NiJ9.good-token-text"
	b := pulsartest.Start(t, pulsartest.WithMutualTLS(), pulsartest.WithToken(token))
	files := b.TLSFiles()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	props := pulsarProps(b, map[string]string{
		"tls_ca_file": files.CAFile, "tls_cert_file": files.ClientCertFile, "tls_key_file": files.ClientKeyFile,
		"token_file": tokenFile, "operation_timeout": "2s", "connection_timeout": "1s",
	})
	r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), props)
	r.Enqueue([]byte("over tls"), nil)
	drain(t, r, 15*time.Second)
	require.Equal(t, "over tls", string(b.Messages("out")[0].Payload))
	require.True(t, strings.HasPrefix(b.URL(), "pulsar+ssl://"))

	t.Run("token from the environment", func(t *testing.T) {
		t.Setenv("EDGE_TEST_PULSAR_TOKEN", token)
		p := maps.Clone(props)
		delete(p, "token_file")
		p["token_env"] = "EDGE_TEST_PULSAR_TOKEN"
		p["topic"] = "env" // the first runner's producer still holds "out"
		r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), p)
		r.Enqueue([]byte("env"), nil)
		drain(t, r, 15*time.Second)
	})

	t.Run("wrong token", func(t *testing.T) {
		const wrong = "eyJhbGciOiJIUzI1NiJ9.WRONG-token-text"
		bad := filepath.Join(dir, "bad")
		require.NoError(t, os.WriteFile(bad, []byte(wrong), 0o600))
		p := maps.Clone(props)
		p["token_file"] = bad
		p["topic"] = "wrong"
		logs := &captureLog{}
		log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), p)
		spec := processors.PublishPulsarSpec()
		cfg, err := enginetest.BuildConfig(&spec, p, filepath.Join(r.Dir(), "state2"), log)
		require.NoError(t, err)
		h, err := engine.NewHarness(r.Repo, &spec, cfg, spec.Relationships, log)
		require.NoError(t, err)
		err = h.Start(context.Background())
		require.ErrorIs(t, err, pulsar.ErrAuthentication, "a refused token stops the flow from starting")
		require.Contains(t, err.Error(), "Unable to authenticate")
		require.NoError(t, h.Stop(context.Background()))
		for _, s := range []string{wrong, token} {
			require.NotContains(t, err.Error(), s)
			require.NotContains(t, logs.String(), s)
		}
	})

	t.Run("untrusted CA", func(t *testing.T) {
		p := maps.Clone(props)
		p["tls_ca_file"] = pulsartest.NewTLSFiles(t).CAFile
		p["topic"] = "untrusted"
		logs := &captureLog{}
		log := slog.New(slog.NewTextHandler(logs, nil))
		r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), p)
		r.Enqueue([]byte("x"), nil)
		h := pulsarHarness(t, r, p, log) // starts: the broker is not trusted, not a configuration error
		require.NoError(t, h.Trigger(context.Background()))
		require.Equal(t, 1, r.InputCount(), "kept while the broker cannot be verified")
		require.Contains(t, logs.String(), "certificate")
	})
}

// With a lost state directory and a broker that holds higher sequence IDs
// for the producer name, new messages are acknowledged as duplicates
// without being stored. They are not taken as delivered: the counter jumps
// ahead and they are sent again.
func TestPublishPulsarCounterBehindBrokerIsNotALoss(t *testing.T) {
	b := pulsartest.Start(t)
	c, err := pulsar.NewClient(pulsar.Options{ServiceURL: b.URL()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "out", Name: "test-agent.under-test"})
	require.NoError(t, err)
	high := uint64(time.Now().Add(24 * time.Hour).UnixMicro()) // "sent earlier", with a clock ahead of ours
	_, err = other.Send(ctx, pulsar.Message{FlowFileID: "earlier", Payload: []byte("earlier"), SequenceID: high})
	require.NoError(t, err)
	other.Close()
	c.Close()

	r := enginetest.NewRunner(t, processors.PublishPulsarSpec(), pulsarProps(b, nil))
	for i := range 20 {
		r.Enqueue(fmt.Appendf(nil, "%d", i), nil)
	}
	drain(t, r, 20*time.Second)
	require.Len(t, r.Output("success"), 20)
	got := byFlowFile(t, b.Messages("out"))
	require.Len(t, got, 21, "every flowfile stored, after the jump")
	require.Positive(t, b.DuplicatesDropped(), "the first attempt was dropped by the broker")
	for id, ms := range got {
		require.Len(t, ms, 1, id)
		if id != "earlier" {
			require.Greater(t, ms[0].SequenceID, high)
		}
	}
}
