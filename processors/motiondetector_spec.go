package processors

import (
	"fmt"
	"strconv"

	"edgeagent.dev"
)

// MotionDetector's relationships.
var (
	RelMotion   = edgeagent.Relationship{Name: "motion", Description: "Frames in which something moved; the boxes are in motion.boxes."}
	RelNoMotion = edgeagent.Relationship{Name: "no_motion", Description: "Frames in which nothing moved (and warm-up frames, with motion.warmup)."}
)

// Attributes MotionDetector writes.
const (
	AttrMotionBoxes  = "motion.boxes"  // JSON [[x,y,w,h],...] in the frame's pixels, largest first
	AttrMotionArea   = "motion.area"   // the summed area of the boxes, in pixels
	AttrMotionCount  = "motion.count"  // the number of boxes
	AttrMotionWarmup = "motion.warmup" // "true" on frames used only to learn the background
)

// Motion detection methods.
const (
	motionRunningAverage = "running_average"
	motionMOG2           = "mog2"
)

// validateBlur checks a blur kernel size: 0 or an odd number.
func validateBlur(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%q is not an integer", v)
	}
	if n < 0 || n > 99 || n > 0 && n%2 == 0 {
		return fmt.Errorf("%d is not 0 or an odd number up to 99", n)
	}
	return nil
}

// validateUnitFraction checks a number in (0, 1].
func validateUnitFraction(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 1 {
		return fmt.Errorf("%q is not a number above 0 and at most 1", v)
	}
	return nil
}

// motionDetectorSpec returns MotionDetector's spec with the constructor
// newFn (nil in a build without the gocv tag).
func motionDetectorSpec(newFn func(*edgeagent.ProcessorConfig) (edgeagent.Processor, error)) edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "MotionDetector",
		Summary: "Routes camera frames to motion or no_motion by comparing each with a learned background (OpenCV), with the moving regions as boxes.",
		Description: "Each flowfile holds a JPEG or PNG image, or a raw frame (packed BGR, or grey with channels 1) whose size is " +
			"in the width and height attributes. The frame is converted to grey, shrunk to process_width (if set), blurred " +
			"with a blur x blur Gaussian kernel, and compared with the background of its camera (the camera.id attribute; " +
			"frames without one share a background): with method running_average, pixels whose grey level differs from the " +
			"running average of the previous frames by more than sensitivity (1 to 255) are foreground, and the average " +
			"then moves toward the frame by learning_rate; with method mog2, OpenCV's MOG2 background subtractor decides, " +
			"sensitivity being its variance threshold (the squared Mahalanobis distance; 16 is OpenCV's default) and " +
			"mog2_history the number of frames it models. Either way a lower sensitivity detects smaller changes. The foreground is dilated " +
			"and each connected region whose bounding box covers at least min_area pixels of the frame is a motion box. " +
			"Frames with a box go to motion, the others to no_motion; both get motion.count, motion.area (the boxes' summed " +
			"area) and motion.boxes (JSON [[x,y,w,h],...] in the frame's own pixels, largest first), and a ROUTE provenance " +
			"event. The first warmup_frames frames of a camera (at least one; again after its frame size changes) only " +
			"train the background: they go to no_motion with motion.warmup true. A flowfile that is not an image goes to " +
			"failure with error.message. The state of each camera is guarded by a lock; with concurrency above 1, frames of " +
			"one camera are still compared one at a time but may be compared out of order, so keep concurrency 1 unless the " +
			"flow carries several cameras.",
		Input: edgeagent.InputRequired,
		Properties: []edgeagent.PropertySpec{
			{Name: "method", Description: "running_average (difference from a running average of the frames) or mog2 (OpenCV's MOG2 background subtractor).", Kind: edgeagent.KindEnum, Allowed: []string{motionRunningAverage, motionMOG2}, Default: motionRunningAverage},
			{Name: "sensitivity", Description: "The per-pixel threshold: the grey-level difference (running_average, 1 to 255) or MOG2's variance threshold; lower detects smaller changes.", Kind: edgeagent.KindFloat, Default: "25", Validate: validateSensitivity},
			{Name: "min_area", Description: "The smallest motion box, in pixels of the frame (width x height of the box).", Kind: edgeagent.KindInt, Default: "500", Validate: atLeast(1)},
			{Name: "warmup_frames", Description: "Frames of each camera used only to learn the background before motion is reported (at least 1 is).", Kind: edgeagent.KindInt, Default: "10", Validate: atLeast(0)},
			{Name: "blur", Description: "The Gaussian blur kernel size in pixels of the processed frame (odd; 0 or 1: none); it hides sensor noise and compression artefacts.", Kind: edgeagent.KindInt, Default: "7", Validate: validateBlur},
			{Name: "learning_rate", Description: "running_average: how fast the background follows the scene, the weight of each new frame in the average. Something that stops moving becomes background after a few times 1/learning_rate frames.", Kind: edgeagent.KindFloat, Default: "0.05", Validate: validateUnitFraction},
			{Name: "mog2_history", Description: "mog2: how many recent frames the background model covers (OpenCV's history); something that stops moving fades into the background over about this many frames.", Kind: edgeagent.KindInt, Default: "500", Validate: atLeast(1)},
			{Name: "process_width", Description: "Shrink frames wider than this to this width before comparing (faster on large frames; boxes are still reported in the frame's pixels); 0: full size.", Kind: edgeagent.KindInt, Default: "0", Validate: atLeast(0)},
		},
		Relationships: []edgeagent.Relationship{RelMotion, RelNoMotion, edgeagent.RelFailure},
		BuildTag:      "gocv",
		New:           newFn,
	}
}

// validateSensitivity checks a positive threshold.
func validateSensitivity(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		return fmt.Errorf("%q is not a number above 0", v)
	}
	return nil
}
