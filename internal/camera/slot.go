package camera

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Frame is one captured, encoded frame.
type Frame struct {
	Data     []byte // JPEG, PNG or raw BGR bytes
	Width    int
	Height   int
	Channels int       // 3 (BGR)
	Seq      uint64    // the capture sequence number: frames skipped leave gaps
	Time     time.Time // when the frame was grabbed
	// SkippedBefore is how many captured frames were skipped between the
	// previous frame taken and this one; set by Slot.Take.
	SkippedBefore uint64
}

// Limits of a lossless slot's buffer: frames decoded ahead while earlier
// ones are being committed, so that a flow whose commits wait for the disk
// still keeps up with the decoder (each commit then carries several
// frames). At least one frame is always let in, whatever its size.
const (
	BufferFrames = 64
	BufferBytes  = 16 << 20
)

// Slot is the buffer between a Grabber and the processor. It is safe for
// concurrent use.
//
// A live slot holds one frame, the latest: Offer replaces a frame nobody
// took and counts it as skipped. A lossless slot (video files, image
// directories) never drops a frame: it is a small FIFO (BufferFrames,
// BufferBytes, counting frames taken but not yet committed) whose Put waits
// for room; frames whose session committed are released with Done, and
// frames whose session rolled back are put back in front with Requeue, to
// be taken again in order.
//
// Frames handed to a slot belong to it: once a frame was released with
// Done, or dropped (overwritten, skipped, or requeued when a newer frame
// exists), the slot reuses it and its Data's array for a frame encoded
// later, so whoever took a frame must not hold its Data past Done or
// Requeue. (The engine's session holds content bytes until its
// transaction is durable, and calls OnCommitted and OnRolledBack after.)
type Slot struct {
	lossless bool

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	ready    []*Frame      // waiting to be taken, oldest first
	inFlight []*Frame      // taken, not yet committed or requeued
	bytes    int           // lossless: the bytes of ready and inFlight
	pending  uint64        // frames skipped since the last frame taken, before ready[0]
	later    uint64        // live: frames skipped after ready[0], kept
	ended    bool
	endErr   error

	skipped uint64 // every frame skipped
	emitted uint64 // frames whose session committed

	free      []*Frame // frames no one holds, for newFrame
	freeBytes int      // the capacity of their Data
}

// NewSlot returns an empty slot; lossless for video files and image
// directories, live otherwise.
func NewSlot(lossless bool) *Slot {
	return &Slot{lossless: lossless, changed: make(chan struct{})}
}

// notifyLocked wakes every waiter.
func (s *Slot) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Offer stores f as the latest frame (live slots). A frame that was
// waiting is dropped and counted as skipped; Offer reports whether one was.
func (s *Slot) Offer(f *Frame) (dropped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending += s.later
	s.later = 0
	if len(s.ready) > 0 {
		s.pending += uint64(len(s.ready))
		s.skipped += uint64(len(s.ready))
		dropped = true
		for _, old := range s.ready {
			s.recycleLocked(old)
		}
	}
	s.ready = append(s.ready[:0], f)
	s.notifyLocked()
	return dropped
}

// Put appends f once there is room (lossless slots). It returns ctx's
// error if ctx ends first.
func (s *Slot) Put(ctx context.Context, f *Frame) error {
	for {
		s.mu.Lock()
		n := len(s.ready) + len(s.inFlight)
		if n == 0 || n < BufferFrames && s.bytes+len(f.Data) <= BufferBytes {
			s.ready = append(s.ready, f)
			s.bytes += len(f.Data)
			s.notifyLocked()
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Skip counts n captured frames that were dropped before reaching the slot
// (read while the flow had backpressure), and drops the frame waiting in a
// live slot too, which is older still.
func (s *Slot) Skip(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lossless && len(s.ready) > 0 {
		n += uint64(len(s.ready))
		for _, old := range s.ready {
			s.recycleLocked(old)
		}
		s.ready = s.ready[:0]
	}
	s.pending += s.later + n
	s.later = 0
	s.skipped += n
}

// skip counts n frames skipped (none: nothing), with Skip when drop and
// skipNewer otherwise.
func (s *Slot) skip(n uint64, drop bool) {
	switch {
	case n == 0:
	case drop:
		s.Skip(n)
	default:
		s.skipNewer(n)
	}
}

// skipNewer counts n captured frames that were dropped before reaching
// the slot (not encoded, the encoders being busy) but keeps the frame
// waiting in a live slot, which is older: the count goes to the frame
// after it.
func (s *Slot) skipNewer(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.skipped += n
	if !s.lossless && len(s.ready) > 0 {
		s.later += n
		return
	}
	s.pending += n
}

// Take returns up to limit waiting frames, oldest first, waiting up to
// maxWait for the first. It returns nothing when none came, and ErrEnded
// once the source ended and every frame was taken and committed. The
// first frame's SkippedBefore is set.
func (s *Slot) Take(ctx context.Context, limit int, maxWait time.Duration) ([]*Frame, error) {
	return s.TakeBatch(ctx, 1, limit, maxWait, 0)
}

// TakeBatch is Take that, once a frame is waiting, waits up to linger
// more (and no longer than maxWait in all) until want frames are waiting,
// the slot is full, or the source ended, so that one session carries
// several frames of a source that is read ahead (a lossless slot).
func (s *Slot) TakeBatch(ctx context.Context, want, limit int, maxWait, linger time.Duration) ([]*Frame, error) {
	var (
		wake      <-chan time.Time // maxWait ends, or the linger once a frame waits
		lingering bool
		flush     bool // take what is waiting
	)
	deadline := time.Now().Add(maxWait)
	limit = max(1, limit)
	want = min(max(1, want), limit)
	for {
		s.mu.Lock()
		if n := len(s.ready); n > 0 && (flush || n >= want || s.ended || s.fullLocked()) {
			n = min(limit, n)
			out := slices.Clone(s.ready[:n])
			s.ready = slices.Delete(s.ready, 0, n)
			out[0].SkippedBefore = s.pending
			s.pending, s.later = s.later, 0
			s.inFlight = append(s.inFlight, out...)
			s.notifyLocked()
			s.mu.Unlock()
			return out, nil
		}
		waiting := len(s.ready) > 0
		if !waiting && s.ended {
			busy, err := s.lossless && len(s.inFlight) > 0, s.endErr
			s.mu.Unlock()
			switch {
			case busy:
				return nil, nil
			case err != nil:
				return nil, err
			}
			return nil, ErrEnded
		}
		ch := s.changed
		s.mu.Unlock()
		if flush {
			return nil, nil // a frame taken by another caller meanwhile
		}
		if wake == nil || waiting && !lingering {
			d := time.Until(deadline)
			if waiting {
				lingering, d = true, min(d, linger)
			}
			if d <= 0 {
				flush = true
				continue
			}
			wake = time.After(d) // collected unfired once unreferenced (Go 1.23)
		}
		select {
		case <-ch:
		case <-wake:
			flush = true
		case <-ctx.Done():
			flush = true
		}
	}
}

// fullLocked reports whether a lossless slot has no room for another
// frame (of the average size of those it holds).
func (s *Slot) fullLocked() bool {
	n := len(s.ready) + len(s.inFlight)
	return s.lossless && n > 0 && (n >= BufferFrames || s.bytes+s.bytes/n > BufferBytes)
}

// Done records that the session holding frames committed; the frames are
// reused (see Slot).
func (s *Slot) Done(frames []*Frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.emitted += uint64(len(frames))
	for _, f := range frames {
		if s.untakeLocked(f) {
			if s.lossless {
				s.bytes -= len(f.Data)
			}
			s.recycleLocked(f)
		}
	}
	s.notifyLocked()
}

// Requeue gives back frames taken by a session that rolled back. A
// lossless slot delivers them again, first; a live slot delivers the frame
// again only if no newer frame was captured meanwhile, and otherwise counts
// it as skipped.
func (s *Slot) Requeue(frames []*Frame) {
	if len(frames) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.notifyLocked()
	if s.lossless {
		var back []*Frame
		for _, f := range frames {
			if s.untakeLocked(f) {
				back = append(back, f)
			}
		}
		s.ready = append(back, s.ready...)
		return
	}
	for _, f := range frames[:len(frames)-1] { // not left by a live Take
		if s.untakeLocked(f) {
			s.recycleLocked(f)
		}
	}
	f := frames[len(frames)-1]
	taken := s.untakeLocked(f)
	if len(s.ready) == 0 && s.pending == 0 && s.later == 0 {
		s.ready = append(s.ready, f)
		s.pending = f.SkippedBefore
		return
	}
	s.pending += f.SkippedBefore + 1
	s.skipped++
	if taken {
		s.recycleLocked(f)
	}
}

// untakeLocked removes f from the frames in flight and reports whether it
// was one.
func (s *Slot) untakeLocked(f *Frame) bool {
	i := slices.Index(s.inFlight, f)
	if i < 0 {
		return false
	}
	s.inFlight = slices.Delete(s.inFlight, i, i+1)
	return true
}

// End marks the end of the source: once the frames left are taken, Take
// returns err, or ErrEnded when err is nil.
func (s *Slot) End(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	s.endErr = err
	s.notifyLocked()
}

// newFrame returns a frame to encode into: one the slot reuses (its Data's
// array kept, every other field zero), or a new one.
func (s *Slot) newFrame() *Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.free)
	if n == 0 {
		return &Frame{}
	}
	f := s.free[n-1]
	s.free[n-1] = nil
	s.free = s.free[:n-1]
	s.freeBytes -= cap(f.Data)
	return f
}

// recycle keeps f, which no one holds, for newFrame.
func (s *Slot) recycle(f *Frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recycleLocked(f)
}

// recycleLocked keeps f, which no one holds, for newFrame, as long as the
// frames kept stay within the limits of a lossless slot's buffer.
func (s *Slot) recycleLocked(f *Frame) {
	if f == nil || len(s.free) >= BufferFrames || s.freeBytes+cap(f.Data) > BufferBytes {
		return
	}
	*f = Frame{Data: f.Data[:0]}
	s.free = append(s.free, f)
	s.freeBytes += cap(f.Data)
}

// counts returns the skipped and emitted totals.
func (s *Slot) counts() (skipped, emitted uint64, ended bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped, s.emitted, s.ended
}
