//go:build gocv

package inference

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// gradient returns a w x h image with smooth gradients and a few sharp
// edges, like a photo more than a test pattern.
func gradient(w, h int) *Image {
	img := NewImage(w, h)
	for y := range h {
		for x := range w {
			i := (y*w + x) * 3
			img.Pix[i] = byte(255 * x / w)
			img.Pix[i+1] = byte(255 * y / h)
			img.Pix[i+2] = byte(128 + 127*math.Sin(float64(x+y)/9))
			if (x/40+y/40)%2 == 0 && x > w/2 {
				img.Pix[i+1] = 20
			}
		}
	}
	return img
}

// diff returns the mean and the largest absolute difference of two images.
func diff(t *testing.T, a, b *Image) (mean float64, most int) {
	t.Helper()
	require.Equal(t, [2]int{a.Width, a.Height}, [2]int{b.Width, b.Height})
	sum := 0
	for i := range a.Pix {
		d := int(a.Pix[i]) - int(b.Pix[i])
		if d < 0 {
			d = -d
		}
		sum += d
		most = max(most, d)
	}
	return float64(sum) / float64(len(a.Pix)), most
}

// The pure Go image code agrees with OpenCV's.
func TestPureGoMatchesOpenCV(t *testing.T) {
	src := gradient(320, 240)
	t.Run("resize", func(t *testing.T) {
		for _, sz := range [][2]int{{640, 640}, {160, 120}, {97, 211}, {320, 240}} {
			mean, most := diff(t, resizeGo(src, sz[0], sz[1]), backendResize(src, sz[0], sz[1]))
			require.LessOrEqual(t, most, 2, "%v", sz)
			require.Less(t, mean, 0.6, "%v", sz)
		}
	})
	t.Run("decode", func(t *testing.T) {
		enc, err := backendEncodeJPEG(src, 90)
		require.NoError(t, err)
		cv, err := backendDecode(enc)
		require.NoError(t, err)
		gd, err := decodeGo(enc)
		require.NoError(t, err)
		mean, most := diff(t, cv, gd)
		t.Logf("jpeg decoders: mean %.2f, max %d", mean, most)
		// libjpeg upsamples chroma smoothly, image/jpeg does not: sharp
		// colour edges differ, the rest is close.
		require.Less(t, mean, 4.0)
	})
	t.Run("warp", func(t *testing.T) {
		q := [4]Point{{X: 40.5, Y: 30}, {X: 200, Y: 50}, {X: 190, Y: 110.25}, {X: 35, Y: 90}}
		mean, most := diff(t, warpQuadGo(src, q, 160, 60), backendWarpQuad(src, q, 160, 60))
		t.Logf("warp: mean %.2f, max %d", mean, most)
		require.Less(t, mean, 2.0) // bilinear against OpenCV's bicubic
	})
}
