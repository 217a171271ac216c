package inference_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
)

func solid(w, h int, b, g, r byte) *inference.Image {
	img := inference.NewImage(w, h)
	img.Fill(0, 0, w, h, b, g, r)
	return img
}

func TestLetterbox(t *testing.T) {
	p := inference.DefaultPreprocess(64, 64)
	img := solid(128, 64, 10, 20, 30)
	fit, tr := p.Fit(img)
	require.Equal(t, 64, fit.Width)
	require.Equal(t, 64, fit.Height)
	require.Equal(t, inference.Transform{SrcWidth: 128, SrcHeight: 64, ScaleX: 0.5, ScaleY: 0.5, PadY: 16}, tr)
	// Padding rows are grey, the image rows keep their colour.
	for _, y := range []int{0, 15, 48, 63} {
		b, g, r := fit.BGR(5, y)
		require.Equal(t, [3]byte{114, 114, 114}, [3]byte{b, g, r}, "row %d", y)
	}
	for _, y := range []int{16, 32, 47} {
		b, g, r := fit.BGR(40, y)
		require.Equal(t, [3]byte{10, 20, 30}, [3]byte{b, g, r}, "row %d", y)
	}
	// A box in the model's input maps back to the image, clipped.
	require.Equal(t, inference.Box{X1: 44, Y1: 12, X2: 84, Y2: 52}, tr.BoxToSource(inference.Box{X1: 22, Y1: 22, X2: 42, Y2: 42}))
	require.Equal(t, inference.Box{X1: 0, Y1: 0, X2: 128, Y2: 64}, tr.BoxToSource(inference.Box{X1: -5, Y1: 0, X2: 70, Y2: 64}))

	// Tall images pad left and right.
	_, tr = p.Fit(solid(30, 60, 0, 0, 0))
	require.Equal(t, inference.Transform{SrcWidth: 30, SrcHeight: 60, ScaleX: 32.0 / 30, ScaleY: 64.0 / 60, PadX: 16}, tr)
}

func TestStretch(t *testing.T) {
	p := inference.DefaultPreprocess(64, 32)
	p.Mode = inference.ResizeStretch
	fit, tr := p.Fit(solid(128, 128, 1, 2, 3))
	require.Equal(t, [2]int{64, 32}, [2]int{fit.Width, fit.Height})
	require.Equal(t, inference.Box{X1: 20, Y1: 40, X2: 40, Y2: 80}, tr.BoxToSource(inference.Box{X1: 10, Y1: 10, X2: 20, Y2: 20}))
}

func TestWriteNCHW(t *testing.T) {
	img := inference.NewImage(2, 1)
	copy(img.Pix, []byte{10, 20, 30, 40, 50, 60}) // BGR, BGR
	dst := make([]float32, 6)

	p := inference.Preprocess{Order: inference.RGB, Scale: 1, Std: [3]float32{1, 1, 1}}
	require.NoError(t, p.WriteNCHW(dst, img))
	require.Equal(t, []float32{30, 60, 20, 50, 10, 40}, dst)

	p.Order = inference.BGR
	require.NoError(t, p.WriteNCHW(dst, img))
	require.Equal(t, []float32{10, 40, 20, 50, 30, 60}, dst)

	p = inference.Preprocess{Order: inference.RGB, Scale: 0.1, Mean: [3]float32{1, 2, 3}, Std: [3]float32{2, 4, 0.5}}
	require.NoError(t, p.WriteNCHW(dst, img))
	require.InDeltaSlice(t, []float32{(3 - 1) / 2.0, (6 - 1) / 2.0, (2 - 2) / 4.0, (5 - 2) / 4.0, (1 - 3) / 0.5, (4 - 3) / 0.5}, dst, 1e-5)

	require.ErrorIs(t, p.WriteNCHW(make([]float32, 5), img), inference.ErrInputShape)
}

func TestPreprocessTensorBatch(t *testing.T) {
	p := inference.DefaultPreprocess(4, 4)
	tensor, trs, err := p.Tensor("images", []*inference.Image{solid(8, 8, 0, 0, 255), solid(4, 2, 255, 0, 0)})
	require.NoError(t, err)
	require.Equal(t, "images", tensor.Name)
	require.Equal(t, []int64{2, 3, 4, 4}, tensor.Shape)
	require.Len(t, trs, 2)
	// Image 0 is red: R plane all 1, B plane all 0.
	require.Equal(t, float32(1), tensor.Data[0])
	require.Equal(t, float32(0), tensor.Data[2*16])
	// Image 1 is blue, letterboxed into rows 1-2: row 0 is padding.
	img1 := tensor.Data[3*16:]
	require.InDelta(t, 114.0/255, img1[2*16], 1e-6)
	require.Equal(t, float32(1), img1[2*16+4])
	require.Equal(t, 1.0, trs[1].PadY)
}

func TestParseSizeAndTriple(t *testing.T) {
	w, h, err := inference.ParseSize("640x480")
	require.NoError(t, err)
	require.Equal(t, [2]int{640, 480}, [2]int{w, h})
	w, h, err = inference.ParseSize(" 320 ")
	require.NoError(t, err)
	require.Equal(t, [2]int{320, 320}, [2]int{w, h})
	for _, bad := range []string{"", "0x5", "axb", "640x", "-3x4", "99999x1"} {
		_, _, err := inference.ParseSize(bad)
		require.Error(t, err, bad)
	}
	tr, err := inference.ParseTriple("0.485, 0.456,0.406")
	require.NoError(t, err)
	require.Equal(t, [3]float32{0.485, 0.456, 0.406}, tr)
	tr, err = inference.ParseTriple("0.5")
	require.NoError(t, err)
	require.Equal(t, [3]float32{0.5, 0.5, 0.5}, tr)
	for _, bad := range []string{"", "1,2", "1,2,x"} {
		_, err := inference.ParseTriple(bad)
		require.Error(t, err, bad)
	}
}
