//go:build gocv

package camera_test

import (
	"context"
	"errors"
	"image"
	"image/color"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"edgeagent.dev/internal/camera"
)

// gocvVideo returns the short test video shipped in the gocv module.
func gocvVideo(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "gocv.io/x/gocv").Output()
	require.NoError(t, err, "locating the gocv module")
	p := filepath.Join(strings.TrimSpace(string(out)), "images", "small.mp4")
	_, err = os.Stat(p)
	require.NoError(t, err)
	return p
}

// encodeNext reads the next frame of c and encodes it.
func encodeNext(t *testing.T, c camera.Capture) *camera.Frame {
	t.Helper()
	require.NoError(t, c.Read())
	r, err := c.Detach()
	require.NoError(t, err)
	defer r.Release()
	f := &camera.Frame{}
	require.NoError(t, r.Encode(f))
	return f
}

// readAll reads every frame of c, encoding each; every other frame is
// encoded after the next Read, as a Grabber's encoders do.
func readAll(t *testing.T, c camera.Capture) []*camera.Frame {
	t.Helper()
	var (
		out  []*camera.Frame
		held camera.Raw
	)
	encode := func(r camera.Raw) {
		f := &camera.Frame{}
		require.NoError(t, r.Encode(f))
		r.Release()
		out = append(out, f)
	}
	for {
		err := c.Read()
		if errors.Is(err, io.EOF) {
			if held != nil {
				encode(held)
			}
			return out
		}
		require.NoError(t, err)
		r, err := c.Detach()
		require.NoError(t, err)
		_, err = c.Detach()
		require.Error(t, err, "a detached frame is no longer current")
		if held != nil {
			encode(held)
			held = nil
		}
		if len(out)%2 == 0 {
			held = r
		} else {
			encode(r)
		}
	}
}

func decode(t *testing.T, b []byte) (int, int) {
	t.Helper()
	m, err := gocv.IMDecode(b, gocv.IMReadColor)
	require.NoError(t, err)
	defer m.Close()
	require.False(t, m.Empty())
	return m.Cols(), m.Rows()
}

func TestOpenVideoFile(t *testing.T) {
	video := gocvVideo(t)
	want, err := camera.VideoFrameCount(video)
	require.NoError(t, err)
	require.Greater(t, want, 100)
	src, err := camera.ParseSource(video)
	require.NoError(t, err)

	c, err := camera.Open(src, camera.OpenOptions{Encoding: camera.EncodingJPEG, JPEGQuality: 80})
	require.NoError(t, err)
	frames := readAll(t, c)
	require.NoError(t, c.Close())
	require.Len(t, frames, want, "every frame the container lists")
	require.Zero(t, c.Period())
	w, h := decode(t, frames[0].Data)
	require.Equal(t, [2]int{560, 320}, [2]int{w, h})
	require.Equal(t, [3]int{560, 320, 3}, [3]int{frames[0].Width, frames[0].Height, frames[0].Channels})

	// Frames held while later ones were read are the frames read then, and
	// a frame detached before Close stays valid after it.
	c, err = camera.Open(src, camera.OpenOptions{Encoding: camera.EncodingJPEG, JPEGQuality: 80})
	require.NoError(t, err)
	for i := range 10 {
		require.Equal(t, frames[i].Data, encodeNext(t, c).Data, "frame %d", i)
	}
	require.NoError(t, c.Read())
	r, err := c.Detach()
	require.NoError(t, err)
	require.NoError(t, c.Close())
	f := &camera.Frame{Data: make([]byte, 0, 1<<20)}
	require.NoError(t, r.Encode(f))
	r.Release()
	require.Equal(t, frames[10].Data, f.Data)
	require.Equal(t, 1<<20, cap(f.Data), "the frame's array is reused")

	c, err = camera.Open(src, camera.OpenOptions{Encoding: camera.EncodingRaw, Width: 280, Pace: true})
	require.NoError(t, err)
	defer c.Close()
	require.InDelta(t, float64(time.Second/30), float64(c.Period()), float64(time.Millisecond), "paced at the video's 30 fps")
	f = encodeNext(t, c)
	require.Equal(t, [2]int{280, 160}, [2]int{f.Width, f.Height}, "resized keeping the aspect ratio")
	require.Len(t, f.Data, 280*160*3)
}

func TestOpenImageDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, w, h int, c color.RGBA) {
		m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
		defer m.Close()
		gocv.Rectangle(&m, image.Rect(0, 0, w, h), c, -1)
		require.True(t, gocv.IMWrite(filepath.Join(dir, name), m))
	}
	write("b.png", 64, 48, color.RGBA{G: 255})
	write("a.jpg", 32, 24, color.RGBA{R: 255})
	write("c.bmp", 16, 12, color.RGBA{B: 255})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.jpg"), []byte("not a jpeg"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub.png"), 0o755))

	src, err := camera.ParseSource("file://" + dir)
	require.NoError(t, err)
	c, err := camera.Open(src, camera.OpenOptions{Encoding: camera.EncodingPNG, Width: 20, Height: 10})
	require.NoError(t, err)
	defer c.Close()
	frames := readAll(t, c)
	require.Len(t, frames, 3, "bad.jpg cannot be decoded and is skipped; notes.txt and the directory are not images")
	for _, f := range frames {
		w, h := decode(t, f.Data)
		require.Equal(t, [2]int{20, 10}, [2]int{w, h}, "resized")
	}
	// a.jpg (red), b.png (green), c.bmp (blue): name order.
	wantBGR := [][3]byte{{0, 0, 255}, {0, 255, 0}, {255, 0, 0}}
	for i, f := range frames {
		m, err := gocv.IMDecode(f.Data, gocv.IMReadColor)
		require.NoError(t, err)
		v := m.GetVecbAt(5, 10)
		m.Close()
		require.InDeltaSlice(t, []float64{float64(wantBGR[i][0]), float64(wantBGR[i][1]), float64(wantBGR[i][2])},
			[]float64{float64(v[0]), float64(v[1]), float64(v[2])}, 3, "frame %d", i)
	}

	empty := t.TempDir()
	src, _ = camera.ParseSource(empty)
	_, err = camera.Open(src, camera.OpenOptions{})
	require.ErrorContains(t, err, "no image files")
}

func TestOpenErrorsHideThePassword(t *testing.T) {
	src, err := camera.ParseSource(filepath.Join(t.TempDir(), "missing.mp4"))
	require.NoError(t, err)
	_, err = camera.Open(src, camera.OpenOptions{})
	require.ErrorIs(t, err, os.ErrNotExist)

	src, err = camera.ParseSource("rtsp://admin:hunter2@127.0.0.1:1/stream")
	require.NoError(t, err)
	_, err = camera.Open(src, camera.OpenOptions{})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
	require.Contains(t, err.Error(), "rtsp://admin:xxxxx@127.0.0.1:1/stream")
}

func TestGrabberOnTheVideo(t *testing.T) {
	video := gocvVideo(t)
	want, err := camera.VideoFrameCount(video)
	require.NoError(t, err)
	src, _ := camera.ParseSource(video)
	g := camera.NewGrabber(camera.GrabberConfig{
		Open: func(context.Context) (camera.Capture, error) {
			return camera.Open(src, camera.OpenOptions{Encoding: camera.EncodingJPEG})
		},
	})
	run(t, g)
	frames := takeAll(t, g.Slot())
	require.Len(t, frames, want)
	for i, f := range frames {
		require.Equal(t, uint64(i), f.Seq)
	}
}

func TestBareEncodeLoop(t *testing.T) {
	video := gocvVideo(t)
	want, err := camera.VideoFrameCount(video)
	require.NoError(t, err)
	n, d, err := camera.BareEncodeLoop(video, 90)
	require.NoError(t, err)
	require.Equal(t, want, n)
	require.Positive(t, d)
}
