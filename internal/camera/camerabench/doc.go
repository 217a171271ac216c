// Package camerabench measures CaptureFrame against a bare OpenCV loop
// (build tag gocv): the frames per second of a real engine flow that
// decodes gocv's bundled test video into JPEG flowfiles on durable queues,
// against a plain gocv loop that reads and encodes the same video. make
// bench prints the ratio (target >= 0.9).
package camerabench
