// Package camera captures frames from cameras, network streams, video files
// and image directories for the CaptureFrame processor.
//
// The package has two halves. The pure Go half (no build tag) parses source
// strings (ParseSource), builds the GStreamer pipelines for Jetson CSI
// cameras and RTSP streams (CSIPipeline, RTSPPipeline), and runs the capture
// loop: a Grabber reads frames from a Capture on its own goroutine (locked
// to its OS thread) at the source's pace, capped by a frame rate, detaches
// each raw frame and hands it to a few encoding goroutines, and puts the
// encoded frames, in capture order, into a Slot that the processor takes
// frames from (for live sources, a single "latest frame" slot). Decoding
// the next frame thus overlaps encoding the previous ones, and the frames'
// buffers are reused once their session committed. The OpenCV half (build
// tag gocv, cgo) opens the sources, decodes frames and resizes and encodes
// them with gocv.io/x/gocv (Open), and has the bare OpenCV loop the
// CaptureFrame benchmark compares with (BareEncodeLoop; the benchmark
// itself is package camerabench).
//
// Live sources (cameras, streams, pipelines) never wait for the flow: a frame
// that is not taken before the next one arrives is overwritten, and frames
// read while the flow has backpressure or every encoder is busy are not
// even encoded; all are counted as skipped, and the next frame delivered
// carries the count. A lost live source is closed and reopened with a
// capped exponential backoff. Video files and image directories are not
// live unless told to be: their Slot is a small FIFO (BufferFrames) and the
// Grabber waits for room, room being made only when a session that took
// frames commits, so every frame arrives once, in order, and one commit can
// carry several frames (Slot.TakeBatch); at the end the source ends (or
// loops).
//
// Call order: NewGrabber, then Run on one goroutine (it returns when its
// context is cancelled or a non-looping file ends, and it closes the
// Capture); Slot and Stats may be used from any goroutine at any time.
package camera
