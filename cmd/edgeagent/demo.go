package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/configs"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/provenance"
)

// cmdDemo runs the embedded demo flow for a while in ./edgeagent-demo (or
// --dir), then shows what happened: output files, queues and the lineage of
// one batch file.
func cmdDemo(args []string, reg *edgeagent.Registry, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo")
	dir := fs.String("dir", "edgeagent-demo", "working directory for the demo's data and output")
	dur := fs.Duration("duration", 12*time.Second, "how long to run (Ctrl-C stops earlier)")
	http := fs.String("http", "127.0.0.1:9100", "address of the status API while the demo runs (\"\" to disable)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return fmt.Errorf("creating demo directory: %w", err)
	}
	flow := strings.ReplaceAll(string(configs.Demo()), "DEMO_DIR", abs)
	flow = strings.Replace(flow, "http: 127.0.0.1:9100", "http: \""+*http+"\"", 1)
	path := filepath.Join(abs, "flow.yaml")
	if err := os.WriteFile(path, []byte(flow), 0o640); err != nil {
		return fmt.Errorf("writing demo flow: %w", err)
	}
	fmt.Fprintf(stdout, "edgeagent demo: running %s for %s (data and output in %s)\n", path, *dur, abs)
	if *http != "" {
		fmt.Fprintf(stdout, "  while it runs: curl http://%s/api/status\n", *http)
	}
	fmt.Fprintln(stdout)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()
	if err := engine.RunAgent(ctx, engine.AgentOptions{ConfigPath: path, Registry: reg, LogOutput: stderr, Version: version}); err != nil {
		return err
	}
	return demoReport(stdout, abs)
}

func demoReport(w io.Writer, dir string) error {
	count := func(sub string) int {
		es, _ := os.ReadDir(filepath.Join(dir, "out", sub))
		return len(es)
	}
	fmt.Fprintf(w, "\n== output ==\n%s/out/alerts:  %d alert files (each went out over MQTT QoS 1 to the embedded broker and came back)\n%s/out/batches: %d gzip batches of readings\n", dir, count("alerts"), dir, count("batches"))
	repo, err := buffer.Open(filepath.Join(dir, "data"), buffer.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer repo.Close()
	qs, err := engine.RepositoryQueues(repo)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "\n== queues (kept on disk across restarts) ==")
	for _, q := range qs {
		fmt.Fprintf(w, "%-40s %6d flowfiles %10s\n", q.Name, q.Count, edgeagent.FormatSize(q.Bytes))
	}
	var lin *provenance.LineageGraph
	var stats provenance.Stats
	var mqttSent, mqttReceived int
	err = repo.DB().View(func(tx *bolt.Tx) error {
		var err error
		if stats, err = provenance.ReadStats(tx); err != nil {
			return err
		}
		evs, err := provenance.Latest(tx, 0)
		if err != nil {
			return err
		}
		for _, e := range evs {
			switch {
			case e.Type == provenance.EventSend && e.Component == "publish-alert":
				mqttSent++
			case e.Type == provenance.EventReceive && e.Component == "consume-alert":
				mqttReceived++
			}
		}
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Type == provenance.EventSend && evs[i].Component == "write-batch" {
				lin, err = provenance.Lineage(tx, evs[i].FlowFileID)
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n== provenance: %d events ==\n", stats.Count)
	fmt.Fprintf(w, "MQTT: %d alerts published (SEND after PUBACK), %d received (RECEIVE)\n", mqttSent, mqttReceived)
	if lin == nil {
		fmt.Fprintln(w, "(no batch was written yet: run longer with --duration)")
		return nil
	}
	fmt.Fprintf(w, "lineage of the last batch file (flowfile %s): %d flowfiles, %d events; the first and last:\n", lin.Root, len(lin.FlowFiles), len(lin.Events))
	show := lin.Events
	if len(show) > 12 {
		show = append(append([]provenance.Event(nil), show[:6]...), show[len(show)-6:]...)
	}
	for i, e := range show {
		if i == 6 && len(lin.Events) > 12 {
			fmt.Fprintf(w, "  ... %d more ...\n", len(lin.Events)-12)
		}
		fmt.Fprintf(w, "  %-20s %-10s %s %s\n", e.Type, e.Component, e.FlowFileID, eventDetails(e))
	}
	fmt.Fprintf(w, "\nexplore: edgeagent provenance --data-dir %s/data --flowfile %s\n", dir, lin.Root)
	return nil
}
