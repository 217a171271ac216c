//go:build !gocv

package processors

import "edgeagent.dev"

// CaptureFrameSpec returns the spec of CaptureFrame. This binary was built
// without the gocv tag: the type is known (flows validate and say which tag
// to build with) but cannot run.
func CaptureFrameSpec() edgeagent.ProcessorSpec { return captureFrameSpec(nil) }
