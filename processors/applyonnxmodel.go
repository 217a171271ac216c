//go:build onnx

package processors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/inference"
)

// ApplyONNXModelSpec returns the spec of ApplyONNXModel, which runs an ONNX
// model on images.
func ApplyONNXModelSpec() edgeagent.ProcessorSpec { return applyONNXModelSpec(newApplyONNXModel) }

// annotateQuality is the JPEG quality of annotated images.
const annotateQuality = 90

type applyONNXModel struct {
	modelPath string
	recPath   string
	labels    string
	keys      string
	pipe      inference.PipelineConfig
	opts      inference.Options
	batchSize int
	json      bool // content becomes JSON
	attrs     bool // results go to attributes
	annotate  bool

	// Set in Start, read-only afterwards.
	det, rec      *inference.Model
	pipeline      *inference.Pipeline
	details       string // the provenance details
	clearProvider func()
}

// ProcessorInfo implements edgeagent.InfoReporter: the models' sha256 and
// execution providers, for the status API and C2 heartbeats.
func (p *applyONNXModel) ProcessorInfo() map[string]string {
	info := map[string]string{}
	for role, m := range map[string]*inference.Model{"model": p.det, "rec_model": p.rec} {
		if m == nil {
			continue
		}
		mi := m.Info()
		info[role+".path"] = mi.Path
		info[role+".sha256"] = mi.SHA256
		info[role+".provider"] = string(mi.Provider)
	}
	return info
}

func newApplyONNXModel(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	p := &applyONNXModel{
		modelPath: cfg.Property("model").String(),
		recPath:   cfg.Property("ppocr_rec_model").String(),
		labels:    cfg.Property("labels").String(),
		keys:      cfg.Property("ppocr_keys").String(),
	}
	task := inference.Task(cfg.Property("postprocess").String())
	if !slices.Contains(inference.Tasks, task) {
		return nil, fmt.Errorf("property postprocess: %q is not one of %s", task, strings.Join(onnxTasks(), ", "))
	}
	p.pipe.Task = task
	if p.modelPath == "" {
		return nil, errors.New("property model: the model file is required")
	}
	if task == inference.TaskPPOCR && p.recPath != "" && p.keys == "" {
		return nil, errors.New("property ppocr_keys: ppocr_rec_model needs its keys file")
	}
	if task != inference.TaskPPOCR && (p.recPath != "" || p.keys != "") {
		return nil, errors.New("properties ppocr_rec_model and ppocr_keys work only with postprocess ppocr")
	}
	if err := p.preprocess(cfg); err != nil {
		return nil, err
	}
	if err := p.thresholds(cfg); err != nil {
		return nil, err
	}
	if err := p.runtimeOptions(cfg); err != nil {
		return nil, err
	}
	n, err := intProp(cfg, "batch_size", 1)
	if err != nil {
		return nil, err
	}
	p.batchSize = int(n)
	switch out := cfg.Property("output").String(); out {
	case "json":
		p.json = true
	case "attributes":
		p.attrs = true
	case "both":
		p.json, p.attrs = true, true
	default:
		return nil, fmt.Errorf("property output: %q is not one of json, attributes, both", out)
	}
	if p.annotate, err = boolProp(cfg, "annotate"); err != nil {
		return nil, err
	}
	p.opts.Logger = cfg.Logger
	return p, nil
}

// preprocess reads input_size, resize_mode, color_order, scale, mean and
// std over the task's defaults.
func (p *applyONNXModel) preprocess(cfg *edgeagent.ProcessorConfig) error {
	var w, h int
	if v := cfg.Property("input_size").String(); v != "" {
		var err error
		if w, h, err = inference.ParseSize(v); err != nil {
			return fmt.Errorf("property input_size: %w", err)
		}
	}
	pre := inference.DefaultPreprocess(w, h)
	switch p.pipe.Task {
	case inference.TaskPPOCR:
		pre = inference.PPOCRPreprocess(w, h)
	case inference.TaskYOLOv5, inference.TaskYOLOv8:
	default:
		pre.Mode = inference.ResizeStretch
	}
	if v := cfg.Property("resize_mode").String(); v != "" {
		pre.Mode = inference.ResizeMode(v)
	}
	if v := cfg.Property("color_order").String(); v != "" {
		pre.Order = inference.ColorOrder(v)
	}
	if v := cfg.Property("scale"); v.String() != "" {
		f, err := v.Float()
		if err != nil || f == 0 {
			return fmt.Errorf("property scale: %q is not a number other than 0", v.String())
		}
		pre.Scale = float32(f)
	}
	for _, prop := range []string{"mean", "std"} {
		v := cfg.Property(prop).String()
		if v == "" {
			continue
		}
		t, err := inference.ParseTriple(v)
		if err != nil {
			return fmt.Errorf("property %s: %w", prop, err)
		}
		if prop == "mean" {
			pre.Mean = t
		} else {
			if t[0] == 0 || t[1] == 0 || t[2] == 0 {
				return errors.New("property std: a standard deviation of 0 divides by zero")
			}
			pre.Std = t
		}
	}
	p.pipe.Pre = pre
	return nil
}

func floatProp(cfg *edgeagent.ProcessorConfig, prop string, def float64) (float64, error) {
	v := cfg.Property(prop)
	if v.String() == "" {
		return def, nil
	}
	f, err := v.Float()
	if err != nil {
		return 0, fmt.Errorf("property %s: %q is not a number", prop, v.String())
	}
	return f, nil
}

func (p *applyONNXModel) thresholds(cfg *edgeagent.ProcessorConfig) error {
	def := map[inference.Task]float64{inference.TaskPPOCR: 0.5, inference.TaskClassification: 0, inference.TaskRaw: 0}
	conf, ok := def[p.pipe.Task]
	if !ok {
		conf = 0.25
	}
	var err error
	if conf, err = floatProp(cfg, "confidence", conf); err != nil {
		return err
	}
	p.pipe.Confidence = float32(conf)
	iou, err := floatProp(cfg, "iou", 0.45)
	if err != nil {
		return err
	}
	p.pipe.IoU = float32(iou)
	if cfg.Property("top_k").String() != "" {
		k, err := intProp(cfg, "top_k", 1)
		if err != nil {
			return err
		}
		p.pipe.TopK = int(k)
	}
	offset, err := cfg.Property("class_offset").Int()
	if err != nil {
		return fmt.Errorf("property class_offset: %q is not an integer", cfg.Property("class_offset").String())
	}
	bg, err := cfg.Property("ssd_background_class").Int()
	if err != nil {
		return fmt.Errorf("property ssd_background_class: %q is not an integer", cfg.Property("ssd_background_class").String())
	}
	p.pipe.SSD = inference.SSDFormat{YXYX: cfg.Property("ssd_box_format").String() != "xyxy", Background: int(bg), ClassOffset: int(offset)}
	switch cfg.Property("ssd_normalized").String() {
	case "true":
		p.pipe.SSD.Normalized = true
	case "false":
	default:
		p.pipe.SSDAutoNormalized = true
	}
	if p.pipe.Task != inference.TaskSSD && offset != 0 {
		// Other tasks name classes from their index directly.
		return errors.New("property class_offset works only with postprocess ssd")
	}
	limit, err := intProp(cfg, "ppocr_det_limit_side", 32)
	if err != nil {
		return err
	}
	p.pipe.DetLimitSide = int(limit)
	p.pipe.DB = inference.DefaultDBOptions()
	box, err := floatProp(cfg, "ppocr_box_thresh", 0.6)
	if err != nil {
		return err
	}
	p.pipe.DB.BoxThresh = float32(box)
	if p.pipe.DB.UnclipRatio, err = floatProp(cfg, "ppocr_unclip_ratio", 1.5); err != nil {
		return err
	}
	if p.pipe.DB.UnclipRatio <= 0 {
		return errors.New("property ppocr_unclip_ratio: must be more than 0")
	}
	return nil
}

func (p *applyONNXModel) runtimeOptions(cfg *edgeagent.ProcessorConfig) error {
	var err error
	if p.opts.Providers, err = inference.ParseProviders(cfg.Property("providers").String()); err != nil {
		return fmt.Errorf("property providers: %w", err)
	}
	p.opts.LibraryPath = cfg.Property("onnxruntime_lib").String()
	dev, err := intProp(cfg, "device_id", 0)
	if err != nil {
		return err
	}
	trt := inference.TensorRTOptions{DeviceID: int(dev), INT8CalibrationTable: cfg.Property("trt_int8_calibration_table").String()}
	if trt.FP16, err = boolProp(cfg, "trt_fp16"); err != nil {
		return err
	}
	if trt.INT8, err = boolProp(cfg, "trt_int8"); err != nil {
		return err
	}
	switch dir := cfg.Property("trt_engine_cache_dir").String(); dir {
	case "none":
	case "":
		if cfg.StateDir != "" {
			trt.EngineCacheDir = filepath.Join(cfg.StateDir, "tensorrt")
		}
	default:
		trt.EngineCacheDir = dir
	}
	if trt.MaxWorkspaceSize, err = optionalSize(cfg, "trt_max_workspace_size"); err != nil {
		return err
	}
	trt.MaxWorkspaceSize = max(trt.MaxWorkspaceSize, 0)
	if _, err := trt.ProviderOptions(); err != nil {
		return fmt.Errorf("properties trt_*: %w", err)
	}
	cuda := inference.CUDAOptions{DeviceID: int(dev)}
	if cuda.MemoryLimit, err = optionalSize(cfg, "cuda_memory_limit"); err != nil {
		return err
	}
	cuda.MemoryLimit = max(cuda.MemoryLimit, 0)
	p.opts.TensorRT, p.opts.CUDA = trt, cuda
	threads, err := intProp(cfg, "intra_op_threads", 0)
	if err != nil {
		return err
	}
	runs, err := intProp(cfg, "concurrent_runs", 1)
	if err != nil {
		return err
	}
	p.opts.IntraOpThreads, p.opts.MaxConcurrentRuns = int(threads), int(runs)
	return nil
}

// Start loads the labels, the keys and the model(s), and checks the model
// against the configuration.
func (p *applyONNXModel) Start(_ context.Context, pc edgeagent.ProcessContext) error {
	var err error
	if p.labels != "" {
		if p.pipe.Labels, err = inference.LoadLines(p.labels); err != nil {
			return fmt.Errorf("loading labels: %w", err)
		}
	}
	if p.keys != "" {
		if p.pipe.Keys, err = inference.LoadLines(p.keys); err != nil {
			return fmt.Errorf("loading ppocr keys: %w", err)
		}
	}
	if p.det, err = inference.Load(p.modelPath, p.opts); err != nil {
		return err
	}
	var rec inference.Runner
	if p.recPath != "" {
		if p.rec, err = inference.Load(p.recPath, p.opts); err != nil {
			return err
		}
		rec = p.rec
	}
	if p.pipeline, err = inference.NewPipeline(p.pipe, p.det, rec); err != nil {
		return fmt.Errorf("checking model %s: %w", p.modelPath, err)
	}
	info := p.det.Info()
	p.details = fmt.Sprintf("model=%s sha256=%s provider=%s", info.Path, info.SHA256, info.Provider)
	if p.rec != nil {
		ri := p.rec.Info()
		p.details += fmt.Sprintf(" rec_model=%s rec_sha256=%s", ri.Path, ri.SHA256)
	}
	p.clearProvider = inference.SetProvider(pc.Name(), info.Path, info.Provider)
	if p.annotate && !pc.IsConnected(RelAnnotated) {
		pc.Logger().Warn("annotate is on but the annotated relationship is auto-terminated; no annotated images are made")
	}
	return nil
}

// Stop closes the models.
func (p *applyONNXModel) Stop(context.Context) error {
	var errs []error
	for _, m := range []*inference.Model{p.det, p.rec} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	if p.clearProvider != nil {
		p.clearProvider()
	}
	return errors.Join(errs...)
}

// OnTrigger decodes up to batch_size images, runs them through the model
// together and emits one result per image; images that do not decode go to
// failure on their own.
func (p *applyONNXModel) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	// No Yield on an empty queue: with schedule.concurrency > 1 another
	// task may have taken the input, and a yield would pause every task
	// while frames queue up; the engine waits for input anyway.
	batch := s.GetBatch(p.batchSize)
	if len(batch) == 0 || stopping(ctx, s, batch) {
		return nil
	}
	start := time.Now()
	var imgs []*inference.Image
	var ffs []*edgeagent.FlowFile
	for _, ff := range batch {
		img, err := decodeFlowFile(s, ff)
		if err != nil {
			routeToFailure(s, ff, err)
			continue
		}
		imgs, ffs = append(imgs, img), append(ffs, ff)
	}
	if len(ffs) == 0 {
		return nil
	}
	results, err := p.pipeline.Run(ctx, imgs)
	elapsed := time.Since(start)
	if err != nil {
		if ctx.Err() != nil { // stopping: leave them for the next start
			for _, ff := range ffs {
				s.Return(ff)
			}
			return nil
		}
		for _, ff := range ffs {
			routeToFailure(s, ff, fmt.Errorf("running model %s: %w", p.modelPath, err))
		}
		return nil
	}
	info := p.det.Info()
	inference.ObserveDuration(pc.Name(), info.Provider, elapsed)
	latency := float64(elapsed.Microseconds()) / 1000
	for i, ff := range ffs {
		if err := p.emit(pc, s, ff, imgs[i], &results[i], latency); err != nil {
			routeToFailure(s, ff, err)
		}
	}
	return nil
}

// decodeFlowFile reads an image: JPEG or PNG, or a raw BGR frame of the
// width and height attributes.
func decodeFlowFile(s edgeagent.ProcessSession, ff *edgeagent.FlowFile) (*inference.Image, error) {
	b, err := s.ReadAll(ff)
	if err != nil {
		return nil, fmt.Errorf("reading content: %w", err)
	}
	if inference.IsEncodedImage(b) {
		img, err := inference.DecodeImage(b)
		if err != nil {
			return nil, fmt.Errorf("decoding image: %w", err)
		}
		return img, nil
	}
	ws, hs := ff.Attr(AttrWidth), ff.Attr(AttrHeight)
	if ws == "" || hs == "" {
		return nil, fmt.Errorf("decoding image: %w: the content is not a JPEG or PNG file, and there are no width and height attributes for a raw BGR frame", inference.ErrDecodeImage)
	}
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("decoding image: %w: width %q and height %q are not numbers", inference.ErrDecodeImage, ws, hs)
	}
	img, err := inference.RawImage(b, w, h)
	if err != nil {
		return nil, fmt.Errorf("decoding image: %w", err)
	}
	return img, nil
}

// resultDoc is the JSON content of a result.
type resultDoc struct {
	Model       string           `json:"model"`
	SHA256      string           `json:"sha256"`
	Provider    string           `json:"provider"`
	LatencyMS   float64          `json:"latency_ms"`
	CaptureTime string           `json:"capture_time,omitempty"`
	Result      inference.Result `json:"result"`
}

// emit writes one result: the annotated child first (from the input as it
// came), then the input's new attributes and content.
func (p *applyONNXModel) emit(pc edgeagent.ProcessContext, s edgeagent.ProcessSession, ff *edgeagent.FlowFile, img *inference.Image, r *inference.Result, latency float64) error {
	info := p.det.Info()
	attrs := map[string]string{
		AttrInferenceModel:    info.Path,
		AttrInferenceSHA256:   info.SHA256,
		AttrInferenceProvider: string(info.Provider),
		AttrInferenceLatency:  strconv.FormatFloat(latency, 'f', 3, 64),
		AttrInferenceTask:     string(r.Task),
	}
	if p.attrs {
		resultAttributes(r, attrs)
	}
	if p.annotate && pc.IsConnected(RelAnnotated) {
		jpg, err := inference.EncodeJPEG(inference.Annotate(img, r), annotateQuality)
		if err != nil {
			return fmt.Errorf("annotating: %w", err)
		}
		child := s.CreateChild(ff)
		child = s.Write(child, jpg)
		ca := map[string]string{edgeagent.AttrMimeType: "image/jpeg"}
		for k, v := range attrs {
			ca[k] = v
		}
		if name := ff.Attr(edgeagent.AttrFilename); name != "" {
			ca[edgeagent.AttrFilename] = strings.TrimSuffix(name, filepath.Ext(name)) + ".annotated.jpg"
		}
		child = s.PutAttributes(child, ca)
		s.Transfer(child, RelAnnotated)
	}
	if p.json {
		doc := resultDoc{Model: info.Path, SHA256: info.SHA256, Provider: string(info.Provider), LatencyMS: latency,
			CaptureTime: ff.Attr(edgeagent.AttrCaptureTime), Result: *r}
		b, err := json.Marshal(doc)
		if err != nil {
			return fmt.Errorf("encoding results: %w", err)
		}
		ff = s.Write(ff, b)
		s.Provenance().ModifyContent(ff, p.details)
		attrs[edgeagent.AttrMimeType] = "application/json"
		if name := ff.Attr(edgeagent.AttrFilename); name != "" {
			attrs[edgeagent.AttrFilename] = strings.TrimSuffix(name, filepath.Ext(name)) + ".json"
		}
	} else {
		s.Provenance().ModifyAttributes(ff, p.details)
	}
	ff = s.PutAttributes(ff, attrs)
	s.Transfer(ff, edgeagent.RelSuccess)
	return nil
}

// resultAttributes puts the results into attributes.
func resultAttributes(r *inference.Result, attrs map[string]string) {
	f := func(v float32) string { return strconv.FormatFloat(float64(v), 'f', 4, 32) }
	switch {
	case r.Task == inference.TaskClassification:
		if len(r.Classes) > 0 {
			c := r.Classes[0]
			attrs["inference.class"] = c.Label
			if c.Label == "" {
				attrs["inference.class"] = strconv.Itoa(c.Index)
			}
			attrs["inference.class.score"] = f(c.Score)
		}
	case r.Task == inference.TaskPPOCR:
		attrs["inference.texts"] = strconv.Itoa(len(r.Texts))
		attrs["inference.text"] = strings.Join(r.Lines(), "\n")
	case r.Task == inference.TaskRaw:
	default:
		attrs["inference.detections"] = strconv.Itoa(len(r.Detections))
		var names []string
		for _, d := range r.Detections { // best first
			n := d.Label
			if n == "" {
				n = strconv.Itoa(d.Class)
			}
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		attrs["inference.labels"] = strings.Join(names, ",")
	}
}
