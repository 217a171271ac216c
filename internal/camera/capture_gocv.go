//go:build gocv

package camera

import (
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gocv.io/x/gocv"
)

// cvCapture is a Capture on OpenCV: a VideoCapture, or the files of an
// image directory. Read decodes into the Mat of the current frame, which
// Detach hands over, taking another from the pool of released frames.
type cvCapture struct {
	live   bool
	vc     *gocv.VideoCapture // nil for an image directory
	files  []string           // image directory
	next   int
	cur    *cvRaw // the current frame
	pool   *rawPool
	opts   OpenOptions
	period time.Duration
}

// cvRaw is a frame read by a cvCapture, with the Mat its encoder converts
// and resizes into.
type cvRaw struct {
	pool    *rawPool
	frame   gocv.Mat
	scratch gocv.Mat
}

// Release implements Raw.
func (r *cvRaw) Release() { r.pool.put(r) }

func (r *cvRaw) close() {
	r.frame.Close()
	r.scratch.Close()
}

// maxPooled is how many released frames a capture keeps for reuse: enough
// for the frames a Grabber's encoders hold.
const maxPooled = 8

// rawPool keeps the released frames of a capture for its next Reads. It
// outlives the capture: frames released after Close are freed.
type rawPool struct {
	opts   OpenOptions
	mu     sync.Mutex
	free   []*cvRaw
	closed bool
}

func (p *rawPool) get() *cvRaw {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		r := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return r
	}
	return &cvRaw{pool: p, frame: gocv.NewMat(), scratch: gocv.NewMat()}
}

func (p *rawPool) put(r *cvRaw) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.free) >= maxPooled {
		r.close()
		return
	}
	p.free = append(p.free, r)
}

func (p *rawPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, r := range p.free {
		r.close()
	}
	p.free = nil
}

// Open opens src with OpenCV. A live source that cannot be opened, or a
// path that is neither a readable video file nor a directory holding
// images, is an error. Error messages never hold a stream's password.
func Open(src Source, o OpenOptions) (Capture, error) {
	o = o.withDefaults()
	c := &cvCapture{live: src.Live(), opts: o}
	var err error
	switch src.Kind {
	case KindDevice:
		c.vc, err = openDevice(src, o)
	case KindCSI:
		c.vc, err = openVideo(CSIPipeline(CSIOptions{SensorID: src.SensorID, Width: o.Width, Height: o.Height, FPS: o.FPS, FlipMethod: o.FlipMethod}), gocv.VideoCaptureGstreamer)
	case KindStream:
		u := src.URL
		if o.Username != "" {
			u = WithCredentials(u, o.Username, o.Password)
		}
		scheme := strings.ToLower(u.Scheme)
		if o.RTSPBackend == BackendGStreamer && (scheme == "rtsp" || scheme == "rtsps") {
			c.vc, err = openVideo(RTSPPipeline(u, o.RTSPLatency), gocv.VideoCaptureGstreamer)
		} else {
			c.vc, err = openVideo(u.String(), gocv.VideoCaptureFFmpeg)
		}
	case KindPipeline:
		c.vc, err = openVideo(src.Pipeline, gocv.VideoCaptureGstreamer)
	case KindPath:
		err = c.openPath(src.Path)
	default:
		err = fmt.Errorf("%w: unknown kind", ErrInvalidSource)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", src, err)
	}
	c.pool = &rawPool{opts: o}
	return c, nil
}

// openVideo opens a VideoCapture, closing it when it did not open. The
// error does not repeat name (it may hold credentials).
func openVideo(name string, api gocv.VideoCaptureAPI) (*gocv.VideoCapture, error) {
	vc, err := gocv.VideoCaptureFileWithAPI(name, api)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			_ = vc.Close()
		}
		return nil, errors.New("opencv cannot open it")
	}
	return vc, nil
}

// openDevice opens a V4L2 camera and requests the format, size and rate.
func openDevice(src Source, o OpenOptions) (*gocv.VideoCapture, error) {
	idx := src.Device
	if idx < 0 {
		resolved, err := filepath.EvalSymlinks(src.Path)
		if err != nil {
			return nil, err
		}
		n, ok := DeviceIndex(resolved)
		if !ok {
			return nil, fmt.Errorf("%s is not a /dev/videoN device", resolved)
		}
		idx = n
	}
	vc, err := gocv.VideoCaptureDeviceWithAPI(idx, gocv.VideoCaptureV4L2)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			_ = vc.Close()
		}
		return nil, errors.New("opencv cannot open the device")
	}
	if len(o.FourCC) == 4 {
		vc.Set(gocv.VideoCaptureFOURCC, vc.ToCodec(o.FourCC))
	}
	if o.Width > 0 {
		vc.Set(gocv.VideoCaptureFrameWidth, float64(o.Width))
	}
	if o.Height > 0 {
		vc.Set(gocv.VideoCaptureFrameHeight, float64(o.Height))
	}
	if o.FPS > 0 {
		vc.Set(gocv.VideoCaptureFPS, o.FPS)
	}
	return vc, nil
}

// openPath opens a video file or an image directory.
func (c *cvCapture) openPath(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() {
		if c.files, err = ListImages(path); err != nil {
			return err
		}
		if len(c.files) == 0 {
			return fmt.Errorf("no image files (%s) in the directory", strings.Join(imageExts, ", "))
		}
		if c.opts.Pace {
			c.period = period(c.opts.PaceFPS)
		}
		return nil
	}
	if c.vc, err = openVideo(path, gocv.VideoCaptureAny); err != nil {
		return err
	}
	if c.opts.Pace {
		fps := c.vc.Get(gocv.VideoCaptureFPS)
		if fps <= 0 || fps > 1000 {
			fps = c.opts.PaceFPS
		}
		c.period = period(fps)
	}
	return nil
}

// Read implements Capture.
func (c *cvCapture) Read() error {
	if c.cur == nil {
		c.cur = c.pool.get()
	}
	if c.vc == nil {
		for c.next < len(c.files) {
			m := gocv.IMRead(c.files[c.next], gocv.IMReadColor)
			c.next++
			if m.Empty() {
				m.Close() // not an image OpenCV can read: skipped
				continue
			}
			c.cur.frame.Close()
			c.cur.frame = m
			return nil
		}
		return io.EOF
	}
	if !c.vc.Read(&c.cur.frame) || c.cur.frame.Empty() {
		if c.live {
			return ErrLost
		}
		return io.EOF
	}
	return nil
}

// Detach implements Capture.
func (c *cvCapture) Detach() (Raw, error) {
	r := c.cur
	if r == nil || r.frame.Empty() {
		return nil, errors.New("no current frame")
	}
	c.cur = nil
	return r, nil
}

// Encode implements Raw: it converts the frame to 8-bit BGR, resizes it to
// the capture's size (TargetSize) and encodes it as the capture's options
// say (Encoding, JPEGQuality) into f. The converted and resized frame goes
// to r.scratch.
func (r *cvRaw) Encode(f *Frame) error {
	src, scratch, o := r.frame, &r.scratch, r.pool.opts
	if src.Empty() {
		return errors.New("no current frame")
	}
	switch src.Channels() {
	case 3:
	case 1:
		gocv.CvtColor(src, scratch, gocv.ColorGrayToBGR)
		src = *scratch
	case 4:
		gocv.CvtColor(src, scratch, gocv.ColorBGRAToBGR)
		src = *scratch
	default:
		return fmt.Errorf("a frame with %d channels", src.Channels())
	}
	if src.Type() != gocv.MatTypeCV8UC3 {
		return fmt.Errorf("a frame of type %v, not 8-bit BGR", src.Type())
	}
	w, h := src.Cols(), src.Rows()
	if tw, th := o.TargetSize(w, h); tw != w || th != h {
		interp := gocv.InterpolationLinear
		if tw < w && th < h {
			interp = gocv.InterpolationArea
		}
		gocv.Resize(src, scratch, image.Pt(tw, th), 0, 0, interp)
		src, w, h = *scratch, tw, th
	}
	f.Width, f.Height, f.Channels = w, h, 3
	switch o.Encoding {
	case EncodingRaw:
		if b, err := src.DataPtrUint8(); err == nil {
			f.Data = append(f.Data[:0], b...)
		} else {
			f.Data = append(f.Data[:0], src.ToBytes()...)
		}
		return nil
	case EncodingPNG:
		buf, err := gocv.IMEncode(gocv.PNGFileExt, src)
		if err != nil {
			return fmt.Errorf("encoding png: %w", err)
		}
		f.Data = append(f.Data[:0], buf.GetBytes()...)
		buf.Close()
		return nil
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, src, []int{gocv.IMWriteJpegQuality, o.JPEGQuality})
	if err != nil {
		return fmt.Errorf("encoding jpeg: %w", err)
	}
	f.Data = append(f.Data[:0], buf.GetBytes()...)
	buf.Close()
	return nil
}

// Period implements Capture.
func (c *cvCapture) Period() time.Duration { return c.period }

// Close implements Capture.
func (c *cvCapture) Close() error {
	if c.vc != nil {
		_ = c.vc.Close()
		c.vc = nil
	}
	if c.cur != nil {
		c.cur.close()
		c.cur = nil
	}
	c.pool.close()
	return nil
}

// BareEncodeLoop reads every frame of a video file with a plain gocv loop
// and encodes it as JPEG at quality, reusing one Mat: the baseline the
// CaptureFrame benchmark compares with. It returns the frames and the time
// taken.
func BareEncodeLoop(path string, quality int) (int, time.Duration, error) {
	start := time.Now()
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		if vc != nil {
			_ = vc.Close()
		}
		return 0, 0, fmt.Errorf("opening %s: %w", path, err)
	}
	defer vc.Close()
	m := gocv.NewMat()
	defer m.Close()
	n := 0
	for vc.Read(&m) && !m.Empty() {
		buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, m, []int{gocv.IMWriteJpegQuality, quality})
		if err != nil {
			return n, time.Since(start), fmt.Errorf("encoding frame %d: %w", n, err)
		}
		buf.Close()
		n++
	}
	return n, time.Since(start), nil
}

// VideoFrameCount returns the frame count a video file's container reports
// (OpenCV's CAP_PROP_FRAME_COUNT), for tests and benchmarks.
func VideoFrameCount(path string) (int, error) {
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		if vc != nil {
			_ = vc.Close()
		}
		return 0, fmt.Errorf("opening %s: %w", path, err)
	}
	defer vc.Close()
	return int(vc.Get(gocv.VideoCaptureFrameCount)), nil
}
