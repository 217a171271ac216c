package camera

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kind is the kind of frame source a source string names.
type Kind int

// Source kinds.
const (
	KindDevice   Kind = iota + 1 // a V4L2 camera: /dev/videoN, v4l2:///dev/videoN, v4l2://N or an index N
	KindCSI                      // a Jetson CSI camera: csi://N (an nvarguscamerasrc pipeline)
	KindStream                   // a network stream: rtsp://, rtsps://, rtmp://, http://, https://
	KindPipeline                 // a GStreamer pipeline ending in appsink: gst:PIPELINE
	KindPath                     // a video file or a directory of images (file:// optional)
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindDevice:
		return "v4l2"
	case KindCSI:
		return "csi"
	case KindStream:
		return "stream"
	case KindPipeline:
		return "gstreamer"
	case KindPath:
		return "file"
	}
	return "unknown"
}

// Source is a parsed source string.
type Source struct {
	Kind Kind
	// Device is the V4L2 device index (KindDevice), or -1 when Path names
	// the device node.
	Device int
	// Path is the device node (KindDevice) or the video file or image
	// directory (KindPath).
	Path string
	// SensorID is the CSI sensor (KindCSI).
	SensorID int
	// URL is the stream's address (KindStream), credentials included if the
	// source string has them.
	URL *url.URL
	// Pipeline is the GStreamer pipeline (KindPipeline).
	Pipeline string
}

// streamSchemes are the URL schemes of network streams.
var streamSchemes = map[string]bool{"rtsp": true, "rtsps": true, "rtmp": true, "http": true, "https": true}

// ParseSource parses a CaptureFrame source string. It does no I/O: whether
// a path is a video file or a directory is decided when it is opened.
//
//	0, /dev/video0, v4l2:///dev/video0, v4l2://0   a V4L2 camera
//	csi://0                                        a Jetson CSI camera (see CSITemplate)
//	rtsp://host/stream (rtsps, rtmp, http, https)  a network stream
//	gst:videotestsrc ! videoconvert ! appsink      a GStreamer pipeline
//	/data/clip.mp4, file:///data/frames/           a video file or a directory of images
func ParseSource(s string) (Source, error) {
	s = strings.TrimSpace(s)
	bad := func(why string) (Source, error) {
		return Source{}, fmt.Errorf("%w %q: %s", ErrInvalidSource, redactString(s), why)
	}
	switch {
	case s == "":
		return bad("empty")
	case isDigits(s):
		n, err := strconv.Atoi(s)
		if err != nil {
			return bad("device index out of range")
		}
		return Source{Kind: KindDevice, Device: n}, nil
	case strings.HasPrefix(s, "v4l2://"):
		rest := strings.TrimPrefix(s, "v4l2://")
		if isDigits(rest) {
			n, err := strconv.Atoi(rest)
			if err != nil {
				return bad("device index out of range")
			}
			return Source{Kind: KindDevice, Device: n}, nil
		}
		if !strings.HasPrefix(rest, "/") || len(rest) < 2 {
			return bad("v4l2:// needs a device node (v4l2:///dev/video0) or an index (v4l2://0)")
		}
		return Source{Kind: KindDevice, Device: -1, Path: filepath.Clean(rest)}, nil
	case strings.HasPrefix(s, "/dev/"):
		return Source{Kind: KindDevice, Device: -1, Path: filepath.Clean(s)}, nil
	case strings.HasPrefix(s, "csi://"):
		rest := strings.TrimSuffix(strings.TrimPrefix(s, "csi://"), "/")
		if rest == "" {
			return Source{Kind: KindCSI}, nil
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 || n > 15 {
			return bad("csi:// takes a sensor number from 0 to 15 (csi://0)")
		}
		return Source{Kind: KindCSI, SensorID: n}, nil
	case strings.HasPrefix(s, "gst:"):
		p := strings.TrimSpace(strings.TrimPrefix(s, "gst:"))
		if !strings.Contains(p, "appsink") {
			return bad("a GStreamer pipeline must end in appsink (gst:... ! videoconvert ! video/x-raw,format=BGR ! appsink)")
		}
		return Source{Kind: KindPipeline, Pipeline: p}, nil
	case strings.HasPrefix(s, "file://"):
		p := strings.TrimPrefix(s, "file://")
		if p == "" {
			return bad("file:// needs a path")
		}
		return Source{Kind: KindPath, Path: filepath.Clean(p)}, nil
	}
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		if !streamSchemes[strings.ToLower(scheme)] {
			return bad("unknown scheme " + scheme + "://")
		}
		u, err := url.Parse(s)
		if err != nil {
			return bad("not a URL")
		}
		if u.Host == "" {
			return bad("the URL has no host")
		}
		return Source{Kind: KindStream, URL: u}, nil
	}
	return Source{Kind: KindPath, Path: filepath.Clean(s)}, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Live reports whether frames of the source are skipped rather than waited
// for: true for cameras, streams and pipelines, false for video files and
// image directories.
func (s Source) Live() bool { return s.Kind != KindPath }

// String returns the source as a URI for logs and provenance, with any
// password redacted: v4l2:///dev/video0, v4l2://0, csi://0,
// rtsp://user:xxxxx@host/path, gstreamer:PIPELINE, file:///abs/path.
func (s Source) String() string {
	switch s.Kind {
	case KindDevice:
		if s.Device >= 0 {
			return "v4l2://" + strconv.Itoa(s.Device)
		}
		return "v4l2://" + s.Path
	case KindCSI:
		return "csi://" + strconv.Itoa(s.SensorID)
	case KindStream:
		return s.URL.Redacted()
	case KindPipeline:
		return "gstreamer:" + redactString(s.Pipeline)
	case KindPath:
		p, err := filepath.Abs(s.Path)
		if err != nil {
			p = s.Path
		}
		return "file://" + filepath.ToSlash(p)
	}
	return "unknown:"
}

// userinfoRE matches the password part of URLs inside a string.
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@"']*):[^@\s"'/]*@`)

// redactString replaces the passwords of URLs in s with xxxxx.
func redactString(s string) string { return userinfoRE.ReplaceAllString(s, "${1}:xxxxx@") }

// devNodeRE matches a V4L2 device node and captures its index.
var devNodeRE = regexp.MustCompile(`^/dev/video(\d+)$`)

// DeviceIndex returns the index of a V4L2 device node path as resolved
// (for example /dev/v4l/by-id/... links resolve to /dev/videoN), or false
// when it is not a /dev/videoN node.
func DeviceIndex(resolved string) (int, bool) {
	m := devNodeRE.FindStringSubmatch(resolved)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// CSITemplate is the GStreamer pipeline a csi://N source opens on a Jetson
// (the camera is read through Argus by nvarguscamerasrc, converted and
// flipped by nvvidconv on the VIC, then handed to OpenCV as BGR; appsink
// keeps only the newest buffer). The placeholders are filled by
// CSIPipeline: {sensor_id}; {width}, {height} and {fps}, the capture mode
// (default 1280x720 at 30 frames per second; the sensor must offer it);
// {flip_method}, nvvidconv's flip-method (0 none, 1 rotate 90°
// counterclockwise, 2 rotate 180°, 3 rotate 90° clockwise, 4 flip
// horizontally, 5 flip across the upper-right diagonal, 6 flip vertically,
// 7 flip across the upper-left diagonal); {out_width} and {out_height}, the
// output size, which is the capture size with width and height swapped for
// the methods that rotate by 90° (1, 3, 5, 7).
const CSITemplate = "nvarguscamerasrc sensor-id={sensor_id} ! " +
	"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){fps}/1, format=(string)NV12 ! " +
	"nvvidconv flip-method={flip_method} ! " +
	"video/x-raw, width=(int){out_width}, height=(int){out_height}, format=(string)BGRx ! " +
	"videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"

// CSIOptions fill CSITemplate.
type CSIOptions struct {
	SensorID      int
	Width, Height int     // 0: 1280x720
	FPS           float64 // 0: 30; rounded up to a whole number
	FlipMethod    int     // 0 to 7
}

// CSIPipeline returns CSITemplate filled with o.
func CSIPipeline(o CSIOptions) string {
	w, h := o.Width, o.Height
	if w <= 0 || h <= 0 {
		w, h = 1280, 720
	}
	fps := 30
	if o.FPS > 0 {
		fps = int(o.FPS)
		if float64(fps) < o.FPS {
			fps++
		}
	}
	ow, oh := w, h
	if o.FlipMethod%2 == 1 {
		ow, oh = h, w
	}
	return strings.NewReplacer(
		"{sensor_id}", strconv.Itoa(o.SensorID),
		"{width}", strconv.Itoa(w), "{height}", strconv.Itoa(h),
		"{fps}", strconv.Itoa(fps), "{flip_method}", strconv.Itoa(o.FlipMethod),
		"{out_width}", strconv.Itoa(ow), "{out_height}", strconv.Itoa(oh),
	).Replace(CSITemplate)
}

// RTSPTemplate is the GStreamer pipeline an RTSP stream opens with
// rtsp_backend gstreamer: rtspsrc buffers {latency_ms} milliseconds and
// drops what arrives later, decodebin picks a decoder, and appsink keeps
// only the newest frame. {url} is the stream without credentials; with
// credentials the user-id and user-pw properties are added. (On a Jetson,
// hardware decoding needs nvv4l2decoder and nvvidconv: give such a pipeline
// as a gst: source.)
const RTSPTemplate = `rtspsrc location="{url}" latency={latency_ms} drop-on-latency=true{auth} ! ` +
	"decodebin ! videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"

// RTSPPipeline returns RTSPTemplate for u, whose credentials (if any) move
// to rtspsrc's user-id and user-pw properties.
func RTSPPipeline(u *url.URL, latency time.Duration) string {
	bare := *u
	auth := ""
	if u.User != nil {
		auth = " user-id=" + gstQuote(u.User.Username())
		if pw, ok := u.User.Password(); ok {
			auth += " user-pw=" + gstQuote(pw)
		}
		bare.User = nil
	}
	return strings.NewReplacer(
		"{url}", gstEscape(bare.String()),
		"{latency_ms}", strconv.FormatInt(latency.Milliseconds(), 10),
		"{auth}", auth,
	).Replace(RTSPTemplate)
}

// gstEscape escapes s for use inside a double-quoted gst-launch value.
func gstEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// gstQuote returns s as a double-quoted gst-launch value.
func gstQuote(s string) string { return `"` + gstEscape(s) + `"` }

// WithCredentials returns a copy of u with user and password set (the
// password only when user is set).
func WithCredentials(u *url.URL, user, password string) *url.URL {
	c := *u
	if user != "" {
		if password != "" {
			c.User = url.UserPassword(user, password)
		} else {
			c.User = url.User(user)
		}
	}
	return &c
}
