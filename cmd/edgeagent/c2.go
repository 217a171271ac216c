package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/internal/c2"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/transport/mqtt"
)

const c2Usage = `usage: edgeagent c2 <command> --broker URL [flags]

commands (over the central MQTT broker the agents' agent.c2 names):
  agents [--wait D] [--json]                 list agents from their heartbeats
  push-flow (--agent ID | --class CLASS) [--flow-id ID] FILE
                                             validate FILE here, then send it as update configuration
  push-asset (--agent ID | --class CLASS) --url URL --sha256 HEX [--name NAME]
                                             send update asset (the agent downloads URL and checks the sha256)
  acks [--agent ID] [--count N] [--timeout D] [--json]
                                             show acknowledgements as they arrive

connection flags: --broker URL, --ca-file, --cert-file, --key-file, --username, --password-file
`

// c2Flags are the connection flags every c2 subcommand takes.
type c2Flags struct {
	fs   *flag.FlagSet
	opts mqtt.Options
}

func newC2Flags(name string) *c2Flags {
	f := &c2Flags{fs: newFlagSet("c2 " + name)}
	f.fs.StringVar(&f.opts.Broker, "broker", "", "broker URL (tcp://, ssl://, ws://, wss://)")
	f.fs.StringVar(&f.opts.CAFile, "ca-file", "", "CA bundle (PEM) for the broker's certificate")
	f.fs.StringVar(&f.opts.CertFile, "cert-file", "", "client certificate (PEM), mutual TLS")
	f.fs.StringVar(&f.opts.KeyFile, "key-file", "", "client key (PEM), mutual TLS")
	f.fs.StringVar(&f.opts.Username, "username", "", "user name")
	f.fs.StringVar(&f.opts.PasswordFile, "password-file", "", "file holding the password")
	return f
}

func (f *c2Flags) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		return usageError{err}
	}
	if f.opts.Broker == "" {
		return usageError{errors.New("--broker URL is required")}
	}
	return nil
}

func cmdC2(args []string, reg *edgeagent.Registry, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, c2Usage)
		return usageError{errors.New("name a c2 command")}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch args[0] {
	case "agents":
		return cmdC2Agents(ctx, args[1:], stdout)
	case "push-flow":
		return cmdC2PushFlow(ctx, args[1:], reg, stdout)
	case "push-asset":
		return cmdC2PushAsset(ctx, args[1:], stdout)
	case "acks":
		return cmdC2Acks(ctx, args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, c2Usage)
		return nil
	}
	return usageError{fmt.Errorf("unknown c2 command %q", args[0])}
}

func cmdC2Agents(ctx context.Context, args []string, stdout io.Writer) error {
	f := newC2Flags("agents")
	wait := f.fs.Duration("wait", 2*time.Second, "how long to collect heartbeats")
	asJSON := f.fs.Bool("json", false, "print the latest heartbeat of each agent as JSON")
	if err := f.parse(args); err != nil {
		return err
	}
	agents, err := c2.Agents(ctx, f.opts, *wait)
	if err != nil {
		return err
	}
	if *asJSON {
		hbs := make([]*c2.Heartbeat, 0, len(agents))
		for _, a := range agents {
			hbs = append(hbs, a.Heartbeat)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(hbs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tCLASS\tLAST HEARTBEAT\tFLOW\tQUEUED\tBACKPRESSURE")
	for _, a := range agents {
		full := strings.Join(a.Full, ",")
		if full == "" {
			full = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s ago\t%s\t%d\t%s\n", a.ID, a.Class, time.Since(a.Seen).Round(time.Second), short(a.FlowID), a.Queued, full)
	}
	return tw.Flush()
}

func short(s string) string {
	if len(s) == 64 { // a sha256
		return s[:12]
	}
	return s
}

func targetFlags(f *c2Flags) (agent, class *string) {
	return f.fs.String("agent", "", "the agent ID"), f.fs.String("class", "", "every agent of this agent_class")
}

func cmdC2PushFlow(ctx context.Context, args []string, reg *edgeagent.Registry, stdout io.Writer) error {
	f := newC2Flags("push-flow")
	agent, class := targetFlags(f)
	flowID := f.fs.String("flow-id", "", "the flowId the agents report for this flow (default: its sha256)")
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() != 1 {
		return usageError{errors.New("name one flow file")}
	}
	file := f.fs.Arg(0)
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading flow file: %w", err)
	}
	if _, err := config.Parse(file, data, reg); err != nil {
		return err // the agents would refuse it too
	}
	op := c2.Operation{Operation: "UPDATE", Operand: "configuration", Args: map[string]string{"flow": string(data)}}
	if *flowID != "" {
		op.Args["flowId"] = *flowID
	}
	return push(ctx, f, *agent, *class, op, stdout)
}

func cmdC2PushAsset(ctx context.Context, args []string, stdout io.Writer) error {
	f := newC2Flags("push-asset")
	agent, class := targetFlags(f)
	u := f.fs.String("url", "", "where the agents download the asset")
	sum := f.fs.String("sha256", "", "the asset's sha256 (hex); agents refuse a download that does not match")
	name := f.fs.String("name", "", "file name in the agents' assets directory (default: the URL's last element)")
	if err := f.parse(args); err != nil {
		return err
	}
	if *u == "" || len(*sum) != 64 {
		return usageError{errors.New("--url and --sha256 (64 hex digits) are required")}
	}
	if *name == "" {
		*name = (*u)[strings.LastIndex(*u, "/")+1:]
	}
	op := c2.Operation{Operation: "UPDATE", Operand: "asset", Args: map[string]string{"assetUrl": *u, "assetFileName": *name, "sha256": strings.ToLower(*sum)}}
	return push(ctx, f, *agent, *class, op, stdout)
}

func push(ctx context.Context, f *c2Flags, agent, class string, op c2.Operation, stdout io.Writer) error {
	if (agent == "") == (class == "") {
		return usageError{errors.New("name --agent ID or --class CLASS")}
	}
	op.Identifier = fmt.Sprintf("%s-%d", strings.ToLower(op.Operation), time.Now().UnixNano())
	if err := c2.Push(ctx, f.opts, agent, class, op); err != nil {
		return err
	}
	to := "agent " + agent
	if class != "" {
		to = "class " + class
	}
	fmt.Fprintf(stdout, "operation %s (%s %s) sent to %s; see `edgeagent c2 acks`\n", op.Identifier, op.Operation, op.Operand, to)
	return nil
}

func cmdC2Acks(ctx context.Context, args []string, stdout io.Writer) error {
	f := newC2Flags("acks")
	agent := f.fs.String("agent", "", "only this agent's acknowledgements")
	count := f.fs.Int("count", 0, "stop after N acknowledgements (0: until interrupted or --timeout)")
	timeout := f.fs.Duration("timeout", 0, "stop after this long (0: no limit)")
	asJSON := f.fs.Bool("json", false, "one JSON acknowledgement per line")
	if err := f.parse(args); err != nil {
		return err
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	n := 0
	enc := json.NewEncoder(stdout)
	return c2.Acks(ctx, f.opts, *agent, func(from string, a c2.Ack) bool {
		if *asJSON {
			_ = enc.Encode(map[string]any{"agent": from, "ack": a})
		} else {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", from, a.OperationID, a.OperationState.State, a.OperationState.Details)
		}
		n++
		return *count == 0 || n < *count
	})
}

// startC2 starts the agent.c2 client of a running agent, when its running
// flow has an agent.c2 section, and returns a function that stops it and
// waits (safe to call more than once). cmdRun calls it once, when the flow
// first runs, and stops it when the drain begins, so no operation reloads a
// flow that is draining.
func startC2(ctx context.Context, reg *edgeagent.Registry, a *engine.Agent, restart func(), stderr io.Writer) (stop func()) {
	flow := a.Engine().Flow()
	if flow.Agent.C2 == nil {
		return func() {}
	}
	log := engine.NewLogger(stderr, flow.Agent.LogLevel, flow.Agent.LogFormat).With("agent", flow.Agent.ID)
	cl, err := c2.New(c2.Options{
		Config: flow.Agent.C2, AgentID: flow.Agent.ID, ConfigPath: flow.File, DataDir: flow.Agent.DataDir,
		Agent: a, Registry: reg, BuildTags: buildTags(), Logger: log, Restart: restart,
	})
	if err != nil {
		log.Error("c2 disabled", "err", err)
		return func() {}
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := cl.Run(cctx); err != nil {
			log.Error("c2 stopped", "err", err)
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// buildTags returns the build tags the binary was built with.
func buildTags() []string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-tags" && s.Value != "" {
				return strings.Split(s.Value, ",")
			}
		}
	}
	return []string{}
}
