// Command bench measures the engine against the raw limits of this machine,
// in one run, and prints ratios (make bench):
//
//   - the raw bbolt write rate on this disk (1 KiB records, 100 per
//     transaction, fsync on);
//   - the engine's rate for GenerateFlowFile(1 KiB) -> UpdateAttribute ->
//     auto-terminated, with durable commits and provenance on;
//   - peak RSS of an agent holding 1,000 and 1,000,000 queued flowfiles.
//
// Data is written under .bench/ in the current directory, on the same disk
// as the project, and removed afterwards.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"edgeagent.dev/buffer"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/processors/all"
)

func main() {
	rawDur := flag.Duration("raw", 4*time.Second, "how long to measure the raw bbolt rate")
	engDur := flag.Duration("engine", 8*time.Second, "how long to measure the engine rate")
	big := flag.Int("queued", 1_000_000, "the large queued count for the RSS measurement")
	child := flag.Int("rss-child", 0, "internal: fill a queue with N flowfiles and report RSS")
	pulsarN := flag.Int("pulsar", 100000, "messages for the Pulsar benchmark (0 skips it)")
	camera := flag.Bool("camera", true, "run the camera benchmark (needs -tags gocv)")
	mqttN := flag.Int("mqtt", 100000, "messages for the MQTT benchmark (0 skips it)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the engine measurement to this file")
	opsRuns := flag.Int("ops", 5, "runs of the start-to-first-flowfile measurement (0 skips binary sizes, idle RSS and start time)")
	flag.Parse()
	engine.TuneGC() // as the agent binary does
	base, err := filepath.Abs(".bench")
	check(err)
	if *child > 0 {
		rssChild(base, *child)
		return
	}
	check(os.RemoveAll(base))
	check(os.MkdirAll(base, 0o750))
	defer os.RemoveAll(base)

	fmt.Printf("edgeagent bench — %s/%s, %d CPUs, %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	opsOK := *opsRuns <= 0 || benchOps(base, *opsRuns)
	raw := rawBolt(filepath.Join(base, "raw"), *rawDur)
	fmt.Printf("raw bbolt (1 KiB records, 100 per tx, fsync):       %10.0f records/s\n", raw)
	eng := engineRate(filepath.Join(base, "engine"), *engDur, *cpuProfile)
	fmt.Printf("engine GenerateFlowFile(1KiB)->UpdateAttribute->drop: %10.0f flowfiles/s\n", eng)
	fmt.Printf("ratio engine/raw:                                     %10.3f   (target >= 0.2, i.e. >= 30,000 flowfiles/s)\n\n", eng/raw)

	if *mqttN > 0 {
		benchMQTT(base, *mqttN)
	}
	if *pulsarN > 0 {
		benchPulsar(base, *pulsarN)
	}
	if *camera {
		benchCamera(base)
	}

	small := runChild(1000)
	large := runChild(*big)
	fmt.Printf("peak RSS with %9d queued flowfiles:  %7.1f MB (anon %.1f MB)\n", 1000, small.peakMB, small.anonMB)
	fmt.Printf("peak RSS with %9d queued flowfiles:  %7.1f MB (anon %.1f MB)\n", *big, large.peakMB, large.anonMB)
	fmt.Printf("difference:                                 %7.1f MB   (target <= 20 MB)\n", large.peakMB-small.peakMB)
	fmt.Println()
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	fmt.Printf("throughput target (>= 30,000/s): %s\n", verdict(eng >= 30000))
	fmt.Printf("memory target (<= 20 MB more):    %s\n", verdict(large.peakMB-small.peakMB <= 20))
	fmt.Printf("operations targets (arm64 <= 25 MB, idle RSS <= 25 MB, first flowfile <= 100 ms): %s\n", verdict(opsOK))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// rawBolt writes 1 KiB records, 100 per fsynced transaction, for d.
func rawBolt(dir string, d time.Duration) float64 {
	check(os.MkdirAll(dir, 0o750))
	db, err := bolt.Open(filepath.Join(dir, "raw.db"), 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	check(err)
	defer db.Close()
	val := make([]byte, 1024)
	var seq uint64
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		check(db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("r"))
			if err != nil {
				return err
			}
			b.FillPercent = 0.95
			for range 100 {
				seq++
				if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), val); err != nil {
					return err
				}
			}
			return nil
		}))
		n += 100
	}
	return float64(n) / time.Since(start).Seconds()
}

func startFlow(dir, flowYAML string) (*engine.Engine, *buffer.Repo) {
	flowYAML = strings.ReplaceAll(flowYAML, "DATA", dir)
	flow, err := config.Parse(filepath.Join(dir, "bench.yaml"), []byte(flowYAML), all.Registry())
	check(err)
	repo, err := buffer.Open(flow.Agent.DataDir, buffer.Options{
		MaxSize: flow.Agent.Repository.MaxSize, ProvenanceMaxAge: flow.Agent.Provenance.MaxAge, ProvenanceMaxSize: flow.Agent.Provenance.MaxSize,
	})
	check(err)
	eng, err := engine.New(flow, repo, nil)
	check(err)
	check(eng.Start(context.Background()))
	return eng, repo
}

func stopFlow(eng *engine.Engine, repo *buffer.Repo) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	check(eng.Stop(ctx))
	check(repo.Close())
}

func processed(eng *engine.Engine, name string) int64 {
	for _, p := range eng.Processors() {
		if p.Name == name {
			return p.In
		}
	}
	return 0
}

// publishRate waits until the processor publish of eng has taken n more
// flowfiles and returns its flowfiles/s and the CPU seconds spent meanwhile.
func publishRate(eng *engine.Engine, n int) (rate, cpu float64) {
	n0, t0, cpu0 := processed(eng, "publish"), time.Now(), cpuSeconds()
	for processed(eng, "publish")-n0 < int64(n) {
		time.Sleep(5 * time.Millisecond)
	}
	n1, el := processed(eng, "publish"), time.Since(t0).Seconds()
	return float64(n1-n0) / el, cpuSeconds() - cpu0
}

func engineRate(dir string, d time.Duration, profile string) float64 {
	eng, repo := startFlow(dir, `
agent: {id: bench, data_dir: DATA/data, repository: {max_size: 4GiB}, provenance: {max_size: 256MiB}}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 0s, concurrency: 4}
    properties: {file_size: 1KiB, batch_size: 1000}
  - name: update
    type: UpdateAttribute
    schedule: {concurrency: 4, batch: 20}
    properties: {stage: benchmarked}
    auto_terminate: [success]
connections:
  - {from: gen, relationship: success, to: update, max_count: 20000}
`)
	time.Sleep(time.Second) // warm up
	if profile != "" {
		f, err := os.Create(profile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer f.Close()
	}
	n0, t0 := processed(eng, "update"), time.Now()
	cpu0 := cpuSeconds()
	time.Sleep(d)
	n1, t1 := processed(eng, "update"), time.Now()
	cpu1 := cpuSeconds()
	if profile != "" {
		pprof.StopCPUProfile()
	}
	fmt.Printf("  (engine CPU: %.1f µs per flowfile)\n", (cpu1-cpu0)/float64(n1-n0)*1e6)
	stopFlow(eng, repo)
	return float64(n1-n0) / t1.Sub(t0).Seconds()
}

type rss struct{ peakMB, anonMB float64 }

func runChild(n int) rss {
	exe, err := os.Executable()
	check(err)
	out, err := exec.Command(exe, "-rss-child", strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		check(fmt.Errorf("rss child %d: %v\n%s", n, err, out))
	}
	var r rss
	_, err = fmt.Sscanf(strings.TrimSpace(string(out)), "%f %f", &r.peakMB, &r.anonMB)
	check(err)
	return r
}

// rssChild fills one queue with n flowfiles (GenerateFlowFile 16 B, the
// consumer never scheduled), then prints its peak RSS and anonymous RSS in MB.
func rssChild(base string, n int) {
	dir := filepath.Join(base, fmt.Sprintf("rss-%d", n))
	check(os.MkdirAll(dir, 0o750))
	batch := min(n, 1000)
	eng, repo := startFlow(dir, fmt.Sprintf(`
agent: {id: bench, data_dir: DATA/data, repository: {max_size: 8GiB}, provenance: {max_size: 64MiB}}
processors:
  - name: gen
    type: GenerateFlowFile
    schedule: {period: 0s}
    properties: {file_size: 16B, batch_size: %d}
  - name: hold
    type: UpdateAttribute
    schedule: {period: 1000h}
    auto_terminate: [success]
connections:
  - {name: backlog, from: gen, relationship: success, to: hold, max_count: %d}
`, batch, n))
	for {
		qs, err := eng.Queues()
		check(err)
		if qs[0].Count >= int64(n) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopFlow(eng, repo)
	peak, anon := procStatusOf(os.Getpid(), "VmHWM"), procStatusOf(os.Getpid(), "RssAnon")
	fmt.Printf("%.1f %.1f\n", float64(peak)/(1<<20), float64(anon)/(1<<20))
}

// cpuSeconds is the process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}
