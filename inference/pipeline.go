package inference

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Runner runs a model. Model (build tag onnx) is the real one; tests may
// use any function of the inputs.
type Runner interface {
	// Info describes the model: its inputs and outputs above all.
	Info() *ModelInfo
	// Run feeds inputs (in the model's input order) and returns every
	// output, in the model's output order, named. It is safe for
	// concurrent use. The input tensors' Data is the caller's again when
	// Run returns; the outputs' Data must be new slices, which the
	// caller may reuse once it has read them.
	Run(ctx context.Context, inputs []Tensor) ([]Tensor, error)
}

// Task is what a pipeline makes of a model's outputs.
type Task string

// Tasks.
const (
	TaskClassification Task = "classification"
	TaskYOLOv5         Task = "yolov5"
	TaskYOLOv8         Task = "yolov8"
	TaskSSD            Task = "ssd"
	TaskPPOCR          Task = "ppocr"
	TaskRaw            Task = "raw"
)

// Tasks lists every task, for docs and validation.
var Tasks = []Task{TaskClassification, TaskYOLOv5, TaskYOLOv8, TaskSSD, TaskPPOCR, TaskRaw}

// PipelineConfig configures a Pipeline. Zero values take the defaults
// noted.
type PipelineConfig struct {
	Task Task
	// Pre is the pre-processing. A zero Width/Height takes the model's
	// fixed input size; for TaskPPOCR a dynamic input is fitted by
	// DetLimitSide instead. A zero Scale takes the task's usual
	// pre-processing: PPOCRPreprocess, or DefaultPreprocess (its Mode kept
	// when set).
	Pre Preprocess
	// Labels name class indexes (classification, detection).
	Labels []string
	// Confidence is the lowest score kept: a detection's score, a class's
	// probability, a recognised text's score (PP-OCR's drop_score).
	Confidence float32
	// IoU is the NMS overlap threshold (0.45).
	IoU float32
	// TopK is the number of classes reported (5), or the most detections
	// kept per image (300).
	TopK int
	// SSD describes SSD outputs; SSDAutoNormalized guesses whether boxes
	// are fractions of the input size.
	SSD               SSDFormat
	SSDAutoNormalized bool
	// DB is the text detection post-processing (DefaultDBOptions).
	DB DBOptions
	// DetLimitSide bounds the longer side of the PP-OCR detection input
	// when the model's input size is dynamic (960).
	DetLimitSide int
	// Keys are the recognition model's characters (ppocr_keys_v1.txt).
	Keys []string
	// RecHeight is the recognition model's input height (48) and
	// RecMaxWidth the widest crop fed to it (1280).
	RecHeight, RecMaxWidth int
}

// Text is one recognised line of text.
type Text struct {
	Text  string  `json:"text"`
	Score float32 `json:"score"`
	// DetScore is the detection's mean probability.
	DetScore float32 `json:"det_score"`
	// Quad is the text box in the source image.
	Quad Quad `json:"quad"`
	// Box is the axis-aligned box around Quad.
	Box Box `json:"box"`
}

// Result is what a pipeline found in one image. Only the field of its task
// is set.
type Result struct {
	Task       Task
	Width      int // the source image's size
	Height     int
	Classes    []Class
	Detections []Detection
	Texts      []Text
	Tensors    []Tensor
}

// MarshalJSON writes the image size and the task's field (an empty list
// rather than nothing when there are no results).
func (r Result) MarshalJSON() ([]byte, error) {
	type doc struct {
		Task       Task         `json:"task"`
		Width      int          `json:"width"`
		Height     int          `json:"height"`
		Classes    *[]Class     `json:"classes,omitempty"`
		Detections *[]Detection `json:"detections,omitempty"`
		Texts      *[]Text      `json:"texts,omitempty"`
		Tensors    *[]Tensor    `json:"tensors,omitempty"`
	}
	d := doc{Task: r.Task, Width: r.Width, Height: r.Height}
	switch r.Task {
	case TaskClassification:
		d.Classes = ptrNonNil(r.Classes)
	case TaskYOLOv5, TaskYOLOv8, TaskSSD:
		d.Detections = ptrNonNil(r.Detections)
	case TaskPPOCR:
		d.Texts = ptrNonNil(r.Texts)
	case TaskRaw:
		d.Tensors = ptrNonNil(r.Tensors)
	}
	return json.Marshal(d)
}

func ptrNonNil[T any](s []T) *[]T {
	if s == nil {
		s = []T{}
	}
	return &s
}

// Lines returns the recognised texts in reading order.
func (r *Result) Lines() []string {
	out := make([]string, len(r.Texts))
	for i, t := range r.Texts {
		out[i] = t.Text
	}
	return out
}

// Pipeline turns images into results with one model (and for PP-OCR a
// second, recognition model). It is safe for concurrent use.
type Pipeline struct {
	cfg   PipelineConfig
	model Runner
	rec   Runner
	in    TensorInfo
	nhwc  bool // the input is [N, H, W, 3]
	batch int  // the input's fixed batch size; 0: any
}

// NewPipeline checks cfg against the model's inputs and outputs. rec is
// the recognition model of TaskPPOCR (nil: detection only, the texts come
// back with boxes and no text).
func NewPipeline(cfg PipelineConfig, model, rec Runner) (*Pipeline, error) {
	if !slices.Contains(Tasks, cfg.Task) {
		return nil, fmt.Errorf("unknown task %q", cfg.Task)
	}
	info := model.Info()
	if len(info.Inputs) != 1 {
		return nil, fmt.Errorf("%w: the pipeline feeds one image input; %s has %d inputs", ErrModelOutput, info.Path, len(info.Inputs))
	}
	p := &Pipeline{cfg: cfg, model: model, rec: rec, in: info.Inputs[0]}
	defaults(&p.cfg)
	shape := p.in.Shape
	if len(shape) != 4 {
		return nil, fmt.Errorf("%w: input %s is not an image batch [N, 3, H, W] or [N, H, W, 3]", ErrInputShape, p.in)
	}
	p.nhwc = shape[1] != 3 && shape[3] == 3
	if !p.nhwc && shape[1] > 0 && shape[1] != 3 {
		return nil, fmt.Errorf("%w: input %s is not an image batch [N, 3, H, W] or [N, H, W, 3]", ErrInputShape, p.in)
	}
	p.batch = max(0, int(shape[0]))
	h, w := shape[2], shape[3]
	if p.nhwc {
		h, w = shape[1], shape[2]
	}
	if p.cfg.Pre.Width == 0 || p.cfg.Pre.Height == 0 {
		if w > 0 && h > 0 {
			p.cfg.Pre.Width, p.cfg.Pre.Height = int(w), int(h)
		} else if cfg.Task != TaskPPOCR {
			return nil, fmt.Errorf("%w: input %s has a dynamic size; set the input size", ErrInputShape, p.in)
		}
	} else if (w > 0 && int(w) != p.cfg.Pre.Width) || (h > 0 && int(h) != p.cfg.Pre.Height) {
		return nil, fmt.Errorf("%w: input size %dx%d, but input %s is %dx%d", ErrInputShape, p.cfg.Pre.Width, p.cfg.Pre.Height, p.in, w, h)
	}
	if p.in.Type == "uint8" { // the model normalises itself
		p.cfg.Pre.Scale, p.cfg.Pre.Mean, p.cfg.Pre.Std = 1, [3]float32{}, [3]float32{1, 1, 1}
	}
	if cfg.Task == TaskPPOCR && rec != nil {
		ri := rec.Info()
		if len(ri.Inputs) != 1 || len(ri.Inputs[0].Shape) != 4 || len(ri.Outputs) != 1 || len(ri.Outputs[0].Shape) != 3 {
			return nil, fmt.Errorf("%w: %s is not a PP-OCR recognition model (input [N,3,48,W], output [N,T,classes])", ErrModelOutput, ri.Path)
		}
		if hh := ri.Inputs[0].Shape[2]; hh > 0 {
			p.cfg.RecHeight = int(hh)
		}
		if c := ri.Outputs[0].Shape[2]; c > 0 && int(c) < len(cfg.Keys)+1 {
			return nil, fmt.Errorf("%w: %s has %d classes, fewer than the %d keys and the blank", ErrModelOutput, ri.Path, c, len(cfg.Keys))
		}
		if len(cfg.Keys) == 0 {
			return nil, fmt.Errorf("PP-OCR recognition needs the keys file of %s", ri.Path)
		}
	}
	return p, nil
}

func defaults(c *PipelineConfig) {
	if c.IoU == 0 {
		c.IoU = 0.45
	}
	if c.TopK == 0 {
		c.TopK = 5
		if c.Task != TaskClassification {
			c.TopK = 300
		}
	}
	if c.DB == (DBOptions{}) {
		c.DB = DefaultDBOptions()
	}
	if c.DetLimitSide == 0 {
		c.DetLimitSide = 960
	}
	if c.RecHeight == 0 {
		c.RecHeight = 48
	}
	if c.RecMaxWidth == 0 {
		c.RecMaxWidth = 1280
	}
	if c.Pre.Scale == 0 { // unset: the task's usual pre-processing
		w, h, mode := c.Pre.Width, c.Pre.Height, c.Pre.Mode
		if c.Task == TaskPPOCR {
			c.Pre = PPOCRPreprocess(w, h)
		} else {
			c.Pre = DefaultPreprocess(w, h)
			if mode != "" {
				c.Pre.Mode = mode
			}
		}
	}
	if c.Pre.Std == ([3]float32{}) {
		c.Pre.Std = [3]float32{1, 1, 1}
	}
}

// Config returns the configuration with defaults and the model's input
// size filled in.
func (p *Pipeline) Config() PipelineConfig { return p.cfg }

// Run processes a batch of images. Images go to the model together when
// its batch size is dynamic or equal to len(imgs), one by one otherwise.
func (p *Pipeline) Run(ctx context.Context, imgs []*Image) ([]Result, error) {
	if p.cfg.Task == TaskPPOCR {
		out := make([]Result, len(imgs))
		for i, img := range imgs {
			r, err := p.ocr(ctx, img)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	if p.batch == 0 || p.batch == len(imgs) {
		return p.runBatch(ctx, imgs)
	}
	var out []Result
	for start := 0; start < len(imgs); start += p.batch {
		chunk := imgs[start:min(start+p.batch, len(imgs))]
		padded := chunk
		for len(padded) < p.batch { // a fixed batch larger than what is left
			padded = append(slices.Clone(padded), NewImage(1, 1))
		}
		rs, err := p.runBatch(ctx, padded)
		if err != nil {
			return nil, err
		}
		out = append(out, rs[:len(chunk)]...)
	}
	return out, nil
}

// input builds the model's input tensor from images already fitted to the
// input size.
func (p *Pipeline) input(pre Preprocess, imgs []*Image) (Tensor, []Transform, error) {
	n, h, w := len(imgs), pre.Height, pre.Width
	t := Tensor{Name: p.in.Name, Shape: []int64{int64(n), 3, int64(h), int64(w)}, Data: getFloats(n * 3 * h * w)}
	ts, err := pre.writeTensor(t.Data, imgs)
	if err != nil {
		putFloats(t.Data)
		return Tensor{}, nil, err
	}
	if !p.nhwc {
		return t, ts, nil
	}
	defer putFloats(t.Data)
	nhwc := Tensor{Name: p.in.Name, Shape: []int64{int64(n), int64(h), int64(w), 3}, Data: getFloats(n * 3 * h * w)}
	plane := h * w
	for b := range n {
		src, dst := t.Data[b*3*plane:], nhwc.Data[b*3*plane:]
		for i := range plane {
			dst[i*3], dst[i*3+1], dst[i*3+2] = src[i], src[plane+i], src[2*plane+i]
		}
	}
	return nhwc, ts, nil
}

func (p *Pipeline) runBatch(ctx context.Context, imgs []*Image) ([]Result, error) {
	in, ts, err := p.input(p.cfg.Pre, imgs)
	if err != nil {
		return nil, err
	}
	defer putFloats(in.Data) // the run is over when Run returns
	outs, err := p.model.Run(ctx, []Tensor{in})
	if err != nil {
		return nil, err
	}
	n := len(imgs)
	results := make([]Result, n)
	for i := range results {
		results[i] = Result{Task: p.cfg.Task, Width: imgs[i].Width, Height: imgs[i].Height}
	}
	switch p.cfg.Task {
	case TaskClassification:
		rows, per, err := perImage(outs[0], n)
		if err != nil {
			return nil, err
		}
		for i := range n {
			results[i].Classes = Classify(rows[i*per:(i+1)*per], p.cfg.TopK, p.cfg.Confidence, p.cfg.Labels)
		}
	case TaskYOLOv5, TaskYOLOv8:
		boxes, values, err := YOLOLayout(outs[0].Shape, string(p.cfg.Task))
		if err != nil {
			return nil, err
		}
		data, per, err := perImage(outs[0], n)
		if err != nil {
			return nil, err
		}
		for i := range n {
			var dets []Detection
			if p.cfg.Task == TaskYOLOv5 {
				dets = DecodeYOLOv5(data[i*per:(i+1)*per], boxes, values, p.cfg.Confidence)
			} else {
				dets = DecodeYOLOv8(data[i*per:(i+1)*per], values, boxes, p.cfg.Confidence)
			}
			results[i].Detections = p.finishDetections(dets, ts[i])
		}
	case TaskSSD:
		for i := range n {
			o, err := ssdOutputs(outs, i, n)
			if err != nil {
				return nil, err
			}
			f := p.cfg.SSD
			if p.cfg.SSDAutoNormalized {
				f.Normalized = SSDNormalized(o.Boxes)
			}
			dets, err := DecodeSSD(o, f, p.cfg.Pre.Width, p.cfg.Pre.Height, p.cfg.Confidence)
			if err != nil {
				return nil, err
			}
			results[i].Detections = p.finishDetections(dets, ts[i])
		}
	case TaskRaw:
		for _, o := range outs {
			if len(o.Shape) == 0 || int(o.Shape[0]) != n {
				for i := range n {
					results[i].Tensors = append(results[i].Tensors, o)
				}
				continue
			}
			per := len(o.Data) / n
			for i := range n {
				results[i].Tensors = append(results[i].Tensors, Tensor{Name: o.Name, Shape: append([]int64{1}, o.Shape[1:]...), Data: o.Data[i*per : (i+1)*per]})
			}
		}
	}
	return results, nil
}

// perImage returns t's data and the number of values per image, checking
// the batch dimension.
func perImage(t Tensor, n int) ([]float32, int, error) {
	if len(t.Shape) == 0 || int(t.Shape[0]) != n || len(t.Data)%n != 0 {
		return nil, 0, fmt.Errorf("%w: output %s %s does not hold a batch of %d", ErrModelOutput, t.Name, ShapeString(t.Shape), n)
	}
	return t.Data, len(t.Data) / n, nil
}

// finishDetections applies NMS, maps boxes to the source image and names
// the classes.
func (p *Pipeline) finishDetections(dets []Detection, t Transform) []Detection {
	dets = NMS(dets, p.cfg.IoU, true, p.cfg.TopK)
	out := dets[:0]
	for _, d := range dets {
		d.Box = t.BoxToSource(d.Box)
		if d.Box.Area() <= 0 {
			continue
		}
		d.Label = label(p.cfg.Labels, d.Class)
		out = append(out, d)
	}
	return out
}

// ssdOutputs finds image i's SSD outputs by name (box, score, class or
// label, num), or by position: boxes, scores[, classes[, count]].
func ssdOutputs(outs []Tensor, i, n int) (SSDOutputs, error) {
	var boxes, scores, classes, count *Tensor
	for k := range outs {
		name := strings.ToLower(outs[k].Name)
		switch {
		case strings.Contains(name, "box"):
			boxes = &outs[k]
		case strings.Contains(name, "score"):
			scores = &outs[k]
		case strings.Contains(name, "class") || strings.Contains(name, "label"):
			classes = &outs[k]
		case strings.Contains(name, "num"):
			count = &outs[k]
		}
	}
	if boxes == nil || scores == nil {
		if len(outs) < 2 {
			return SSDOutputs{}, fmt.Errorf("%w: ssd wants boxes and scores outputs, the model has %d outputs", ErrModelOutput, len(outs))
		}
		boxes, scores, classes, count = &outs[0], &outs[1], nil, nil
		if len(outs) > 2 {
			classes = &outs[2]
		}
		if len(outs) > 3 {
			count = &outs[3]
		}
	}
	slice := func(t *Tensor) ([]float32, error) {
		d, per, err := perImage(*t, n)
		if err != nil {
			return nil, err
		}
		return d[i*per : (i+1)*per], nil
	}
	var o SSDOutputs
	var err error
	if o.Boxes, err = slice(boxes); err != nil {
		return o, err
	}
	if o.Scores, err = slice(scores); err != nil {
		return o, err
	}
	if classes != nil {
		if o.Classes, err = slice(classes); err != nil {
			return o, err
		}
	} else if len(scores.Shape) == 3 {
		o.NumClasses = int(scores.Shape[2])
	} else {
		return o, fmt.Errorf("%w: ssd scores %s without a classes output must be [batch, boxes, classes]", ErrModelOutput, ShapeString(scores.Shape))
	}
	if count != nil {
		c, err := slice(count)
		if err != nil {
			return o, err
		}
		if len(c) > 0 {
			o.Count = int(c[0])
		}
	}
	return o, nil
}

// PPOCRPreprocess returns the pre-processing PP-OCR detection models are
// trained with, for an input of w x h (0 x 0: dynamic): PaddleOCR's
// detection normalisation (ImageNet mean and std on BGR pixels scaled to
// 0..1).
func PPOCRPreprocess(w, h int) Preprocess {
	return Preprocess{
		Width: w, Height: h, Mode: ResizeStretch, Order: BGR, Scale: 1.0 / 255,
		Mean: [3]float32{0.485, 0.456, 0.406}, Std: [3]float32{0.229, 0.224, 0.225},
	}
}

// detSize is PaddleOCR's DetResizeForTest (limit_type max): the longer side
// at most limit, both sides rounded to a multiple of 32.
func detSize(w, h, limit int) (int, int) {
	ratio := 1.0
	if m := max(w, h); m > limit {
		ratio = float64(limit) / float64(m)
	}
	r := func(v int) int { return max(32, int(math.Round(float64(v)*ratio/32))*32) }
	return r(w), r(h)
}

func (p *Pipeline) ocr(ctx context.Context, img *Image) (Result, error) {
	res := Result{Task: TaskPPOCR, Width: img.Width, Height: img.Height}
	pre := p.cfg.Pre
	if pre.Width == 0 || pre.Height == 0 {
		pre.Width, pre.Height = detSize(img.Width, img.Height, p.cfg.DetLimitSide)
	}
	pre.Mode = ResizeStretch
	in, ts, err := p.input(pre, []*Image{img})
	if err != nil {
		return res, err
	}
	outs, err := p.model.Run(ctx, []Tensor{in})
	putFloats(in.Data) // the run is over when Run returns
	if err != nil {
		return res, err
	}
	prob := outs[0]
	if len(prob.Shape) != 4 || prob.Shape[1] != 1 {
		return res, fmt.Errorf("%w: detection output %s %s is not a probability map [1, 1, H, W]", ErrModelOutput, prob.Name, ShapeString(prob.Shape))
	}
	mh, mw := int(prob.Shape[2]), int(prob.Shape[3])
	boxes := DBBoxes(prob.Data, mw, mh, p.cfg.DB)
	putFloats(prob.Data)
	// The map may be smaller than the input (stride); scale to the input,
	// then to the image.
	sx, sy := float64(pre.Width)/float64(mw), float64(pre.Height)/float64(mh)
	for _, b := range boxes {
		var q Quad
		for k, pt := range b.Quad {
			s := ts[0].ToSource(Point{X: pt.X * sx, Y: pt.Y * sy})
			q[k] = Point{X: math.Round(clamp(s.X, 0, float64(img.Width))), Y: math.Round(clamp(s.Y, 0, float64(img.Height)))}
		}
		res.Texts = append(res.Texts, Text{Quad: q, Box: q.Bounds(), DetScore: b.Score})
	}
	if p.rec == nil || len(res.Texts) == 0 {
		return res, nil
	}
	return p.recognise(ctx, img, res)
}

// recognise reads the text of every box in one batch, the crops padded to
// the widest, and drops texts scoring under Confidence.
func (p *Pipeline) recognise(ctx context.Context, img *Image, res Result) (Result, error) {
	h := p.cfg.RecHeight
	crops := make([]*Image, len(res.Texts))
	padW := 0
	for i, t := range res.Texts {
		crops[i] = CropText(img, t.Quad)
		w := int(math.Ceil(float64(h) * float64(crops[i].Width) / float64(crops[i].Height)))
		padW = max(padW, min(max(w, 1), p.cfg.RecMaxWidth))
	}
	in := NewTensor(p.rec.Info().Inputs[0].Name, int64(len(crops)), 3, int64(h), int64(padW))
	per := 3 * h * padW
	for i, c := range crops {
		data, _ := RecInput(c, h, p.cfg.RecMaxWidth, padW)
		copy(in.Data[i*per:], data)
	}
	outs, err := p.rec.Run(ctx, []Tensor{in})
	if err != nil {
		return res, err
	}
	o := outs[0]
	if len(o.Shape) != 3 || int(o.Shape[0]) != len(crops) {
		return res, fmt.Errorf("%w: recognition output %s %s is not [%d, T, classes]", ErrModelOutput, o.Name, ShapeString(o.Shape), len(crops))
	}
	t, c := int(o.Shape[1]), int(o.Shape[2])
	kept := res.Texts[:0]
	for i, txt := range res.Texts {
		txt.Text, txt.Score = CTCDecode(o.Data[i*t*c:(i+1)*t*c], t, c, p.cfg.Keys)
		if txt.Text == "" || txt.Score < p.cfg.Confidence {
			continue
		}
		kept = append(kept, txt)
	}
	res.Texts = kept
	return res, nil
}
