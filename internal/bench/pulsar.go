package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	pulsarlib "github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"

	"edgeagent.dev/transport/pulsar/pulsartest"
)

// benchTB lets the benchmark run the test broker outside a test: it
// implements the testing.TB methods pulsartest calls (the embedded nil
// interface is never reached).
type benchTB struct {
	testing.TB
	dir string
}

func (benchTB) Helper()        {}
func (benchTB) Cleanup(func()) {} // the benchmark stops the broker itself
func (benchTB) Logf(string, ...any) {
}
func (benchTB) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (benchTB) Fatalf(format string, args ...any) { check(fmt.Errorf(format, args...)) }
func (b benchTB) TempDir() string {
	d, err := os.MkdirTemp(b.dir, "tb")
	check(err)
	return d
}

// rawPulsar sends n 1 KiB messages with a bare pulsar-client-go producer
// (batching on, its defaults) and waits for every receipt; it returns
// messages/s and CPU seconds.
func rawPulsar(url string, n int) (rate, cpu float64) {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := pulsarlib.NewClient(pulsarlib.ClientOptions{URL: url, Logger: plog.NewLoggerWithSlog(quiet)})
	check(err)
	defer c.Close()
	p, err := c.CreateProducer(pulsarlib.ProducerOptions{Topic: "bench-raw", Name: "bench-raw"})
	check(err)
	defer p.Close()
	payload := make([]byte, 1024)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	errs := make(chan error, n)
	ctx := context.Background()
	cpu0, t0 := cpuSeconds(), time.Now()
	for range n {
		p.SendAsync(ctx, &pulsarlib.ProducerMessage{Payload: payload}, func(_ pulsarlib.MessageID, _ *pulsarlib.ProducerMessage, err error) {
			errs <- err
		})
	}
	for range n {
		check(<-errs)
	}
	return float64(n) / time.Since(t0).Seconds(), cpuSeconds() - cpu0
}

// agentPulsar runs GenerateFlowFile(1 KiB) -> PublishPulsar with durable
// queues and returns flowfiles/s and CPU seconds for n flowfiles.
func agentPulsar(dir, url string, n int) (rate, cpu float64) {
	eng, repo := startFlow(dir, fmt.Sprintf(`
agent: {id: bench, data_dir: DATA/data, repository: {max_size: 4GiB}, log: {level: warn}}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 0s}
    properties: {file_size: 1KiB, batch_size: 1000}
  - name: publish
    type: PublishPulsar
    schedule: {concurrency: 2}
    properties: {service_url: "%s", topic: bench-agent, max_in_flight: "2000"}
    auto_terminate: [success, failure]
connections:
  - {from: gen, relationship: success, to: publish, max_count: 20000}
`, url))
	defer stopFlow(eng, repo)
	time.Sleep(time.Second) // warm up
	return publishRate(eng, n)
}

// benchPulsar measures, in one run against the in-process test broker, a
// bare pulsar-client-go producer and the agent's GenerateFlowFile ->
// PublishPulsar, and prints their ratio.
func benchPulsar(base string, n int) {
	dir := filepath.Join(base, "pulsar")
	check(os.MkdirAll(dir, 0o750))
	b := pulsartest.Start(benchTB{dir: dir})
	defer b.Stop()
	raw, rawCPU := rawPulsar(b.URL(), n)
	fmt.Printf("raw pulsar-client-go producer (1 KiB, batching):    %10.0f msg/s, %5.2f CPU s per 100k\n", raw, rawCPU/float64(n)*1e5)
	ag, agCPU := agentPulsar(dir, b.URL(), n)
	fmt.Printf("agent GenerateFlowFile(1KiB)->PublishPulsar:         %10.0f msg/s, %5.2f CPU s per 100k\n", ag, agCPU/float64(n)*1e5)
	fmt.Printf("ratio agent/raw:                                      %10.3f   (target >= 0.8; broker in-process, CPU shared)\n\n", ag/raw)
}
