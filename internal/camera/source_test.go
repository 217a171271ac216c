package camera_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/camera"
)

func TestParseSource(t *testing.T) {
	tests := []struct {
		in     string
		kind   camera.Kind
		check  func(t *testing.T, s camera.Source)
		String string
	}{
		{in: "0", kind: camera.KindDevice, String: "v4l2://0", check: func(t *testing.T, s camera.Source) { require.Equal(t, 0, s.Device) }},
		{in: " 2 ", kind: camera.KindDevice, String: "v4l2://2", check: func(t *testing.T, s camera.Source) { require.Equal(t, 2, s.Device) }},
		{in: "/dev/video1", kind: camera.KindDevice, String: "v4l2:///dev/video1", check: func(t *testing.T, s camera.Source) {
			require.Equal(t, -1, s.Device)
			require.Equal(t, "/dev/video1", s.Path)
		}},
		{in: "v4l2:///dev/v4l/by-id/usb-cam-video-index0", kind: camera.KindDevice, String: "v4l2:///dev/v4l/by-id/usb-cam-video-index0"},
		{in: "v4l2://3", kind: camera.KindDevice, String: "v4l2://3", check: func(t *testing.T, s camera.Source) { require.Equal(t, 3, s.Device) }},
		{in: "csi://0", kind: camera.KindCSI, String: "csi://0"},
		{in: "csi://1", kind: camera.KindCSI, String: "csi://1", check: func(t *testing.T, s camera.Source) { require.Equal(t, 1, s.SensorID) }},
		{in: "rtsp://admin:secret@10.0.0.5:554/stream1", kind: camera.KindStream, String: "rtsp://admin:xxxxx@10.0.0.5:554/stream1", check: func(t *testing.T, s camera.Source) {
			pw, _ := s.URL.User.Password()
			require.Equal(t, "secret", pw, "the credentials are kept for opening")
		}},
		{in: "https://cam.local/mjpeg", kind: camera.KindStream, String: "https://cam.local/mjpeg"},
		{in: "gst:videotestsrc ! videoconvert ! appsink", kind: camera.KindPipeline, String: "gstreamer:videotestsrc ! videoconvert ! appsink"},
		{in: `gst:rtspsrc location=rtsp://u:pw@h/x ! decodebin ! appsink`, kind: camera.KindPipeline, String: "gstreamer:rtspsrc location=rtsp://u:xxxxx@h/x ! decodebin ! appsink"},
		{in: "/data/clip.mp4", kind: camera.KindPath, String: "file:///data/clip.mp4"},
		{in: "file:///data/frames/", kind: camera.KindPath, String: "file:///data/frames", check: func(t *testing.T, s camera.Source) { require.Equal(t, "/data/frames", s.Path) }},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := camera.ParseSource(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.kind, s.Kind)
			require.Equal(t, tt.String, s.String())
			require.Equal(t, tt.kind != camera.KindPath, s.Live())
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func TestParseSourceErrors(t *testing.T) {
	for _, in := range []string{"", "  ", "csi://x", "csi://99", "v4l2://", "v4l2://video0", "gst:videotestsrc ! fakesink", "ftp://host/x", "rtsp:///nohost", "file://", "99999999999999999999999"} {
		t.Run(in, func(t *testing.T) {
			_, err := camera.ParseSource(in)
			require.ErrorIs(t, err, camera.ErrInvalidSource)
		})
	}
	_, err := camera.ParseSource("ftp://user:hunter2@host/x")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2", "errors never show a password")
}

func TestDeviceIndex(t *testing.T) {
	n, ok := camera.DeviceIndex("/dev/video12")
	require.True(t, ok)
	require.Equal(t, 12, n)
	_, ok = camera.DeviceIndex("/dev/media0")
	require.False(t, ok)
}

func TestCSIPipeline(t *testing.T) {
	require.Equal(t,
		"nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=(int)1280, height=(int)720, framerate=(fraction)30/1, format=(string)NV12 ! "+
			"nvvidconv flip-method=0 ! video/x-raw, width=(int)1280, height=(int)720, format=(string)BGRx ! "+
			"videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false",
		camera.CSIPipeline(camera.CSIOptions{SensorID: 1}))
	p := camera.CSIPipeline(camera.CSIOptions{Width: 1920, Height: 1080, FPS: 29.97, FlipMethod: 3})
	require.Contains(t, p, "width=(int)1920, height=(int)1080, framerate=(fraction)30/1")
	require.Contains(t, p, "flip-method=3 ! video/x-raw, width=(int)1080, height=(int)1920,", "a 90° rotation swaps the output size")
	require.NotContains(t, p, "{")
}

func TestRTSPPipeline(t *testing.T) {
	u := &url.URL{Scheme: "rtsp", User: url.UserPassword("admin", `se"cret`), Host: "10.0.0.5:554", Path: "/stream1", RawQuery: "x=1"}
	p := camera.RTSPPipeline(u, 150*time.Millisecond)
	require.Equal(t, `rtspsrc location="rtsp://10.0.0.5:554/stream1?x=1" latency=150 drop-on-latency=true user-id="admin" user-pw="se\"cret" ! `+
		"decodebin ! videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false", p)
	u2, _ := url.Parse("rtsp://cam/live")
	require.False(t, strings.Contains(camera.RTSPPipeline(u2, 0), "user-id"))
	withCreds := camera.WithCredentials(u2, "bob", "pw")
	require.Equal(t, "rtsp://bob:pw@cam/live", withCreds.String())
	require.Equal(t, "rtsp://cam/live", u2.String(), "the source URL is not changed")
}

func TestTargetSize(t *testing.T) {
	for _, tt := range []struct {
		o          camera.OpenOptions
		w, h       int
		wantW, wnH int
	}{
		{camera.OpenOptions{}, 640, 480, 640, 480},
		{camera.OpenOptions{Width: 320, Height: 200}, 640, 480, 320, 200},
		{camera.OpenOptions{Width: 320}, 640, 480, 320, 240},
		{camera.OpenOptions{Height: 120}, 640, 480, 160, 120},
	} {
		w, h := tt.o.TargetSize(tt.w, tt.h)
		require.Equal(t, [2]int{tt.wantW, tt.wnH}, [2]int{w, h})
	}
}

func TestEncodingMIMEAndExt(t *testing.T) {
	require.Equal(t, "image/jpeg", camera.EncodingJPEG.MIMEType())
	require.Equal(t, ".png", camera.EncodingPNG.Ext())
	require.Equal(t, "application/octet-stream", camera.EncodingRaw.MIMEType())
}
