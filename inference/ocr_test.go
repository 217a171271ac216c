package inference_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
)

// probMap returns a w x h map with rectangles [x0,x1) x [y0,y1) set to v.
func probMap(w, h int, rects ...[5]float32) []float32 {
	m := make([]float32, w*h)
	for _, r := range rects {
		for y := int(r[1]); y < int(r[3]); y++ {
			for x := int(r[0]); x < int(r[2]); x++ {
				m[y*w+x] = r[4]
			}
		}
	}
	return m
}

func requireQuad(t *testing.T, want, got inference.Quad, delta float64) {
	t.Helper()
	for k := range 4 {
		require.InDelta(t, want[k].X, got[k].X, delta, "corner %d of %v", k, got)
		require.InDelta(t, want[k].Y, got[k].Y, delta, "corner %d of %v", k, got)
	}
}

func TestDBBoxes(t *testing.T) {
	m := probMap(100, 60,
		[5]float32{50, 40, 90, 50, 0.9}, // second line
		[5]float32{10, 10, 60, 20, 0.8}, // first line
		[5]float32{70, 10, 72, 12, 0.9}, // too small
		[5]float32{10, 30, 40, 36, 0.4}, // above thresh, under box thresh
	)
	boxes := inference.DBBoxes(m, 100, 60, inference.DefaultDBOptions())
	require.Len(t, boxes, 2)
	// Pixel centres 10..59 x 10..19: a 49 x 9 rectangle, grown by
	// d = 49*9*1.5/(2*58) on every side.
	d := 49.0 * 9 * 1.5 / (2 * 58)
	requireQuad(t, inference.Quad{{X: 10 - d, Y: 10 - d}, {X: 59 + d, Y: 10 - d}, {X: 59 + d, Y: 19 + d}, {X: 10 - d, Y: 19 + d}}, boxes[0].Quad, 1e-9)
	require.InDelta(t, 0.8, boxes[0].Score, 1e-6)
	d = 39.0 * 9 * 1.5 / (2 * 48)
	requireQuad(t, inference.Quad{{X: 50 - d, Y: 40 - d}, {X: 89 + d, Y: 40 - d}, {X: 89 + d, Y: 49 + d}, {X: 50 - d, Y: 49 + d}}, boxes[1].Quad, 1e-9)

	// A lower box threshold keeps the faint region; a higher binarisation
	// threshold drops everything.
	o := inference.DefaultDBOptions()
	o.BoxThresh = 0.3
	require.Len(t, inference.DBBoxes(m, 100, 60, o), 3)
	o.Thresh = 0.95
	require.Empty(t, inference.DBBoxes(m, 100, 60, o))
	require.Empty(t, inference.DBBoxes(m[:10], 100, 60, o), "short map")
}

func TestDBBoxesRegions(t *testing.T) {
	o := inference.DefaultDBOptions()
	// A U: two bars that only meet at the bottom are one region, whose
	// first run is left of a second run starting a separate-looking stroke.
	u := probMap(60, 40,
		[5]float32{10, 5, 16, 30, 0.9},
		[5]float32{40, 5, 46, 30, 0.9},
		[5]float32{10, 30, 46, 35, 0.9},
	)
	boxes := inference.DBBoxes(u, 60, 40, o)
	require.Len(t, boxes, 1, "the U is one region")
	b := boxes[0].Quad.Bounds()
	require.Less(t, b.X1, float32(10))
	require.Greater(t, b.X2, float32(45))

	// Blocks touching only at a corner are 8-connected: one region.
	// Blocks one pixel apart are two.
	diag := probMap(60, 40, [5]float32{5, 5, 15, 15, 0.9}, [5]float32{15, 15, 25, 25, 0.9})
	require.Len(t, inference.DBBoxes(diag, 60, 40, o), 1)
	apart := probMap(60, 40, [5]float32{5, 5, 15, 15, 0.9}, [5]float32{16, 5, 26, 15, 0.9})
	require.Len(t, inference.DBBoxes(apart, 60, 40, o), 2)

	// MaxCandidates bounds the regions looked at, first in raster order:
	// the region starting higher up is kept.
	o.MaxCandidates = 1
	got := inference.DBBoxes(apart, 60, 40, o)
	require.Len(t, got, 1)
	require.Less(t, got[0].Quad.Bounds().X1, float32(10))
	two := probMap(60, 40, [5]float32{30, 20, 50, 30, 0.9}, [5]float32{5, 2, 20, 12, 0.9})
	got = inference.DBBoxes(two, 60, 40, o)
	require.Len(t, got, 1)
	require.Less(t, got[0].Quad.Bounds().Y1, float32(5), "the region whose first pixel comes first")
}

func TestDBBoxesRotated(t *testing.T) {
	// A 40 x 8 bar rotated 30 degrees around (50, 50).
	w, h := 100, 100
	m := make([]float32, w*h)
	a := math.Pi / 6
	for y := range h {
		for x := range w {
			dx, dy := float64(x)-50, float64(y)-50
			u := dx*math.Cos(a) + dy*math.Sin(a)
			v := -dx*math.Sin(a) + dy*math.Cos(a)
			if math.Abs(u) <= 20 && math.Abs(v) <= 4 {
				m[y*w+x] = 1
			}
		}
	}
	boxes := inference.DBBoxes(m, w, h, inference.DefaultDBOptions())
	require.Len(t, boxes, 1)
	q := boxes[0].Quad
	side := func(i, j int) float64 { return math.Hypot(q[j].X-q[i].X, q[j].Y-q[i].Y) }
	// About 40 x 8 grown by d = 40*8*1.5/(2*48) = 5 each side: 50 x 18.
	require.InDelta(t, 50, side(0, 1), 2.5)
	require.InDelta(t, 18, side(1, 2), 2.5)
	angle := math.Atan2(q[1].Y-q[0].Y, q[1].X-q[0].X)
	require.InDelta(t, a, angle, 0.06)
	// Corners in order: top-left is leftmost of the left pair.
	require.Less(t, q[0].X, q[1].X)
	require.Less(t, q[0].Y, q[3].Y)
}

func TestCTCDecode(t *testing.T) {
	keys := []string{"a", "b", "c"} // classes: 0 blank, 1 a, 2 b, 3 c, 4 space
	steps := []int{1, 1, 0, 1, 2, 2, 4, 3, 0, 0}
	probs := make([]float32, len(steps)*5)
	for s, k := range steps {
		for c := range 5 {
			probs[s*5+c] = 0.05
		}
		probs[s*5+k] = 0.8
	}
	probs[7*5+3] = 0.6 // the "c" is less sure
	text, score := inference.CTCDecode(probs, len(steps), 5, keys)
	require.Equal(t, "aab c", text)
	require.InDelta(t, (0.8*4+0.6)/5, score, 1e-6)
	text, score = inference.CTCDecode(make([]float32, 10), 2, 5, keys)
	require.Empty(t, text)
	require.Zero(t, score)
}

func TestCropText(t *testing.T) {
	img := solid(100, 80, 255, 255, 255)
	img.Fill(20, 30, 60, 40, 0, 0, 255) // a red 40 x 10 bar
	crop := inference.CropText(img, inference.Quad{{X: 20, Y: 30}, {X: 60, Y: 30}, {X: 60, Y: 40}, {X: 20, Y: 40}})
	require.Equal(t, [2]int{40, 10}, [2]int{crop.Width, crop.Height})
	for _, p := range [][2]int{{0, 0}, {20, 5}, {38, 8}} {
		b, g, r := crop.BGR(p[0], p[1])
		require.Equal(t, [3]byte{0, 0, 255}, [3]byte{b, g, r}, "pixel %v", p)
	}
	// A tall box is turned upright.
	crop = inference.CropText(img, inference.Quad{{X: 10, Y: 10}, {X: 20, Y: 10}, {X: 20, Y: 50}, {X: 10, Y: 50}})
	require.Equal(t, [2]int{40, 10}, [2]int{crop.Width, crop.Height})
}

func TestRecInput(t *testing.T) {
	crop := solid(20, 10, 255, 0, 0)
	data, w := inference.RecInput(crop, 48, 320, 0)
	require.Equal(t, 96, w)
	require.Len(t, data, 3*48*96)
	require.Equal(t, float32(1), data[0], "B plane: 255 -> 1")
	require.Equal(t, float32(-1), data[48*96], "G plane: 0 -> -1")
	data, w = inference.RecInput(crop, 48, 320, 200)
	require.Equal(t, 200, w)
	require.Equal(t, float32(0), data[199], "padded with zeros")
	_, w = inference.RecInput(solid(1000, 10, 0, 0, 0), 48, 320, 0)
	require.Equal(t, 320, w, "capped")
}
