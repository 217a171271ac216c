//go:build gocv

package processors_test

import (
	"context"
	"encoding/json"
	"image"
	"image/color"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
)

const motionW, motionH = 320, 240

// motionScene draws the static scene (a gradient with a few shapes) with a
// little sensor noise, and a white block at block when it is not empty. The
// caller closes the Mat.
func motionScene(rng *rand.Rand, block image.Rectangle) gocv.Mat {
	m := gocv.NewMatWithSize(motionH, motionW, gocv.MatTypeCV8UC3)
	b := make([]byte, motionW*motionH*3)
	for y := range motionH {
		for x := range motionW {
			v := 40 + x/4 + y/6 + rng.IntN(7) - 3
			i := (y*motionW + x) * 3
			b[i], b[i+1], b[i+2] = byte(v), byte(v+10), byte(v+20)
		}
	}
	m2, _ := gocv.NewMatFromBytes(motionH, motionW, gocv.MatTypeCV8UC3, b)
	m2.CopyTo(&m)
	m2.Close()
	gocv.Rectangle(&m, image.Rect(30, 30, 90, 70), color.RGBA{R: 20, G: 90, B: 160}, -1)
	gocv.Circle(&m, image.Pt(250, 60), 25, color.RGBA{R: 200, G: 60, B: 30}, -1)
	if !block.Empty() {
		gocv.Rectangle(&m, block, color.RGBA{R: 255, G: 255, B: 255}, -1)
	}
	return m
}

// motionJPEG encodes the scene as JPEG.
func motionJPEG(t *testing.T, rng *rand.Rand, block image.Rectangle) []byte {
	t.Helper()
	m := motionScene(rng, block)
	defer m.Close()
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, m, []int{gocv.IMWriteJpegQuality, 90})
	require.NoError(t, err)
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

// motionRaw returns the scene as raw BGR bytes.
func motionRaw(rng *rand.Rand, block image.Rectangle) []byte {
	m := motionScene(rng, block)
	defer m.Close()
	return m.ToBytes()
}

// motionOne enqueues one frame, triggers once and returns the relationship
// it went to and the flowfile.
func motionOne(t *testing.T, r *enginetest.Runner, content []byte, attrs map[string]string) (string, *edgeagent.FlowFile) {
	t.Helper()
	r.Enqueue(content, attrs)
	r.Run(1)
	var rel string
	var ff *edgeagent.FlowFile
	for _, name := range []string{"motion", "no_motion", "failure"} {
		for _, o := range r.Output(name) {
			require.Nil(t, ff, "one output")
			rel, ff = name, o.FlowFile
		}
	}
	require.NotNil(t, ff)
	return rel, ff
}

func motionBoxes(t *testing.T, ff *edgeagent.FlowFile) []image.Rectangle {
	t.Helper()
	var raw [][4]int
	require.NoError(t, json.Unmarshal([]byte(ff.Attr(processors.AttrMotionBoxes)), &raw))
	out := make([]image.Rectangle, len(raw))
	for i, b := range raw {
		out[i] = image.Rect(b[0], b[1], b[0]+b[2], b[1]+b[3])
	}
	return out
}

// requireBoxNear checks that got is want within tol pixels on every edge.
func requireBoxNear(t *testing.T, want, got image.Rectangle, tol int, msg string) {
	t.Helper()
	d := []int{got.Min.X - want.Min.X, got.Min.Y - want.Min.Y, got.Max.X - want.Max.X, got.Max.Y - want.Max.Y}
	for _, v := range d {
		require.LessOrEqual(t, max(v, -v), tol, "%s: box %v, block %v", msg, got, want)
	}
}

// blockAt is the moving block of frame k: 40x40, moving right 12 px a frame.
func blockAt(k int) image.Rectangle { return image.Rect(60+12*k, 120, 100+12*k, 160) }

func TestMotionDetectorStaticSceneThenMovingBlock(t *testing.T) {
	for _, method := range []string{"running_average", "mog2"} {
		t.Run(method, func(t *testing.T) {
			warmup := 5
			if method == "mog2" {
				warmup = 30 // MOG2 learns at 1/(2n) over its first frames: it needs more to settle
			}
			props := map[string]string{"method": method, "warmup_frames": strconv.Itoa(warmup)}
			r := enginetest.NewRunner(t, processors.MotionDetectorSpec(), props)
			rng := rand.New(rand.NewPCG(1, 2))
			attrs := map[string]string{processors.AttrCameraID: "yard"}
			for i := range warmup {
				rel, ff := motionOne(t, r, motionJPEG(t, rng, image.Rectangle{}), attrs)
				require.Equal(t, "no_motion", rel, "warm-up frame %d", i)
				require.Equal(t, "true", ff.Attr(processors.AttrMotionWarmup))
			}
			for i := range 5 {
				rel, ff := motionOne(t, r, motionJPEG(t, rng, image.Rectangle{}), attrs)
				require.Equal(t, "no_motion", rel, "static frame %d: %s", i, ff.Attr(processors.AttrMotionBoxes))
				require.Empty(t, ff.Attr(processors.AttrMotionWarmup))
				require.Equal(t, "0", ff.Attr(processors.AttrMotionCount))
				require.Equal(t, "0", ff.Attr(processors.AttrMotionArea))
				require.Equal(t, "[]", ff.Attr(processors.AttrMotionBoxes))
			}
			for k := range 6 {
				rel, ff := motionOne(t, r, motionJPEG(t, rng, blockAt(k)), attrs)
				require.Equal(t, "motion", rel, "block frame %d", k)
				boxes := motionBoxes(t, ff)
				require.NotEmpty(t, boxes)
				require.Equal(t, strconv.Itoa(len(boxes)), ff.Attr(processors.AttrMotionCount))
				requireBoxNear(t, blockAt(k), boxes[0], 8, "the largest box is the block")
				area := 0
				for _, b := range boxes {
					area += b.Dx() * b.Dy()
				}
				require.Equal(t, strconv.Itoa(area), ff.Attr(processors.AttrMotionArea))
				require.Equal(t, "yard", ff.Attr(processors.AttrCameraID), "attributes are kept")
			}
		})
	}
}

func TestMotionDetectorRawFramesCamerasAndScaling(t *testing.T) {
	r := enginetest.NewRunner(t, processors.MotionDetectorSpec(), map[string]string{"warmup_frames": "2", "process_width": "160"})
	rng := rand.New(rand.NewPCG(3, 4))
	raw := func(cam string) map[string]string {
		return map[string]string{processors.AttrCameraID: cam, processors.AttrWidth: strconv.Itoa(motionW), processors.AttrHeight: strconv.Itoa(motionH), processors.AttrChannels: "3"}
	}
	// Two cameras, interleaved: each learns its own background.
	for range 3 {
		for _, cam := range []string{"a", "b"} {
			motionOne(t, r, motionRaw(rng, image.Rectangle{}), raw(cam))
		}
	}
	for k := range 3 {
		rel, _ := motionOne(t, r, motionRaw(rng, image.Rectangle{}), raw("a"))
		require.Equal(t, "no_motion", rel, "camera a sees its static scene")
		rel, ff := motionOne(t, r, motionRaw(rng, blockAt(k)), raw("b"))
		require.Equal(t, "motion", rel, "camera b sees the block")
		requireBoxNear(t, blockAt(k), motionBoxes(t, ff)[0], 10, "boxes are in the frame's pixels after process_width")
	}
	// A frame of another size restarts the camera's warm-up.
	small := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV8UC1)
	defer small.Close()
	rel, ff := motionOne(t, r, small.ToBytes(), map[string]string{processors.AttrCameraID: "b", processors.AttrWidth: "100", processors.AttrHeight: "100", processors.AttrChannels: "1"})
	require.Equal(t, "no_motion", rel)
	require.Equal(t, "true", ff.Attr(processors.AttrMotionWarmup))
}

func TestMotionDetectorMinArea(t *testing.T) {
	r := enginetest.NewRunner(t, processors.MotionDetectorSpec(), map[string]string{"warmup_frames": "3", "min_area": "900"})
	rng := rand.New(rand.NewPCG(5, 6))
	for range 3 {
		motionOne(t, r, motionJPEG(t, rng, image.Rectangle{}), nil)
	}
	rel, ff := motionOne(t, r, motionJPEG(t, rng, image.Rect(200, 180, 212, 192)), nil)
	require.Equal(t, "no_motion", rel, "a 12x12 block is below min_area: %s", ff.Attr(processors.AttrMotionBoxes))
	rel, _ = motionOne(t, r, motionJPEG(t, rng, image.Rect(200, 180, 240, 220)), nil)
	require.Equal(t, "motion", rel, "a 40x40 block is not")
}

func TestMotionDetectorFailures(t *testing.T) {
	r := enginetest.NewRunner(t, processors.MotionDetectorSpec(), nil)
	for name, in := range map[string]struct {
		content []byte
		attrs   map[string]string
		want    string
	}{
		"not an image":  {[]byte("hello"), nil, "no width and height"},
		"broken jpeg":   {[]byte("\xff\xd8\xff\xe0 broken"), nil, "decoding image"},
		"raw too short": {make([]byte, 10), map[string]string{"width": "4", "height": "4"}, "10 bytes is not a 4x4 frame"},
		"bad channels":  {make([]byte, 32), map[string]string{"width": "4", "height": "4", "channels": "2"}, "do not describe"},
	} {
		rel, ff := motionOne(t, r, in.content, in.attrs)
		require.Equal(t, "failure", rel, name)
		require.Contains(t, ff.Attr(edgeagent.AttrErrorMessage), in.want, name)
	}
}

func TestMotionDetectorConfigErrors(t *testing.T) {
	spec := processors.MotionDetectorSpec()
	requireConfigError(t, spec, map[string]string{"blur": "4"}, "odd")
	requireConfigError(t, spec, map[string]string{"sensitivity": "300"}, "more than 255")
	requireConfigError(t, spec, map[string]string{"sensitivity": "0"}, "above 0")
	requireConfigError(t, spec, map[string]string{"learning_rate": "1.5"}, "at most 1")
	requireConfigError(t, spec, map[string]string{"method": "knn"}, "not one of")
}

func TestMotionDetectorConcurrentSessions(t *testing.T) {
	r := enginetest.NewRunner(t, processors.MotionDetectorSpec(), map[string]string{"warmup_frames": "2"})
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 24 {
		cam := []string{"a", "b", "c"}[i%3]
		r.Enqueue(motionJPEG(t, rng, image.Rectangle{}), map[string]string{processors.AttrCameraID: cam})
	}
	h := r.Harness()
	p := h.Processor()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				s := h.Session()
				if err := p.OnTrigger(context.Background(), h.Context(), s); err != nil {
					errs <- err
					return
				}
				if err := s.Commit(context.Background()); err != nil {
					errs <- err
					return
				}
				if r.InputCount() == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Empty(t, r.Output("failure"))
	require.Len(t, r.Output("no_motion"), 24, "a static scene, whichever task compared it")
	require.Empty(t, r.Output("motion"))
	require.NoError(t, h.Stop(context.Background()))
}
