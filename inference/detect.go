package inference

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Box is an axis-aligned box: top-left (X1, Y1) and bottom-right (X2, Y2)
// corners, in pixels.
type Box struct {
	X1 float32 `json:"x1"`
	Y1 float32 `json:"y1"`
	X2 float32 `json:"x2"`
	Y2 float32 `json:"y2"`
}

// Area returns the box's area (0 for an empty box).
func (b Box) Area() float32 { return max(0, b.X2-b.X1) * max(0, b.Y2-b.Y1) }

// IoU returns the intersection over union of two boxes.
func IoU(a, b Box) float32 {
	in := Box{X1: max(a.X1, b.X1), Y1: max(a.Y1, b.Y1), X2: min(a.X2, b.X2), Y2: min(a.Y2, b.Y2)}.Area()
	u := a.Area() + b.Area() - in
	if u <= 0 {
		return 0
	}
	return in / u
}

// centreBox converts centre x, centre y, width, height to corners.
func centreBox(cx, cy, w, h float32) Box {
	return Box{X1: cx - w/2, Y1: cy - h/2, X2: cx + w/2, Y2: cy + h/2}
}

// Detection is one detected object.
type Detection struct {
	Class int     `json:"class"`
	Label string  `json:"label,omitempty"`
	Score float32 `json:"score"`
	Box   Box     `json:"box"`
}

// DecodeYOLOv5 decodes one image's YOLOv5 output: n rows of stride = 5+C
// values (centre x, centre y, width, height, objectness, C class scores),
// boxes in input pixels. A row's score is objectness times its best class
// score; rows under conf are dropped.
func DecodeYOLOv5(data []float32, n, stride int, conf float32) []Detection {
	var out []Detection
	if stride < 6 || len(data) < n*stride {
		return nil
	}
	for i := range n {
		row := data[i*stride : (i+1)*stride]
		obj := row[4]
		if obj < conf {
			continue
		}
		best := 0
		for c := 1; c < stride-5; c++ {
			if row[5+c] > row[5+best] {
				best = c
			}
		}
		score := obj * row[5+best]
		if score < conf {
			continue
		}
		out = append(out, Detection{Class: best, Score: score, Box: centreBox(row[0], row[1], row[2], row[3])})
	}
	return out
}

// DecodeYOLOv8 decodes one image's YOLOv8 (and v11) output: channels = 4+C
// rows of n values each (the transpose of v5's layout, and no
// objectness): centre x, centre y, width, height, then C class scores.
func DecodeYOLOv8(data []float32, channels, n int, conf float32) []Detection {
	var out []Detection
	if channels < 5 || len(data) < n*channels {
		return nil
	}
	for i := range n {
		best, score := 0, data[4*n+i]
		for c := 1; c < channels-4; c++ {
			if v := data[(4+c)*n+i]; v > score {
				best, score = c, v
			}
		}
		if score < conf {
			continue
		}
		out = append(out, Detection{Class: best, Score: score, Box: centreBox(data[i], data[n+i], data[2*n+i], data[3*n+i])})
	}
	return out
}

// YOLOLayout tells the two YOLO output layouts apart from an output shape
// [1, a, b]: v5 has many rows of few values (a > b), v8 few rows of many
// values (a < b). It returns the number of boxes and of values per box.
func YOLOLayout(shape []int64, version string) (boxes, values int, err error) {
	if len(shape) != 3 {
		return 0, 0, fmt.Errorf("%w: yolo output shape %s is not [batch, a, b]", ErrModelOutput, ShapeString(shape))
	}
	a, b := int(shape[1]), int(shape[2])
	switch version {
	case "yolov5":
		if b < 6 {
			return 0, 0, fmt.Errorf("%w: yolov5 output %s wants [batch, boxes, 5+classes]", ErrModelOutput, ShapeString(shape))
		}
		return a, b, nil
	case "yolov8":
		if a < 5 {
			return 0, 0, fmt.Errorf("%w: yolov8 output %s wants [batch, 4+classes, boxes]", ErrModelOutput, ShapeString(shape))
		}
		return b, a, nil
	}
	return 0, 0, fmt.Errorf("unknown yolo version %q", version)
}

// NMS keeps the best-scoring detections and drops any that overlaps a kept
// one of the same class (classAware) or of any class by more than iou.
// The result is sorted by score, best first, and has at most maxDet
// entries (0: no limit).
func NMS(dets []Detection, iou float32, classAware bool, maxDet int) []Detection {
	sorted := slices.Clone(dets)
	slices.SortStableFunc(sorted, func(a, b Detection) int { return cmp.Compare(b.Score, a.Score) })
	var keep []Detection
	for _, d := range sorted {
		ok := true
		for _, k := range keep {
			if (!classAware || k.Class == d.Class) && IoU(k.Box, d.Box) > iou {
				ok = false
				break
			}
		}
		if ok {
			keep = append(keep, d)
			if maxDet > 0 && len(keep) == maxDet {
				break
			}
		}
	}
	return keep
}

// SSDOutputs are one image's SSD-style outputs: boxes [N, 4] and either
// Scores [N] with Classes [N] (models that pick the class themselves, as
// TensorFlow's detection API exports do) or Scores [N, NumClasses] (one
// score per class).
type SSDOutputs struct {
	Boxes   []float32
	Scores  []float32
	Classes []float32 // nil when Scores holds one score per class
	// NumClasses is the number of scores per box when Classes is nil.
	NumClasses int
	// Count limits the boxes read (num_detections); 0: all of them.
	Count int
}

// SSDFormat says how SSD boxes are written.
type SSDFormat struct {
	// YXYX: each box is ymin, xmin, ymax, xmax (TensorFlow's order);
	// otherwise xmin, ymin, xmax, ymax.
	YXYX bool
	// Normalized: coordinates are fractions of the input size. "auto"
	// detection is left to the caller (SSDNormalized).
	Normalized bool
	// Background is the class index of the background score, skipped when
	// picking a box's class from per-class scores; -1 for none.
	Background int
	// ClassOffset is added to class IDs (1 for TensorFlow's 1-based COCO
	// IDs read against a 0-based labels file: -1).
	ClassOffset int
}

// SSDNormalized guesses whether boxes are normalised: every coordinate
// within [-0.5, 1.5].
func SSDNormalized(boxes []float32) bool {
	for _, v := range boxes {
		if v < -0.5 || v > 1.5 {
			return false
		}
	}
	return true
}

// DecodeSSD decodes SSD-style outputs into detections in input pixels
// (w x h is the model's input size), dropping those under conf.
func DecodeSSD(o SSDOutputs, f SSDFormat, w, h int, conf float32) ([]Detection, error) {
	n := len(o.Boxes) / 4
	if o.Count > 0 && o.Count < n {
		n = o.Count
	}
	perBox := 1
	if o.Classes == nil {
		perBox = o.NumClasses
	}
	if perBox < 1 || len(o.Scores) < n*perBox || (o.Classes != nil && len(o.Classes) < n) {
		return nil, fmt.Errorf("%w: ssd outputs hold %d boxes, %d scores and %d classes", ErrModelOutput, len(o.Boxes)/4, len(o.Scores), len(o.Classes))
	}
	sx, sy := float32(1), float32(1)
	if f.Normalized {
		sx, sy = float32(w), float32(h)
	}
	var out []Detection
	for i := range n {
		var class int
		var score float32
		if o.Classes != nil {
			class, score = int(math.Round(float64(o.Classes[i]))), o.Scores[i]
		} else {
			class, score = -1, float32(math.Inf(-1))
			for c := range perBox {
				if c == f.Background {
					continue
				}
				if v := o.Scores[i*perBox+c]; v > score {
					class, score = c, v
				}
			}
		}
		if class < 0 || score < conf {
			continue
		}
		b := o.Boxes[i*4 : i*4+4]
		box := Box{X1: b[0] * sx, Y1: b[1] * sy, X2: b[2] * sx, Y2: b[3] * sy}
		if f.YXYX {
			box = Box{X1: b[1] * sx, Y1: b[0] * sy, X2: b[3] * sx, Y2: b[2] * sy}
		}
		out = append(out, Detection{Class: class + f.ClassOffset, Score: score, Box: box})
	}
	return out, nil
}
