//go:build gocv

package processors_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"gocv.io/x/gocv"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/internal/camera"
	"edgeagent.dev/internal/camera/camerabench"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
)

// camTestVideo returns gocv's bundled short video and its frame count.
func camTestVideo(t testing.TB) (string, int) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "gocv.io/x/gocv").Output()
	require.NoError(t, err, "locating the gocv module")
	p := filepath.Join(strings.TrimSpace(string(out)), "images", "small.mp4")
	n, err := camera.VideoFrameCount(p)
	require.NoError(t, err)
	require.Greater(t, n, 100)
	return p, n
}

// camStats is implemented by CaptureFrame.
type camStats interface{ Stats() camera.Stats }

// camRunAll triggers the runner until the source has ended (the processor
// yields) and returns every frame emitted.
func camRunAll(t *testing.T, r *enginetest.Runner, limit time.Duration) []enginetest.Output {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		require.NoError(t, r.Trigger())
		if r.Yielded() {
			return r.Output("success")
		}
		require.True(t, time.Now().Before(deadline), "the source did not end within %s", limit)
	}
}

func camDecode(t *testing.T, b []byte) (w, h int) {
	t.Helper()
	m, err := gocv.IMDecode(b, gocv.IMReadColor)
	require.NoError(t, err)
	defer m.Close()
	require.False(t, m.Empty(), "the content decodes")
	return m.Cols(), m.Rows()
}

func TestCaptureFrameVideoEveryFrameOnceInOrderAtTheFPSCap(t *testing.T) {
	video, want := camTestVideo(t)
	const fps = 100
	r := enginetest.NewRunner(t, processors.CaptureFrameSpec(), map[string]string{
		"source": video, "fps": strconv.Itoa(fps), "jpeg_quality": "80",
	})
	outs := camRunAll(t, r, 60*time.Second)
	require.Len(t, outs, want, "every frame of the video, once")

	var prev time.Time
	for i, o := range outs {
		ff := o.FlowFile
		require.Equal(t, strconv.Itoa(i), ff.Attr(processors.AttrFrameSeq), "in order")
		require.Empty(t, ff.Attr(processors.AttrFrameSkippedBefore), "nothing skipped")
		ts, err := time.Parse(time.RFC3339Nano, ff.Attr(edgeagent.AttrCaptureTime))
		require.NoError(t, err)
		if i > 0 {
			require.GreaterOrEqual(t, ts.Sub(prev), time.Second/fps-time.Millisecond, "frame %d: the fps cap spaces grabs", i)
		}
		prev = ts
	}
	first, _ := time.Parse(time.RFC3339Nano, outs[0].FlowFile.Attr(edgeagent.AttrCaptureTime))
	require.GreaterOrEqual(t, prev.Sub(first), time.Duration(want-1)*time.Second/fps-10*time.Millisecond)

	for _, i := range []int{0, want / 2, want - 1} {
		ff := outs[i].FlowFile
		w, h := camDecode(t, outs[i].Content)
		require.Equal(t, [2]int{560, 320}, [2]int{w, h}, "the JPEG decodes to the video's size")
		require.Equal(t, "560", ff.Attr(processors.AttrWidth))
		require.Equal(t, "320", ff.Attr(processors.AttrHeight))
		require.Equal(t, "image/jpeg", ff.Attr(edgeagent.AttrMimeType))
		require.Equal(t, "under-test", ff.Attr(processors.AttrCameraID), "camera_id defaults to the processor name")
		require.Equal(t, fmt.Sprintf("under-test-%08d.jpg", i), ff.Attr(edgeagent.AttrFilename))
	}
	recv := eventsOf(r.Events(), provenance.EventReceive)
	require.Len(t, recv, want)
	require.Equal(t, "file://"+video, recv[0].TransitURI)

	st := r.Harness().Processor().(camStats).Stats()
	require.Equal(t, uint64(want), st.Captured)
	require.Equal(t, uint64(want), st.Emitted)
	require.Zero(t, st.Skipped)
	require.True(t, st.Ended)

	require.NoError(t, r.Trigger())
	require.True(t, r.Yielded(), "an ended source keeps yielding")
	require.Empty(t, r.Output("success"))
}

func TestCaptureFrameEncodingsAndResize(t *testing.T) {
	video, _ := camTestVideo(t)
	t.Run("raw", func(t *testing.T) {
		r := enginetest.NewRunner(t, processors.CaptureFrameSpec(), map[string]string{
			"source": video, "encoding": "raw", "width": "140", "camera_id": "door",
		})
		var outs []enginetest.Output
		for len(outs) < 2 {
			r.Run(1)
			outs = append(outs, r.Output("success")...)
		}
		ff := outs[1].FlowFile
		require.Equal(t, "140", ff.Attr(processors.AttrWidth))
		require.Equal(t, "80", ff.Attr(processors.AttrHeight))
		require.Equal(t, "3", ff.Attr(processors.AttrChannels))
		require.Equal(t, "application/octet-stream", ff.Attr(edgeagent.AttrMimeType))
		require.Equal(t, "door-00000001.bgr", ff.Attr(edgeagent.AttrFilename))
		require.Len(t, outs[1].Content, 140*80*3)
	})
	t.Run("png", func(t *testing.T) {
		r := enginetest.NewRunner(t, processors.CaptureFrameSpec(), map[string]string{
			"source": video, "encoding": "png", "width": "100", "height": "100",
		})
		// One run waits at most frameWait (250 ms) for the grabber's first
		// frame: run until it came, as the raw case does.
		var outs []enginetest.Output
		for deadline := time.Now().Add(20 * time.Second); len(outs) == 0; {
			require.True(t, time.Now().Before(deadline), "no frame within 20s")
			r.Run(1)
			outs = append(outs, r.Output("success")...)
		}
		require.Equal(t, "image/png", outs[0].FlowFile.Attr(edgeagent.AttrMimeType))
		w, h := camDecode(t, outs[0].Content)
		require.Equal(t, [2]int{100, 100}, [2]int{w, h})
	})
}

func TestCaptureFrameImageDirectoryLoops(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []color.RGBA{{R: 255}, {G: 255}} {
		m := gocv.NewMatWithSize(24, 32, gocv.MatTypeCV8UC3)
		gocv.Rectangle(&m, image.Rect(0, 0, 32, 24), c, -1)
		require.True(t, gocv.IMWrite(filepath.Join(dir, fmt.Sprintf("img%d.png", i)), m))
		m.Close()
	}
	r := enginetest.NewRunner(t, processors.CaptureFrameSpec(), map[string]string{"source": dir, "loop": "true", "encoding": "raw"})
	var outs []enginetest.Output
	for len(outs) < 5 {
		r.Run(1)
		outs = append(outs, r.Output("success")...)
	}
	for i, o := range outs {
		require.Equal(t, strconv.Itoa(i), o.FlowFile.Attr(processors.AttrFrameSeq))
		red := o.Content[2] // the first pixel's R (BGR)
		require.Equal(t, i%2 == 0, red > 200, "frame %d: img0, img1, img0, ...", i)
	}
}

func TestCaptureFrameConfigErrors(t *testing.T) {
	spec := processors.CaptureFrameSpec()
	requireConfigError(t, spec, map[string]string{}, "required")
	requireConfigError(t, spec, map[string]string{"source": "ftp://x/y"}, "unknown scheme")
	requireConfigError(t, spec, map[string]string{"source": "0", "jpeg_quality": "0"}, "0 is not from 1 to 100")
	requireConfigError(t, spec, map[string]string{"source": "0", "fps": "-1"}, "must not be negative")
	requireConfigError(t, spec, map[string]string{"source": "0", "fourcc": "MJPEG"}, "four-character")
	requireConfigError(t, spec, map[string]string{"source": "0", "password_env": "X"}, "username")
	requireConfigError(t, spec, map[string]string{"source": "0", "reconnect_backoff": "10s", "reconnect_max_backoff": "1s"}, "reconnect_max_backoff")

	r, err := enginetest.TryNewRunner(t, spec, map[string]string{"source": filepath.Join(t.TempDir(), "missing.mp4")})
	require.NoError(t, err)
	require.ErrorContains(t, r.Trigger(), "missing.mp4", "a missing video file stops the flow from starting")
}

// frameGate is a downstream processor that takes frames only while open and
// records what it took.
type frameGate struct {
	open atomic.Bool
	mu   sync.Mutex
	got  []map[string]string
}

func (g *frameGate) OnTrigger(_ context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	if !g.open.Load() {
		pc.Yield()
		return nil
	}
	for _, ff := range s.GetBatch(10) {
		g.mu.Lock()
		g.got = append(g.got, ff.Attributes)
		g.mu.Unlock()
		s.Transfer(ff, edgeagent.RelSuccess)
	}
	return nil
}

func (g *frameGate) frames() []map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]map[string]string(nil), g.got...)
}

// camFlow runs flowYAML (DATA: a temporary directory) with CaptureFrame
// and the gate, returning the engine, the CaptureFrame instance and the
// repository.
func camFlow(t testing.TB, g *frameGate, flowYAML string) (*engine.Engine, camStats, *buffer.Repo) {
	t.Helper()
	var capture camStats
	reg := edgeagent.NewRegistry()
	reg.MustRegister(wrapSpec(processors.CaptureFrameSpec(), func(p edgeagent.Processor) edgeagent.Processor {
		capture = p.(camStats)
		return p
	}), edgeagent.ProcessorSpec{
		Type: "FrameGate", Summary: "test gate", Input: edgeagent.InputRequired,
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		New:           func(*edgeagent.ProcessorConfig) (edgeagent.Processor, error) { return g, nil },
	})
	dir := t.TempDir()
	flow, err := config.Parse(filepath.Join(dir, "flow.yaml"), []byte(strings.ReplaceAll(flowYAML, "DATA", dir)), reg)
	require.NoError(t, err)
	repo, err := buffer.Open(flow.Agent.DataDir, buffer.Options{})
	require.NoError(t, err)
	eng, err := engine.New(flow, repo, nil)
	require.NoError(t, err)
	require.NoError(t, eng.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, eng.Stop(ctx))
		require.NoError(t, repo.Close())
		require.False(t, capture.Stats().Open, "the capture is closed when Stop returns")
	})
	return eng, capture, repo
}

// camQueue returns a connection's status.
func camQueue(t *testing.T, eng *engine.Engine, name string) engine.QueueStatus {
	t.Helper()
	qs, err := eng.Queues()
	require.NoError(t, err)
	for _, q := range qs {
		if q.Name == name {
			return q
		}
	}
	t.Fatalf("no queue %s", name)
	return engine.QueueStatus{}
}

// rssBytes reads the process's resident set size.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func TestCaptureFrameLiveSourceSkipsUnderBackpressureAndResumes(t *testing.T) {
	video, _ := camTestVideo(t)
	g := &frameGate{}
	eng, capture, _ := camFlow(t, g, `
agent: {id: t, data_dir: DATA/data}
processors:
  - name: cam
    type: CaptureFrame
    properties: {source: "`+video+`", live: "true", loop: "true", camera_id: lobby}
  - name: gate
    type: FrameGate
    auto_terminate: [success]
connections:
  - {name: frames, from: cam, relationship: success, to: gate, max_count: 5}
`)
	// The video plays as a 30 fps camera; nothing drains the queue.
	require.Eventually(t, func() bool { return camQueue(t, eng, "frames").Full }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return capture.Stats().Skipped >= 10 }, 10*time.Second, 10*time.Millisecond, "frames are skipped while the queue is full")
	heap0, rss0 := heapInuse(), rssBytes(t)
	skipped0 := capture.Stats().Skipped
	require.Eventually(t, func() bool { return capture.Stats().Skipped >= skipped0+45 }, 10*time.Second, 10*time.Millisecond)
	heap1, rss1 := heapInuse(), rssBytes(t)
	q := camQueue(t, eng, "frames")
	require.LessOrEqual(t, q.Count, int64(6), "the queue stays at its threshold")
	require.Less(t, int64(heap1)-int64(heap0), int64(4<<20), "Go heap flat while skipping (%d -> %d)", heap0, heap1)
	require.Less(t, rss1-rss0, int64(16<<20), "RSS flat while skipping (%d -> %d); 45 leaked frames would be 24 MB", rss0, rss1)
	st := capture.Stats()
	require.LessOrEqual(t, st.Emitted, uint64(6))

	g.open.Store(true)
	require.Eventually(t, func() bool {
		for _, a := range g.frames() {
			if n, _ := strconv.Atoi(a[processors.AttrFrameSkippedBefore]); n >= 45 {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "capture resumes, the first new frame counting the frames skipped")
	require.Eventually(t, func() bool { return len(g.frames()) >= 20 }, 10*time.Second, 10*time.Millisecond, "and goes on")
	frames := g.frames()
	var total uint64
	for i, a := range frames {
		require.Equal(t, "lobby", a[processors.AttrCameraID])
		seq, err := strconv.ParseUint(a[processors.AttrFrameSeq], 10, 64)
		require.NoError(t, err)
		skipped, _ := strconv.ParseUint(a[processors.AttrFrameSkippedBefore], 10, 64)
		total += skipped
		if i > 0 {
			prev, _ := strconv.ParseUint(frames[i-1][processors.AttrFrameSeq], 10, 64)
			require.Equal(t, seq-prev-1, skipped, "frame %d: the gap in frame.seq is frame.skipped_before", i)
		} else {
			require.Equal(t, seq, skipped)
		}
	}
	require.LessOrEqual(t, total, capture.Stats().Skipped)
}

func TestCaptureFrameReopensALostStream(t *testing.T) {
	video, _ := camTestVideo(t)
	data, err := os.ReadFile(video)
	require.NoError(t, err)
	var down atomic.Bool
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if u, p, ok := r.BasicAuth(); !ok || u != "cam" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="cam"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		http.ServeContent(w, r, "small.mp4", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	t.Setenv("CAM_TEST_PASSWORD", "s3cret")

	g := &frameGate{}
	g.open.Store(true)
	_, capture, repo := camFlow(t, g, `
agent: {id: t, data_dir: DATA/data}
processors:
  - name: cam
    type: CaptureFrame
    properties: {source: "`+srv.URL+`/small.mp4", fps: "60", username: cam, password_env: CAM_TEST_PASSWORD, reconnect_backoff: 20ms, reconnect_max_backoff: 80ms}
  - name: gate
    type: FrameGate
    auto_terminate: [success]
connections:
  - {name: frames, from: cam, relationship: success, to: gate}
`)
	// The stream ends after the video's frames: for a live source that is
	// a lost stream, and it is reopened.
	require.Eventually(t, func() bool { return capture.Stats().Reconnects >= 1 }, 20*time.Second, 10*time.Millisecond)
	down.Store(true)
	require.Eventually(t, func() bool { return capture.Stats().Errors >= 3 }, 20*time.Second, 10*time.Millisecond, "failed reopens are retried")
	before := capture.Stats().Reconnects
	n := len(g.frames())
	down.Store(false)
	require.Eventually(t, func() bool { return capture.Stats().Reconnects > before && len(g.frames()) > n }, 20*time.Second, 10*time.Millisecond, "frames flow again once the stream is back")

	// The password is in no provenance event.
	var evs []provenance.Event
	require.NoError(t, repo.DB().View(func(tx *bolt.Tx) error {
		var err error
		evs, err = provenance.Since(tx, time.Time{}, 0)
		return err
	}))
	recv := eventsOf(evs, provenance.EventReceive)
	require.NotEmpty(t, recv)
	for _, e := range recv {
		require.Equal(t, srv.URL+"/small.mp4", e.TransitURI)
	}
}

// BenchmarkCaptureFrameVsBareGocv compares the frames per second of a real
// flow (CaptureFrame decoding gocv's test video into JPEG flowfiles on
// durable queues -> UpdateAttribute) with a bare gocv read+encode loop:
//
//	go test -tags gocv -run '^$' -bench CaptureFrameVsBare -benchtime 3x ./processors/
func BenchmarkCaptureFrameVsBareGocv(b *testing.B) {
	agentGC(b)
	video, _ := camTestVideo(b)
	var ratio, bare, eng float64
	for i := 0; b.Loop(); i++ {
		res, err := camerabench.Run(context.Background(), filepath.Join(b.TempDir(), strconv.Itoa(i)), video, 4, 3)
		require.NoError(b, err)
		b.Log("\n" + res.String())
		ratio += res.Ratio
		bare += res.BareFPS
		eng += res.EngineFPS
	}
	n := float64(b.N)
	b.ReportMetric(eng/n, "engine-frames/s")
	b.ReportMetric(bare/n, "bare-frames/s")
	b.ReportMetric(ratio/n, "ratio")
}

// agentGC gives the benchmark the garbage collector settings of the agent
// binary (engine.TuneGC, as make bench does) and restores the test's after.
func agentGC(b *testing.B) {
	pct := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(-1)
	engine.TuneGC()
	b.Cleanup(func() {
		debug.SetGCPercent(pct)
		debug.SetMemoryLimit(limit)
	})
}

func TestCaptureFrameMissingCameraIsRetried(t *testing.T) {
	r := enginetest.NewRunner(t, processors.CaptureFrameSpec(), map[string]string{
		"source": "/dev/video97", "reconnect_backoff": "10ms", "reconnect_max_backoff": "20ms",
	})
	start := time.Now()
	require.NoError(t, r.Trigger(), "a camera that is not there does not stop the flow from starting")
	require.Empty(t, r.Output("success"))
	require.False(t, r.Yielded(), "a live source does not end")
	capture := r.Harness().Processor().(camStats)
	require.Eventually(t, func() bool { return capture.Stats().Errors >= 3 }, 10*time.Second, 5*time.Millisecond, "opening is retried")
	require.False(t, capture.Stats().Open)
	require.NoError(t, r.Harness().Stop(context.Background()))
	require.Less(t, time.Since(start), 5*time.Second)
}
