package inference_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
)

// yoloRows are the rows scripts/gen-test-models.py puts in yolov5.onnx:
// cx, cy, w, h, objectness, 3 class scores.
var yoloRows = [][]float32{
	{32, 32, 20, 20, 0.90, 0.90, 0.05, 0.05},
	{33, 33, 20, 20, 0.80, 0.90, 0.05, 0.05},
	{33, 33, 20, 20, 0.80, 0.05, 0.90, 0.05},
	{10, 10, 8, 8, 0.10, 0.90, 0.05, 0.05},
	{50, 16, 10, 12, 0.95, 0.02, 0.03, 0.95},
	{20, 50, 10, 10, 0.90, 0.20, 0.20, 0.20},
}

// yoloWant is the answer for those rows at confidence 0.25, IoU 0.45, in
// the 64x64 input's pixels.
var yoloWant = []inference.Detection{
	{Class: 2, Score: 0.95 * 0.95, Box: inference.Box{X1: 45, Y1: 10, X2: 55, Y2: 22}},
	{Class: 0, Score: 0.9 * 0.9, Box: inference.Box{X1: 22, Y1: 22, X2: 42, Y2: 42}},
	{Class: 1, Score: 0.8 * 0.9, Box: inference.Box{X1: 23, Y1: 23, X2: 43, Y2: 43}},
}

func v5Data() []float32 {
	var d []float32
	for _, r := range yoloRows {
		d = append(d, r...)
	}
	return d
}

// v8Data is the v8 layout of the same boxes: 4+3 rows of 6 values, class
// scores already multiplied by objectness.
func v8Data() []float32 {
	n := len(yoloRows)
	d := make([]float32, 7*n)
	for i, r := range yoloRows {
		for k := range 4 {
			d[k*n+i] = r[k]
		}
		for c := range 3 {
			d[(4+c)*n+i] = r[4] * r[5+c]
		}
	}
	return d
}

func requireDetections(t *testing.T, want, got []inference.Detection) {
	t.Helper()
	require.Len(t, got, len(want), "%+v", got)
	for i := range want {
		require.Equal(t, want[i].Class, got[i].Class, "detection %d", i)
		require.Equal(t, want[i].Label, got[i].Label, "detection %d", i)
		require.InDelta(t, want[i].Score, got[i].Score, 1e-5, "detection %d", i)
		require.InDeltaSlice(t, []float32{want[i].Box.X1, want[i].Box.Y1, want[i].Box.X2, want[i].Box.Y2},
			[]float32{got[i].Box.X1, got[i].Box.Y1, got[i].Box.X2, got[i].Box.Y2}, 1e-3, "detection %d", i)
	}
}

func TestDecodeYOLOv5(t *testing.T) {
	dets := inference.DecodeYOLOv5(v5Data(), 6, 8, 0.25)
	require.Len(t, dets, 4, "rows 3 and 5 are under the threshold")
	requireDetections(t, yoloWant, inference.NMS(dets, 0.45, true, 0))
	require.Nil(t, inference.DecodeYOLOv5(v5Data()[:10], 6, 8, 0.25), "short data")
}

func TestDecodeYOLOv8(t *testing.T) {
	dets := inference.DecodeYOLOv8(v8Data(), 7, 6, 0.25)
	require.Len(t, dets, 4)
	requireDetections(t, yoloWant, inference.NMS(dets, 0.45, true, 0))
}

func TestYOLOLayout(t *testing.T) {
	n, v, err := inference.YOLOLayout([]int64{1, 25200, 85}, "yolov5")
	require.NoError(t, err)
	require.Equal(t, [2]int{25200, 85}, [2]int{n, v})
	n, v, err = inference.YOLOLayout([]int64{1, 84, 8400}, "yolov8")
	require.NoError(t, err)
	require.Equal(t, [2]int{8400, 84}, [2]int{n, v})
	_, _, err = inference.YOLOLayout([]int64{1, 84}, "yolov8")
	require.ErrorIs(t, err, inference.ErrModelOutput)
	_, _, err = inference.YOLOLayout([]int64{1, 8400, 4}, "yolov5")
	require.ErrorIs(t, err, inference.ErrModelOutput)
}

func TestNMS(t *testing.T) {
	a := inference.Detection{Class: 0, Score: 0.9, Box: inference.Box{X1: 0, Y1: 0, X2: 10, Y2: 10}}
	b := inference.Detection{Class: 1, Score: 0.8, Box: inference.Box{X1: 1, Y1: 1, X2: 11, Y2: 11}}
	c := inference.Detection{Class: 0, Score: 0.7, Box: inference.Box{X1: 0, Y1: 0, X2: 10, Y2: 9}}
	d := inference.Detection{Class: 0, Score: 0.6, Box: inference.Box{X1: 20, Y1: 20, X2: 30, Y2: 30}}
	in := []inference.Detection{d, c, b, a}
	require.Equal(t, []inference.Detection{a, b, d}, inference.NMS(in, 0.5, true, 0))
	require.Equal(t, []inference.Detection{a, d}, inference.NMS(in, 0.5, false, 0))
	require.Equal(t, []inference.Detection{a, b}, inference.NMS(in, 0.5, true, 2))
	require.Equal(t, []inference.Detection{d, c, b, a}, in, "the input is not reordered")
	require.InDelta(t, 81.0/119, inference.IoU(a.Box, b.Box), 1e-6)
	require.Zero(t, inference.IoU(a.Box, d.Box))
}

func TestDecodeSSD(t *testing.T) {
	// TensorFlow layout, as in testdata/ssd.onnx: normalised yxyx, classes
	// per box, only num_detections rows valid.
	o := inference.SSDOutputs{
		Boxes: []float32{
			0.25, 0.50, 0.75, 1.00,
			0.00, 0.00, 0.50, 0.25,
			0.10, 0.10, 0.20, 0.20,
			0.50, 0.50, 0.60, 0.60,
		},
		Scores:  []float32{0.95, 0.60, 0.10, 0.99},
		Classes: []float32{1, 2, 1, 0},
		Count:   3,
	}
	require.True(t, inference.SSDNormalized(o.Boxes))
	dets, err := inference.DecodeSSD(o, inference.SSDFormat{YXYX: true, Normalized: true, Background: -1}, 64, 64, 0.5)
	require.NoError(t, err)
	requireDetections(t, []inference.Detection{
		{Class: 1, Score: 0.95, Box: inference.Box{X1: 32, Y1: 16, X2: 64, Y2: 48}},
		{Class: 2, Score: 0.60, Box: inference.Box{X1: 0, Y1: 0, X2: 16, Y2: 32}},
	}, dets)

	// Per-class scores, pixel xyxy boxes, class 0 the background.
	o = inference.SSDOutputs{
		Boxes:      []float32{10, 10, 20, 20, 30, 30, 50, 40},
		Scores:     []float32{0.9, 0.05, 0.05, 0.1, 0.3, 0.6},
		NumClasses: 3,
	}
	require.False(t, inference.SSDNormalized(o.Boxes))
	dets, err = inference.DecodeSSD(o, inference.SSDFormat{Background: 0, ClassOffset: -1}, 64, 64, 0.2)
	require.NoError(t, err)
	requireDetections(t, []inference.Detection{{Class: 1, Score: 0.6, Box: inference.Box{X1: 30, Y1: 30, X2: 50, Y2: 40}}}, dets)

	_, err = inference.DecodeSSD(inference.SSDOutputs{Boxes: make([]float32, 8), Scores: make([]float32, 1), Classes: make([]float32, 2)}, inference.SSDFormat{}, 1, 1, 0)
	require.ErrorIs(t, err, inference.ErrModelOutput)
}
