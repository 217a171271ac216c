package enginetest

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/provenance"
)

// AgentID is the agent.id processors see in a Runner.
const AgentID = "test-agent"

// Runner drives one processor: one input queue, one queue per relationship.
type Runner struct {
	t       testing.TB
	Repo    *buffer.Repo
	h       *engine.Harness
	started bool
	closed  bool
	dir     string
}

// Output is one flowfile taken from a relationship's queue.
type Output struct {
	FlowFile *edgeagent.FlowFile
	Content  []byte
}

// NewRunner builds the processor from spec with props (spec properties and
// dynamic properties by name). It fails the test when the properties do not
// validate or the constructor fails. Close is registered with t.Cleanup.
func NewRunner(t testing.TB, spec edgeagent.ProcessorSpec, props map[string]string) *Runner {
	t.Helper()
	r, err := TryNewRunner(t, spec, props)
	require.NoError(t, err)
	return r
}

// TryNewRunner is NewRunner returning the validation or constructor error.
func TryNewRunner(t testing.TB, spec edgeagent.ProcessorSpec, props map[string]string) (*Runner, error) {
	t.Helper()
	dir := t.TempDir()
	repo, err := buffer.Open(filepath.Join(dir, "data"), buffer.Options{})
	require.NoError(t, err)
	r := &Runner{t: t, Repo: repo, dir: dir}
	t.Cleanup(r.Close)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, err := BuildConfig(&spec, props, filepath.Join(dir, "state"), log)
	if err != nil {
		return nil, err
	}
	require.NoError(t, os.MkdirAll(cfg.StateDir, 0o750))
	rels := slices.Clone(spec.Relationships)
	if spec.Dynamic != nil && spec.Dynamic.Relationships {
		for _, d := range cfg.Dynamic {
			rels = append(rels, edgeagent.Relationship{Name: d.Name})
		}
	}
	h, err := engine.NewHarness(repo, &spec, cfg, rels, log)
	if err != nil {
		return nil, err
	}
	r.h = h
	return r, nil
}

// BuildConfig turns a property map into a ProcessorConfig as the flow
// loader does: defaults applied, values checked, expressions compiled.
func BuildConfig(spec *edgeagent.ProcessorSpec, props map[string]string, stateDir string, log *slog.Logger) (*edgeagent.ProcessorConfig, error) {
	env := edgeagent.ExprEnv{AgentID: AgentID, Hostname: "test-host"}
	cfg := &edgeagent.ProcessorConfig{
		Name: "under-test", Type: spec.Type, AgentID: AgentID, StateDir: stateDir,
		Properties: map[string]edgeagent.PropertyValue{}, Logger: log,
	}
	for i := range spec.Properties {
		p := &spec.Properties[i]
		raw, set := props[p.Name]
		if !set {
			raw = p.Default
		}
		if set || raw != "" {
			if msg := p.CheckValue(raw); msg != "" {
				return nil, &edgeagent.ConfigError{File: "runner", Path: "properties." + p.Name, Msg: msg}
			}
		} else if p.Required {
			return nil, &edgeagent.ConfigError{File: "runner", Path: "properties." + p.Name, Msg: "required property is missing"}
		}
		v, err := edgeagent.NewPropertyValue(raw, set, p.Expressions, env)
		if err != nil {
			return nil, err
		}
		cfg.Properties[p.Name] = v
	}
	for _, name := range slices.Sorted(maps.Keys(props)) {
		if _, ok := spec.Property(name); ok {
			continue
		}
		if spec.Dynamic == nil {
			return nil, &edgeagent.ConfigError{File: "runner", Path: "properties." + name, Msg: "unknown property"}
		}
		v, err := edgeagent.NewPropertyValue(props[name], true, spec.Dynamic.Expressions, env)
		if err != nil {
			return nil, err
		}
		cfg.Dynamic = append(cfg.Dynamic, edgeagent.DynamicProperty{Name: name, Value: v})
	}
	return cfg, nil
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Harness returns the underlying engine harness.
func (r *Runner) Harness() *engine.Harness { return r.h }

// Dir returns the runner's temporary directory.
func (r *Runner) Dir() string { return r.dir }

// Enqueue commits a flowfile with content and attributes to the input queue.
func (r *Runner) Enqueue(content []byte, attrs map[string]string) edgeagent.ID {
	r.t.Helper()
	require.NotNil(r.t, r.h.Input, "processor takes no input")
	now := time.Now()
	ff := &edgeagent.FlowFile{ID: edgeagent.NewID(), Attributes: maps.Clone(attrs), EntryTime: now, LineageStart: now, Size: int64(len(content))}
	if ff.Attributes == nil {
		ff.Attributes = map[string]string{}
	}
	ch := &buffer.Change{Add: []buffer.Add{{Queue: r.h.Input, FlowFile: ff}}}
	if len(content) > 0 {
		ff.Claim = r.Repo.NewClaim()
		nc := buffer.NewContent{Claim: ff.Claim}
		for off := 0; off < len(content); off += buffer.ChunkSize {
			nc.Chunks = append(nc.Chunks, content[off:min(off+buffer.ChunkSize, len(content))])
		}
		ch.Content = []buffer.NewContent{nc}
	}
	require.NoError(r.t, r.Repo.Commit(context.Background(), ch))
	return ff.ID
}

// Trigger starts the processor (first call only), runs one OnTrigger with a
// fresh session and commits it; it returns OnTrigger's or Commit's error.
func (r *Runner) Trigger() error {
	ctx := context.Background()
	if !r.started {
		r.started = true
		if err := r.h.Start(ctx); err != nil {
			return err
		}
	}
	return r.h.Trigger(ctx)
}

// Run triggers n times, failing the test on an error.
func (r *Runner) Run(n int) {
	r.t.Helper()
	for range n {
		require.NoError(r.t, r.Trigger())
	}
}

// Yielded reports whether the processor yielded in the last Trigger.
func (r *Runner) Yielded() bool { return r.h.Yielded() }

// Output takes everything queued on rel, in queue order.
func (r *Runner) Output(rel string) []Output {
	r.t.Helper()
	q, ok := r.h.Outputs[rel]
	require.True(r.t, ok, "no relationship %q", rel)
	items, err := q.Poll(1 << 30)
	require.NoError(r.t, err)
	out := make([]Output, 0, len(items))
	for _, it := range items {
		b := it.Content
		if it.FlowFile.Size > 0 && b == nil {
			rc := r.Repo.ReadContent(it.FlowFile.Claim, it.FlowFile.Size)
			b, err = io.ReadAll(rc)
			require.NoError(r.t, err)
		}
		out = append(out, Output{FlowFile: it.FlowFile, Content: b})
	}
	if len(items) > 0 {
		require.NoError(r.t, r.Repo.Commit(context.Background(), &buffer.Change{Consume: items}))
	}
	return out
}

// InputCount returns how many flowfiles are still in the input queue.
func (r *Runner) InputCount() int {
	if r.h.Input == nil {
		return 0
	}
	n, _ := r.h.Input.Len()
	return int(n)
}

// Events returns every provenance event written so far, in order.
func (r *Runner) Events() []provenance.Event {
	r.t.Helper()
	var evs []provenance.Event
	require.NoError(r.t, r.Repo.DB().View(func(tx *bolt.Tx) error {
		var err error
		evs, err = provenance.Since(tx, time.Time{}, 0)
		return err
	}))
	return evs
}

// Close stops the processor and closes the repository.
func (r *Runner) Close() {
	if r.closed {
		return
	}
	r.closed = true
	if r.h != nil && r.started {
		_ = r.h.Stop(context.Background())
	}
	_ = r.Repo.Close()
}
