package inference_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
)

// testPNG encodes a w x h image: left half red, right half blue.
func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{R: 255, A: 255}
			if x >= w/2 {
				c = color.NRGBA{B: 255, A: 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

func TestDecodeImage(t *testing.T) {
	img, err := inference.DecodeImage(testPNG(t, 16, 8))
	require.NoError(t, err)
	require.Equal(t, [2]int{16, 8}, [2]int{img.Width, img.Height})
	b, g, r := img.BGR(2, 3)
	require.Equal(t, [3]byte{0, 0, 255}, [3]byte{b, g, r})
	b, g, r = img.BGR(12, 3)
	require.Equal(t, [3]byte{255, 0, 0}, [3]byte{b, g, r})

	// JPEG, through the encoder under test and the standard one.
	enc, err := inference.EncodeJPEG(img, 95)
	require.NoError(t, err)
	std, err := jpeg.Decode(bytes.NewReader(enc))
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, 16, 8), std.Bounds())
	back, err := inference.DecodeImage(enc)
	require.NoError(t, err)
	b, g, r = back.BGR(2, 3)
	require.InDeltaSlice(t, []float64{0, 0, 255}, []float64{float64(b), float64(g), float64(r)}, 40)

	for _, bad := range [][]byte{nil, []byte("GIF89a..."), {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3}, []byte("\x89PNG\r\n\x1a\nxxxx")} {
		_, err := inference.DecodeImage(bad)
		require.ErrorIs(t, err, inference.ErrDecodeImage, "%q", bad)
	}
}

func TestRawImage(t *testing.T) {
	img, err := inference.RawImage(make([]byte, 4*2*3), 4, 2)
	require.NoError(t, err)
	require.Equal(t, 4, img.Width)
	_, err = inference.RawImage(make([]byte, 10), 4, 2)
	require.ErrorIs(t, err, inference.ErrDecodeImage)
	_, err = inference.RawImage(nil, 0, 0)
	require.ErrorIs(t, err, inference.ErrDecodeImage)
}

func TestResizeImage(t *testing.T) {
	img := inference.NewImage(2, 1)
	copy(img.Pix, []byte{0, 0, 0, 200, 100, 40})
	up := inference.ResizeImage(img, 4, 1)
	// OpenCV's centre-aligned bilinear: x = 0.25 -> 0, 0.75 -> 0.25*200...
	got := []byte{up.Pix[0], up.Pix[3], up.Pix[6], up.Pix[9]}
	require.Equal(t, []byte{0, 50, 150, 200}, got)
	require.Same(t, img, inference.ResizeImage(img, 2, 1), "same size: no copy")
	down := inference.ResizeImage(solid(64, 32, 9, 8, 7), 8, 4)
	require.Equal(t, solid(8, 4, 9, 8, 7).Pix, down.Pix)
}

func TestAnnotate(t *testing.T) {
	img := solid(64, 64, 255, 255, 255)
	res := &inference.Result{Task: inference.TaskYOLOv5, Width: 64, Height: 64, Detections: []inference.Detection{
		{Class: 0, Label: "thing", Score: 0.9, Box: inference.Box{X1: 10, Y1: 20, X2: 40, Y2: 50}},
	}}
	out := inference.Annotate(img, res)
	require.Equal(t, solid(64, 64, 255, 255, 255).Pix, img.Pix, "the input is not changed")
	b, g, r := out.BGR(25, 50) // on the bottom edge
	require.NotEqual(t, [3]byte{255, 255, 255}, [3]byte{b, g, r})
	b, g, r = out.BGR(25, 35) // inside
	require.Equal(t, [3]byte{255, 255, 255}, [3]byte{b, g, r})
}

func TestDecodeImageTooLarge(t *testing.T) {
	b := testPNG(t, 2, 2)
	// Rewrite the IHDR chunk (after the 8-byte signature and the 8-byte
	// chunk header) to claim 20000 x 20000 pixels, with its CRC.
	binary.BigEndian.PutUint32(b[16:], 20000)
	binary.BigEndian.PutUint32(b[20:], 20000)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	_, err := inference.DecodeImage(b)
	require.ErrorIs(t, err, inference.ErrDecodeImage)
	require.ErrorContains(t, err, "20000x20000")
}

// FuzzDecodeImage feeds arbitrary bytes to the decoder: it returns an
// image of the size the header says or an ErrDecodeImage, never panics.
func FuzzDecodeImage(f *testing.F) {
	f.Add(testPNG(f, 4, 3))
	jpg, err := inference.EncodeJPEG(solid(5, 2, 1, 2, 3), 80)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(jpg)
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(b)); err == nil && cfg.Width*cfg.Height > 1<<20 {
			t.Skip("large images are slow to fuzz")
		}
		img, err := inference.DecodeImage(b)
		if err != nil {
			require.ErrorIs(t, err, inference.ErrDecodeImage)
			return
		}
		require.Len(t, img.Pix, img.Width*img.Height*3)
	})
}
