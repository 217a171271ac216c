package camera_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/camera"
)

func frame(seq uint64) *camera.Frame { return &camera.Frame{Seq: seq, Data: []byte{byte(seq)}} }

// takeOne takes at most one frame without waiting.
func takeOne(t *testing.T, s *camera.Slot) *camera.Frame {
	t.Helper()
	fs, err := s.Take(context.Background(), 1, 0)
	require.NoError(t, err)
	if len(fs) == 0 {
		return nil
	}
	require.Len(t, fs, 1)
	return fs[0]
}

func seqs(fs []*camera.Frame) []uint64 {
	out := make([]uint64, len(fs))
	for i, f := range fs {
		out[i] = f.Seq
	}
	return out
}

func TestLiveSlotKeepsTheLatestFrameAndCountsSkips(t *testing.T) {
	s := camera.NewSlot(false)
	require.False(t, s.Offer(frame(0)))
	require.True(t, s.Offer(frame(1)))
	require.True(t, s.Offer(frame(2)))
	fs, err := s.Take(context.Background(), 10, 0)
	require.NoError(t, err)
	require.Equal(t, []uint64{2}, seqs(fs), "only the latest frame")
	require.Equal(t, uint64(2), fs[0].SkippedBefore)
	s.Done(fs)

	s.Skip(3) // read under backpressure
	s.Offer(frame(6))
	s.Skip(1) // drops frame 6 too
	require.Nil(t, takeOne(t, s))
	s.Offer(frame(8))
	f := takeOne(t, s)
	require.Equal(t, uint64(8), f.Seq)
	require.Equal(t, uint64(5), f.SkippedBefore, "frames 3, 4, 5, 6 and 7")
}

func TestLiveSlotRequeue(t *testing.T) {
	s := camera.NewSlot(false)
	s.Offer(frame(0))
	s.Offer(frame(1))
	f := takeOne(t, s)
	s.Requeue([]*camera.Frame{f}) // nothing newer: delivered again, with its count
	g := takeOne(t, s)
	require.Same(t, f, g)
	require.Equal(t, uint64(1), g.SkippedBefore)

	s.Offer(frame(2))
	s.Requeue([]*camera.Frame{g}) // a newer frame exists: g counts as skipped
	h := takeOne(t, s)
	require.Equal(t, uint64(2), h.Seq)
	require.Equal(t, uint64(2), h.SkippedBefore, "frame 0 (overwritten) and frame 1 (rolled back)")
}

func TestLosslessSlotKeepsEveryFrameInOrder(t *testing.T) {
	ctx := context.Background()
	s := camera.NewSlot(true)
	for i := range camera.BufferFrames {
		require.NoError(t, s.Put(ctx, frame(uint64(i))))
	}
	put := make(chan error, 1)
	go func() { put <- s.Put(ctx, frame(camera.BufferFrames)) }()

	a, err := s.Take(ctx, 3, 0)
	require.NoError(t, err)
	require.Equal(t, []uint64{0, 1, 2}, seqs(a))
	b, err := s.Take(ctx, 2, 0)
	require.NoError(t, err)
	require.Equal(t, []uint64{3, 4}, seqs(b), "taking more while earlier frames are in flight")
	select {
	case <-put:
		t.Fatal("Put found room before a frame was committed")
	case <-time.After(20 * time.Millisecond):
	}

	s.Requeue(b) // rolled back: 3 and 4 again, before 5
	s.Done(a)
	require.NoError(t, <-put, "committed frames make room")
	rest, err := s.Take(ctx, 100, 0)
	require.NoError(t, err)
	want := []uint64{3, 4}
	for i := uint64(5); i <= camera.BufferFrames; i++ {
		want = append(want, i)
	}
	require.Equal(t, want, seqs(rest))
	require.Zero(t, rest[0].SkippedBefore)

	s.End(nil)
	fs, err := s.Take(ctx, 1, time.Second)
	require.NoError(t, err, "frames are still in flight")
	require.Empty(t, fs)
	s.Done(rest)
	_, err = s.Take(ctx, 1, 0)
	require.ErrorIs(t, err, camera.ErrEnded)
}

func TestLosslessSlotBoundsBytes(t *testing.T) {
	ctx := context.Background()
	s := camera.NewSlot(true)
	big := &camera.Frame{Data: make([]byte, camera.BufferBytes+1)}
	require.NoError(t, s.Put(ctx, big), "one frame always fits")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Put(cctx, frame(1)), context.DeadlineExceeded, "no room for more")
	fs, err := s.Take(ctx, 1, 0)
	require.NoError(t, err)
	s.Done(fs)
	require.NoError(t, s.Put(ctx, frame(1)))
}

func TestSlotTakeWaitsForAFrame(t *testing.T) {
	s := camera.NewSlot(false)
	start := time.Now()
	fs, err := s.Take(context.Background(), 1, 30*time.Millisecond)
	require.NoError(t, err)
	require.Empty(t, fs)
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)

	go func() {
		time.Sleep(10 * time.Millisecond)
		s.Offer(frame(7))
	}()
	fs, err = s.Take(context.Background(), 1, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, []uint64{7}, seqs(fs))

	boom := errors.New("boom")
	s.End(boom)
	_, err = s.Take(context.Background(), 1, time.Second)
	require.ErrorIs(t, err, boom)
}

func TestLiveSlotSkipNewerKeepsTheWaitingFrame(t *testing.T) {
	s := camera.NewSlot(false)
	s.Offer(frame(0))
	s.SkipNewer(2) // frames 1 and 2: the encoders were busy
	f := takeOne(t, s)
	require.Equal(t, uint64(0), f.Seq, "the older frame is kept")
	require.Zero(t, f.SkippedBefore)
	s.Offer(frame(3))
	require.Equal(t, uint64(2), takeOne(t, s).SkippedBefore, "frames 1 and 2")

	s.Offer(frame(4))
	s.SkipNewer(1) // 5
	s.Offer(frame(6))
	require.Equal(t, uint64(2), takeOne(t, s).SkippedBefore, "frames 4 (overwritten) and 5")

	s.Offer(frame(7))
	s.SkipNewer(1) // 8
	s.Skip(1)      // 9, under backpressure: 7 is dropped too
	require.Nil(t, takeOne(t, s))
	s.Offer(frame(10))
	require.Equal(t, uint64(3), takeOne(t, s).SkippedBefore, "frames 7, 8 and 9")
}

func TestSlotReusesOnlyFramesNoOneHolds(t *testing.T) {
	ctx := context.Background()
	s := camera.NewSlot(true)
	f := s.NewFrame()
	f.Data = append(f.Data, make([]byte, 100)...)
	f.Data[0] = 7
	require.NoError(t, s.Put(ctx, f))
	fs, err := s.Take(ctx, 1, 0)
	require.NoError(t, err)
	require.NotSame(t, f, s.NewFrame(), "a frame taken is not reused")
	s.Requeue(fs)
	require.NotSame(t, f, s.NewFrame(), "nor one requeued")
	fs, err = s.Take(ctx, 1, 0)
	require.NoError(t, err)
	require.Same(t, f, fs[0])
	require.Equal(t, byte(7), fs[0].Data[0])
	s.Done(fs)
	g := s.NewFrame()
	require.Same(t, f, g, "a committed frame is reused")
	require.Empty(t, g.Data)
	require.GreaterOrEqual(t, cap(g.Data), 100, "with its array")
	require.Equal(t, camera.Frame{Data: g.Data}, *g, "and nothing else")

	live := camera.NewSlot(false)
	a, b := live.NewFrame(), live.NewFrame()
	live.Offer(a)
	live.Offer(b) // a is overwritten
	require.Same(t, a, live.NewFrame())
	require.Same(t, b, takeOne(t, live))
	live.Offer(frame(3))
	live.Requeue([]*camera.Frame{b}) // rolled back, and a newer frame exists
	require.Same(t, b, live.NewFrame())
}

func TestLosslessSlotTakeBatchWaitsForSeveralFrames(t *testing.T) {
	ctx := context.Background()
	s := camera.NewSlot(true)
	for i := range 3 {
		require.NoError(t, s.Put(ctx, frame(uint64(i))))
	}
	start := time.Now()
	fs, err := s.TakeBatch(ctx, 8, 64, time.Second, 30*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, []uint64{0, 1, 2}, seqs(fs), "what came within the linger")
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	s.Done(fs)

	go func() {
		for i := uint64(3); i < 11; i++ {
			time.Sleep(time.Millisecond)
			if s.Put(ctx, frame(i)) != nil {
				return
			}
		}
	}()
	start = time.Now()
	fs, err = s.TakeBatch(ctx, 8, 64, 10*time.Second, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, []uint64{3, 4, 5, 6, 7, 8, 9, 10}, seqs(fs), "returns once want frames wait")
	require.Less(t, time.Since(start), 5*time.Second)
	s.Done(fs)

	require.NoError(t, s.Put(ctx, frame(11)))
	start = time.Now()
	fs, err = s.TakeBatch(ctx, 8, 64, 20*time.Millisecond, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, []uint64{11}, seqs(fs), "maxWait bounds the linger")
	require.Less(t, time.Since(start), 5*time.Second)
	s.Done(fs)

	// A full slot (frames in flight) or an ended source gets no more frames:
	// no lingering.
	for i := range camera.BufferFrames {
		require.NoError(t, s.Put(ctx, frame(uint64(12+i))))
	}
	held, err := s.Take(ctx, camera.BufferFrames-4, 0)
	require.NoError(t, err)
	start = time.Now()
	fs, err = s.TakeBatch(ctx, 16, 64, 10*time.Second, 10*time.Second)
	require.NoError(t, err)
	require.Len(t, fs, 4)
	s.Done(held)
	s.Done(fs)
	require.NoError(t, s.Put(ctx, frame(100)))
	s.End(nil)
	fs, err = s.TakeBatch(ctx, 16, 64, 10*time.Second, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, []uint64{100}, seqs(fs))
	require.Less(t, time.Since(start), 5*time.Second)
}
