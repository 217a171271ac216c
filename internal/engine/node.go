package engine

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
)

// Schedule is how the engine triggers one processor.
type Schedule struct {
	Period      time.Duration // 0: event driven (inputs) or continuous (sources)
	Concurrency int           // tasks running OnTrigger at once
	Yield       time.Duration // pause after Yield or a failure
	Penalty     time.Duration // how long penalized flowfiles are skipped
	// Batch is how many OnTrigger runs share one session and one commit
	// (NiFi's run duration): fewer commits, but a crash repeats more work.
	// A run that does nothing, yields or fails ends the batch early.
	Batch int
}

// idle backoff bounds: a trigger that did nothing waits this long (doubling)
// before the next, unless new input wakes it.
const (
	minIdleWait = 5 * time.Millisecond
	maxIdleWait = 100 * time.Millisecond
)

type nodeMetrics struct {
	in, out       atomic.Int64
	triggers      atomic.Int64
	failures      atomic.Int64
	commitNanos   atomic.Int64
	commits       atomic.Int64
	lastError     atomic.Pointer[string]
	backpressured atomic.Bool
}

func (m *nodeMetrics) commitLatency(d time.Duration) {
	m.commitNanos.Add(int64(d))
	m.commits.Add(1)
}

// node is one processor instance in a running flow; it implements
// edgeagent.ProcessContext.
type node struct {
	name, typ, agentID string
	spec               *edgeagent.ProcessorSpec
	proc               edgeagent.Processor
	sched              Schedule
	repo               *buffer.Repo
	log                *slog.Logger
	stateDir           string

	inputs   []*buffer.Queue
	outputs  map[string][]*buffer.Queue
	rels     map[string]struct{}
	autoTerm map[string]bool

	yieldUntil atomic.Int64 // unix nanos
	yielded    atomic.Bool
	started    atomic.Bool
	stop       chan struct{}  // closed to stop this processor's tasks
	tasks      sync.WaitGroup // this processor's running tasks

	runMu   sync.Mutex
	nextRun time.Time

	readyCases []reflect.SelectCase // inputs' Ready channels + stop
	drainCases []reflect.SelectCase // outputs' Drained channels + stop

	metrics nodeMetrics
}

func (n *node) Name() string         { return n.name }
func (n *node) AgentID() string      { return n.agentID }
func (n *node) Logger() *slog.Logger { return n.log }
func (n *node) IsConnected(rel edgeagent.Relationship) bool {
	return len(n.outputs[rel.Name]) > 0
}

func (n *node) Yield() {
	n.yieldUntil.Store(time.Now().Add(n.sched.Yield).UnixNano())
	n.yielded.Store(true)
}

func (n *node) HasBackpressure() bool {
	if len(n.inputs) == 0 && n.repo.Full() {
		return true
	}
	for _, qs := range n.outputs {
		for _, q := range qs {
			if q.Full() {
				return true
			}
		}
	}
	return false
}

func (n *node) hasInput() bool {
	for _, q := range n.inputs {
		if q.Available() > 0 {
			return true
		}
	}
	return false
}

// prepare builds the select cases used while waiting.
func (n *node) prepare(stop <-chan struct{}) {
	stopCase := reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(stop)}
	n.readyCases = []reflect.SelectCase{stopCase}
	for _, q := range n.inputs {
		n.readyCases = append(n.readyCases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(q.Ready())})
	}
	n.drainCases = []reflect.SelectCase{stopCase}
	for _, qs := range n.outputs {
		for _, q := range qs {
			n.drainCases = append(n.drainCases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(q.Drained())})
		}
	}
}

// wait blocks on cases or for at most d; it returns false when stopping.
func wait(cases []reflect.SelectCase, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	all := append(cases[:len(cases):len(cases)], reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.C)})
	chosen, _, _ := reflect.Select(all)
	return chosen != 0
}

// claimSlot implements the timer-driven period: it returns how long to wait
// before the next run, or 0 after claiming the run.
func (n *node) claimSlot(now time.Time) time.Duration {
	if n.sched.Period <= 0 {
		return 0
	}
	n.runMu.Lock()
	defer n.runMu.Unlock()
	if now.Before(n.nextRun) {
		return n.nextRun.Sub(now)
	}
	next := n.nextRun.Add(n.sched.Period)
	if next.Before(now) {
		next = now.Add(n.sched.Period)
	}
	n.nextRun = next
	return 0
}

// runTask is one of the processor's concurrent tasks. It returns when stop
// is closed; ctx is cancelled only when a stop takes longer than the
// shutdown timeout, to interrupt a blocked OnTrigger.
func (n *node) runTask(ctx context.Context, stop <-chan struct{}) {
	s := newSession(n)
	idle := minIdleWait
	for {
		select {
		case <-stop:
			return
		default:
		}
		now := time.Now()
		if until := n.yieldUntil.Load(); until > now.UnixNano() {
			if !wait(n.readyCases[:1], time.Duration(until-now.UnixNano())) {
				return
			}
			continue
		}
		if n.HasBackpressure() {
			n.metrics.backpressured.Store(true)
			if !wait(n.drainCases, 50*time.Millisecond) {
				return
			}
			continue
		}
		n.metrics.backpressured.Store(false)
		if len(n.inputs) > 0 && !n.hasInput() {
			if !wait(n.readyCases, maxIdleWait) {
				return
			}
			continue
		}
		if d := n.claimSlot(now); d > 0 {
			if !wait(n.readyCases[:1], d) {
				return
			}
			continue
		}
		if n.trigger(ctx, s) {
			idle = minIdleWait
			continue
		}
		if n.sched.Period > 0 {
			continue
		}
		if !wait(n.readyCases, idle) {
			return
		}
		idle = min(idle*2, maxIdleWait)
	}
}

// trigger runs OnTrigger once and commits; it reports whether the session
// did anything.
func (n *node) trigger(ctx context.Context, s *session) (worked bool) {
	n.yielded.Store(false)
	var err error
	for i := 0; i < max(1, n.sched.Batch); i++ {
		n.metrics.triggers.Add(1)
		before := s.size()
		if err = n.callOnTrigger(ctx, s); err != nil || s.size() == before || n.yielded.Load() || ctx.Err() != nil {
			break
		}
	}
	if err == nil {
		worked = s.active()
		if err = s.Commit(ctx); err == nil {
			return worked
		}
	} else {
		s.rollback(n.sched.Penalty)
	}
	n.metrics.failures.Add(1)
	msg := err.Error()
	n.metrics.lastError.Store(&msg)
	if ctx.Err() == nil {
		n.log.Error("processor failed; its input is penalized and it yields", "err", err, "yield", n.sched.Yield)
	}
	n.Yield()
	return false
}

func (n *node) callOnTrigger(ctx context.Context, s *session) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: panic in OnTrigger: %v\n%s", n.name, p, debug.Stack())
		}
	}()
	return n.proc.OnTrigger(ctx, n, s)
}
