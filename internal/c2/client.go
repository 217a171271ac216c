package c2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/devstats"
	"edgeagent.dev/internal/engine"
)

// Agent is what the C2 client reads and drives; *engine.Agent implements
// it. Its methods are called from the client's goroutine only.
type Agent interface {
	// Status returns the agent's state (an error before the flow started).
	Status() (*engine.Status, error)
	// Reload re-reads the flow file and reports whether the new flow runs.
	Reload(ctx context.Context) bool
	// Healthy returns nil while the flow runs.
	Healthy() error
}

// Options configure a Client.
type Options struct {
	// Config is the agent.c2 section; required.
	Config *config.C2
	// AgentID is agent.id.
	AgentID string
	// ConfigPath is the flow file that update configuration replaces.
	ConfigPath string
	// DataDir is agent.data_dir (the device stats report its disk).
	DataDir string
	// Agent is the running agent; required.
	Agent Agent
	// Registry validates new flows and lists processors for describe.
	Registry *edgeagent.Registry
	// BuildTags are reported in heartbeats.
	BuildTags []string
	// Restart, when set, restarts the agent process (restart operation);
	// it is called after the acknowledgement was sent. Nil: restart is
	// not supported.
	Restart func()
	// HTTPClient replaces the client built from the TLS settings (http
	// channel and downloads); for tests.
	HTTPClient *http.Client
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
}

// Client sends heartbeats and runs operations over one channel. New
// checks the options; Run does the I/O until its ctx is done.
type Client struct {
	opts     Options
	cfg      *config.C2
	agentID  string
	agent    Agent
	log      *slog.Logger
	http     *http.Client
	devstats *devstats.Reader

	mu         sync.Mutex
	assetCache map[string]assetHash
	flowIDs    map[string]string         // flow sha256 -> flowId the server named
	lastOps    map[string]OperationState // operation id -> result (the last few)
	lastOrder  []string
}

// channel is one transport of the protocol.
type channel interface {
	// heartbeat sends hb and returns the operations the answer requests
	// (http), or none (mqtt).
	heartbeat(ctx context.Context, hb *Heartbeat) ([]Operation, error)
	// ack sends an acknowledgement.
	ack(ctx context.Context, a *Ack) error
	// operations delivers operations pushed to the agent (mqtt), or nil.
	operations() <-chan Operation
	// close releases the connection.
	close(ctx context.Context)
}

// New checks opts and returns a Client. It does no I/O.
func New(opts Options) (*Client, error) {
	switch {
	case opts.Config == nil:
		return nil, errors.New("creating c2 client: no agent.c2 configuration")
	case opts.Agent == nil:
		return nil, errors.New("creating c2 client: no agent")
	case opts.Registry == nil:
		return nil, errors.New("creating c2 client: no registry")
	case opts.ConfigPath == "":
		return nil, errors.New("creating c2 client: no flow file path")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Client{
		opts: opts, cfg: opts.Config, agentID: opts.AgentID, agent: opts.Agent, log: log.With("component", "c2"),
		devstats:   devstats.NewReader(devstats.Options{DiskPaths: nonEmpty(opts.DataDir)}),
		assetCache: map[string]assetHash{}, flowIDs: map[string]string{}, lastOps: map[string]OperationState{},
	}
	c.http = opts.HTTPClient
	if c.http == nil {
		hc, err := httpClient(c.cfg)
		if err != nil {
			return nil, err
		}
		c.http = hc
	}
	return c, nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// Run sends a heartbeat at once and then every agent.c2.heartbeat_period,
// runs the operations that arrive and acknowledges each, until ctx is
// done. A channel that cannot be reached is retried at the next heartbeat;
// Run returns an error only when the channel cannot be set up at all.
func (c *Client) Run(ctx context.Context) error {
	var ch channel
	switch c.cfg.Protocol {
	case "http":
		h, err := newHTTPChannel(c)
		if err != nil {
			return err
		}
		ch = h
	case "mqtt":
		m, err := newMQTTChannel(ctx, c)
		if err != nil {
			return err
		}
		ch = m
	default:
		return fmt.Errorf("running c2: unknown protocol %q", c.cfg.Protocol)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		ch.close(cctx)
	}()
	t := time.NewTicker(c.cfg.HeartbeatPeriod)
	defer t.Stop()
	beat := func() {
		hb, err := c.buildHeartbeat()
		if err != nil {
			c.log.Debug("heartbeat skipped", "err", err)
			return
		}
		ops, err := ch.heartbeat(ctx, hb)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("sending heartbeat", "err", err)
			}
			return
		}
		for _, op := range ops {
			c.run(ctx, ch, op)
		}
	}
	beat()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			beat()
		case op := <-ch.operations():
			c.run(ctx, ch, op)
			beat() // report the result (new flow, assets) at once
		}
	}
}

// run executes op, sends its acknowledgement, then does what must follow
// the acknowledgement (a restart).
func (c *Client) run(ctx context.Context, ch channel, op Operation) {
	ack, after := c.execute(ctx, op)
	c.log.Info("c2 operation", "id", op.Identifier, "operation", op.Operation, "operand", op.Operand,
		"state", ack.OperationState.State, "details", ack.OperationState.Details)
	if err := ch.ack(ctx, ack); err != nil {
		c.log.Warn("sending acknowledgement", "id", op.Identifier, "err", err)
	}
	if after != nil {
		after()
	}
}

// flowID is the flowId the server gave the flow with that sha256, or the
// sha256 itself.
func (c *Client) flowID(sha string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.flowIDs[sha]; ok {
		return id
	}
	return sha
}

// remember records an operation's result for the next heartbeats.
func (c *Client) remember(id string, st OperationState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.lastOps[id]; !ok {
		c.lastOrder = append(c.lastOrder, id)
	}
	c.lastOps[id] = st
	for len(c.lastOrder) > 20 {
		delete(c.lastOps, c.lastOrder[0])
		c.lastOrder = c.lastOrder[1:]
	}
}
