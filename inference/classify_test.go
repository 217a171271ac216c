package inference_test

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
)

func TestSoftmax(t *testing.T) {
	got := inference.Softmax([]float32{1, 2, 3})
	e1, e2, e3 := math.Exp(1), math.Exp(2), math.Exp(3)
	s := e1 + e2 + e3
	require.InDeltaSlice(t, []float32{float32(e1 / s), float32(e2 / s), float32(e3 / s)}, got, 1e-6)
	// Large logits do not overflow.
	got = inference.Softmax([]float32{1000, 1000})
	require.Equal(t, []float32{0.5, 0.5}, got)
	require.Empty(t, inference.Softmax(nil))
}

func TestTopK(t *testing.T) {
	scores := []float32{0.1, 0.5, 0.2, 0.5, 0.05}
	labels := []string{"a", "b", "c"}
	require.Equal(t, []inference.Class{
		{Index: 1, Label: "b", Score: 0.5}, {Index: 3, Score: 0.5}, {Index: 2, Label: "c", Score: 0.2},
	}, inference.TopK(scores, 3, labels))
	require.Len(t, inference.TopK(scores, 10, nil), 5)
	require.Empty(t, inference.TopK(scores, 0, nil))
}

func TestClassify(t *testing.T) {
	labels := []string{"red", "green", "blue", "black"}
	// Logits: softmax applied.
	got := inference.Classify([]float32{10, -10, -10, -5}, 2, 0, labels)
	require.Equal(t, "red", got[0].Label)
	require.InDelta(t, 1.0, got[0].Score, 1e-3)
	require.Equal(t, "black", got[1].Label)
	// Probabilities are kept as they are.
	got = inference.Classify([]float32{0.1, 0.7, 0.2, 0}, 5, 0.15, labels)
	require.Equal(t, []inference.Class{{Index: 1, Label: "green", Score: 0.7}, {Index: 2, Label: "blue", Score: 0.2}}, got)
}

func TestReadLines(t *testing.T) {
	got, err := inference.ReadLines(strings.NewReader("person\r\nbicycle\n \ncar\n"))
	require.NoError(t, err)
	require.Equal(t, []string{"person", "bicycle", " ", "car"}, got)
	_, err = inference.LoadLines("/nonexistent/labels.txt")
	require.ErrorContains(t, err, "opening /nonexistent/labels.txt")
}
