//go:build gocv

package processors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/internal/camera"
)

// CaptureFrameSpec returns the spec of CaptureFrame, a source that captures
// camera frames with OpenCV.
func CaptureFrameSpec() edgeagent.ProcessorSpec { return captureFrameSpec(newCaptureFrame) }

// frameWait is how long one run waits for a frame: longer than a camera's
// frame interval, so a run normally returns with a frame, and short enough
// that stopping the flow is not held up.
const frameWait = 250 * time.Millisecond

// A video file or image directory is read ahead of the flow, so a run that
// finds frames waiting waits up to batchLinger more for batchFrames of
// them, to commit them in one transaction (a transaction has a fixed cost
// near that of encoding a frame); a live frame is taken at once.
const (
	batchFrames = 16
	batchLinger = 5 * time.Millisecond
)

type captureFrame struct {
	cameraID     string
	filePrefix   string // of the filename attribute: the camera ID, made safe, and "-"
	src          camera.Source
	open         camera.OpenOptions
	grab         camera.GrabberConfig
	passwordFile string
	passwordEnv  string

	// Set in Start.
	grabber atomic.Pointer[camera.Grabber]
	cancel  context.CancelFunc
	done    chan struct{}
	ended   atomic.Bool // the end of the source was logged
}

func newCaptureFrame(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	src, err := camera.ParseSource(cfg.Property("source").String())
	if err != nil {
		return nil, fmt.Errorf("property source: %w", err)
	}
	p := &captureFrame{
		cameraID:     cfg.Property("camera_id").String(),
		src:          src,
		passwordFile: cfg.Property("password_file").String(),
		passwordEnv:  cfg.Property("password_env").String(),
	}
	if p.cameraID == "" {
		p.cameraID = cfg.Name
	}
	p.filePrefix = strings.NewReplacer("/", "_", `\`, "_").Replace(p.cameraID) + "-"
	o := &p.open
	if o.FPS, err = cfg.Property("fps").Float(); err != nil || o.FPS < 0 {
		return nil, fmt.Errorf("property fps: %q is not a number of 0 or more", cfg.Property("fps").String())
	}
	w, err := intProp(cfg, "width", 0)
	if err != nil {
		return nil, err
	}
	h, err := intProp(cfg, "height", 0)
	if err != nil {
		return nil, err
	}
	o.Width, o.Height = int(w), int(h)
	switch e := camera.Encoding(cfg.Property("encoding").String()); e {
	case camera.EncodingJPEG, camera.EncodingPNG, camera.EncodingRaw:
		o.Encoding = e
	default:
		return nil, fmt.Errorf("property encoding: %q is not one of jpeg, png, raw", e)
	}
	q, err := intProp(cfg, "jpeg_quality", 1)
	if err != nil {
		return nil, err
	}
	if q > 100 {
		return nil, fmt.Errorf("property jpeg_quality: %d is more than 100", q)
	}
	o.JPEGQuality = int(q)
	flip, err := intProp(cfg, "flip_method", 0)
	if err != nil {
		return nil, err
	}
	if flip > 7 {
		return nil, fmt.Errorf("property flip_method: %d is more than 7", flip)
	}
	o.FlipMethod = int(flip)
	if o.FourCC = cfg.Property("fourcc").String(); o.FourCC != "" {
		if err := validateFourCC(o.FourCC); err != nil {
			return nil, fmt.Errorf("property fourcc: %w", err)
		}
	}
	switch b := cfg.Property("rtsp_backend").String(); b {
	case camera.BackendFFmpeg, camera.BackendGStreamer:
		o.RTSPBackend = b
	default:
		return nil, fmt.Errorf("property rtsp_backend: %q is not one of ffmpeg, gstreamer", b)
	}
	if o.RTSPLatency, err = cfg.Property("rtsp_latency").Duration(); err != nil {
		return nil, fmt.Errorf("property rtsp_latency: %w", err)
	}
	o.Username = cfg.Property("username").String()
	if p.passwordFile != "" && p.passwordEnv != "" {
		return nil, errors.New("properties password_file and password_env: set one of them")
	}
	if (p.passwordFile != "" || p.passwordEnv != "") && o.Username == "" {
		return nil, errors.New("property username: required with password_file or password_env")
	}
	live, err := boolProp(cfg, "live")
	if err != nil {
		return nil, err
	}
	loop, err := boolProp(cfg, "loop")
	if err != nil {
		return nil, err
	}
	o.Pace = live && src.Kind == camera.KindPath
	o.PaceFPS = o.FPS
	g := &p.grab
	g.Name, g.Live, g.Loop, g.FPS = src.String(), src.Live() || live, loop, o.FPS
	if g.Backoff, err = cfg.Property("reconnect_backoff").Duration(); err != nil {
		return nil, fmt.Errorf("property reconnect_backoff: %w", err)
	}
	if g.MaxBackoff, err = cfg.Property("reconnect_max_backoff").Duration(); err != nil {
		return nil, fmt.Errorf("property reconnect_max_backoff: %w", err)
	}
	if g.Backoff <= 0 || g.MaxBackoff < g.Backoff {
		return nil, errors.New("properties reconnect_backoff and reconnect_max_backoff: need 0 < reconnect_backoff <= reconnect_max_backoff")
	}
	return p, nil
}

// Start opens a video file or image directory (so a wrong path stops the
// flow from starting) and starts the grabber; a camera or stream is opened
// by the grabber, which retries until it opens.
func (p *captureFrame) Start(ctx context.Context, pc edgeagent.ProcessContext) error {
	o := p.open
	if p.passwordFile != "" {
		b, err := os.ReadFile(p.passwordFile)
		if err != nil {
			return fmt.Errorf("reading password_file: %w", err)
		}
		o.Password = strings.TrimRight(string(b), "\r\n")
	}
	if p.passwordEnv != "" {
		pw, ok := os.LookupEnv(p.passwordEnv)
		if !ok {
			return fmt.Errorf("reading password_env: environment variable %s is not set", p.passwordEnv)
		}
		o.Password = pw
	}
	gcfg := p.grab
	gcfg.Open = func(context.Context) (camera.Capture, error) { return camera.Open(p.src, o) }
	gcfg.Backpressure = pc.HasBackpressure
	gcfg.Logger = pc.Logger()
	g := camera.NewGrabber(gcfg)
	var first camera.Capture
	if p.src.Kind == camera.KindPath {
		var err error
		if first, err = gcfg.Open(ctx); err != nil {
			return err
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	p.grabber.Store(g)
	go func() {
		defer close(p.done)
		g.Run(runCtx, first)
	}()
	return nil
}

// Stop stops the grabber and closes the source; the grabber has exited
// when it returns (a read blocked in a driver or a stalled stream is waited
// for: FFmpeg gives up on a stalled stream after 30 s).
func (p *captureFrame) Stop(ctx context.Context) error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping capture of %s: the grabber is still blocked reading: %w", p.grab.Name, ctx.Err())
	}
}

// Stats returns the capture counters (frames captured, emitted and skipped,
// reconnections): the frames captured/skipped metrics.
func (p *captureFrame) Stats() camera.Stats {
	if g := p.grabber.Load(); g != nil {
		return g.Stats()
	}
	return camera.Stats{}
}

// ProcessorMetrics implements edgeagent.MetricsReporter: frames captured
// and skipped, and the source's state.
func (p *captureFrame) ProcessorMetrics() []edgeagent.Metric {
	st := p.Stats()
	return []edgeagent.Metric{
		{Name: "frames_captured_total", Help: "Frames read from the camera source (after the fps cap).", Value: float64(st.Captured), Counter: true},
		{Name: "frames_emitted_total", Help: "Frames committed as flowfiles.", Value: float64(st.Emitted), Counter: true},
		{Name: "frames_skipped_total", Help: "Frames dropped at the source: backpressure, or a flow slower than the camera.", Value: float64(st.Skipped), Counter: true},
		{Name: "camera_reconnects_total", Help: "Times a lost camera or stream was opened again.", Value: float64(st.Reconnects), Counter: true},
		{Name: "camera_errors_total", Help: "Failed opens, reads and encodes.", Value: float64(st.Errors), Counter: true},
		{Name: "camera_open", Help: "1 while the camera source is open, else 0.", Value: boolMetric(st.Open)},
	}
}

func (p *captureFrame) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	g := p.grabber.Load()
	if g == nil {
		return errors.New("capture is not started")
	}
	slot := g.Slot()
	want, linger := 1, time.Duration(0)
	if !p.grab.Live {
		want, linger = batchFrames, batchLinger
	}
	frames, err := slot.TakeBatch(ctx, want, camera.BufferFrames, frameWait, linger)
	if err != nil {
		if p.ended.CompareAndSwap(false, true) {
			if errors.Is(err, camera.ErrEnded) {
				pc.Logger().Info("frame source ended; the processor idles", "source", p.grab.Name)
			} else {
				pc.Logger().Error("frame source failed; the processor idles", "source", p.grab.Name, "error", err)
			}
		}
		pc.Yield()
		return nil
	}
	if len(frames) == 0 {
		return nil
	}
	attrs := make(map[string]string, 9)
	for _, f := range frames {
		p.emit(s, f, attrs)
	}
	// The session holds the frames' bytes until it commits or rolls back;
	// the slot reuses them after Done (and after Requeue drops them).
	s.OnCommitted(func() { slot.Done(frames) })
	s.OnRolledBack(func() { slot.Requeue(frames) })
	return nil
}

// emit turns one frame into a flowfile sent to success; attrs is scratch
// space (PutAttributes copies it).
func (p *captureFrame) emit(s edgeagent.ProcessSession, f *camera.Frame, attrs map[string]string) {
	clear(attrs)
	attrs[edgeagent.AttrCaptureTime] = f.Time.UTC().Format(time.RFC3339Nano)
	attrs[AttrFrameSeq] = strconv.FormatUint(f.Seq, 10)
	attrs[AttrWidth] = strconv.Itoa(f.Width)
	attrs[AttrHeight] = strconv.Itoa(f.Height)
	attrs[AttrCameraID] = p.cameraID
	attrs[edgeagent.AttrMimeType] = p.open.Encoding.MIMEType()
	attrs[edgeagent.AttrFilename] = fmt.Sprintf("%s%08d%s", p.filePrefix, f.Seq, p.open.Encoding.Ext())
	if p.open.Encoding == camera.EncodingRaw {
		attrs[AttrChannels] = strconv.Itoa(f.Channels)
	}
	if f.SkippedBefore > 0 {
		attrs[AttrFrameSkippedBefore] = strconv.FormatUint(f.SkippedBefore, 10)
	}
	ff := s.Create()
	ff = s.PutAttributes(ff, attrs)
	ff = s.Write(ff, f.Data)
	s.Provenance().Receive(ff, p.grab.Name, "")
	s.Transfer(ff, edgeagent.RelSuccess)
}
