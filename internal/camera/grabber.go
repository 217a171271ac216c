package camera

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Capture is an open frame source. Its methods are called from one
// goroutine (the Grabber's capture goroutine, locked to its OS thread),
// which closes it.
type Capture interface {
	// Read blocks until the next frame and makes it the current one. It
	// returns io.EOF at the end of a video file or image directory (which
	// then ends or loops), and another error (ErrLost) when a live source
	// stopped delivering (it is reopened with backoff).
	Read() error
	// Detach hands the current frame over as a Raw that may be encoded on
	// another goroutine, and stays valid after the next Read and after
	// Close; the Capture has no current frame until the next Read.
	Detach() (Raw, error)
	// Period is how often the Grabber reads a frame from a source that must
	// be paced (a video file or image directory played as a live camera);
	// 0: Read itself keeps the source's pace.
	Period() time.Duration
	// Close releases the source and its buffers (not those of frames
	// detached and not yet released).
	Close() error
}

// Raw is a decoded frame detached from its Capture. It is used by one
// goroutine at a time, not necessarily the capture's.
type Raw interface {
	// Encode resizes and encodes the frame into f: f.Data is replaced
	// (its array reused when it is large enough) and Width, Height and
	// Channels are set; Seq, Time and SkippedBefore are left for the
	// caller.
	Encode(f *Frame) error
	// Release gives the frame's buffers back for reuse; the Raw is not
	// used after.
	Release()
}

// OpenFunc opens a Capture. It is called on the Grabber's goroutine, again
// after a live source was lost and when a looping file restarts.
type OpenFunc func(ctx context.Context) (Capture, error)

// GrabberConfig configures a Grabber.
type GrabberConfig struct {
	// Open opens the source.
	Open OpenFunc
	// Name is the source for logs (credentials redacted).
	Name string
	// Live skips frames the flow does not take in time, and reopens the
	// source with backoff when it fails to open or is lost. Otherwise every
	// frame is delivered once, in order, and a failure ends the Grabber.
	// Either way the end of a file ends the Grabber, or restarts the file
	// with Loop.
	Live bool
	// Loop restarts a video file or image directory at its end.
	Loop bool
	// FPS caps the frame rate (0: the source's pace). A live source is
	// read at its own pace and frames over the cap are dropped without
	// being counted as skipped; a file is read no faster than the cap, the
	// grab times of two frames at least 1/FPS apart.
	FPS float64
	// Backoff is the first wait before reopening a lost live source,
	// doubled after each failure up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Backpressure reports whether the flow cannot take frames now; a live
	// Grabber then reads and drops frames without encoding them. Nil: never.
	Backpressure func() bool
	// Encoders is how many goroutines encode frames while the capture
	// goroutine reads the next ones (0: DefaultEncoders). Frames reach the
	// Slot in capture order whatever the number. A live frame read while
	// every encoder is busy and one frame already waits for them is
	// skipped, as under backpressure; a file's frame is then encoded by the
	// capture goroutine itself, while the frame is still in its CPU's cache
	// (on two cores this beats handing every frame over).
	Encoders int
	// Logger logs opening, losing and reopening the source.
	Logger *slog.Logger
}

// DefaultEncoders is the number of encoding goroutines a Grabber runs when
// GrabberConfig.Encoders is 0: two, or one where Go may use a single CPU.
func DefaultEncoders() int { return min(2, runtime.GOMAXPROCS(0)) }

// Stats are a Grabber's counters.
type Stats struct {
	Captured   uint64 // frames read and kept after the fps cap (the next frame.seq)
	Emitted    uint64 // frames whose flowfile was committed
	Skipped    uint64 // captured frames dropped: backpressure, busy encoders, or a consumer slower than the source
	Reconnects uint64 // times a lost live source was opened again
	Errors     uint64 // failed opens, reads and encodes
	Open       bool   // whether the source is open now
	Ended      bool   // the source ended (a file or directory without loop)
}

// Grabber reads frames from a Capture on its own goroutine, has them
// encoded by a few others, and puts them into a Slot in capture order.
type Grabber struct {
	cfg  GrabberConfig
	slot *Slot
	log  *slog.Logger

	seq        atomic.Uint64
	reconnects atomic.Uint64
	errors     atomic.Uint64
	open       atomic.Bool
}

// NewGrabber returns a Grabber for cfg; it does nothing until Run.
func NewGrabber(cfg GrabberConfig) *Grabber {
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.Backoff {
		cfg.MaxBackoff = max(cfg.Backoff, 30*time.Second)
	}
	if cfg.Encoders <= 0 {
		cfg.Encoders = DefaultEncoders()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Grabber{cfg: cfg, slot: NewSlot(!cfg.Live), log: log.With("source", cfg.Name)}
}

// Slot returns the slot the Grabber fills.
func (g *Grabber) Slot() *Slot { return g.slot }

// Stats returns the counters.
func (g *Grabber) Stats() Stats {
	skipped, emitted, ended := g.slot.counts()
	return Stats{
		Captured: g.seq.Load(), Emitted: emitted, Skipped: skipped,
		Reconnects: g.reconnects.Load(), Errors: g.errors.Load(),
		Open: g.open.Load(), Ended: ended,
	}
}

// Run captures until ctx is cancelled or the source ends; c is the source
// already opened (nil: Run opens it). It closes the Capture, waits until
// the frames captured are encoded and delivered (a lossless Slot: until
// there is room for them, or ctx ends) and ends the Slot before returning.
func (g *Grabber) Run(ctx context.Context, c Capture) {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := g.startPipeline(pctx, cancel)
	err := g.capture(pctx, c, p)
	p.stop()
	if ctx.Err() != nil {
		err = nil
	} else if pctx.Err() != nil {
		err = context.Cause(pctx) // an encoding failed
	}
	g.slot.End(err)
}

// capture runs the capture loop on the calling goroutine, locked to its OS
// thread, and closes the Capture.
func (g *Grabber) capture(ctx context.Context, c Capture, p *pipeline) error {
	// Keep the capture on one OS thread: OpenCV, FFmpeg, GStreamer and V4L2
	// keep per-thread state (thread pools, contexts).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer func() {
		if c != nil {
			_ = c.Close()
		}
		g.open.Store(false)
	}()
	return g.run(ctx, &c, p)
}

// run is the capture loop; *c is the open Capture (nil while closed).
func (g *Grabber) run(ctx context.Context, c *Capture, p *pipeline) error {
	var (
		interval time.Duration
		due      time.Time // live: the earliest grab time of the next frame kept
		last     time.Time // file: the grab time of the previous frame
		paceAt   time.Time // paced source: when the next Read is due
		backoff  = g.cfg.Backoff
		lostAt   time.Time
		read     int // frames read since the source was opened
	)
	if g.cfg.FPS > 0 {
		interval = time.Duration(float64(time.Second) / g.cfg.FPS)
	}
	for ctx.Err() == nil {
		if *c == nil {
			var err error
			*c, err = g.cfg.Open(ctx)
			if err != nil {
				*c = nil
				g.errors.Add(1)
				if !g.cfg.Live {
					g.log.Error("opening frame source", "error", err)
					return err
				}
				g.log.Warn("opening frame source failed; retrying", "error", err, "retry_in", backoff)
				if !sleep(ctx, backoff) {
					return nil
				}
				backoff = min(backoff*2, g.cfg.MaxBackoff)
				continue
			}
			read = 0
			if !lostAt.IsZero() {
				g.reconnects.Add(1)
				g.log.Info("frame source reopened", "down_for", time.Since(lostAt).Round(time.Millisecond))
				lostAt = time.Time{}
			}
		}
		g.open.Store(true)
		if p := (*c).Period(); p > 0 {
			if !sleep(ctx, time.Until(paceAt)) {
				return nil
			}
			paceAt = maxTime(paceAt, time.Now().Add(-p)).Add(p)
		}
		if !g.cfg.Live && interval > 0 && !last.IsZero() {
			if !sleep(ctx, time.Until(last.Add(interval))) {
				return nil
			}
		}
		err := (*c).Read()
		now := time.Now()
		if err != nil {
			_ = (*c).Close()
			*c = nil
			g.open.Store(false)
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				// The end of a video file or image directory (a live
				// stream that stops reports ErrLost).
				if g.cfg.Loop && read == 0 {
					g.errors.Add(1)
					err = errors.New("looping over a source without frames")
					g.log.Error("reading frame source", "error", err)
					return err
				}
				if g.cfg.Loop {
					g.log.Debug("frame source ended; looping")
					continue
				}
				g.log.Info("frame source ended", "frames", g.seq.Load())
				return nil
			}
			if !g.cfg.Live {
				g.errors.Add(1)
				g.log.Error("reading frame source", "error", err)
				return err
			}
			g.errors.Add(1)
			if lostAt.IsZero() {
				lostAt = now
			}
			g.log.Warn("frame source lost; reopening", "error", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, g.cfg.MaxBackoff)
			continue
		}
		backoff = g.cfg.Backoff
		read++
		if g.cfg.Live {
			if interval > 0 {
				// Keep the frame if it is at most a quarter interval early,
				// so a cap that does not divide the source's rate is met
				// on average: due advances by interval from the previous
				// due (or from a late frame), not from each grab, so the
				// jitter of the source does not lower the rate.
				if now.Before(due.Add(-interval / 4)) {
					continue
				}
				due = maxTime(due, now).Add(interval)
			}
		} else {
			last = now
		}
		seq := g.seq.Add(1) - 1
		if g.cfg.Live && g.cfg.Backpressure != nil && g.cfg.Backpressure() {
			p.skip(true)
			continue
		}
		if err := p.submit(ctx, *c, seq, now); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			g.errors.Add(1)
			if g.cfg.Live {
				g.log.Warn("encoding frame; skipped", "error", err)
				p.skip(false)
				continue
			}
			g.log.Error("encoding frame", "error", err)
			return err
		}
	}
	return nil
}

// job is one captured frame on its way from the capture goroutine through
// an encoder to the Slot, or only a count of frames skipped.
type job struct {
	skip  uint64 // frames skipped (not encoded) just before this one
	drop  bool   // one was skipped under backpressure: the older waiting frame is dropped too (Slot.Skip)
	raw   Raw    // nil: only skip; written by the capture goroutine only
	seq   uint64
	time  time.Time
	frame *Frame        // set by the encoder: the encoded frame (nil: err)
	err   error         // set by the encoder
	done  chan struct{} // the encoder is done (capacity 1)
}

// pipeline runs a Grabber's encoders and hands their frames to the Slot in
// capture order. The capture goroutine sends every job to the encoders
// (work), or encodes a lossless frame itself while they are busy, and
// then, in capture order, sends it to the deliverer (order), which waits
// for each to be encoded before putting it into the Slot; jobs cycle
// through free, which bounds them and avoids allocating per frame.
type pipeline struct {
	g      *Grabber
	ctx    context.Context
	cancel context.CancelCauseFunc // the deliverer's failure ends the capture
	free   chan *job
	work   chan *job // at most one job waits for a busy encoder
	order  chan *job // never full: it holds at most every job
	wg     sync.WaitGroup

	// The capture goroutine's frames skipped and not yet sent on, and
	// whether backpressure skipped one of them.
	skipped uint64
	drop    bool
}

func (g *Grabber) startPipeline(ctx context.Context, cancel context.CancelCauseFunc) *pipeline {
	n := g.cfg.Encoders
	jobs := 2*n + 2
	p := &pipeline{
		g: g, ctx: ctx, cancel: cancel,
		free:  make(chan *job, jobs),
		work:  make(chan *job, 1),
		order: make(chan *job, jobs),
	}
	for range jobs {
		p.free <- &job{done: make(chan struct{}, 1)}
	}
	p.wg.Add(n + 1)
	for range n {
		go p.encode()
	}
	go p.deliver()
	return p
}

// stop waits until every job sent was encoded and delivered (or dropped,
// once ctx ended or the deliverer failed), then counts the frames skipped
// that were not sent on.
func (p *pipeline) stop() {
	close(p.work)
	close(p.order)
	p.wg.Wait()
	p.g.slot.skip(p.skipped, p.drop)
	p.skipped, p.drop = 0, false
}

// skip counts a captured frame dropped before encoding, under backpressure
// (drop: the older frame waiting in the live Slot is dropped too) or
// because the encoders are busy; the count reaches the Slot after the
// frames captured before it.
func (p *pipeline) skip(drop bool) {
	p.skipped++
	p.drop = p.drop || drop
	select {
	case j := <-p.free:
		p.take(j)
		p.order <- j
	default: // every job is busy: the count goes with the next one
	}
}

// take moves the frames skipped so far into j.
func (p *pipeline) take(j *job) {
	j.skip, j.drop = p.skipped, p.drop
	p.skipped, p.drop = 0, false
}

// submit detaches the current frame of c and sends it to the encoders. A
// live frame is skipped when no job is free or a frame already waits for
// the encoders; a lossless one is then encoded on the calling goroutine
// (submit waits only for a free job, until ctx ends).
func (p *pipeline) submit(ctx context.Context, c Capture, seq uint64, t time.Time) error {
	var j *job
	if p.g.cfg.Live {
		// Only this goroutine takes from free and sends to work, so a free
		// job or room in work seen here stays there.
		if len(p.free) == 0 || len(p.work) == cap(p.work) {
			p.skip(false)
			return nil
		}
		j = <-p.free
	} else {
		select {
		case j = <-p.free:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	raw, err := c.Detach()
	if err != nil {
		p.free <- j
		return err
	}
	j.raw, j.seq, j.time = raw, seq, t
	select {
	case p.work <- j: // never blocks for a live source
	default: // lossless, the encoders busy and a frame waiting for them
		p.encodeJob(j)
	}
	p.take(j)
	p.order <- j
	return nil
}

// encode is an encoder goroutine.
func (p *pipeline) encode() {
	defer p.wg.Done()
	for j := range p.work {
		p.encodeJob(j)
	}
}

// encodeJob encodes j's frame and releases its Raw.
func (p *pipeline) encodeJob(j *job) {
	f := p.g.slot.newFrame()
	if err := j.raw.Encode(f); err != nil {
		p.g.slot.recycle(f)
		f, j.err = nil, err
	}
	j.raw.Release()
	j.frame = f
	j.done <- struct{}{}
}

// deliver is the deliverer goroutine: it takes jobs in capture order and
// puts their frames into the Slot. A lossless frame that failed to encode
// ends the capture (the frames captured after it are dropped); a live one
// is counted as skipped.
func (p *pipeline) deliver() {
	defer p.wg.Done()
	g, failed := p.g, false
	for j := range p.order {
		g.slot.skip(j.skip, j.drop)
		if j.raw != nil {
			<-j.done
			f, err := j.frame, j.err
			switch {
			case failed:
				g.slot.recycle(f)
			case err != nil:
				g.errors.Add(1)
				if g.cfg.Live {
					g.log.Warn("encoding frame; skipped", "error", err)
					g.slot.skip(1, false)
					break
				}
				g.log.Error("encoding frame", "error", err)
				failed = true
				p.cancel(fmt.Errorf("encoding frame %d: %w", j.seq, err))
			case g.cfg.Live:
				f.Seq, f.Time = j.seq, j.time
				g.slot.Offer(f)
			default:
				f.Seq, f.Time = j.seq, j.time
				if g.slot.Put(p.ctx, f) != nil {
					failed = true // ctx ended: the rest is dropped
					g.slot.recycle(f)
				}
			}
		}
		*j = job{done: j.done}
		p.free <- j
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
