package camera_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/camera"
)

// fakeSource stands in for OpenCV: each open yields a fakeCapture of
// frames frames (0: endless) taking pace each, that fails with ErrLost
// after failAfter frames (0: never); the first failOpens opens fail.
// Encoding frame n takes encodeTime(n) (nil: no time) and fails when
// encodeErr(n) says so.
type fakeSource struct {
	frames     int
	pace       time.Duration
	failAfter  int
	failOpens  int
	encodeTime func(n int) time.Duration
	encodeErr  func(n int) error

	mu       sync.Mutex
	opens    int
	closes   int
	encodes  atomic.Int64
	detached atomic.Int64
	released atomic.Int64
	busy     atomic.Int64 // encodes running now
	maxBusy  atomic.Int64 // the most encodes that ran at once
	empty    bool         // Read returns io.EOF at once
}

func (s *fakeSource) open(context.Context) (camera.Capture, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens++
	if s.opens <= s.failOpens {
		return nil, errors.New("no such camera")
	}
	c := &fakeCapture{src: s, failAfter: s.failAfter, cur: -1}
	if s.opens > s.failOpens+1 {
		c.failAfter = 0 // only the first capture that opens fails
	}
	return c, nil
}

func (s *fakeSource) counts() (opens, closes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens, s.closes
}

type fakeCapture struct {
	src       *fakeSource
	n         int
	failAfter int
	cur       int
}

func (c *fakeCapture) Read() error {
	if c.src.pace > 0 {
		time.Sleep(c.src.pace)
	}
	if c.failAfter > 0 && c.n >= c.failAfter {
		return camera.ErrLost
	}
	if c.src.empty || c.src.frames > 0 && c.n >= c.src.frames {
		return io.EOF
	}
	c.cur = c.n
	c.n++
	return nil
}

func (c *fakeCapture) Detach() (camera.Raw, error) {
	if c.cur < 0 {
		return nil, errors.New("no current frame")
	}
	c.src.detached.Add(1)
	r := &fakeRaw{src: c.src, n: c.cur}
	c.cur = -1
	return r, nil
}

// fakeRaw is frame n of a fakeCapture; its encoding is one byte, n.
type fakeRaw struct {
	src *fakeSource
	n   int
}

func (r *fakeRaw) Encode(f *camera.Frame) error {
	s := r.src
	s.encodes.Add(1)
	b := s.busy.Add(1)
	defer s.busy.Add(-1)
	for m := s.maxBusy.Load(); b > m && !s.maxBusy.CompareAndSwap(m, b); m = s.maxBusy.Load() {
	}
	if s.encodeTime != nil {
		time.Sleep(s.encodeTime(r.n))
	}
	if s.encodeErr != nil {
		if err := s.encodeErr(r.n); err != nil {
			return err
		}
	}
	f.Data = append(f.Data[:0], byte(r.n))
	f.Width, f.Height, f.Channels = 4, 2, 3
	return nil
}

func (r *fakeRaw) Release() { r.src.released.Add(1) }

func (c *fakeCapture) Period() time.Duration { return 0 }

func (c *fakeCapture) Close() error {
	c.src.mu.Lock()
	defer c.src.mu.Unlock()
	c.src.closes++
	return nil
}

// run starts g on a goroutine; the returned stop cancels it and waits.
func run(t *testing.T, g *camera.Grabber) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Run(ctx, nil)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the grabber did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// copies returns copies of frames: the slot reuses frames after Done.
func copies(frames []*camera.Frame) []*camera.Frame {
	out := make([]*camera.Frame, len(frames))
	for i, f := range frames {
		c := *f
		c.Data = bytes.Clone(f.Data)
		out[i] = &c
	}
	return out
}

// takeAll takes and commits frames until the slot ends, and returns copies.
func takeAll(t *testing.T, s *camera.Slot) []*camera.Frame {
	t.Helper()
	var out []*camera.Frame
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		fs, err := s.Take(context.Background(), 4, 100*time.Millisecond)
		if errors.Is(err, camera.ErrEnded) {
			return out
		}
		require.NoError(t, err)
		out = append(out, copies(fs)...)
		s.Done(fs)
	}
	t.Fatal("the source did not end")
	return nil
}

func TestGrabberFileDeliversEveryFrameInOrder(t *testing.T) {
	src := &fakeSource{frames: 40}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, FPS: 400})
	run(t, g)
	frames := takeAll(t, g.Slot())
	require.Len(t, frames, 40)
	for i, f := range frames {
		require.Equal(t, uint64(i), f.Seq)
		require.Equal(t, byte(i), f.Data[0])
		require.Zero(t, f.SkippedBefore)
		if i > 0 {
			require.GreaterOrEqual(t, f.Time.Sub(frames[i-1].Time), 2500*time.Microsecond, "fps cap 400: grabs 2.5 ms apart")
		}
	}
	require.Eventually(t, func() bool { _, c := src.counts(); return c == 1 }, time.Second, time.Millisecond, "the capture is closed")
	st := g.Stats()
	require.Equal(t, camera.Stats{Captured: 40, Emitted: 40, Ended: true}, st)
}

func TestGrabberLoopsAFile(t *testing.T) {
	src := &fakeSource{frames: 3}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, Loop: true})
	stop := run(t, g)
	var data []byte
	for len(data) < 7 {
		fs, err := g.Slot().Take(context.Background(), 1, time.Second)
		require.NoError(t, err)
		require.Len(t, fs, 1)
		data = append(data, fs[0].Data[0])
		g.Slot().Done(fs)
	}
	stop()
	require.Equal(t, []byte{0, 1, 2, 0, 1, 2, 0}, data)
	opens, closes := src.counts()
	require.GreaterOrEqual(t, opens, 3)
	require.Equal(t, opens, closes, "every capture opened is closed")
}

func TestGrabberEmptyLoopEnds(t *testing.T) {
	src := &fakeSource{empty: true}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, Loop: true})
	run(t, g)
	_, err := g.Slot().Take(context.Background(), 1, 5*time.Second)
	require.Error(t, err)
	require.NotErrorIs(t, err, camera.ErrEnded, "a loop over nothing is an error")
}

func TestGrabberLiveSkipsUnderBackpressureWithoutEncoding(t *testing.T) {
	src := &fakeSource{pace: time.Millisecond}
	var pressure atomic.Bool
	pressure.Store(true)
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, Live: true, Backpressure: pressure.Load})
	run(t, g)
	require.Eventually(t, func() bool { return g.Stats().Skipped >= 50 }, 5*time.Second, time.Millisecond)
	require.Zero(t, src.encodes.Load(), "frames are not encoded under backpressure")
	fs, err := g.Slot().Take(context.Background(), 1, 0)
	require.NoError(t, err)
	require.Empty(t, fs)

	pressure.Store(false)
	var frames []*camera.Frame
	for len(frames) < 5 {
		fs, err := g.Slot().Take(context.Background(), 1, time.Second)
		require.NoError(t, err)
		frames = append(frames, copies(fs)...)
		g.Slot().Done(fs)
	}
	require.GreaterOrEqual(t, frames[0].SkippedBefore, uint64(50))
	require.Equal(t, frames[0].Seq, frames[0].SkippedBefore, "every frame before the first delivered was skipped")
	for i := 1; i < len(frames); i++ {
		require.Equal(t, frames[i].Seq-frames[i-1].Seq-1, frames[i].SkippedBefore, "gaps in frame.seq are the skipped frames")
	}
	st := g.Stats()
	require.GreaterOrEqual(t, st.Captured, st.Skipped+st.Emitted)
	require.True(t, st.Open)
}

func TestGrabberLiveFPSCap(t *testing.T) {
	src := &fakeSource{pace: time.Millisecond}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, Live: true, FPS: 50})
	// start is taken before the grabber starts: Captured counts every frame
	// since then, and the bounds below hold only for frames grabbed after
	// start.
	start := time.Now()
	stop := run(t, g)
	var frames []*camera.Frame
	for time.Since(start) < 500*time.Millisecond {
		fs, err := g.Slot().Take(context.Background(), 1, 100*time.Millisecond)
		require.NoError(t, err)
		frames = append(frames, copies(fs)...)
		g.Slot().Done(fs)
	}
	stop()
	el := time.Since(start)
	require.LessOrEqual(t, float64(len(frames)), el.Seconds()*50+2, "at most 50 frames a second")
	require.GreaterOrEqual(t, len(frames), 10, "about 50 frames a second")
	require.LessOrEqual(t, float64(g.Stats().Captured), el.Seconds()*50+2, "frames over the cap are dropped before capture")
}

func TestGrabberReopensALostLiveSource(t *testing.T) {
	src := &fakeSource{pace: time.Millisecond, failOpens: 2, failAfter: 5}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, Live: true, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond})
	stop := run(t, g)
	// Opens 1 and 2 fail, 3 works for 5 frames then is lost, 4 works.
	require.Eventually(t, func() bool { return g.Stats().Reconnects >= 1 && g.Stats().Open }, 5*time.Second, time.Millisecond)
	fs, err := g.Slot().Take(context.Background(), 1, time.Second)
	require.NoError(t, err)
	require.NotEmpty(t, fs)
	stop()
	opens, closes := src.counts()
	require.Equal(t, 4, opens)
	require.Equal(t, 2, closes, "the lost capture and the last one are closed")
	st := g.Stats()
	require.Equal(t, uint64(1), st.Reconnects)
	require.Equal(t, uint64(3), st.Errors, "two failed opens and one lost stream")
	require.False(t, st.Open)
}

func TestGrabberFileOpenFailureEnds(t *testing.T) {
	src := &fakeSource{failOpens: 1}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open})
	run(t, g)
	_, err := g.Slot().Take(context.Background(), 1, 5*time.Second)
	require.ErrorContains(t, err, "no such camera")
}

func TestGrabberLiveFileLoopsWithoutBackoff(t *testing.T) {
	src := &fakeSource{frames: 3, pace: time.Millisecond}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, Live: true, Loop: true, Backoff: time.Hour, MaxBackoff: time.Hour})
	run(t, g)
	require.Eventually(t, func() bool { opens, _ := src.counts(); return opens >= 3 }, 5*time.Second, time.Millisecond,
		"the end of a file played live restarts it at once")
	require.Zero(t, g.Stats().Errors)

	src2 := &fakeSource{frames: 3}
	g2 := camera.NewGrabber(camera.GrabberConfig{Open: src2.open, Live: true})
	run(t, g2)
	require.Eventually(t, func() bool { return g2.Stats().Ended }, 5*time.Second, time.Millisecond, "and without loop ends it")
}

func TestGrabberEncodersKeepCaptureOrderAcrossRollbacks(t *testing.T) {
	// Every third frame takes longer to encode, so encodes finish out of
	// order; a session that rolls back gets its frames again, first.
	const n = 60
	src := &fakeSource{frames: n, encodeTime: func(i int) time.Duration {
		if i%3 == 0 {
			return 3 * time.Millisecond
		}
		return 0
	}}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, Encoders: 3})
	run(t, g)
	s := g.Slot()
	var (
		got       []*camera.Frame
		rollbacks int
	)
	deadline := time.Now().Add(10 * time.Second)
	for batch := 0; time.Now().Before(deadline); batch++ {
		fs, err := s.Take(context.Background(), 4, 100*time.Millisecond)
		if errors.Is(err, camera.ErrEnded) {
			break
		}
		require.NoError(t, err)
		if len(fs) > 0 && batch%3 == 1 {
			s.Requeue(fs)
			rollbacks++
			continue
		}
		got = append(got, copies(fs)...)
		s.Done(fs)
	}
	require.Len(t, got, n)
	for i, f := range got {
		require.Equal(t, uint64(i), f.Seq, "capture order")
		require.Equal(t, []byte{byte(i)}, f.Data, "frame %d's own bytes", i)
		require.Zero(t, f.SkippedBefore)
	}
	require.Positive(t, rollbacks)
	require.GreaterOrEqual(t, src.maxBusy.Load(), int64(2), "frames are encoded in parallel")
	require.Equal(t, int64(n), src.encodes.Load(), "each frame is encoded once")
	require.Equal(t, src.detached.Load(), src.released.Load(), "every frame detached is released")
	require.Equal(t, camera.Stats{Captured: n, Emitted: n, Ended: true}, g.Stats())
}

func TestGrabberFileEncodingFailureEnds(t *testing.T) {
	boom := errors.New("boom")
	src := &fakeSource{frames: 40, encodeErr: func(i int) error {
		if i == 5 {
			return boom
		}
		return nil
	}}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, Encoders: 2})
	run(t, g)
	var got []byte
	var err error
	for start := time.Now(); time.Since(start) < 5*time.Second; {
		var fs []*camera.Frame
		fs, err = g.Slot().Take(context.Background(), 4, 100*time.Millisecond)
		if err != nil {
			break
		}
		for _, f := range fs {
			got = append(got, f.Data[0])
		}
		g.Slot().Done(fs)
	}
	require.ErrorIs(t, err, boom)
	require.Equal(t, []byte{0, 1, 2, 3, 4}, got, "the frames before the failure, in order")
	require.Eventually(t, func() bool { return src.detached.Load() == src.released.Load() }, time.Second, time.Millisecond)
	require.Equal(t, uint64(1), g.Stats().Errors)
}

func TestGrabberLiveSkipsWhileEncodersAreBusy(t *testing.T) {
	src := &fakeSource{pace: 200 * time.Microsecond, encodeTime: func(int) time.Duration { return 5 * time.Millisecond }}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, Live: true, Encoders: 1})
	stop := run(t, g)
	var frames []*camera.Frame
	for len(frames) < 10 {
		fs, err := g.Slot().Take(context.Background(), 1, time.Second)
		require.NoError(t, err)
		frames = append(frames, copies(fs)...)
		g.Slot().Done(fs)
	}
	stop()
	for i := 1; i < len(frames); i++ {
		require.Greater(t, frames[i].Seq, frames[i-1].Seq)
		require.Equal(t, frames[i].Seq-frames[i-1].Seq-1, frames[i].SkippedBefore, "gaps in frame.seq are the skipped frames")
		require.Equal(t, []byte{byte(frames[i].Seq)}, frames[i].Data)
	}
	require.Equal(t, int64(1), src.maxBusy.Load())
	st := g.Stats()
	require.Positive(t, st.Skipped, "frames read while the encoder is busy are skipped")
	require.Less(t, uint64(src.encodes.Load()), st.Captured/2, "and not encoded")
	require.GreaterOrEqual(t, st.Skipped, st.Captured-uint64(src.encodes.Load()), "every frame not encoded is skipped")
	require.LessOrEqual(t, st.Captured-st.Skipped-st.Emitted, uint64(1), "every frame is skipped or emitted but the one left waiting")
	require.Equal(t, src.detached.Load(), src.released.Load())
}

func TestGrabberFileEncodesOnCaptureGoroutineWhileEncodersAreBusy(t *testing.T) {
	// The one encoder cannot finish frame 0 before a later frame was
	// encoded, and frame 1 waits for it: the capture goroutine encodes the
	// next frames itself meanwhile, and every frame still reaches the slot
	// once, in order.
	const n = 20
	later := make(chan struct{})
	var closeLater sync.Once
	var stuck atomic.Bool
	src := &fakeSource{frames: n, encodeTime: func(i int) time.Duration {
		switch {
		case i == 0:
			select {
			case <-later:
			case <-time.After(2 * time.Second):
				stuck.Store(true)
			}
		case i >= 2:
			closeLater.Do(func() { close(later) })
		}
		return 0
	}}
	g := camera.NewGrabber(camera.GrabberConfig{Open: src.open, Encoders: 1})
	run(t, g)
	var got []*camera.Frame
	for start := time.Now(); time.Since(start) < 5*time.Second; {
		fs, err := g.Slot().Take(context.Background(), n, 100*time.Millisecond)
		if errors.Is(err, camera.ErrEnded) {
			break
		}
		require.NoError(t, err)
		got = append(got, copies(fs)...)
		g.Slot().Done(fs)
	}
	require.False(t, stuck.Load(), "later frames were encoded while frame 0 was")
	require.Len(t, got, n)
	for i, f := range got {
		require.Equal(t, uint64(i), f.Seq, "capture order")
		require.Equal(t, []byte{byte(i)}, f.Data, "frame %d's own bytes", i)
	}
	require.Equal(t, int64(n), src.encodes.Load(), "each frame is encoded once")
	require.Equal(t, src.detached.Load(), src.released.Load(), "every frame detached is released")
	require.Equal(t, camera.Stats{Captured: n, Emitted: n, Ended: true}, g.Stats())
}
