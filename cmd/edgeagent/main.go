// Command edgeagent is the edge data agent: it runs a YAML flow of
// processors over a durable bbolt repository, and inspects flows, queues
// and provenance.
//
//	edgeagent run --config FILE
//	edgeagent validate FILE...
//	edgeagent processors [--json]
//	edgeagent queues (--data-dir DIR | --config FILE) [--json]
//	edgeagent provenance (--data-dir DIR | --config FILE) [--flowfile ID] [--since DURATION] [--limit N] [--json]
//	edgeagent version
//	edgeagent demo
//	edgeagent c2 agents|push-flow|push-asset|acks --broker URL ...
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"edgeagent.dev"
	"edgeagent.dev/inference"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/internal/metrics"
	"edgeagent.dev/internal/sdnotify"
	"edgeagent.dev/processors/all"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

const usage = `usage: edgeagent <command> [flags]

commands:
  run --config FILE          run a flow (SIGTERM/SIGINT drain and exit, SIGHUP reloads the flow)
  validate FILE...           check flow files; every problem is printed as FILE:LINE:COL: path: message
  processors [--json]        list processor types with their properties and relationships
  queues                     show each connection's queue: count, bytes, oldest age
      (--data-dir DIR | --config FILE) [--json]
  provenance                 show provenance events, or one flowfile's lineage
      (--data-dir DIR | --config FILE) [--flowfile ID] [--since DURATION] [--limit N] [--json]
  version                    print version, commit, build tags and built-in processors
  demo [--duration D] [--dir DIR]
                             run the embedded demo flow, then show its output, queues and provenance
  c2 agents|push-flow|push-asset|acks --broker URL ...
                             command and control of agents over MQTT (edgeagent c2 help)
`

func main() {
	engine.TuneGC()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	reg := all.Registry()
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], reg, stderr)
	case "validate":
		err = cmdValidate(args[1:], reg, stdout, stderr)
	case "processors":
		err = cmdProcessors(args[1:], reg, stdout)
	case "queues":
		err = cmdQueues(args[1:], reg, stdout)
	case "provenance":
		err = cmdProvenance(args[1:], reg, stdout)
	case "demo":
		err = cmdDemo(args[1:], reg, stdout, stderr)
	case "c2":
		err = cmdC2(args[1:], reg, stdout)
	case "version", "--version":
		err = cmdVersion(reg, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "edgeagent: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	var usageErr usageError
	if errors.As(err, &usageErr) {
		fmt.Fprintf(stderr, "edgeagent %s: %v\n", args[0], err)
		return 2
	}
	var ce edgeagent.ConfigErrors
	if errors.As(err, &ce) {
		fmt.Fprintln(stderr, ce.Error())
		fmt.Fprintf(stderr, "edgeagent: %d problem(s) in the flow; nothing was started\n", len(ce))
		return 1
	}
	if !errors.Is(err, errReported) {
		fmt.Fprintf(stderr, "edgeagent: %v\n", err)
	}
	return 1
}

type usageError struct{ error }

var errReported = errors.New("already reported")

func cmdRun(args []string, reg *edgeagent.Registry, stderr io.Writer) error {
	fs := newFlagSet("run")
	cfg := fs.String("config", "", "flow file (YAML)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *cfg == "" {
		return usageError{errors.New("--config FILE is required")}
	}
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// A C2 restart operation drains the agent like SIGTERM, then runs the
	// binary again in this process (same PID, so systemd keeps tracking it).
	ctx, cancelRun := context.WithCancel(sigCtx)
	defer cancelRun()
	var restart atomic.Bool
	requestRestart := func() {
		restart.Store(true)
		cancelRun() // does not block: RunAgent drains on its own goroutine
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	// The agent, once RunAgent has built it: metrics and the watchdog read it.
	var agent atomic.Pointer[engine.Agent]
	m := metrics.New(func() (*engine.Status, error) {
		if a := agent.Load(); a != nil {
			return a.Status()
		}
		return nil, errors.New("agent not started")
	})
	m.MustRegister(inference.Collectors()...)
	// systemd (Type=notify): READY=1 once the flow runs, RELOADING=1 and
	// READY=1 around reloads, STOPPING=1 when draining, and WATCHDOG=1
	// every WatchdogSec/2 while the flow is healthy (or reloading). All
	// no-ops without $NOTIFY_SOCKET.
	notify := func(err error) {
		if err != nil {
			fmt.Fprintf(stderr, "edgeagent: systemd notification: %v\n", err)
		}
	}
	healthy := func() bool {
		a := agent.Load()
		return a != nil && (a.Reloading() || a.Healthy() == nil)
	}
	wdCtx, wdStop := context.WithCancel(ctx)
	defer wdStop()
	var watchdog sync.Once
	// agent.c2: heartbeats and operations, started once the flow first runs.
	var c2Start sync.Once
	stopC2 := func() {}
	defer func() { stopC2() }()
	err := engine.RunAgent(ctx, engine.AgentOptions{
		ConfigPath: *cfg, Registry: reg, Reload: reload, LogOutput: stderr, Version: version,
		Metrics: m.Handler(),
		OnStart: func(a *engine.Agent) { agent.Store(a) },
		OnReady: func() {
			notify(sdnotify.Notify(sdnotify.StateReady, "STATUS=flow running"))
			c2Start.Do(func() { stopC2 = startC2(ctx, reg, agent.Load(), requestRestart, stderr) })
			watchdog.Do(func() {
				go func() {
					if err := sdnotify.Run(wdCtx, healthy); err != nil && !errors.Is(err, context.Canceled) {
						fmt.Fprintf(stderr, "edgeagent: systemd watchdog: %v\n", err)
					}
				}()
			})
		},
		OnReloading: func() { notify(sdnotify.Reloading()) },
		OnStopping: func() {
			stopC2()
			wdStop()
			notify(sdnotify.Notify(sdnotify.StateStopping, "STATUS=draining"))
		},
	})
	if err != nil || !restart.Load() || sigCtx.Err() != nil {
		return err
	}
	stopC2()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("restarting: %w", err)
	}
	fmt.Fprintln(stderr, "edgeagent: restarting (C2 restart operation)")
	return fmt.Errorf("restarting %s: %w", exe, syscall.Exec(exe, os.Args, os.Environ()))
}
