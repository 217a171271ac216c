package camera

import (
	"math"
	"time"
)

// Encoding is how a Capture encodes frames.
type Encoding string

// Encodings.
const (
	EncodingJPEG Encoding = "jpeg" // image/jpeg
	EncodingPNG  Encoding = "png"  // image/png
	EncodingRaw  Encoding = "raw"  // packed BGR bytes, row by row (application/octet-stream)
)

// MIMEType returns the media type of frames in the encoding.
func (e Encoding) MIMEType() string {
	switch e {
	case EncodingJPEG:
		return "image/jpeg"
	case EncodingPNG:
		return "image/png"
	}
	return "application/octet-stream"
}

// Ext returns the file name extension of frames in the encoding.
func (e Encoding) Ext() string {
	switch e {
	case EncodingJPEG:
		return ".jpg"
	case EncodingPNG:
		return ".png"
	}
	return ".bgr"
}

// RTSP backends.
const (
	BackendFFmpeg    = "ffmpeg"
	BackendGStreamer = "gstreamer"
)

// OpenOptions say how Open opens a source and encodes its frames.
type OpenOptions struct {
	// Width and Height are the size of the frames delivered: requested from
	// V4L2 cameras, the capture size of CSI cameras, and frames of another
	// size are resized. 0 and 0: the source's size; one of them 0: scaled
	// to keep the aspect ratio.
	Width, Height int
	// FPS is requested from V4L2 and CSI cameras (0: theirs).
	FPS float64
	// FlipMethod is the CSI pipeline's nvvidconv flip-method (0 to 7).
	FlipMethod int
	// FourCC is the pixel format requested from a V4L2 camera (MJPG,
	// YUYV); "" leaves the camera's.
	FourCC string
	// RTSPBackend opens rtsp:// and rtsps:// streams with OpenCV's FFmpeg
	// backend (BackendFFmpeg, the default) or through RTSPTemplate
	// (BackendGStreamer).
	RTSPBackend string
	// RTSPLatency is rtspsrc's jitter buffer with BackendGStreamer.
	RTSPLatency time.Duration
	// Username and Password are the credentials of a stream (they replace
	// any in its URL when Username is set).
	Username, Password string
	// Encoding and JPEGQuality (1 to 100) say how frames are encoded.
	Encoding    Encoding
	JPEGQuality int
	// Pace plays a video file at its own frame rate, or an image directory
	// at PaceFPS, as a camera would deliver them (Capture.Period).
	Pace bool
	// PaceFPS is the frame rate of a paced image directory, and of a paced
	// video file that does not say its own (0: 30).
	PaceFPS float64
}

// withDefaults returns o with JPEG at quality 90 where Encoding or
// JPEGQuality are unset (or the quality out of range).
func (o OpenOptions) withDefaults() OpenOptions {
	if o.JPEGQuality <= 0 || o.JPEGQuality > 100 {
		o.JPEGQuality = 90
	}
	if o.Encoding == "" {
		o.Encoding = EncodingJPEG
	}
	return o
}

// TargetSize returns the size frames of w x h are delivered at under o.
func (o OpenOptions) TargetSize(w, h int) (int, int) {
	switch {
	case o.Width > 0 && o.Height > 0:
		return o.Width, o.Height
	case o.Width > 0 && w > 0:
		return o.Width, max(1, int(math.Round(float64(h)*float64(o.Width)/float64(w))))
	case o.Height > 0 && h > 0:
		return max(1, int(math.Round(float64(w)*float64(o.Height)/float64(h)))), o.Height
	}
	return w, h
}

// period returns the interval of a frame rate, or 1/30 s for 0.
func period(fps float64) time.Duration {
	if fps <= 0 || math.IsNaN(fps) || math.IsInf(fps, 0) {
		fps = 30
	}
	return time.Duration(float64(time.Second) / fps)
}
