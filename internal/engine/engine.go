package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/internal/config"
)

// Engine is one running flow on an open repository. Create it with New
// (constructors only, no I/O), then Start, then Stop. An Engine is not
// restarted: a reload builds a new one.
type Engine struct {
	flow   *config.Flow
	repo   *buffer.Repo
	log    *slog.Logger
	nodes  []*node
	queues map[string]*buffer.Queue // the connections' and the drained retired connections'
	// draining lists the retired connections (action drain) whose stored
	// queues feed a processor, in flow order.
	draining []string

	ctl     sync.Mutex // serializes Stop, StopProcessor and StartProcessor
	runCtx  context.Context
	cancel  context.CancelFunc
	running atomic.Bool
}

// QueueConfig converts a connection's settings.
func QueueConfig(c *config.Connection) buffer.QueueConfig {
	return buffer.QueueConfig{
		Prioritizer: buffer.Prioritizer(c.Prioritizer),
		MaxCount:    c.MaxCount,
		MaxBytes:    c.MaxBytes,
		ExpireAfter: c.ExpireAfter,
		DropOldest:  c.WhenFull == "drop_oldest",
	}
}

// New builds the flow's processors (their constructors only check
// configuration) and opens its queues.
func New(flow *config.Flow, repo *buffer.Repo, log *slog.Logger) (*Engine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{flow: flow, repo: repo, log: log, queues: map[string]*buffer.Queue{}}
	hostname, _ := os.Hostname()
	env := edgeagent.ExprEnv{AgentID: flow.Agent.ID, Hostname: hostname}
	byName := map[string]*node{}
	for _, p := range flow.Processors {
		cfg, err := flow.ProcessorConfig(p, env, log) // adds processor and type to the logger
		if err != nil {
			return nil, err // names the processor and the property
		}
		plog := cfg.Logger
		if p.Spec.New == nil {
			return nil, fmt.Errorf("creating processor %s: %s needs build tag %s: %w", p.Name, p.Type, p.Spec.BuildTag, edgeagent.ErrNotBuiltIn)
		}
		proc, err := p.Spec.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("creating processor %s (%s): %w", p.Name, p.Type, err)
		}
		n := &node{
			name: p.Name, typ: p.Type, agentID: flow.Agent.ID, spec: p.Spec, proc: proc,
			sched: Schedule{Period: p.Schedule.Period, Concurrency: max(1, p.Schedule.Concurrency), Yield: p.Schedule.Yield, Penalty: p.Schedule.Penalty, Batch: p.Schedule.Batch},
			repo:  repo, log: plog, stateDir: cfg.StateDir,
			outputs: map[string][]*buffer.Queue{}, rels: map[string]struct{}{}, autoTerm: map[string]bool{},
		}
		for _, r := range p.Relationships() {
			n.rels[r.Name] = struct{}{}
		}
		for _, r := range p.AutoTerminate {
			n.autoTerm[r] = true
		}
		e.nodes = append(e.nodes, n)
		byName[p.Name] = n
	}
	for _, c := range flow.Connections {
		q, err := repo.Queue(c.Name, QueueConfig(c))
		if err != nil {
			return nil, fmt.Errorf("opening connection %s: %w", c.Name, err)
		}
		e.queues[c.Name] = q
		from, to := byName[c.From], byName[c.To]
		for _, r := range c.Relationships {
			from.outputs[r] = append(from.outputs[r], q)
		}
		to.inputs = append(to.inputs, q)
	}
	if err := e.openRetired(byName); err != nil {
		return nil, err
	}
	return e, nil
}

// openRetired wires the stored queues of retired connections with action
// drain to the processor that drains them. A retired connection that
// has no queue in the repository is skipped.
func (e *Engine) openRetired(byName map[string]*node) error {
	if len(e.flow.Retired) == 0 {
		return nil
	}
	stored, err := e.repo.Queues()
	if err != nil {
		return fmt.Errorf("listing stored queues: %w", err)
	}
	for _, r := range e.flow.Retired {
		if r.Action != config.RetireDrain || !slices.Contains(stored, r.Name) {
			continue
		}
		// No thresholds: nothing is added to a retired queue.
		q, err := e.repo.Queue(r.Name, buffer.QueueConfig{})
		if err != nil {
			return fmt.Errorf("opening retired connection %s: %w", r.Name, err)
		}
		e.queues[r.Name] = q
		e.draining = append(e.draining, r.Name)
		to := byName[r.To]
		to.inputs = append(to.inputs, q)
	}
	return nil
}

// dropRetired empties the stored queues of retired connections with action
// drop, each flowfile with a DROP provenance event.
func (e *Engine) dropRetired(ctx context.Context) error {
	var drop []string
	for _, r := range e.flow.Retired {
		if r.Action == config.RetireDrop {
			drop = append(drop, r.Name)
		}
	}
	if len(drop) == 0 {
		return nil
	}
	stored, err := e.repo.Queues()
	if err != nil {
		return fmt.Errorf("listing stored queues: %w", err)
	}
	for _, name := range drop {
		if !slices.Contains(stored, name) {
			continue
		}
		q, err := e.repo.Queue(name, buffer.QueueConfig{})
		if err != nil {
			return fmt.Errorf("opening retired connection %s: %w", name, err)
		}
		dropped, err := e.repo.Clear(ctx, q, "retired connection emptied (retired_connections: action drop)")
		if err != nil {
			return fmt.Errorf("emptying retired connection %s: %w", name, err)
		}
		if count, _ := q.Len(); dropped > 0 || count > 0 {
			e.log.Warn("dropped the flowfiles of a retired connection", "connection", name, "dropped", dropped, "left", count)
		}
	}
	return nil
}

// Running reports whether the flow is started and not stopped.
func (e *Engine) Running() bool { return e.running.Load() }

// Flow returns the flow the engine runs.
func (e *Engine) Flow() *config.Flow { return e.flow }

// Start empties the retired connections the flow drops, then starts the
// processors (Starter.Start, in flow order) and their tasks. If a processor fails to start, the ones started are stopped and
// the error is returned: a flow never half-starts.
func (e *Engine) Start(ctx context.Context) error {
	if err := e.dropRetired(ctx); err != nil {
		return err
	}
	for i, n := range e.nodes {
		if err := os.MkdirAll(n.stateDir, 0o750); err != nil {
			e.stopNodes(ctx, e.nodes[:i])
			return fmt.Errorf("creating state directory of %s: %w", n.name, err)
		}
		if err := n.start(ctx); err != nil {
			e.stopNodes(ctx, e.nodes[:i+1])
			return err
		}
		n.started.Store(true)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.runCtx = runCtx
	for _, n := range e.nodes {
		e.spawn(n)
	}
	e.running.Store(true)
	e.log.Info("flow started", "processors", len(e.nodes), "connections", len(e.queues))
	return nil
}

// Stop drains the flow: no new trigger starts, running triggers finish and
// commit (or, past ctx's deadline, are cancelled and roll back), then the
// processors are stopped. Queued flowfiles stay on disk.
func (e *Engine) Stop(ctx context.Context) error {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	if !e.running.CompareAndSwap(true, false) {
		return nil
	}
	var started []*node
	for _, n := range e.nodes {
		if n.started.Load() {
			close(n.stop)
			started = append(started, n)
		}
	}
	done := make(chan struct{})
	go func() {
		for _, n := range started {
			n.tasks.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		e.log.Warn("shutdown timeout: cancelling running triggers")
		e.cancel()
		<-done
	}
	e.cancel()
	err := e.stopNodes(context.WithoutCancel(ctx), started)
	e.log.Info("flow stopped")
	return err
}

// spawn starts n's tasks.
func (e *Engine) spawn(n *node) {
	n.stop = make(chan struct{})
	n.prepare(n.stop)
	for range n.sched.Concurrency {
		n.tasks.Add(1)
		go func() {
			defer n.tasks.Done()
			n.runTask(e.runCtx, n.stop)
		}()
	}
}

func (e *Engine) node(name string) (*node, error) {
	for _, n := range e.nodes {
		if n.name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownProcessor, name)
}

// StopProcessor stops one processor of the running flow (its queues keep
// filling up to their thresholds): running triggers finish and commit, then
// its Stop is called. It stays stopped until StartProcessor or a reload.
func (e *Engine) StopProcessor(ctx context.Context, name string) error {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	n, err := e.node(name)
	if err != nil {
		return err
	}
	if !e.running.Load() || !n.started.Load() {
		return fmt.Errorf("stopping processor %s: %w", name, ErrNotRunning)
	}
	close(n.stop)
	n.tasks.Wait()
	err = e.stopNodes(ctx, []*node{n})
	e.log.Info("processor stopped", "processor", name)
	return err
}

// StartProcessor starts a processor that StopProcessor stopped.
func (e *Engine) StartProcessor(ctx context.Context, name string) error {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	n, err := e.node(name)
	if err != nil {
		return err
	}
	if !e.running.Load() || n.started.Load() {
		return fmt.Errorf("starting processor %s: %w", name, ErrAlreadyRunning)
	}
	if err := n.start(ctx); err != nil {
		e.stopNodes(ctx, []*node{n})
		return err
	}
	n.started.Store(true)
	e.spawn(n)
	e.log.Info("processor started", "processor", name)
	return nil
}

// ClearConnection drops every flowfile queued on the named connection that
// no running session holds, each with a DROP provenance event, and returns
// how many it dropped.
func (e *Engine) ClearConnection(ctx context.Context, name string) (int, error) {
	q, ok := e.queues[name]
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrUnknownConnection, name)
	}
	return e.repo.Clear(ctx, q, "cleared by an operator")
}

// start calls n's Starter.Start, when it has one.
func (n *node) start(ctx context.Context) error {
	if st, ok := n.proc.(edgeagent.Starter); ok {
		if err := st.Start(ctx, n); err != nil {
			return fmt.Errorf("starting processor %s (%s): %w", n.name, n.typ, err)
		}
	}
	return nil
}

func (e *Engine) stopNodes(ctx context.Context, nodes []*node) error {
	var errs []error
	for _, n := range nodes {
		if st, ok := n.proc.(edgeagent.Stopper); ok {
			if err := st.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stopping processor %s: %w", n.name, err))
			}
		}
		n.started.Store(false)
	}
	return errors.Join(errs...)
}

// ProcessorStatus is a processor's state for the status API.
type ProcessorStatus struct {
	Name          string  `json:"name"`
	Type          string  `json:"type"`
	In            int64   `json:"flowfiles_in"`
	Out           int64   `json:"flowfiles_out"`
	Triggers      int64   `json:"triggers"`
	Failures      int64   `json:"failures"`
	Backpressured bool    `json:"backpressure"`
	Yielded       bool    `json:"yielded"`
	Running       bool    `json:"running"`
	CommitAvgMS   float64 `json:"commit_avg_ms"`
	LastError     string  `json:"last_error,omitempty"`
	// Metrics are the processor's own figures (edgeagent.MetricsReporter).
	Metrics []edgeagent.Metric `json:"metrics,omitempty"`
	// Info are the processor's descriptive facts (edgeagent.InfoReporter).
	Info map[string]string `json:"info,omitempty"`
}

// QueueStatus is a connection's state for the status API and CLI.
type QueueStatus struct {
	Name          string  `json:"name"`
	Count         int64   `json:"count"`
	Bytes         int64   `json:"bytes"`
	OldestAgeSecs float64 `json:"oldest_age_seconds"`
	MaxCount      int64   `json:"max_count"`
	MaxBytes      int64   `json:"max_bytes"`
	Full          bool    `json:"backpressure"`
	Prioritizer   string  `json:"prioritizer"`
	WhenFull      string  `json:"when_full"`
}

// Processors returns each processor's status.
func (e *Engine) Processors() []ProcessorStatus {
	out := make([]ProcessorStatus, 0, len(e.nodes))
	now := time.Now().UnixNano()
	for _, n := range e.nodes {
		ps := ProcessorStatus{
			Name: n.name, Type: n.typ,
			In: n.metrics.in.Load(), Out: n.metrics.out.Load(),
			Triggers: n.metrics.triggers.Load(), Failures: n.metrics.failures.Load(),
			Backpressured: n.metrics.backpressured.Load(),
			Yielded:       n.yieldUntil.Load() > now,
			Running:       n.started.Load(),
		}
		if c := n.metrics.commits.Load(); c > 0 {
			ps.CommitAvgMS = float64(n.metrics.commitNanos.Load()) / float64(c) / 1e6
		}
		if s := n.metrics.lastError.Load(); s != nil {
			ps.LastError = *s
		}
		if mr, ok := n.proc.(edgeagent.MetricsReporter); ok && n.started.Load() {
			ps.Metrics = mr.ProcessorMetrics()
		}
		if ir, ok := n.proc.(edgeagent.InfoReporter); ok && n.started.Load() {
			ps.Info = ir.ProcessorInfo()
		}
		out = append(out, ps)
	}
	return out
}

// QueueStatuses returns the state of the given queues.
func QueueStatuses(qs []*buffer.Queue) ([]QueueStatus, error) {
	out := make([]QueueStatus, 0, len(qs))
	now := time.Now()
	for _, q := range qs {
		count, bytes := q.Len()
		cfg := q.Config()
		st := QueueStatus{Name: q.Name(), Count: count, Bytes: bytes, MaxCount: cfg.MaxCount, MaxBytes: cfg.MaxBytes,
			Full: q.Full(), Prioritizer: string(cfg.Prioritizer), WhenFull: "backpressure"}
		if cfg.DropOldest {
			st.WhenFull = "drop_oldest"
		}
		if count > 0 {
			t, err := q.Oldest()
			if err != nil {
				return nil, err
			}
			if !t.IsZero() {
				st.OldestAgeSecs = now.Sub(t).Seconds()
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// Queues returns the status of the flow's connections, in flow order, then
// of the retired connections being drained.
func (e *Engine) Queues() ([]QueueStatus, error) {
	qs := make([]*buffer.Queue, 0, len(e.flow.Connections)+len(e.draining))
	for _, c := range e.flow.Connections {
		qs = append(qs, e.queues[c.Name])
	}
	for _, name := range e.draining {
		qs = append(qs, e.queues[name])
	}
	return QueueStatuses(qs)
}

// orphans returns an error naming the queues of this flow (its connections
// and the retired connections it drains) that next neither keeps nor lists
// under retired_connections while they hold flowfiles; nil when there are
// none.
func (e *Engine) orphans(next *config.Flow) error {
	kept := map[string]bool{}
	for _, c := range next.Connections {
		kept[c.Name] = true
	}
	for _, r := range next.Retired {
		kept[r.Name] = true
	}
	var names, problems []string
	for name := range e.queues {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if kept[name] {
			continue
		}
		if count, bytes := e.queues[name].Len(); count > 0 {
			problems = append(problems, fmt.Sprintf("connection %q still holds %d flowfile(s) (%s)", name, count, edgeagent.FormatSize(bytes)))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("the new flow removes %s: keep it in connections (a connection keeps its queue by name), "+
		"or list it under retired_connections with action drain (to: the processor that takes its flowfiles), drop or keep",
		strings.Join(problems, ", "))
}
