package engine_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"edgeagent.dev/buffer"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/processors/all"
)

// BenchmarkPipeline measures GenerateFlowFile(1 KiB) -> UpdateAttribute ->
// auto-terminated without fsync (CPU cost per flowfile); `make bench`
// measures the durable rate against the raw disk.
func BenchmarkPipeline(b *testing.B) {
	dir := b.TempDir()
	flow, err := config.Parse(filepath.Join(dir, "f.yaml"), []byte(strings.ReplaceAll(`
agent: {id: b, data_dir: DATA/data, repository: {max_size: 8GiB}}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 0s}
    properties: {file_size: 1KiB, batch_size: 500}
  - name: update
    type: UpdateAttribute
    properties: {stage: benchmarked}
    auto_terminate: [success]
connections:
  - {from: gen, relationship: success, to: update, max_count: 20000}
`, "DATA", dir)), all.Registry())
	if err != nil {
		b.Fatal(err)
	}
	repo, err := buffer.Open(flow.Agent.DataDir, buffer.Options{NoSync: true, MaxSize: 8 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer repo.Close()
	eng, err := engine.New(flow, repo, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := eng.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	done := func() int64 {
		for _, p := range eng.Processors() {
			if p.Name == "update" {
				return p.In
			}
		}
		return 0
	}
	b.ResetTimer()
	start := done()
	for done()-start < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eng.Stop(ctx); err != nil {
		b.Fatal(err)
	}
}
