package inference_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
)

// funcRunner is a Runner computing its outputs with a Go function.
type funcRunner struct {
	info  inference.ModelInfo
	fn    func(in inference.Tensor) []inference.Tensor
	calls atomic.Int32
}

func (r *funcRunner) Info() *inference.ModelInfo { return &r.info }

func (r *funcRunner) Run(_ context.Context, in []inference.Tensor) ([]inference.Tensor, error) {
	r.calls.Add(1)
	if err := r.info.Inputs[0].Fits(in[0].Shape); err != nil {
		return nil, err
	}
	return r.fn(in[0]), nil
}

// meanClassifier mimics testdata/classifier.onnx in Go: the logits come
// from the mean of each channel.
func meanClassifier(batch int64) *funcRunner {
	return &funcRunner{
		info: inference.ModelInfo{
			Inputs:  []inference.TensorInfo{{Name: "images", Shape: []int64{batch, 3, 8, 8}, Type: "float"}},
			Outputs: []inference.TensorInfo{{Name: "logits", Shape: []int64{batch, 4}, Type: "float"}},
		},
		fn: func(in inference.Tensor) []inference.Tensor {
			n := int(in.Shape[0])
			out := inference.NewTensor("logits", int64(n), 4)
			for i := range n {
				var m [3]float32
				for c := range 3 {
					for _, v := range in.Data[(i*3+c)*64 : (i*3+c+1)*64] {
						m[c] += v / 64
					}
				}
				copy(out.Data[i*4:], []float32{10 * (m[0] - m[1] - m[2]), 10 * (m[1] - m[0] - m[2]), 10 * (m[2] - m[0] - m[1]), 5 - 10*(m[0]+m[1]+m[2])})
			}
			return []inference.Tensor{out}
		},
	}
}

var colours = []*inference.Image{solid(20, 10, 0, 0, 255), solid(8, 8, 0, 255, 0), solid(30, 30, 255, 0, 0), solid(5, 9, 0, 0, 0)}

func TestPipelineClassification(t *testing.T) {
	for _, batch := range []int64{-1, 1, 3} {
		r := meanClassifier(batch)
		p, err := inference.NewPipeline(inference.PipelineConfig{Task: inference.TaskClassification, TopK: 1, Labels: []string{"red", "green", "blue", "black"}}, r, nil)
		require.NoError(t, err)
		res, err := p.Run(context.Background(), colours)
		require.NoError(t, err)
		var got []string
		for _, x := range res {
			got = append(got, x.Classes[0].Label)
		}
		require.Equal(t, []string{"red", "green", "blue", "black"}, got, "batch %d", batch)
		require.Equal(t, 20, res[0].Width)
		want := map[int64]int32{-1: 1, 1: 4, 3: 2}[batch]
		require.Equal(t, want, r.calls.Load(), "runs with batch %d", batch)
	}
}

// wideYOLODetections is what the YOLO test outputs (v5Data, v8Data) decode
// to for a 128x64 image letterboxed into a 64x64 input.
var wideYOLODetections = []inference.Detection{
	{Class: 2, Label: "c", Score: 0.9025, Box: inference.Box{X1: 90, Y1: 0, X2: 110, Y2: 12}},
	{Class: 0, Label: "a", Score: 0.81, Box: inference.Box{X1: 44, Y1: 12, X2: 84, Y2: 52}},
	{Class: 1, Label: "b", Score: 0.72, Box: inference.Box{X1: 46, Y1: 14, X2: 86, Y2: 54}},
}

func TestPipelineYOLO(t *testing.T) {
	for _, task := range []inference.Task{inference.TaskYOLOv5, inference.TaskYOLOv8} {
		out := inference.Tensor{Name: "output0", Shape: []int64{1, 6, 8}, Data: v5Data()}
		if task == inference.TaskYOLOv8 {
			out = inference.Tensor{Name: "output0", Shape: []int64{1, 7, 6}, Data: v8Data()}
		}
		r := &funcRunner{
			info: inference.ModelInfo{Inputs: []inference.TensorInfo{{Name: "images", Shape: []int64{1, 3, 64, 64}, Type: "float"}}},
			fn:   func(inference.Tensor) []inference.Tensor { return []inference.Tensor{out} },
		}
		p, err := inference.NewPipeline(inference.PipelineConfig{Task: task, Confidence: 0.25, Labels: []string{"a", "b", "c"}}, r, nil)
		require.NoError(t, err)
		res, err := p.Run(context.Background(), []*inference.Image{solid(128, 64, 0, 0, 0)})
		require.NoError(t, err)
		// Letterboxed 128x64 -> 64x32 at y 16: source = (model - pad) * 2.
		requireDetections(t, wideYOLODetections, res[0].Detections)
	}
}

func TestPipelineConfigErrors(t *testing.T) {
	model := func(shape ...int64) *funcRunner {
		return &funcRunner{info: inference.ModelInfo{Inputs: []inference.TensorInfo{{Name: "x", Shape: shape, Type: "float"}}}}
	}
	_, err := inference.NewPipeline(inference.PipelineConfig{Task: "segmentation"}, model(1, 3, 8, 8), nil)
	require.ErrorContains(t, err, "unknown task")
	_, err = inference.NewPipeline(inference.PipelineConfig{Task: inference.TaskRaw}, model(1, 3, 8), nil)
	require.ErrorIs(t, err, inference.ErrInputShape)
	_, err = inference.NewPipeline(inference.PipelineConfig{Task: inference.TaskRaw}, model(1, 5, 8, 8), nil)
	require.ErrorIs(t, err, inference.ErrInputShape)
	_, err = inference.NewPipeline(inference.PipelineConfig{Task: inference.TaskRaw}, model(1, 3, -1, -1), nil)
	require.ErrorContains(t, err, "set the input size")
	_, err = inference.NewPipeline(inference.PipelineConfig{Task: inference.TaskRaw, Pre: inference.Preprocess{Width: 16, Height: 16}}, model(1, 3, 8, 8), nil)
	require.ErrorContains(t, err, "input size 16x16")
	p, err := inference.NewPipeline(inference.PipelineConfig{Task: inference.TaskRaw, Pre: inference.Preprocess{Width: 16, Height: 12}}, model(1, 3, -1, -1), nil)
	require.NoError(t, err)
	require.Equal(t, inference.DefaultPreprocess(16, 12), p.Config().Pre)
}

func TestPipelineNHWCAndRaw(t *testing.T) {
	r := &funcRunner{
		info: inference.ModelInfo{Inputs: []inference.TensorInfo{{Name: "image", Shape: []int64{-1, 2, 2, 3}, Type: "uint8"}}},
		fn:   func(in inference.Tensor) []inference.Tensor { return []inference.Tensor{in} }, // echo
	}
	p, err := inference.NewPipeline(inference.PipelineConfig{Task: inference.TaskRaw}, r, nil)
	require.NoError(t, err)
	img := solid(2, 2, 1, 2, 3)
	res, err := p.Run(context.Background(), []*inference.Image{img, solid(2, 2, 4, 5, 6)})
	require.NoError(t, err)
	// uint8 input: raw pixel values, RGB, channels last, split per image.
	require.Equal(t, []inference.Tensor{{Name: "image", Shape: []int64{1, 2, 2, 3}, Data: []float32{3, 2, 1, 3, 2, 1, 3, 2, 1, 3, 2, 1}}}, res[0].Tensors)
	require.Equal(t, []float32{6, 5, 4}, res[1].Tensors[0].Data[:3])
}

func TestResultJSON(t *testing.T) {
	b, err := json.Marshal(inference.Result{Task: inference.TaskYOLOv8, Width: 640, Height: 480})
	require.NoError(t, err)
	require.JSONEq(t, `{"task":"yolov8","width":640,"height":480,"detections":[]}`, string(b))
	b, err = json.Marshal(inference.Result{Task: inference.TaskPPOCR, Width: 10, Height: 20, Texts: []inference.Text{{Text: "HI", Score: 0.5}}})
	require.NoError(t, err)
	require.JSONEq(t, `{"task":"ppocr","width":10,"height":20,"texts":[{"text":"HI","score":0.5,"det_score":0,
		"quad":[[0,0],[0,0],[0,0],[0,0]],"box":{"x1":0,"y1":0,"x2":0,"y2":0}}]}`, string(b))
}

func TestQuadJSON(t *testing.T) {
	q := inference.Quad{{X: 1, Y: 2}, {X: 3.5, Y: 2}, {X: 3.5, Y: 9}, {X: 1, Y: 9}}
	b, err := json.Marshal(q)
	require.NoError(t, err)
	require.JSONEq(t, `[[1,2],[3.5,2],[3.5,9],[1,9]]`, string(b))
	var back inference.Quad
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, q, back)
	require.Error(t, json.Unmarshal([]byte(`[[1,2]`), &back))
}
