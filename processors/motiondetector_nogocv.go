//go:build !gocv

package processors

import "edgeagent.dev"

// MotionDetectorSpec returns the spec of MotionDetector. This binary was
// built without the gocv tag: the type is known (flows validate and say
// which tag to build with) but cannot run.
func MotionDetectorSpec() edgeagent.ProcessorSpec { return motionDetectorSpec(nil) }
