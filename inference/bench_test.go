package inference_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
)

// The CPU cost around a model run, per 640x480 JPEG frame fed to a 640x640
// input (with OpenCV under -tags gocv, pure Go otherwise).

func benchFrame(b *testing.B) []byte {
	img := solid(640, 480, 200, 200, 200)
	for y := 100; y < 380; y += 40 {
		img.Fill(50, y, 590, y+20, 20, 20, 20)
	}
	enc, err := inference.EncodeJPEG(img, 90)
	require.NoError(b, err)
	return enc
}

func BenchmarkDecodeJPEG(b *testing.B) {
	frame := benchFrame(b)
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := inference.DecodeImage(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPreprocessTensor(b *testing.B) {
	img, err := inference.DecodeImage(benchFrame(b))
	require.NoError(b, err)
	p := inference.PPOCRPreprocess(640, 640)
	for b.Loop() {
		if _, _, err := p.Tensor("x", []*inference.Image{img}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDBBoxes(b *testing.B) {
	// Seven text lines in a 640x640 probability map.
	var rects [][5]float32
	for y := 100; y < 380; y += 40 {
		rects = append(rects, [5]float32{50, float32(y), 590, float32(y + 20), 0.9})
	}
	m := probMap(640, 640, rects...)
	for b.Loop() {
		if got := inference.DBBoxes(m, 640, 640, inference.DefaultDBOptions()); len(got) != 7 {
			b.Fatal(len(got))
		}
	}
}
