package camera

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"
)

// Capture is an open frame source. It is used by one goroutine at a time
// (the Grabber's), which closes it.
type Capture interface {
	// Read blocks until the next frame and makes it the current one. It
	// returns io.EOF at the end of a video file or image directory (which
	// then ends or loops), and another error (ErrLost) when a live source
	// stopped delivering (it is reopened with backoff).
	Read() error
	// Encode returns the current frame, resized and encoded; Seq, Time
	// and SkippedBefore are left for the caller.
	Encode() (*Frame, error)
	// Period is how often the Grabber reads a frame from a source that must
	// be paced (a video file or image directory played as a live camera);
	// 0: Read itself keeps the source's pace.
	Period() time.Duration
	// Close releases the source and every buffer.
	Close() error
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
	// Logger logs opening, losing and reopening the source.
	Logger *slog.Logger
}

// Stats are a Grabber's counters.
type Stats struct {
	Captured   uint64 // frames read and kept after the fps cap (the next frame.seq)
	Emitted    uint64 // frames whose flowfile was committed
	Skipped    uint64 // captured frames dropped: backpressure, or a consumer slower than the source
	Reconnects uint64 // times a lost live source was opened again
	Errors     uint64 // failed opens, reads and encodes
	Open       bool   // whether the source is open now
	Ended      bool   // the source ended (a file or directory without loop)
}

// Grabber reads frames from a Capture on its own goroutine into a Slot.
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
// already opened (nil: Run opens it). It closes the Capture and ends the
// Slot before returning.
func (g *Grabber) Run(ctx context.Context, c Capture) {
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
	err := g.run(ctx, &c)
	if ctx.Err() != nil {
		err = nil
	}
	g.slot.End(err)
}

// run is the capture loop; *c is the open Capture (nil while closed).
func (g *Grabber) run(ctx context.Context, c *Capture) error {
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
			seq := g.seq.Add(1) - 1
			if g.cfg.Backpressure != nil && g.cfg.Backpressure() {
				g.slot.Skip(1)
				continue
			}
			f, err := (*c).Encode()
			if err != nil {
				g.errors.Add(1)
				g.log.Warn("encoding frame; skipped", "error", err)
				g.slot.Skip(1)
				continue
			}
			f.Seq, f.Time = seq, now
			g.slot.Offer(f)
			continue
		}
		last = now
		f, err := (*c).Encode()
		if err != nil {
			g.errors.Add(1)
			g.log.Error("encoding frame", "error", err)
			return err
		}
		f.Seq, f.Time = g.seq.Add(1)-1, now
		if err := g.slot.Put(ctx, f); err != nil {
			return nil
		}
	}
	return nil
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
