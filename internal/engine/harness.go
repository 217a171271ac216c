package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
)

// Harness drives one processor by hand, for tests: one input queue and one
// queue per relationship, on a real repository. Package enginetest wraps it.
type Harness struct {
	n       *node
	s       *session
	Input   *buffer.Queue
	Outputs map[string]*buffer.Queue
}

// NewHarness builds the processor from cfg with spec.New and wires its queues
// (named "in" and "out/<relationship>").
func NewHarness(repo *buffer.Repo, spec *edgeagent.ProcessorSpec, cfg *edgeagent.ProcessorConfig, rels []edgeagent.Relationship, log *slog.Logger) (*Harness, error) {
	proc, err := spec.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating processor %s: %w", cfg.Name, err)
	}
	n := &node{
		name: cfg.Name, typ: spec.Type, agentID: cfg.AgentID, spec: spec, proc: proc,
		sched: Schedule{Concurrency: 1, Yield: time.Second, Penalty: time.Second},
		repo:  repo, log: log, stateDir: cfg.StateDir,
		outputs: map[string][]*buffer.Queue{}, rels: map[string]struct{}{}, autoTerm: map[string]bool{},
	}
	h := &Harness{n: n, Outputs: map[string]*buffer.Queue{}}
	if spec.Input != edgeagent.InputForbidden {
		if h.Input, err = repo.Queue("in", buffer.QueueConfig{}); err != nil {
			return nil, err
		}
		n.inputs = []*buffer.Queue{h.Input}
	}
	for _, r := range rels {
		q, err := repo.Queue("out/"+r.Name, buffer.QueueConfig{})
		if err != nil {
			return nil, err
		}
		n.rels[r.Name] = struct{}{}
		n.outputs[r.Name] = []*buffer.Queue{q}
		h.Outputs[r.Name] = q
	}
	h.s = newSession(n)
	return h, nil
}

// Context returns the processor's ProcessContext.
func (h *Harness) Context() edgeagent.ProcessContext { return h.n }

// Processor returns the processor instance.
func (h *Harness) Processor() edgeagent.Processor { return h.n.proc }

// Start calls the processor's Start, if it has one.
func (h *Harness) Start(ctx context.Context) error {
	if st, ok := h.n.proc.(edgeagent.Starter); ok {
		return st.Start(ctx, h.n)
	}
	return nil
}

// Trigger runs OnTrigger once and commits (or rolls back on error, with the
// inputs penalized).
func (h *Harness) Trigger(ctx context.Context) error {
	h.n.yielded.Store(false)
	h.n.yieldUntil.Store(0)
	if err := h.n.callOnTrigger(ctx, h.s); err != nil {
		h.s.rollback(h.n.sched.Penalty)
		return err
	}
	return h.s.Commit(ctx)
}

// Yielded reports whether the processor yielded during the last Trigger.
func (h *Harness) Yielded() bool { return h.n.yielded.Load() }

// Stop calls the processor's Stop, if it has one.
func (h *Harness) Stop(ctx context.Context) error {
	if st, ok := h.n.proc.(edgeagent.Stopper); ok {
		return st.Stop(ctx)
	}
	return nil
}

// Session returns a new session on the harness's processor, for tests that
// drive sessions directly.
func (h *Harness) Session() edgeagent.ProcessSession { return newSession(h.n) }
