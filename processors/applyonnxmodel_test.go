//go:build onnx && gocv

package processors_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/inference"
	"edgeagent.dev/inference/inferencetest"
	"edgeagent.dev/internal/config"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
)

// These tests run ApplyONNXModel on ONNX Runtime 1.29.0 with the models of
// inference/testdata and PP-OCRv4 (`make setup` fetches the runtime and
// PP-OCR into .cache/onnx; a test fails saying so when they are missing).

// onnxProps returns properties for a testdata model on the CPU.
func onnxProps(t *testing.T, model string, extra map[string]string) map[string]string {
	t.Helper()
	props := map[string]string{
		"model":           inferencetest.Testdata(t, model),
		"onnxruntime_lib": inferencetest.Library(t),
		"providers":       "cpu",
	}
	for k, v := range extra {
		props[k] = v
	}
	return props
}

func solidJPEG(t testing.TB, w, h int, b, g, r byte) []byte {
	t.Helper()
	img := inference.NewImage(w, h)
	img.Fill(0, 0, w, h, b, g, r)
	enc, err := inference.EncodeJPEG(img, 95)
	require.NoError(t, err)
	return enc
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// resultDoc mirrors the JSON content ApplyONNXModel writes.
type resultDoc struct {
	Model       string  `json:"model"`
	SHA256      string  `json:"sha256"`
	Provider    string  `json:"provider"`
	LatencyMS   float64 `json:"latency_ms"`
	CaptureTime string  `json:"capture_time"`
	Result      struct {
		Task       string                `json:"task"`
		Width      int                   `json:"width"`
		Height     int                   `json:"height"`
		Classes    []inference.Class     `json:"classes"`
		Detections []inference.Detection `json:"detections"`
		Texts      []inference.Text      `json:"texts"`
		Tensors    []inference.Tensor    `json:"tensors"`
	} `json:"result"`
}

func decodeDoc(t *testing.T, b []byte) resultDoc {
	t.Helper()
	var d resultDoc
	require.NoError(t, json.Unmarshal(b, &d), "%s", b)
	return d
}

func TestApplyONNXModelClassification(t *testing.T) {
	model := inferencetest.Testdata(t, "classifier.onnx")
	r := enginetest.NewRunner(t, processors.ApplyONNXModelSpec(), onnxProps(t, "classifier.onnx", map[string]string{
		"postprocess": "classification", "labels": inferencetest.Testdata(t, "classifier.labels"),
		"output": "both", "batch_size": "4", "top_k": "2",
	}))
	colours := []struct {
		name    string
		b, g, r byte
	}{{"red", 0, 0, 255}, {"green", 0, 255, 0}, {"blue", 255, 0, 0}, {"black", 0, 0, 0}}
	ids := map[edgeagent.ID]string{}
	for i, c := range colours {
		id := r.Enqueue(solidJPEG(t, 40+i*10, 30, c.b, c.g, c.r), map[string]string{
			edgeagent.AttrFilename: c.name + ".jpg", edgeagent.AttrCaptureTime: fmt.Sprintf("2025-01-02T03:04:0%dZ", i),
		})
		ids[id] = c.name
	}
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 4, "one batch of four")
	require.Empty(t, r.Output("failure"))
	sum := fileSHA256(t, model)
	for i, o := range out {
		want := ids[o.FlowFile.ID]
		a := o.FlowFile.Attributes
		require.Equal(t, want, a["inference.class"])
		require.Equal(t, sum, a[processors.AttrInferenceSHA256])
		require.Equal(t, model, a[processors.AttrInferenceModel])
		require.Equal(t, "cpu", a[processors.AttrInferenceProvider])
		require.Equal(t, "classification", a[processors.AttrInferenceTask])
		require.NotEmpty(t, a[processors.AttrInferenceLatency])
		require.Equal(t, fmt.Sprintf("2025-01-02T03:04:0%dZ", i), a[edgeagent.AttrCaptureTime], "capture.time kept")
		require.Equal(t, want+".json", a[edgeagent.AttrFilename])
		require.Equal(t, "application/json", a[edgeagent.AttrMimeType])

		d := decodeDoc(t, o.Content)
		require.Equal(t, sum, d.SHA256)
		require.Equal(t, "cpu", d.Provider)
		require.Equal(t, a[edgeagent.AttrCaptureTime], d.CaptureTime)
		require.Equal(t, 40+i*10, d.Result.Width)
		require.Len(t, d.Result.Classes, 2)
		require.Equal(t, want, d.Result.Classes[0].Label)
		require.Greater(t, d.Result.Classes[0].Score, float32(0.97))
	}
	mods := eventsOf(r.Events(), provenance.EventContentModified)
	require.Len(t, mods, 4)
	for _, e := range mods {
		require.Equal(t, fmt.Sprintf("model=%s sha256=%s provider=cpu", model, sum), e.Details)
	}
}

func TestApplyONNXModelDetectionAttributesAndAnnotation(t *testing.T) {
	for _, task := range []string{"yolov5", "yolov8"} {
		t.Run(task, func(t *testing.T) {
			r := enginetest.NewRunner(t, processors.ApplyONNXModelSpec(), onnxProps(t, task+".onnx", map[string]string{
				"postprocess": task, "output": "attributes", "annotate": "true",
				"providers": "tensorrt,cuda,cpu", // falls back to the CPU
			}))
			img := solidJPEG(t, 128, 64, 255, 255, 255)
			id := r.Enqueue(img, map[string]string{edgeagent.AttrFilename: "cam.jpg", edgeagent.AttrCaptureTime: "2025-01-02T03:04:05Z"})
			r.Run(1)
			out := r.Output("success")
			require.Len(t, out, 1)
			require.Equal(t, id, out[0].FlowFile.ID)
			require.Equal(t, img, out[0].Content, "attributes only: the image is kept")
			a := out[0].FlowFile.Attributes
			require.Equal(t, "3", a["inference.detections"])
			require.Equal(t, "2,0,1", a["inference.labels"], "no labels file: class numbers, best first")
			require.Equal(t, "cpu", a[processors.AttrInferenceProvider])
			require.Equal(t, "cam.jpg", a[edgeagent.AttrFilename])
			require.Len(t, eventsOf(r.Events(), provenance.EventAttributesModified), 1)

			ann := r.Output("annotated")
			require.Len(t, ann, 1)
			require.Equal(t, []edgeagent.ID{id}, ann[0].FlowFile.Parents)
			require.Equal(t, "image/jpeg", ann[0].FlowFile.Attr(edgeagent.AttrMimeType))
			require.Equal(t, "cam.annotated.jpg", ann[0].FlowFile.Attr(edgeagent.AttrFilename))
			require.Equal(t, "2025-01-02T03:04:05Z", ann[0].FlowFile.Attr(edgeagent.AttrCaptureTime))
			drawn, err := inference.DecodeImage(ann[0].Content)
			require.NoError(t, err)
			require.Equal(t, [2]int{128, 64}, [2]int{drawn.Width, drawn.Height})
			// The class-0 box is (44,12)-(84,52): its left edge is drawn,
			// its middle is still white.
			b, g, rr := drawn.BGR(44, 32)
			require.Less(t, int(b)+int(g)+int(rr), 3*200, "box edge")
			b, g, rr = drawn.BGR(64, 32)
			require.Greater(t, int(b)+int(g)+int(rr), 3*230, "box inside")
		})
	}
}

func TestApplyONNXModelSSDJSON(t *testing.T) {
	labels := filepath.Join(t.TempDir(), "labels.txt")
	require.NoError(t, os.WriteFile(labels, []byte("cat\ndog\n"), 0o600))
	r := enginetest.NewRunner(t, processors.ApplyONNXModelSpec(), onnxProps(t, "ssd.onnx", map[string]string{
		"postprocess": "ssd", "labels": labels, "class_offset": "-1", "confidence": "0.5",
	}))
	r.Enqueue(solidJPEG(t, 640, 480, 0, 0, 0), nil)
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 1)
	d := decodeDoc(t, out[0].Content)
	require.Equal(t, "ssd", d.Result.Task)
	require.Len(t, d.Result.Detections, 2)
	require.Equal(t, "cat", d.Result.Detections[0].Label)
	require.Equal(t, inference.Box{X1: 320, Y1: 120, X2: 640, Y2: 360}, d.Result.Detections[0].Box)
	require.Equal(t, "dog", d.Result.Detections[1].Label)
}

func TestApplyONNXModelRawFramesAndFailures(t *testing.T) {
	r := enginetest.NewRunner(t, processors.ApplyONNXModelSpec(), onnxProps(t, "classifier.onnx", map[string]string{
		"postprocess": "raw", "batch_size": "10",
	}))
	frame := make([]byte, 16*8*3) // a raw BGR frame: all blue
	for i := 0; i < len(frame); i += 3 {
		frame[i] = 255
	}
	good := r.Enqueue(frame, map[string]string{"width": "16", "height": "8", edgeagent.AttrMimeType: "image/x-raw-bgr"})
	bad := map[edgeagent.ID]string{
		r.Enqueue([]byte("not an image at all"), nil):                                                 "no width and height",
		r.Enqueue(frame, map[string]string{"width": "15", "height": "8"}):                             "not a 15x8 BGR frame",
		r.Enqueue(frame, map[string]string{"width": "x", "height": "8"}):                              "not numbers",
		r.Enqueue([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'}, nil):                   "decoding image",
		r.Enqueue(nil, map[string]string{edgeagent.AttrFilename: "empty.jpg"}):                        "no width and height",
		r.Enqueue(append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 40)...), map[string]string{}):      "decoding image",
		r.Enqueue(frame[:30], map[string]string{"width": "16", "height": "8", "filename": "cut.raw"}): "not a 16x8 BGR frame",
	}
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 1)
	require.Equal(t, good, out[0].FlowFile.ID)
	d := decodeDoc(t, out[0].Content)
	require.Len(t, d.Result.Tensors, 1)
	require.Equal(t, "logits", d.Result.Tensors[0].Name)
	require.Equal(t, []int64{1, 4}, d.Result.Tensors[0].Shape)
	require.InDeltaSlice(t, []float32{-10, -10, 10, -5}, d.Result.Tensors[0].Data, 1e-4, "blue")

	failed := r.Output("failure")
	require.Len(t, failed, len(bad))
	for _, f := range failed {
		require.Contains(t, f.FlowFile.Attr(edgeagent.AttrErrorMessage), bad[f.FlowFile.ID])
	}
	// The processor keeps working.
	r.Enqueue(solidJPEG(t, 8, 8, 0, 0, 0), nil)
	r.Run(1)
	require.Len(t, r.Output("success"), 1)
}

// textPNG renders lines black on white with OpenCV and encodes them.
func textPNG(t testing.TB, w, h int, lines map[string]image.Point, scale float64) []byte {
	t.Helper()
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(255, 255, 255, 0), h, w, gocv.MatTypeCV8UC3)
	defer m.Close()
	for text, at := range lines {
		gocv.PutText(&m, text, at, gocv.FontHersheySimplex, scale, color.RGBA{A: 255}, 2)
	}
	buf, err := gocv.IMEncode(gocv.PNGFileExt, m)
	require.NoError(t, err)
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

func ppocrProps(t testing.TB, extra map[string]string) map[string]string {
	det, rec, keys := inferencetest.PPOCR(t)
	props := map[string]string{
		"model": det, "ppocr_rec_model": rec, "ppocr_keys": keys, "postprocess": "ppocr",
		"onnxruntime_lib": inferencetest.Library(t), "providers": "cpu",
	}
	for k, v := range extra {
		props[k] = v
	}
	return props
}

func TestApplyONNXModelPPOCR(t *testing.T) {
	r := enginetest.NewRunner(t, processors.ApplyONNXModelSpec(), ppocrProps(t, map[string]string{"output": "both"}))
	r.Enqueue(textPNG(t, 640, 360, map[string]image.Point{"GATE 3 OPEN": {60, 100}, "truck 4711": {300, 280}}, 1.5), nil)
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 1)
	require.Equal(t, "GATE 3 OPEN\ntruck 4711", out[0].FlowFile.Attr("inference.text"))
	require.Equal(t, "2", out[0].FlowFile.Attr("inference.texts"))
	d := decodeDoc(t, out[0].Content)
	require.Len(t, d.Result.Texts, 2)
	require.Equal(t, "GATE 3 OPEN", d.Result.Texts[0].Text)
	require.InDelta(t, 60, d.Result.Texts[0].Box.X1, 15)
	det, rec, _ := inferencetest.PPOCR(t)
	mods := eventsOf(r.Events(), provenance.EventContentModified)
	require.Len(t, mods, 1)
	require.Contains(t, mods[0].Details, "model="+det+" sha256="+fileSHA256(t, det))
	require.Contains(t, mods[0].Details, "rec_model="+rec)
	info := r.Harness().Processor().(edgeagent.InfoReporter).ProcessorInfo()
	require.Equal(t, fileSHA256(t, det), info["model.sha256"])
	require.Equal(t, "cpu", info["model.provider"])
	require.Equal(t, fileSHA256(t, rec), info["rec_model.sha256"])
}

func TestApplyONNXModelStartErrors(t *testing.T) {
	lib := inferencetest.Library(t)
	tests := []struct {
		name  string
		props map[string]string
		want  string
	}{
		{name: "no runtime", props: map[string]string{"onnxruntime_lib": "/nonexistent/libonnxruntime.so"}, want: "ONNX Runtime 1.29.0"},
		{name: "no model", props: map[string]string{"model": "/nonexistent/model.onnx"}, want: "reading model /nonexistent/model.onnx"},
		{name: "no labels", props: map[string]string{"labels": "/nonexistent/labels.txt"}, want: "loading labels"},
		{name: "no provider", props: map[string]string{"providers": "tensorrt,cuda"}, want: "no execution provider could start"},
		{name: "input size", props: map[string]string{"input_size": "16x16"}, want: "input size 16x16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			props := onnxProps(t, "classifier.onnx", map[string]string{"postprocess": "classification", "onnxruntime_lib": lib})
			for k, v := range tt.props {
				props[k] = v
			}
			r := enginetest.NewRunner(t, processors.ApplyONNXModelSpec(), props)
			r.Enqueue(solidJPEG(t, 8, 8, 0, 0, 0), nil)
			err := r.Trigger()
			require.ErrorContains(t, err, tt.want)
			require.Equal(t, 1, r.InputCount(), "the input stays queued")
		})
	}
}

func TestApplyONNXModelConfigErrors(t *testing.T) {
	spec := processors.ApplyONNXModelSpec()
	base := func(extra map[string]string) map[string]string {
		p := map[string]string{"model": "m.onnx", "postprocess": "yolov8"}
		for k, v := range extra {
			p[k] = v
		}
		return p
	}
	requireConfigError(t, spec, map[string]string{"postprocess": "yolov8"}, "properties.model")
	requireConfigError(t, spec, base(map[string]string{"postprocess": "detr"}), "postprocess")
	requireConfigError(t, spec, base(map[string]string{"providers": "tensorrt,gpu"}), `unknown execution provider "gpu"`)
	requireConfigError(t, spec, base(map[string]string{"input_size": "640by640"}), "input_size")
	requireConfigError(t, spec, base(map[string]string{"mean": "1,2"}), "mean")
	requireConfigError(t, spec, base(map[string]string{"std": "0"}), "divides by zero")
	requireConfigError(t, spec, base(map[string]string{"scale": "0"}), "scale")
	requireConfigError(t, spec, base(map[string]string{"confidence": "1.5"}), "confidence")
	requireConfigError(t, spec, base(map[string]string{"batch_size": "0"}), "batch_size")
	requireConfigError(t, spec, base(map[string]string{"ppocr_rec_model": "rec.onnx"}), "only with postprocess ppocr")
	requireConfigError(t, spec, base(map[string]string{"postprocess": "ppocr", "ppocr_rec_model": "rec.onnx"}), "ppocr_keys")
	requireConfigError(t, spec, base(map[string]string{"class_offset": "-1"}), "only with postprocess ssd")
	requireConfigError(t, spec, base(map[string]string{"trt_int8_calibration_table": "c.cache"}), "int8")
	requireConfigError(t, spec, base(map[string]string{"output": "xml"}), "output")
}

// The flow of the issue, without a camera: GetFile(images) ->
// ApplyONNXModel -> PutFile(JSON), on the engine with a durable repository.
func TestApplyONNXModelFlow(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	require.NoError(t, os.MkdirAll(in, 0o750))
	want := map[string][]string{
		"gate.png":   {"GATE 3 OPEN", "truck 4711"},
		"parcel.png": {"PARCEL 0042"},
		"sign.png":   {"STOP", "slow down"},
	}
	pos := [][2]int{{40, 120}, {200, 300}}
	for name, lines := range want {
		m := map[string]image.Point{}
		for i, l := range lines {
			m[l] = image.Pt(pos[i][0], pos[i][1])
		}
		require.NoError(t, os.WriteFile(filepath.Join(in, name), textPNG(t, 640, 400, m, 1.6), 0o600))
	}
	require.NoError(t, os.WriteFile(filepath.Join(in, "broken.jpg"), []byte("\xff\xd8\xff truncated"), 0o600))
	det, rec, keys := inferencetest.PPOCR(t)
	flowYAML := fmt.Sprintf(`
agent: {id: onnx-test, data_dir: %[1]s/data}
processors:
  - name: images
    type: GetFile
    schedule: {period: 100ms}
    properties: {input_directory: %[2]s}
  - name: ocr
    type: ApplyONNXModel
    properties:
      model: %[4]s
      ppocr_rec_model: %[5]s
      ppocr_keys: %[6]s
      postprocess: ppocr
      providers: tensorrt,cuda,cpu
      onnxruntime_lib: %[7]s
      annotate: true
  - name: results
    type: PutFile
    properties: {directory: %[3]s}
    auto_terminate: [success, failure]
  - name: failed
    type: PutFile
    properties: {directory: %[3]s/failed}
    auto_terminate: [success, failure]
connections:
  - {from: images, relationship: success, to: ocr}
  - {from: ocr, relationship: success, to: results}
  - {from: ocr, relationship: annotated, to: results}
  - {from: ocr, relationship: failure, to: failed}
`, dir, in, out, det, rec, keys, inferencetest.Library(t))
	reg := edgeagent.NewRegistry()
	reg.MustRegister(processors.GetFileSpec(), processors.PutFileSpec(), processors.ApplyONNXModelSpec())
	flow, err := config.Parse(filepath.Join(dir, "flow.yaml"), []byte(flowYAML), reg)
	require.NoError(t, err)
	repo, err := buffer.Open(flow.Agent.DataDir, buffer.Options{})
	require.NoError(t, err)
	defer repo.Close()
	eng, err := engine.New(flow, repo, nil)
	require.NoError(t, err)
	require.NoError(t, eng.Start(context.Background()))
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, eng.Stop(ctx))
		}
	}
	defer stop()

	names := func(d string) []string {
		es, _ := os.ReadDir(d)
		var out []string
		for _, e := range es {
			if !e.IsDir() {
				out = append(out, e.Name())
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(names(out)) == 6 && len(names(filepath.Join(out, "failed"))) == 1 },
		2*time.Minute, 50*time.Millisecond, "results: %v", func() []string { return names(out) })
	stop()
	require.ElementsMatch(t, []string{"gate.json", "parcel.json", "sign.json", "gate.annotated.jpg", "parcel.annotated.jpg", "sign.annotated.jpg"}, names(out))
	require.Equal(t, []string{"broken.jpg"}, names(filepath.Join(out, "failed")))
	for name, lines := range want {
		b, err := os.ReadFile(filepath.Join(out, strings.TrimSuffix(name, ".png")+".json"))
		require.NoError(t, err)
		d := decodeDoc(t, b)
		require.Equal(t, "cpu", d.Provider)
		require.Equal(t, fileSHA256(t, det), d.SHA256)
		var got []string
		for _, x := range d.Result.Texts {
			got = append(got, x.Text)
		}
		require.Equal(t, lines, got, name)
		require.Equal(t, [2]int{640, 400}, [2]int{d.Result.Width, d.Result.Height})
	}
	for _, p := range eng.Processors() {
		if p.Name == "ocr" {
			require.Equal(t, int64(4), p.In)
		}
	}
	require.True(t, slices.ContainsFunc(names(out), func(n string) bool { return strings.HasSuffix(n, ".annotated.jpg") }))
}

// percentile returns the p-th percentile (0-100) of sorted durations in ms.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)-1))
	return sorted[i]
}

// BenchmarkApplyONNXModel compares, on the same frames with the same
// number of intra-op threads, a bare onnxruntime_go loop over pre-processed
// tensors with ApplyONNXModel inside a durable flow (GetFile ->
// ApplyONNXModel -> a durable connection on a synced repository, whose
// results are read back and checked after the run; the flow with PutFile is
// TestApplyONNXModelFlowWithoutCamera). The model is PP-OCRv4 text
// detection at 640x640 with DB post-processing; b.N frames go through each,
// alternating in rounds of 10. The flow's latency is the processor's
// (inference.latency_ms: decoding, pre-processing, the run and
// post-processing), the bare loop's is the run alone.
//
//	go test -tags onnx,gocv -run '^$' -bench ApplyONNXModel -benchtime 60x ./processors/
func BenchmarkApplyONNXModel(b *testing.B) {
	agentGC(b)
	det, _, _ := inferencetest.PPOCR(b)
	lib := inferencetest.Library(b)
	threads := min(4, runtime.NumCPU())
	n := b.N

	// The frames: JPEG camera-like images with text.
	var frames [][]byte
	for i := range 4 {
		frames = append(frames, textJPEG(b, 640, 480, map[string]image.Point{
			fmt.Sprintf("CAMERA %d", i): {40, 80}, fmt.Sprintf("frame %04d", 17*i): {300, 400},
		}))
	}

	// Bare loop: onnxruntime_go with pre-allocated tensors.
	holder, err := inference.Load(det, inference.Options{LibraryPath: lib, IntraOpThreads: threads}) // loads the runtime
	require.NoError(b, err)
	defer holder.Close()
	pre := inference.PPOCRPreprocess(640, 640)
	var tensors [][]float32
	for _, f := range frames {
		img, err := inference.DecodeImage(f)
		require.NoError(b, err)
		tt, _, err := pre.Tensor("x", []*inference.Image{img})
		require.NoError(b, err)
		tensors = append(tensors, tt.Data)
	}
	so, err := ort.NewSessionOptions()
	require.NoError(b, err)
	defer so.Destroy()
	require.NoError(b, so.SetIntraOpNumThreads(threads))
	in, err := ort.NewTensor(ort.NewShape(1, 3, 640, 640), make([]float32, 3*640*640))
	require.NoError(b, err)
	defer in.Destroy()
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 1, 640, 640))
	require.NoError(b, err)
	defer out.Destroy()
	info := holder.Info()
	sess, err := ort.NewAdvancedSession(det, []string{info.Inputs[0].Name}, []string{info.Outputs[0].Name}, []ort.Value{in}, []ort.Value{out}, so)
	require.NoError(b, err)
	defer sess.Destroy()
	require.NoError(b, sess.Run()) // warm up

	// The flow, durable: GetFile -> ApplyONNXModel -> PutFile.
	dir := b.TempDir()
	inDir, staging := filepath.Join(dir, "in"), filepath.Join(dir, "staging")
	require.NoError(b, os.MkdirAll(inDir, 0o750))
	require.NoError(b, os.MkdirAll(staging, 0o750))
	for i := range n {
		require.NoError(b, os.WriteFile(filepath.Join(staging, fmt.Sprintf("f%05d.jpg", i)), frames[i%len(frames)], 0o600))
	}
	flowYAML := fmt.Sprintf(`
agent: {id: onnx-bench, data_dir: %[1]s/data}
processors:
  - name: frames
    type: GetFile
    schedule: {period: 5ms, yield: 5ms}
    properties: {input_directory: %[2]s, batch_size: 100}
  - name: detect
    type: ApplyONNXModel
    schedule: {concurrency: %[6]d}
    properties: {model: %[3]s, postprocess: ppocr, input_size: 640x640, providers: cpu, intra_op_threads: %[4]d, onnxruntime_lib: %[5]s}
    auto_terminate: [failure, annotated]
  - name: hold
    type: UpdateAttribute
    auto_terminate: [success]
connections:
  - {from: frames, relationship: success, to: detect, max_count: 100000}
  - {name: results, from: detect, relationship: success, to: hold, max_count: 100000}
`, dir, inDir, det, threads, lib, benchConcurrency())
	reg := edgeagent.NewRegistry()
	reg.MustRegister(processors.GetFileSpec(), processors.UpdateAttributeSpec(), processors.ApplyONNXModelSpec())
	flow, err := config.Parse(filepath.Join(dir, "flow.yaml"), []byte(flowYAML), reg)
	require.NoError(b, err)
	repo, err := buffer.Open(flow.Agent.DataDir, buffer.Options{})
	require.NoError(b, err)
	defer repo.Close()
	eng, err := engine.New(flow, repo, nil)
	require.NoError(b, err)
	require.NoError(b, eng.Start(context.Background())) // the model is loaded here
	// The results stay queued, to be read back at the end.
	require.NoError(b, eng.StopProcessor(context.Background(), "hold"))
	// The bench wakes once per commit into results (no polling: wakeups
	// would take CPU from the model's threads in the flow's time only).
	var results *buffer.Queue
	for _, c := range flow.Connections {
		if c.Name == "results" {
			results, err = repo.Queue(c.Name, engine.QueueConfig(c)) // the engine's queue, as configured
			require.NoError(b, err)
		}
	}
	require.NotNil(b, results)
	waitResults := func(want int64) {
		for {
			if count, _ := results.Len(); count >= want {
				return
			}
			select {
			case <-results.Ready():
			case <-time.After(50 * time.Millisecond): // a safety net only
			}
		}
	}

	// Rounds of bare frames, then as many through the flow, so that both
	// see the same machine (other load comes and goes).
	const round = 10
	var bareTime, flowTime time.Duration
	bareLat := make([]float64, 0, n)
	b.ResetTimer()
	for first := 0; first < n; first += round {
		last := min(first+round, n)
		start := time.Now()
		for i := first; i < last; i++ {
			copy(in.GetData(), tensors[i%len(tensors)])
			t0 := time.Now()
			require.NoError(b, sess.Run())
			bareLat = append(bareLat, float64(time.Since(t0).Microseconds())/1000)
		}
		bareTime += time.Since(start)
		start = time.Now()
		for i := first; i < last; i++ { // the frames arrive
			name := fmt.Sprintf("f%05d.jpg", i)
			require.NoError(b, os.Rename(filepath.Join(staging, name), filepath.Join(inDir, name)))
		}
		waitResults(int64(last))
		flowTime += time.Since(start)
	}
	b.StopTimer()
	bareFPS := float64(n) / bareTime.Seconds()
	flowFPS := float64(n) / flowTime.Seconds()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(b, eng.Stop(ctx))

	flowLat := make([]float64, 0, n)
	items, err := results.Poll(n + 1)
	require.NoError(b, err)
	require.Len(b, items, n)
	for _, it := range items {
		data := it.Content // inline
		if !buffer.IsInline(it.FlowFile.Size) {
			data, err = io.ReadAll(repo.ReadContent(it.FlowFile.Claim, it.FlowFile.Size))
			require.NoError(b, err)
		}
		var d struct {
			LatencyMS float64 `json:"latency_ms"`
			Result    struct {
				Texts []json.RawMessage `json:"texts"`
			} `json:"result"`
		}
		require.NoError(b, json.Unmarshal(data, &d))
		require.Len(b, d.Result.Texts, 2, "two text boxes found in %s", it.FlowFile.Attributes["filename"])
		flowLat = append(flowLat, d.LatencyMS)
	}
	slices.Sort(bareLat)
	slices.Sort(flowLat)
	b.ReportMetric(bareFPS, "bare_frames/s")
	b.ReportMetric(flowFPS, "flow_frames/s")
	b.ReportMetric(flowFPS/bareFPS, "ratio")
	b.ReportMetric(percentile(bareLat, 50), "bare_p50_ms")
	b.ReportMetric(percentile(bareLat, 99), "bare_p99_ms")
	b.ReportMetric(percentile(flowLat, 50), "flow_p50_ms")
	b.ReportMetric(percentile(flowLat, 99), "flow_p99_ms")
	b.ReportMetric(float64(threads), "threads")
}

// benchConcurrency is the flow's schedule.concurrency for ApplyONNXModel
// (ONNX_BENCH_CONCURRENCY, default 2: one task decodes and post-processes
// while the other's frame is in the model; runs stay one at a time).
func benchConcurrency() int {
	if n, err := strconv.Atoi(os.Getenv("ONNX_BENCH_CONCURRENCY")); err == nil && n > 0 {
		return n
	}
	return 2
}

// textJPEG renders lines black on white with OpenCV as a JPEG.
func textJPEG(t testing.TB, w, h int, lines map[string]image.Point) []byte {
	t.Helper()
	img, err := inference.DecodeImage(textPNG(t, w, h, lines, 1.5))
	require.NoError(t, err)
	enc, err := inference.EncodeJPEG(img, 90)
	require.NoError(t, err)
	return enc
}
