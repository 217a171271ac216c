package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/transport/mqttbroker"
)

// AgentOptions configure RunAgent.
type AgentOptions struct {
	// ConfigPath is the flow file.
	ConfigPath string
	// Registry holds the processor types this binary has.
	Registry *edgeagent.Registry
	// Reload delivers a request to reload the flow file (SIGHUP).
	Reload <-chan struct{}
	// LogOutput receives logs; nil means os.Stderr.
	LogOutput io.Writer
	// OnReady is called each time a flow is running (after start and after
	// each reload, also one that kept the running flow); OnReloading when a
	// reload begins; OnStopping when the drain begins.
	OnReady     func()
	OnReloading func()
	OnStopping  func()
	// OnStart is called once the agent exists (repository open, flow
	// built), before the HTTP API serves and the flow starts.
	OnStart func(*Agent)
	// Metrics, when set, is served at /metrics on agent.http
	// (internal/metrics builds it; the engine does not import Prometheus).
	Metrics http.Handler
	// Version is reported by the status API.
	Version string
	// WatchInterval is how often the flow file is checked for changes
	// while agent.watch_config is set; 0 means DefaultWatchInterval.
	WatchInterval time.Duration
}

// Agent is a running agent: the repository, the current engine and the
// HTTP API. RunAgent creates and runs one.
type Agent struct {
	opts    AgentOptions
	log     *slog.Logger
	repo    *buffer.Repo
	started time.Time
	broker  *mqttbroker.Broker // the embedded MQTT broker, or nil

	mu             sync.Mutex // serializes reloads
	reloading      atomic.Bool
	engine         atomic.Pointer[Engine]
	reloads        atomic.Int64
	reloadFailures atomic.Int64
	lastReloadErr  atomic.Pointer[string]
}

// NewLogger builds the agent's logger from the flow's log settings.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	ho := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// RunAgent loads and validates the flow, opens the repository, starts the
// HTTP API and the flow, and runs until ctx is cancelled; then it drains (no
// new work, running sessions commit, queues stay on disk) and returns. A
// flow that does not validate, a repository that cannot be opened or a
// processor that cannot start make it return an error before anything runs:
// the agent never half-starts.
func RunAgent(ctx context.Context, opts AgentOptions) error {
	flow, err := config.Load(opts.ConfigPath, opts.Registry)
	if err != nil {
		return err
	}
	out := opts.LogOutput
	if out == nil {
		out = os.Stderr
	}
	log := NewLogger(out, flow.Agent.LogLevel, flow.Agent.LogFormat).With("agent", flow.Agent.ID)
	repo, err := buffer.Open(flow.Agent.DataDir, buffer.Options{
		MaxSize: flow.Agent.Repository.MaxSize, MaxContentSize: flow.Agent.Repository.MaxContentSize,
		ProvenanceMaxAge: flow.Agent.Provenance.MaxAge, ProvenanceMaxSize: flow.Agent.Provenance.MaxSize,
		Logger: log.With("component", "repository"),
	})
	if err != nil {
		return err
	}
	defer repo.Close()
	a := &Agent{opts: opts, log: log, repo: repo, started: time.Now()}
	if opts.OnStart != nil {
		opts.OnStart(a)
	}
	eng, err := New(flow, repo, log)
	if err != nil {
		return err
	}
	if bc := flow.Agent.MQTTBroker; bc != nil {
		b, err := mqttbroker.New(mqttbroker.Config{
			Listen: bc.Listen, CertFile: bc.CertFile, KeyFile: bc.KeyFile, ClientCAFile: bc.ClientCAFile,
			PasswordFile: bc.PasswordFile, AllowAnonymous: bc.AllowAnonymous, Logger: log,
		})
		if err != nil {
			return fmt.Errorf("configuring agent.mqtt_broker: %w", err)
		}
		if err := b.Start(ctx); err != nil {
			return fmt.Errorf("starting agent.mqtt_broker: %w", err)
		}
		a.broker = b
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := b.Close(cctx); err != nil {
				log.Warn("closing the embedded MQTT broker", "err", err)
			}
		}()
		log.Info("embedded MQTT broker listening", "addr", b.Addr())
	}
	var srv *http.Server
	if flow.Agent.HTTP != "" {
		ln, err := net.Listen("tcp", flow.Agent.HTTP)
		if err != nil {
			return fmt.Errorf("listening on agent.http %s: %w", flow.Agent.HTTP, err)
		}
		srv = &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server failed", "err", err)
			}
		}()
		log.Info("http api listening", "addr", ln.Addr().String())
	}
	if err := eng.Start(ctx); err != nil {
		if srv != nil {
			_ = srv.Close()
		}
		return err
	}
	a.engine.Store(eng)
	log.Info("agent running", "flow", flow.File, "flow_sha256", flow.Hash, "data_dir", flow.Agent.DataDir)
	a.warnOrphans(flow)
	if opts.OnReady != nil {
		opts.OnReady()
	}
	changed := make(chan struct{}, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		a.watchConfig(watchCtx, opts.WatchInterval, changed)
	}()
	defer func() { stopWatch(); <-watchDone }()
	for {
		select {
		case <-ctx.Done():
			if opts.OnStopping != nil {
				opts.OnStopping()
			}
			log.Info("draining: sources stop, running sessions finish, queues stay on disk")
			cur := a.engine.Load()
			sctx, cancel := context.WithTimeout(context.Background(), cur.flow.Agent.ShutdownTimeout)
			err := cur.Stop(sctx)
			cancel()
			if srv != nil {
				hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
				_ = srv.Shutdown(hctx)
				hcancel()
			}
			if err != nil {
				return fmt.Errorf("stopping flow: %w", err)
			}
			log.Info("agent stopped")
			return nil
		case <-opts.Reload:
			a.Reload(ctx)
		case <-changed:
			a.Reload(ctx)
		}
	}
}

// Reload re-reads the flow file. An invalid flow, one whose processors
// cannot start, or one that removes a connection whose queue still holds
// flowfiles without listing it under retired_connections, leaves the
// running flow in place; connections that remain keep their flowfiles. It reports whether the new flow is running.
// OnReloading is called first and OnReady last, when a flow runs.
func (a *Agent) Reload(ctx context.Context) bool { return a.reloadFlow(ctx, false) }

// RestartFlow stops the running flow and starts it again from the flow
// file even when the file did not change, so that processors reopen what
// they load at start (a model replaced by C2's update asset, say). Queues
// keep their flowfiles. It reports whether the flow runs.
func (a *Agent) RestartFlow(ctx context.Context) bool { return a.reloadFlow(ctx, true) }

func (a *Agent) reloadFlow(ctx context.Context, force bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reloading.Store(true)
	defer a.reloading.Store(false)
	if a.opts.OnReloading != nil {
		a.opts.OnReloading()
	}
	ok := a.reload(ctx, force)
	if e := a.engine.Load(); a.opts.OnReady != nil && e != nil && e.Running() {
		a.opts.OnReady()
	}
	return ok
}

// Reloading reports whether a reload is under way.
func (a *Agent) Reloading() bool { return a.reloading.Load() }

func (a *Agent) reload(ctx context.Context, force bool) bool {
	cur := a.engine.Load()
	fail := func(msg string, err error) bool {
		a.log.Error(msg+"; the running flow is kept", "err", err)
		s := err.Error()
		a.lastReloadErr.Store(&s)
		a.reloadFailures.Add(1)
		return false
	}
	flow, err := config.Load(a.opts.ConfigPath, a.opts.Registry)
	if err != nil {
		return fail("reload refused: the flow file does not validate", err)
	}
	if flow.Hash == cur.flow.Hash && !force {
		a.log.Info("reload: flow file unchanged")
		return true
	}
	old := cur.flow.Agent
	if flow.Agent.DataDir != old.DataDir || flow.Agent.Repository != old.Repository || flow.Agent.HTTP != old.HTTP ||
		flow.Agent.ID != old.ID || !reflect.DeepEqual(flow.Agent.MQTTBroker, old.MQTTBroker) {
		return fail("reload refused", errors.New("agent.id, agent.data_dir, agent.http, agent.repository and agent.mqtt_broker take effect only after a restart"))
	}
	if err := cur.orphans(flow); err != nil {
		return fail("reload refused: queued flowfiles would be orphaned", err)
	}
	next, err := New(flow, a.repo, a.log)
	if err != nil {
		return fail("reload refused: the new flow cannot be built", err)
	}
	sctx, cancel := context.WithTimeout(ctx, cur.flow.Agent.ShutdownTimeout)
	_ = cur.Stop(sctx)
	cancel()
	// Check again: the running flow may have filled a queue since.
	if err := cur.orphans(flow); err != nil {
		fail("reload refused: queued flowfiles would be orphaned", err)
	} else if err := next.Start(ctx); err != nil {
		fail("reload failed: the new flow did not start", err)
	}
	if !next.Running() {
		prev, perr := New(cur.flow, a.repo, a.log)
		if perr == nil {
			perr = prev.Start(ctx)
		}
		if perr != nil {
			a.log.Error("restarting the previous flow failed", "err", perr)
			return false
		}
		a.engine.Store(prev)
		return false
	}
	a.engine.Store(next)
	a.reloads.Add(1)
	a.warnOrphans(flow)
	a.log.Info("flow reloaded", "flow_sha256", flow.Hash)
	return true
}

// warnOrphans logs queues in the repository that the flow no longer uses
// but that still hold flowfiles (retired connections with action keep at
// level info).
func (a *Agent) warnOrphans(flow *config.Flow) {
	names, err := a.repo.Queues()
	if err != nil {
		return
	}
	used := map[string]bool{}
	for _, c := range flow.Connections {
		used[c.Name] = true
	}
	for _, r := range flow.Retired {
		used[r.Name] = r.Action != config.RetireKeep
	}
	for _, n := range names {
		if used[n] {
			continue
		}
		q, err := a.repo.Queue(n, buffer.QueueConfig{})
		if err != nil {
			continue
		}
		switch count, _ := q.Len(); {
		case count == 0:
		case flow.RetiredConnection(n) != nil:
			a.log.Info("retired connection kept on disk (retired_connections: action keep)", "connection", n, "count", count)
		default:
			a.log.Warn("connection removed from the flow still holds flowfiles; they stay on disk until a flow uses it again", "connection", n, "count", count)
		}
	}
}

// BrokerAddr returns the embedded MQTT broker's address, or "".
func (a *Agent) BrokerAddr() string {
	if a.broker == nil {
		return ""
	}
	return a.broker.Addr()
}

// Engine returns the running engine.
func (a *Agent) Engine() *Engine { return a.engine.Load() }

// StopProcessor stops one processor of the running flow (see
// Engine.StopProcessor); a reload starts it again.
func (a *Agent) StopProcessor(ctx context.Context, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.engine.Load().StopProcessor(ctx, name)
}

// StartProcessor starts a processor StopProcessor stopped.
func (a *Agent) StartProcessor(ctx context.Context, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.engine.Load().StartProcessor(ctx, name)
}

// ClearConnection drops what a connection of the running flow holds (see
// Engine.ClearConnection).
func (a *Agent) ClearConnection(ctx context.Context, name string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.engine.Load().ClearConnection(ctx, name)
}
