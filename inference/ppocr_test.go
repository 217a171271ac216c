//go:build onnx && gocv

package inference_test

import (
	"context"
	"image"
	"image/color"
	"testing"

	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"edgeagent.dev/inference"
	"edgeagent.dev/inference/inferencetest"
)

// drawn is a string rendered into a test image.
type drawn struct {
	text  string
	x, y  int // baseline origin
	scale float64
	thick int
	font  gocv.HersheyFont
}

// rotate turns img by deg degrees (counter-clockwise) around its centre,
// filling the corners white.
func rotate(t testing.TB, img *inference.Image, deg float64) *inference.Image {
	t.Helper()
	src, err := gocv.NewMatFromBytes(img.Height, img.Width, gocv.MatTypeCV8UC3, img.Pix)
	require.NoError(t, err)
	defer src.Close()
	rot := gocv.GetRotationMatrix2D(image.Pt(img.Width/2, img.Height/2), deg, 1)
	defer rot.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	gocv.WarpAffineWithParams(src, &dst, rot, image.Pt(img.Width, img.Height), gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{R: 255, G: 255, B: 255, A: 255})
	out, err := inference.RawImage(dst.ToBytes(), img.Width, img.Height)
	require.NoError(t, err)
	return out
}

// renderText draws the strings black on white with OpenCV and returns the
// image as a BGR Image.
func renderText(t testing.TB, w, h int, texts []drawn) *inference.Image {
	t.Helper()
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(255, 255, 255, 0), h, w, gocv.MatTypeCV8UC3)
	defer m.Close()
	for _, d := range texts {
		gocv.PutText(&m, d.text, image.Pt(d.x, d.y), d.font, d.scale, color.RGBA{A: 255}, d.thick)
	}
	img, err := inference.RawImage(m.ToBytes(), w, h)
	require.NoError(t, err)
	return img
}

// loadOCR loads PP-OCRv4 detection and recognition and returns the pipeline.
func loadOCR(t testing.TB) *inference.Pipeline {
	t.Helper()
	det, rec, keysPath := inferencetest.PPOCR(t)
	lib := inferencetest.Library(t)
	dm, err := inference.Load(det, inference.Options{LibraryPath: lib})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, dm.Close()) })
	rm, err := inference.Load(rec, inference.Options{LibraryPath: lib})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rm.Close()) })
	keys, err := inference.LoadLines(keysPath)
	require.NoError(t, err)
	p, err := inference.NewPipeline(inference.PipelineConfig{Task: inference.TaskPPOCR, Keys: keys, Confidence: 0.5}, dm, rm)
	require.NoError(t, err)
	return p
}

func TestPPOCRReadsRenderedText(t *testing.T) {
	p := loadOCR(t)
	tests := []struct {
		name   string
		w, h   int
		rotate float64
		texts  []drawn
	}{
		{name: "three lines", w: 800, h: 400, texts: []drawn{
			{text: "EDGE AGENT 42", x: 40, y: 80, scale: 2, thick: 3, font: gocv.FontHersheySimplex},
			{text: "Jetson Orin Nano", x: 300, y: 200, scale: 1.2, thick: 2, font: gocv.FontHersheySimplex},
			{text: "temperature 21.5C", x: 60, y: 330, scale: 1, thick: 2, font: gocv.FontHersheyDuplex},
		}},
		{name: "small and large", w: 640, h: 480, texts: []drawn{
			{text: "HELLO", x: 150, y: 200, scale: 4, thick: 6, font: gocv.FontHersheySimplex},
			{text: "frame 0017", x: 400, y: 420, scale: 0.8, thick: 2, font: gocv.FontHersheySimplex},
		}},
		{name: "fonts", w: 900, h: 300, texts: []drawn{
			{text: "Complex 2024", x: 30, y: 90, scale: 1.6, thick: 2, font: gocv.FontHersheyComplex},
			{text: "triplex TEXT", x: 420, y: 240, scale: 1.5, thick: 2, font: gocv.FontHersheyTriplex},
		}},
		{name: "rotated", w: 640, h: 360, rotate: 8, texts: []drawn{
			{text: "TILTED LABEL 7", x: 120, y: 200, scale: 1.5, thick: 3, font: gocv.FontHersheySimplex},
		}},
	}
	for _, backend := range []string{"opencv", "go"} {
		if backend == "go" {
			// The pure Go resize and crop (a build without gocv) read
			// the same text.
			defer inference.UsePureGoImages()()
		}
		for _, tt := range tests {
			t.Run(backend+"/"+tt.name, func(t *testing.T) {
				img := renderText(t, tt.w, tt.h, tt.texts)
				if tt.rotate != 0 {
					img = rotate(t, img, tt.rotate)
				}
				res, err := p.Run(context.Background(), []*inference.Image{img})
				require.NoError(t, err)
				for _, x := range res[0].Texts {
					t.Logf("%q score %.3f det %.3f box %+v", x.Text, x.Score, x.DetScore, x.Box)
				}
				var want []string
				for _, d := range tt.texts {
					want = append(want, d.text)
				}
				require.Equal(t, want, res[0].Lines())
				if tt.rotate != 0 {
					return
				}
				// Each box is where its text was drawn: starting near the
				// origin, around the baseline.
				for i, d := range tt.texts {
					b := res[0].Texts[i].Box
					require.InDelta(t, d.x, b.X1, 15, "%q starts at %d: %+v", d.text, d.x, b)
					require.True(t, float32(d.y) > b.Y1 && float32(d.y) < b.Y2+8, "%q baseline %d in %+v", d.text, d.y, b)
				}
			})
		}
	}
}
