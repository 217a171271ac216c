package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/processors/all"
	"edgeagent.dev/provenance"
)

// gate is a test processor that passes flowfiles on (batch of `batch`)
// only while open, and records how many triggers run at once.
type gate struct {
	open       atomic.Bool
	batch      int
	running    atomic.Int32
	maxRunning atomic.Int32
	hold       time.Duration
	fail       atomic.Bool
}

func (g *gate) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		m := g.maxRunning.Load()
		if n <= m || g.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	if !g.open.Load() {
		pc.Yield()
		return nil
	}
	ffs := s.GetBatch(g.batch)
	if len(ffs) == 0 {
		return nil
	}
	if g.hold > 0 {
		time.Sleep(g.hold)
	}
	if g.fail.Load() {
		return errors.New("downstream refused")
	}
	for _, ff := range ffs {
		s.Transfer(ff, edgeagent.RelSuccess)
	}
	return nil
}

// registry returns the real processors plus a Gate type bound to g.
func registry(g *gate) *edgeagent.Registry {
	reg := all.Registry()
	reg.MustRegister(edgeagent.ProcessorSpec{
		Type: "Gate", Summary: "test gate", Input: edgeagent.InputRequired,
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		New:           func(*edgeagent.ProcessorConfig) (edgeagent.Processor, error) { return g, nil },
	})
	return reg
}

type running struct {
	t    *testing.T
	repo *buffer.Repo
	eng  *engine.Engine
	dir  string
}

// start parses flowYAML (with DATA replaced by a temporary directory),
// opens the repository and starts the engine.
func start(t *testing.T, reg *edgeagent.Registry, flowYAML string) *running {
	t.Helper()
	dir := t.TempDir()
	flowYAML = strings.ReplaceAll(flowYAML, "DATA", dir)
	flow, err := config.Parse(filepath.Join(dir, "flow.yaml"), []byte(flowYAML), reg)
	require.NoError(t, err)
	repo, err := buffer.Open(flow.Agent.DataDir, buffer.Options{NoSync: true})
	require.NoError(t, err)
	eng, err := engine.New(flow, repo, nil)
	require.NoError(t, err)
	require.NoError(t, eng.Start(context.Background()))
	r := &running{t: t, repo: repo, eng: eng, dir: dir}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, eng.Stop(ctx))
		require.NoError(t, repo.Close())
	})
	return r
}

func (r *running) queue(name string) engine.QueueStatus {
	qs, err := r.eng.Queues()
	require.NoError(r.t, err)
	for _, q := range qs {
		if q.Name == name {
			return q
		}
	}
	r.t.Fatalf("no queue %s", name)
	return engine.QueueStatus{}
}

func (r *running) events() []provenance.Event {
	var evs []provenance.Event
	require.NoError(r.t, r.repo.DB().View(func(tx *bolt.Tx) error {
		var err error
		evs, err = provenance.Since(tx, time.Time{}, 0)
		return err
	}))
	return evs
}

func TestBackpressureBoundsQueueAndResumes(t *testing.T) {
	g := &gate{batch: 7}
	r := start(t, registry(g), `
agent: {id: t, data_dir: DATA/data}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 1ms}
    properties: {file_size: 16B, batch_size: 10}
  - name: gate
    type: Gate
    auto_terminate: [success]
connections:
  - {name: q, from: gen, relationship: success, to: gate, max_count: 50}
`)
	maxSeen := int64(0)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		maxSeen = max(maxSeen, r.queue("q").Count)
		time.Sleep(time.Millisecond)
	}
	q := r.queue("q")
	require.GreaterOrEqual(t, q.Count, int64(50), "the source filled the queue")
	require.LessOrEqual(t, maxSeen, int64(50+10), "a queue exceeds its threshold by at most one session's batch")
	require.True(t, q.Full)
	var gen engine.ProcessorStatus
	for _, p := range r.eng.Processors() {
		if p.Name == "gen" {
			gen = p
		}
	}
	require.True(t, gen.Backpressured)

	g.open.Store(true)
	require.Eventually(t, func() bool {
		for _, p := range r.eng.Processors() {
			if p.Name == "gate" && p.In > 200 {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "flow resumes once the queue drains")
}

func TestConcurrencyRunsTasksInParallel(t *testing.T) {
	g := &gate{batch: 1, hold: 20 * time.Millisecond}
	g.open.Store(true)
	r := start(t, registry(g), `
agent: {id: t, data_dir: DATA/data}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 1ms}
    properties: {batch_size: 20}
  - name: gate
    type: Gate
    schedule: {concurrency: 4}
    auto_terminate: [success]
connections:
  - {from: gen, relationship: success, to: gate}
`)
	_ = r
	require.Eventually(t, func() bool { return g.maxRunning.Load() == 4 }, 10*time.Second, 10*time.Millisecond)
	require.LessOrEqual(t, g.maxRunning.Load(), int32(4))
}

func TestFailurePenalizesAndYields(t *testing.T) {
	g := &gate{batch: 5}
	g.open.Store(true)
	g.fail.Store(true)
	r := start(t, registry(g), `
agent: {id: t, data_dir: DATA/data}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 1h}
    properties: {batch_size: 5}
  - name: gate
    type: Gate
    schedule: {yield: 200ms, penalty: 300ms}
    auto_terminate: [success]
connections:
  - {name: q, from: gen, relationship: success, to: gate}
`)
	require.Eventually(t, func() bool {
		for _, p := range r.eng.Processors() {
			if p.Name == "gate" && p.Failures >= 1 {
				return true
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond)
	// Nothing is lost: the flowfiles are still queued (penalized).
	require.Equal(t, int64(5), r.queue("q").Count)
	time.Sleep(150 * time.Millisecond)
	var failures int64
	for _, p := range r.eng.Processors() {
		if p.Name == "gate" {
			failures = p.Failures
			require.Contains(t, p.LastError, "downstream refused")
		}
	}
	require.LessOrEqual(t, failures, int64(2), "a failing processor yields instead of spinning")
	g.fail.Store(false)
	require.Eventually(t, func() bool { return r.queue("q").Count == 0 }, 5*time.Second, 10*time.Millisecond)
}

func TestPipelineProvenanceAndLineage(t *testing.T) {
	r := start(t, all.Registry(), `
agent: {id: lineage, data_dir: DATA/data}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 1h}
    properties: {batch_size: 3, custom_text: "hello ${uuid}"}
  - name: merge
    type: MergeContent
    properties: {min_entries: 3, max_entries: 3, demarcator: "|"}
    auto_terminate: [original, failure]
  - name: tag
    type: UpdateAttribute
    properties: {stage: tagged}
  - name: out1
    type: PutFile
    properties: {directory: DATA/out1}
    auto_terminate: [success, failure]
  - name: out2
    type: PutFile
    properties: {directory: DATA/out2}
    auto_terminate: [success, failure]
connections:
  - {from: gen, relationship: success, to: merge}
  - {from: merge, relationship: merged, to: tag}
  - {from: tag, relationship: success, to: out1}
  - {from: tag, relationship: success, to: out2}
`)
	require.Eventually(t, func() bool {
		a, _ := os.ReadDir(filepath.Join(r.dir, "out1"))
		b, _ := os.ReadDir(filepath.Join(r.dir, "out2"))
		return len(a) == 1 && len(b) == 1
	}, 10*time.Second, 10*time.Millisecond)
	var evs []provenance.Event
	require.Eventually(t, func() bool {
		evs = r.events()
		n := 0
		for _, e := range evs {
			if e.Type == provenance.EventSend {
				n++
			}
		}
		return n == 2
	}, 10*time.Second, 10*time.Millisecond, "both PutFile sessions committed")
	var created []edgeagent.ID
	types := map[provenance.EventType]int{}
	for _, e := range evs {
		types[e.Type]++
		if e.Type == provenance.EventCreate {
			created = append(created, e.FlowFileID)
			require.Equal(t, "gen", e.Component)
			require.Equal(t, "GenerateFlowFile", e.ComponentType)
			require.Equal(t, "lineage", e.Updated[edgeagent.AttrAgentID])
		}
	}
	require.Len(t, created, 3)
	require.Equal(t, 1, types[provenance.EventJoin])
	require.Equal(t, 1, types[provenance.EventClone], "fan-out to two connections clones")
	require.Equal(t, 1, types[provenance.EventAttributesModified])
	require.Equal(t, 2, types[provenance.EventSend])

	var lin *provenance.LineageGraph
	require.NoError(t, r.repo.DB().View(func(tx *bolt.Tx) error {
		var err error
		lin, err = provenance.Lineage(tx, created[0])
		return err
	}))
	// The lineage of one generated flowfile reaches the merged flowfile
	// (JOIN) and its clone (fan-out): itself and two descendants.
	require.Len(t, lin.FlowFiles, 3, "generated + merged + clone")
	sends := 0
	for _, e := range lin.Events {
		if e.Type == provenance.EventSend {
			sends++
			require.True(t, strings.HasPrefix(e.TransitURI, "file://"))
		}
	}
	require.Equal(t, 2, sends)
}

func TestDropOldestAndExpireInAFlow(t *testing.T) {
	g := &gate{batch: 100}
	r := start(t, registry(g), `
agent: {id: t, data_dir: DATA/data}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 5ms}
    properties: {batch_size: 5}
  - name: gate
    type: Gate
    auto_terminate: [success]
  - name: gate2
    type: Gate
    auto_terminate: [success]
connections:
  - {name: frames, from: gen, relationship: success, to: gate, max_count: 20, when_full: drop_oldest}
  - {name: stale, from: gen, relationship: success, to: gate2, expire_after: 300ms}
`)
	require.Eventually(t, func() bool {
		types := map[provenance.EventType]int{}
		for _, e := range r.events() {
			types[e.Type]++
		}
		return types[provenance.EventDrop] > 10 && types[provenance.EventExpire] > 10
	}, 10*time.Second, 20*time.Millisecond)
	require.LessOrEqual(t, r.queue("frames").Count, int64(20))
	require.False(t, r.queue("frames").Full, "a drop_oldest queue never stops the source")
}

func TestStopDrainsRunningSessions(t *testing.T) {
	g := &gate{batch: 10, hold: 300 * time.Millisecond}
	g.open.Store(true)
	dir := t.TempDir()
	flow, err := config.Parse(filepath.Join(dir, "f.yaml"), []byte(strings.ReplaceAll(`
agent: {id: t, data_dir: DATA/data}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 1h}
    properties: {batch_size: 10}
  - name: gate
    type: Gate
    auto_terminate: [success]
connections:
  - {name: q, from: gen, relationship: success, to: gate}
`, "DATA", dir)), registry(g))
	require.NoError(t, err)
	repo, err := buffer.Open(flow.Agent.DataDir, buffer.Options{})
	require.NoError(t, err)
	defer repo.Close()
	eng, err := engine.New(flow, repo, nil)
	require.NoError(t, err)
	require.NoError(t, eng.Start(context.Background()))
	require.Eventually(t, func() bool { return g.running.Load() == 1 }, 5*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, eng.Stop(ctx))
	qs, err := eng.Queues()
	require.NoError(t, err)
	require.Zero(t, qs[0].Count, "the running session finished and committed before Stop returned")
}

func TestEngineRefusesToHalfStart(t *testing.T) {
	dir := t.TempDir()
	reg := all.Registry()
	var stopped sync.WaitGroup
	stopped.Add(1)
	reg.MustRegister(edgeagent.ProcessorSpec{
		Type: "Broken", Summary: "fails to start", Input: edgeagent.InputForbidden,
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		New: func(*edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
			return &broken{stopped: &stopped}, nil
		},
	})
	flow, err := config.Parse(filepath.Join(dir, "f.yaml"), []byte(strings.ReplaceAll(`
agent: {id: t, data_dir: DATA/data}
processors:
  - name: gen
    type: GenerateFlowFile
    auto_terminate: [success]
  - name: broken
    type: Broken
    auto_terminate: [success]
`, "DATA", dir)), reg)
	require.NoError(t, err)
	repo, err := buffer.Open(flow.Agent.DataDir, buffer.Options{})
	require.NoError(t, err)
	defer repo.Close()
	eng, err := engine.New(flow, repo, nil)
	require.NoError(t, err)
	err = eng.Start(context.Background())
	require.ErrorContains(t, err, "starting processor broken")
	stopped.Wait() // the failed processor was stopped too
}

type broken struct{ stopped *sync.WaitGroup }

func (b *broken) Start(context.Context, edgeagent.ProcessContext) error {
	return fmt.Errorf("device missing")
}
func (b *broken) Stop(context.Context) error { b.stopped.Done(); return nil }
func (b *broken) OnTrigger(context.Context, edgeagent.ProcessContext, edgeagent.ProcessSession) error {
	return nil
}

func TestStopStartProcessorAndClearConnection(t *testing.T) {
	g := &gate{batch: 10}
	g.open.Store(true)
	r := start(t, registry(g), `
agent: {id: t, data_dir: DATA/data}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 5ms}
    properties: {batch_size: 5}
  - name: gate
    type: Gate
    auto_terminate: [success]
connections:
  - {name: q, from: gen, relationship: success, to: gate, max_count: 1000}
`)
	ctx := context.Background()
	require.NoError(t, r.eng.StopProcessor(ctx, "gate"))
	require.ErrorIs(t, r.eng.StopProcessor(ctx, "gate"), engine.ErrNotRunning)
	require.ErrorIs(t, r.eng.StopProcessor(ctx, "nope"), engine.ErrUnknownProcessor)
	for _, p := range r.eng.Processors() {
		require.Equal(t, p.Name != "gate", p.Running, p.Name)
	}
	require.Eventually(t, func() bool { return r.queue("q").Count >= 50 }, 10*time.Second, 5*time.Millisecond,
		"the stopped processor's input queue fills")
	in := func() int64 {
		for _, p := range r.eng.Processors() {
			if p.Name == "gate" {
				return p.In
			}
		}
		return -1
	}
	before := in()
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, before, in(), "a stopped processor takes nothing")

	require.NoError(t, r.eng.StopProcessor(ctx, "gen"))
	queued := r.queue("q").Count
	n, err := r.eng.ClearConnection(ctx, "q")
	require.NoError(t, err)
	require.Equal(t, int(queued), n)
	require.Zero(t, r.queue("q").Count)
	drops := 0
	for _, e := range r.events() {
		if e.Type == provenance.EventDrop && e.Details == "cleared by an operator" {
			drops++
		}
	}
	require.Equal(t, n, drops)
	_, err = r.eng.ClearConnection(ctx, "nope")
	require.ErrorIs(t, err, engine.ErrUnknownConnection)

	require.NoError(t, r.eng.StartProcessor(ctx, "gen"))
	require.NoError(t, r.eng.StartProcessor(ctx, "gate"))
	require.ErrorIs(t, r.eng.StartProcessor(ctx, "gate"), engine.ErrAlreadyRunning)
	require.Eventually(t, func() bool { return in() > before }, 10*time.Second, 5*time.Millisecond, "a restarted processor runs again")
}
