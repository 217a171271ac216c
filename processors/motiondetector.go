//go:build gocv

package processors

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gocv.io/x/gocv"

	"edgeagent.dev"
	"edgeagent.dev/inference"
)

// MotionDetectorSpec returns the spec of MotionDetector, which routes
// camera frames by whether something moved.
func MotionDetectorSpec() edgeagent.ProcessorSpec { return motionDetectorSpec(newMotionDetector) }

// defaultCamera keys the background of frames without camera.id.
const defaultCamera = ""

type motionDetector struct {
	method       string
	sensitivity  float64
	minArea      int
	warmup       int
	blur         int
	rate         float64
	history      int
	processWidth int

	mu      sync.Mutex
	cameras map[string]*motionState // by camera.id
	stopped bool
}

func newMotionDetector(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	p := &motionDetector{method: cfg.Property("method").String(), cameras: map[string]*motionState{}}
	if p.method != motionRunningAverage && p.method != motionMOG2 {
		return nil, fmt.Errorf("property method: %q is not one of %s, %s", p.method, motionRunningAverage, motionMOG2)
	}
	var err error
	if p.sensitivity, err = cfg.Property("sensitivity").Float(); err != nil || p.sensitivity <= 0 {
		return nil, fmt.Errorf("property sensitivity: %q is not a number above 0", cfg.Property("sensitivity").String())
	}
	if p.method == motionRunningAverage && p.sensitivity > 255 {
		return nil, fmt.Errorf("property sensitivity: %g is more than 255 (a grey-level difference)", p.sensitivity)
	}
	n, err := intProp(cfg, "min_area", 1)
	if err != nil {
		return nil, err
	}
	p.minArea = int(n)
	if n, err = intProp(cfg, "warmup_frames", 0); err != nil {
		return nil, err
	}
	p.warmup = max(1, int(n))
	if n, err = intProp(cfg, "blur", 0); err != nil {
		return nil, err
	}
	if err := validateBlur(strconv.FormatInt(n, 10)); err != nil {
		return nil, fmt.Errorf("property blur: %w", err)
	}
	p.blur = int(n)
	if p.rate, err = cfg.Property("learning_rate").Float(); err != nil || p.rate <= 0 || p.rate > 1 {
		return nil, fmt.Errorf("property learning_rate: %q is not a number above 0 and at most 1", cfg.Property("learning_rate").String())
	}
	if n, err = intProp(cfg, "mog2_history", 1); err != nil {
		return nil, err
	}
	p.history = int(n)
	if n, err = intProp(cfg, "process_width", 0); err != nil {
		return nil, err
	}
	p.processWidth = int(n)
	return p, nil
}

// state returns the camera's state, creating it on first use.
func (p *motionDetector) state(camera string) (*motionState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil, errors.New("motion detector is stopped")
	}
	st, ok := p.cameras[camera]
	if !ok {
		st = newMotionState()
		p.cameras[camera] = st
	}
	return st, nil
}

// Stop releases every camera's OpenCV buffers.
func (p *motionDetector) Stop(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for id, st := range p.cameras {
		st.close()
		delete(p.cameras, id)
	}
	return nil
}

func (p *motionDetector) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	batch := s.GetBatch(batchSize)
	for i, ff := range batch {
		if stopping(ctx, s, batch[i:]) {
			return nil
		}
		b, err := s.ReadAll(ff)
		if err != nil {
			return fmt.Errorf("reading content of %s: %w", ff.ID, err)
		}
		res, err := p.detect(ff, b)
		if err != nil {
			routeToFailure(s, ff, err)
			continue
		}
		rel := RelNoMotion
		if len(res.boxes) > 0 {
			rel = RelMotion
		}
		attrs := map[string]string{
			AttrMotionCount: strconv.Itoa(len(res.boxes)),
			AttrMotionArea:  strconv.Itoa(res.area),
			AttrMotionBoxes: res.boxesJSON(),
		}
		if res.warmup {
			attrs[AttrMotionWarmup] = "true"
		}
		ff = s.PutAttributes(ff, attrs)
		details := fmt.Sprintf("%s: %d boxes, %d pixels", rel.Name, len(res.boxes), res.area)
		if res.warmup {
			details = "no_motion: learning the background"
		}
		s.Provenance().Route(ff, rel, details)
		s.Transfer(ff, rel)
	}
	return nil
}

// motionResult is the outcome for one frame.
type motionResult struct {
	boxes  []image.Rectangle
	area   int
	warmup bool
}

// boxesJSON renders the boxes as [[x,y,w,h],...].
func (r *motionResult) boxesJSON() string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i, b := range r.boxes {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, "[%d,%d,%d,%d]", b.Min.X, b.Min.Y, b.Dx(), b.Dy())
	}
	sb.WriteByte(']')
	return sb.String()
}

// detect decodes the frame to grey and compares it with its camera's
// background. Errors are the flowfile's (it goes to failure).
func (p *motionDetector) detect(ff *edgeagent.FlowFile, b []byte) (*motionResult, error) {
	grey, err := decodeGrey(ff, b)
	if err != nil {
		return nil, err
	}
	defer grey.Close()
	st, err := p.state(ff.Attr(AttrCameraID))
	if err != nil {
		return nil, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil, errors.New("motion detector is stopped")
	}
	return st.compare(p, grey), nil
}

// decodeGrey decodes a JPEG or PNG file, or a raw BGR or grey frame of the
// width and height attributes, into a grey Mat the caller closes.
func decodeGrey(ff *edgeagent.FlowFile, b []byte) (gocv.Mat, error) {
	if inference.IsEncodedImage(b) {
		m, err := gocv.IMDecode(b, gocv.IMReadGrayScale)
		if err == nil && m.Empty() {
			m.Close()
			err = errors.New("opencv cannot decode it")
		}
		if err != nil {
			return gocv.Mat{}, fmt.Errorf("decoding image: %w", err)
		}
		return m, nil
	}
	ws, hs := ff.Attr(AttrWidth), ff.Attr(AttrHeight)
	if ws == "" || hs == "" {
		return gocv.Mat{}, errors.New("decoding image: the content is not a JPEG or PNG file, and there are no width and height attributes for a raw frame")
	}
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	ch := 3
	var err3 error
	if cs := ff.Attr(AttrChannels); cs != "" {
		ch, err3 = strconv.Atoi(cs)
	}
	if err1 != nil || err2 != nil || err3 != nil || w <= 0 || h <= 0 || ch != 1 && ch != 3 {
		return gocv.Mat{}, fmt.Errorf("decoding image: width %q, height %q, channels %q do not describe a raw BGR or grey frame", ws, hs, ff.Attr(AttrChannels))
	}
	if len(b) != w*h*ch {
		return gocv.Mat{}, fmt.Errorf("decoding image: %d bytes is not a %dx%d frame of %d channels (%d bytes)", len(b), w, h, ch, w*h*ch)
	}
	typ := gocv.MatTypeCV8UC3
	if ch == 1 {
		typ = gocv.MatTypeCV8UC1
	}
	raw, err := gocv.NewMatFromBytes(h, w, typ, b)
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("decoding image: %w", err)
	}
	defer raw.Close()
	grey := gocv.NewMat()
	if ch == 1 {
		raw.CopyTo(&grey)
	} else {
		gocv.CvtColor(raw, &grey, gocv.ColorBGRToGray)
	}
	runtime.KeepAlive(b)
	return grey, nil
}

// motionState is one camera's background and scratch buffers, reused from
// frame to frame. Its lock is held for a whole comparison.
type motionState struct {
	mu     sync.Mutex
	closed bool
	frames int // frames seen at the current size
	size   image.Point

	bg      gocv.Mat // running_average: CV_32F average of the processed frames
	mog     *gocv.BackgroundSubtractorMOG2
	small   gocv.Mat
	blurred gocv.Mat
	bg8     gocv.Mat
	diff    gocv.Mat
	mask    gocv.Mat
	kernel  gocv.Mat
}

func newMotionState() *motionState {
	return &motionState{
		bg: gocv.NewMat(), small: gocv.NewMat(), blurred: gocv.NewMat(), bg8: gocv.NewMat(),
		diff: gocv.NewMat(), mask: gocv.NewMat(),
		kernel: gocv.GetStructuringElement(gocv.MorphRect, image.Pt(3, 3)),
	}
}

// close releases the buffers; the caller holds no lock.
func (st *motionState) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	st.closed = true
	for _, m := range []*gocv.Mat{&st.bg, &st.small, &st.blurred, &st.bg8, &st.diff, &st.mask, &st.kernel} {
		m.Close()
	}
	if st.mog != nil {
		st.mog.Close()
		st.mog = nil
	}
}

// compare processes one grey frame; st.mu is held.
func (st *motionState) compare(p *motionDetector, grey gocv.Mat) *motionResult {
	w, h := grey.Cols(), grey.Rows()
	if sz := image.Pt(w, h); sz != st.size {
		st.size, st.frames = sz, 0
		if st.mog != nil {
			st.mog.Close()
			st.mog = nil
		}
	}
	src := grey
	scale := 1.0
	if p.processWidth > 0 && w > p.processWidth {
		sh := max(1, int(math.Round(float64(h)*float64(p.processWidth)/float64(w))))
		gocv.Resize(grey, &st.small, image.Pt(p.processWidth, sh), 0, 0, gocv.InterpolationArea)
		src, scale = st.small, float64(w)/float64(p.processWidth)
	}
	if p.blur > 1 {
		gocv.GaussianBlur(src, &st.blurred, image.Pt(p.blur, p.blur), 0, 0, gocv.BorderDefault)
		src = st.blurred
	}
	st.frames++
	warm := st.frames <= p.warmup
	switch p.method {
	case motionMOG2:
		if st.mog == nil {
			mog := gocv.NewBackgroundSubtractorMOG2WithParams(p.history, p.sensitivity, false)
			st.mog = &mog
		}
		st.mog.Apply(src, &st.mask)
	default:
		if st.frames == 1 {
			src.ConvertTo(&st.bg, gocv.MatTypeCV32F)
			return &motionResult{warmup: true}
		}
		st.bg.ConvertTo(&st.bg8, gocv.MatTypeCV8U)
		gocv.AbsDiff(src, st.bg8, &st.diff)
		gocv.Threshold(st.diff, &st.mask, float32(p.sensitivity), 255, gocv.ThresholdBinary)
		gocv.AccumulatedWeighted(src, &st.bg, p.rate)
	}
	if warm {
		return &motionResult{warmup: true}
	}
	gocv.DilateWithParams(st.mask, &st.mask, st.kernel, image.Pt(-1, -1), 2, gocv.BorderConstant, color.RGBA{})
	contours := gocv.FindContours(st.mask, gocv.RetrievalExternal, gocv.ChainApproxSimple)
	defer contours.Close()
	res := &motionResult{}
	for i := range contours.Size() {
		r := gocv.BoundingRect(contours.At(i))
		if scale != 1 {
			r = image.Rect(int(math.Floor(float64(r.Min.X)*scale)), int(math.Floor(float64(r.Min.Y)*scale)),
				int(math.Ceil(float64(r.Max.X)*scale)), int(math.Ceil(float64(r.Max.Y)*scale)))
		}
		r = r.Intersect(image.Rect(0, 0, w, h))
		if a := r.Dx() * r.Dy(); a >= p.minArea {
			res.boxes = append(res.boxes, r)
			res.area += a
		}
	}
	slices.SortStableFunc(res.boxes, func(a, b image.Rectangle) int {
		return b.Dx()*b.Dy() - a.Dx()*a.Dy()
	})
	return res
}
