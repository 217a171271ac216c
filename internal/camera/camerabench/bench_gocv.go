//go:build gocv

package camerabench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"edgeagent.dev/buffer"
	"edgeagent.dev/internal/camera"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/processors"
	"edgeagent.dev/processors/all"
)

// Quality is the JPEG quality both sides encode at.
const Quality = 90

// Result is one measurement.
type Result struct {
	Video     string        // the video file
	Frames    int           // frames each side encoded
	Bare      time.Duration // the bare gocv loop's time
	Engine    time.Duration // the flow's time, from start to the last frame committed
	BareFPS   float64
	EngineFPS float64
	Ratio     float64 // EngineFPS / BareFPS
	// BareCPU and EngineCPU are the process's CPU time (user+system) per
	// frame on each side.
	BareCPU, EngineCPU time.Duration
}

// String renders r for the bench report.
func (r Result) String() string {
	return fmt.Sprintf("bare gocv read+JPEG loop:                       %10.0f frames/s, %6.0f µs CPU per frame\n"+
		"CaptureFrame(video->JPEG) into a durable queue:  %10.0f frames/s, %6.0f µs CPU per frame\n"+
		"ratio CaptureFrame/bare:                         %10.3f   (target >= 0.9; best rounds of %d frames of %s)\n",
		r.BareFPS, float64(r.BareCPU.Microseconds()), r.EngineFPS, float64(r.EngineCPU.Microseconds()), r.Ratio, r.Frames, filepath.Base(r.Video))
}

// TestVideo returns the short video bundled with the gocv module
// (images/small.mp4), located with `go list` from the current directory.
func TestVideo() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "gocv.io/x/gocv").Output()
	if err != nil {
		return "", fmt.Errorf("locating the gocv module: %w", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "images", "small.mp4")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("locating gocv's test video: %w", err)
	}
	return p, nil
}

// Run measures rounds times, alternating: the bare loop encodes the video
// passes times, then a fresh flow (its repository in its own directory
// under dir, fsync and provenance on; the caller removes dir) captures as
// many frames (CaptureFrame loops over the video). The best round of each
// side is kept, so that other load on the machine disturbs the ratio less.
func Run(ctx context.Context, dir, video string, passes, rounds int) (Result, error) {
	res := Result{Video: video}
	perPass, err := camera.VideoFrameCount(video)
	if err != nil {
		return res, err
	}
	if perPass <= 0 {
		return res, errors.New("the video has no frames")
	}
	// Warm up the decoder and the page cache.
	if _, _, err := camera.BareEncodeLoop(video, Quality); err != nil {
		return res, err
	}
	for round := range max(1, rounds) {
		cpu0 := cpuTime()
		frames, bare := 0, time.Duration(0)
		for range passes {
			n, d, err := camera.BareEncodeLoop(video, Quality)
			if err != nil {
				return res, err
			}
			frames += n
			bare += d
		}
		cpu1 := cpuTime()
		flow, err := runFlow(ctx, filepath.Join(dir, fmt.Sprintf("round-%d", round)), video, frames)
		if err != nil {
			return res, err
		}
		cpu2 := cpuTime()
		res.Frames = frames
		if res.Bare == 0 || bare < res.Bare {
			res.Bare, res.BareCPU = bare, (cpu1-cpu0)/time.Duration(frames)
		}
		if res.Engine == 0 || flow < res.Engine {
			res.Engine, res.EngineCPU = flow, (cpu2-cpu1)/time.Duration(frames)
		}
	}
	res.BareFPS = float64(res.Frames) / res.Bare.Seconds()
	res.EngineFPS = float64(res.Frames) / res.Engine.Seconds()
	res.Ratio = res.EngineFPS / res.BareFPS
	return res, nil
}

// runFlow runs CaptureFrame (looping over video) -> UpdateAttribute until
// frames flowfiles were committed, and returns the time taken.
func runFlow(ctx context.Context, dir, video string, frames int) (time.Duration, error) {
	reg := all.Registry()
	if _, ok := reg.Lookup("CaptureFrame"); !ok {
		reg.MustRegister(processors.CaptureFrameSpec())
	}
	if spec, _ := reg.Lookup("CaptureFrame"); !spec.Available() {
		return 0, errors.New("CaptureFrame is not built in")
	}
	yaml := fmt.Sprintf(`
agent: {id: bench, data_dir: %q, repository: {max_size: 4GiB}}
processors:
  - name: cam
    type: CaptureFrame
    properties: {source: %q, loop: "true", encoding: jpeg, jpeg_quality: "%d"}
  - name: hold
    type: UpdateAttribute
    schedule: {period: 1000h}
    auto_terminate: [success]
connections:
  - {from: cam, relationship: success, to: hold, max_count: %d}
`, filepath.Join(dir, "data"), video, Quality, frames+1000)
	flow, err := config.Parse(filepath.Join(dir, "camera-bench.yaml"), []byte(yaml), reg)
	if err != nil {
		return 0, err
	}
	repo, err := buffer.Open(flow.Agent.DataDir, buffer.Options{MaxSize: flow.Agent.Repository.MaxSize})
	if err != nil {
		return 0, err
	}
	defer repo.Close()
	eng, err := engine.New(flow, repo, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := eng.Start(ctx); err != nil {
		return 0, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = eng.Stop(sctx)
	}()
	for {
		for _, p := range eng.Processors() {
			if p.Name == "cam" && p.Out >= int64(frames) {
				return time.Since(start), nil
			}
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
