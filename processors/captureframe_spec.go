package processors

import (
	"errors"
	"fmt"
	"strconv"

	"edgeagent.dev"
	"edgeagent.dev/internal/camera"
)

// Attributes CaptureFrame writes (MotionDetector reads camera.id).
const (
	AttrFrameSeq           = "frame.seq"            // the capture sequence number, from 0; skipped frames leave gaps
	AttrFrameSkippedBefore = "frame.skipped_before" // frames skipped since the previous flowfile (only when > 0)
	AttrCameraID           = "camera.id"            // the camera_id property (default: the processor name)
	AttrWidth              = "width"                // frame width in pixels
	AttrHeight             = "height"               // frame height in pixels
	AttrChannels           = "channels"             // raw frames: bytes per pixel (3, BGR)
)

// validateSource checks a CaptureFrame source string.
func validateSource(v string) error {
	_, err := camera.ParseSource(v)
	return err
}

// validateFourCC checks a V4L2 pixel format code.
func validateFourCC(v string) error {
	if len(v) != 4 {
		return fmt.Errorf("%q is not a four-character code (MJPG, YUYV)", v)
	}
	return nil
}

// intInRange returns a PropertySpec.Validate function for integers from lo to hi.
func intInRange(lo, hi int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		if n < lo || n > hi {
			return fmt.Errorf("%d is not from %d to %d", n, lo, hi)
		}
		return nil
	}
}

// notNegative checks a number is 0 or more.
func notNegative(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", v)
	}
	if f < 0 {
		return errors.New("must not be negative")
	}
	return nil
}

// captureFrameSpec returns CaptureFrame's spec with the constructor newFn
// (nil in a build without the gocv tag).
func captureFrameSpec(newFn func(*edgeagent.ProcessorConfig) (edgeagent.Processor, error)) edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "CaptureFrame",
		Summary: "Captures frames from a V4L2 or Jetson CSI camera, an RTSP stream, a video file or an image directory (OpenCV) as JPEG, PNG or raw BGR flowfiles.",
		Description: "source is one of: a V4L2 camera (/dev/video0, a /dev/v4l/by-id/ link, v4l2:///dev/video0, or an " +
			"index such as 0); a Jetson CSI camera, csi://0, opened through the GStreamer pipeline " +
			"\"" + camera.CSITemplate + "\" (width, height and fps give the capture mode, default 1280x720 at 30; " +
			"flip_method rotates or flips); a network stream, rtsp://, rtsps://, rtmp://, http:// or https:// (RTSP through " +
			"OpenCV's FFmpeg backend, or with rtsp_backend gstreamer through \"" + camera.RTSPTemplate + "\"); a GStreamer " +
			"pipeline ending in appsink, gst:PIPELINE; a video file; or a directory of images (jpg, png, bmp, webp, tiff, " +
			"pnm; read in name order). A grabber goroutine reads frames at the source's pace, at most fps a second, into " +
			"a buffer; each run takes what is buffered (waiting briefly for a frame) and emits one flowfile per frame. " +
			"Cameras, streams and pipelines are live: a frame not taken before the next arrives is skipped, and while an " +
			"outgoing connection is full frames are read and dropped without being encoded, so a slow flow never " +
			"makes memory grow or the camera lag; skipped frames are counted (a metric) and the next flowfile carries " +
			"frame.skipped_before. A lost camera or stream is reopened with exponential backoff from reconnect_backoff " +
			"up to reconnect_max_backoff, logged. Video files and image directories are not live (unless live is " +
			"true): every frame arrives once, in order, the grabber decoding at most " + strconv.Itoa(camera.BufferFrames) + " frames ahead of " +
			"the last commit (one run then emits up to that many, in one commit); at the end the " +
			"processor idles (it yields on every run) or, with loop, starts again; a restart of the flow reads the file " +
			"from its start. Frames are resized to width x height when they differ (one of them alone keeps the aspect " +
			"ratio) and encoded as jpeg (jpeg_quality), png or raw (packed BGR bytes, row by row). Attributes: " +
			"capture.time (when the frame was grabbed, RFC 3339 with nanoseconds, UTC), frame.seq (from 0; frames " +
			"skipped leave gaps, frames above the fps cap of a live source do not), frame.skipped_before (when frames " +
			"were skipped), width, height, channels (raw), camera.id, mime.type (image/jpeg, image/png or " +
			"application/octet-stream) and filename (CAMERA-SEQ.jpg, .png or .bgr); a RECEIVE provenance event names " +
			"the source (passwords redacted). Run it with concurrency 1.",
		Input: edgeagent.InputForbidden,
		Properties: []edgeagent.PropertySpec{
			{Name: "source", Description: "The camera, stream, pipeline, video file or image directory (see the description).", Required: true, Validate: validateSource},
			{Name: "camera_id", Description: "The camera.id attribute (default: the processor name)."},
			{Name: "fps", Description: "The most frames a second (0: the source's pace, and for files as fast as the flow takes them). Requested from V4L2 and CSI cameras too.", Kind: edgeagent.KindFloat, Default: "0", Validate: notNegative},
			{Name: "width", Description: "The frame width in pixels (0: the source's): requested from V4L2 cameras, the CSI capture width, and frames of another size are resized.", Kind: edgeagent.KindInt, Default: "0", Validate: atLeast(0)},
			{Name: "height", Description: "The frame height in pixels (0: the source's), as width.", Kind: edgeagent.KindInt, Default: "0", Validate: atLeast(0)},
			{Name: "encoding", Description: "jpeg, png, or raw (packed BGR bytes; width, height and channels attributes).", Kind: edgeagent.KindEnum, Allowed: []string{string(camera.EncodingJPEG), string(camera.EncodingPNG), string(camera.EncodingRaw)}, Default: string(camera.EncodingJPEG)},
			{Name: "jpeg_quality", Description: "JPEG quality, 1 to 100.", Kind: edgeagent.KindInt, Default: "90", Validate: intInRange(1, 100)},
			{Name: "loop", Description: "Whether a video file or image directory starts again at its end.", Kind: edgeagent.KindBool, Default: "false"},
			{Name: "live", Description: "Play a video file or image directory as a live camera: at the video's frame rate (an image directory at fps, default 30), skipping frames the flow does not take in time.", Kind: edgeagent.KindBool, Default: "false"},
			{Name: "flip_method", Description: "CSI cameras: nvvidconv flip-method, 0 none, 1 rotate 90° counterclockwise, 2 rotate 180°, 3 rotate 90° clockwise, 4 flip horizontally, 5 upper-right diagonal, 6 flip vertically, 7 upper-left diagonal.", Kind: edgeagent.KindInt, Default: "0", Validate: intInRange(0, 7)},
			{Name: "fourcc", Description: "V4L2 cameras: the pixel format to request (MJPG lets most USB cameras reach 30 frames a second at 720p and above; YUYV); default the camera's.", Validate: validateFourCC},
			{Name: "rtsp_backend", Description: "How rtsp:// and rtsps:// streams are opened: ffmpeg (OpenCV's FFmpeg backend; set OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;tcp in the environment for TCP) or gstreamer (the RTSP pipeline in the description).", Kind: edgeagent.KindEnum, Allowed: []string{camera.BackendFFmpeg, camera.BackendGStreamer}, Default: camera.BackendFFmpeg},
			{Name: "rtsp_latency", Description: "rtsp_backend gstreamer: rtspsrc's jitter buffer; later packets are dropped.", Kind: edgeagent.KindDuration, Default: "200ms"},
			{Name: "username", Description: "Streams: the user name (replaces one in the URL)."},
			{Name: "password_file", Description: "Streams: a file holding the password (never put the password itself in the flow)."},
			{Name: "password_env", Description: "Streams: an environment variable holding the password."},
			{Name: "reconnect_backoff", Description: "The first wait before reopening a lost camera or stream; doubled after each failure.", Kind: edgeagent.KindDuration, Default: "500ms"},
			{Name: "reconnect_max_backoff", Description: "The longest wait between attempts to reopen a lost camera or stream.", Kind: edgeagent.KindDuration, Default: "30s"},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		BuildTag:      "gocv",
		New:           newFn,
	}
}
