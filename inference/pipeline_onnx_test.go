//go:build onnx

package inference_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
	"edgeagent.dev/inference/inferencetest"
)

// These run the pipelines through ONNX Runtime on the models
// scripts/gen-test-models.py generated (inference/testdata).

func TestClassifierThroughRuntime(t *testing.T) {
	m := load(t, "classifier.onnx", inference.Options{})
	labels, err := inference.LoadLines(inferencetest.Testdata(t, "classifier.labels"))
	require.NoError(t, err)
	p, err := inference.NewPipeline(inference.PipelineConfig{
		Task: inference.TaskClassification, TopK: 2, Labels: labels,
		Pre: inference.Preprocess{Mode: inference.ResizeStretch}, // letterbox padding would tint the black image
	}, m, nil)
	require.NoError(t, err)
	// Through JPEG files, so decoding is part of it.
	var imgs []*inference.Image
	for _, c := range colours {
		enc, err := inference.EncodeJPEG(c, 100)
		require.NoError(t, err)
		img, err := inference.DecodeImage(enc)
		require.NoError(t, err)
		imgs = append(imgs, img)
	}
	res, err := p.Run(context.Background(), imgs)
	require.NoError(t, err)
	want := []string{"red", "green", "blue", "black"}
	for i, r := range res {
		require.Len(t, r.Classes, 2)
		require.Equal(t, want[i], r.Classes[0].Label)
		require.Greater(t, r.Classes[0].Score, float32(0.97), "%+v", r.Classes)
	}
}

func TestYOLOThroughRuntime(t *testing.T) {
	for _, name := range []string{"yolov5", "yolov8"} {
		t.Run(name, func(t *testing.T) {
			m := load(t, name+".onnx", inference.Options{})
			p, err := inference.NewPipeline(inference.PipelineConfig{Task: inference.Task(name), Confidence: 0.25, IoU: 0.45, Labels: []string{"a", "b", "c"}}, m, nil)
			require.NoError(t, err)
			require.Equal(t, 64, p.Config().Pre.Width, "input size from the model")
			res, err := p.Run(context.Background(), []*inference.Image{solid(128, 64, 0, 0, 0), solid(64, 128, 0, 0, 0)})
			require.NoError(t, err)
			require.Len(t, res, 2)
			requireDetections(t, wideYOLODetections, res[0].Detections)
			// The tall image is padded left and right: x = (model - 16) * 2.
			requireDetections(t, []inference.Detection{
				{Class: 2, Label: "c", Score: 0.9025, Box: inference.Box{X1: 58, Y1: 20, X2: 64, Y2: 44}},
				{Class: 0, Label: "a", Score: 0.81, Box: inference.Box{X1: 12, Y1: 44, X2: 52, Y2: 84}},
				{Class: 1, Label: "b", Score: 0.72, Box: inference.Box{X1: 14, Y1: 46, X2: 54, Y2: 86}},
			}, res[1].Detections)
		})
	}
}

func TestSSDThroughRuntime(t *testing.T) {
	m := load(t, "ssd.onnx", inference.Options{})
	p, err := inference.NewPipeline(inference.PipelineConfig{
		Task: inference.TaskSSD, Confidence: 0.5, Labels: []string{"background", "cat", "dog"},
		Pre: inference.Preprocess{Mode: inference.ResizeStretch, Order: inference.RGB, Scale: 1.0 / 255},
		SSD: inference.SSDFormat{YXYX: true, Background: -1}, SSDAutoNormalized: true,
	}, m, nil)
	require.NoError(t, err)
	res, err := p.Run(context.Background(), []*inference.Image{solid(640, 480, 0, 0, 0)})
	require.NoError(t, err)
	// Stretched: normalised boxes scale to 640 x 480; the fourth box is
	// beyond num_detections.
	requireDetections(t, []inference.Detection{
		{Class: 1, Label: "cat", Score: 0.95, Box: inference.Box{X1: 320, Y1: 120, X2: 640, Y2: 360}},
		{Class: 2, Label: "dog", Score: 0.60, Box: inference.Box{X1: 0, Y1: 0, X2: 160, Y2: 240}},
	}, res[0].Detections)
}
