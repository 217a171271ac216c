package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"time"
)

// DefaultWatchInterval is how often the flow file is checked for changes
// while agent.watch_config is set.
const DefaultWatchInterval = 2 * time.Second

// watchConfig checks the flow file every interval (DefaultWatchInterval
// when 0) while the running flow has agent.watch_config set, and sends on
// changed when the file's content differs from the running flow's; the
// receiver reloads it as SIGHUP does, through the same validation. It
// returns when ctx is done.
//
// A change is reported once the content has stayed the same for a short
// settle time (a quarter of the interval, at most 500ms), so a file being
// written is not read half way. Content that was reported and did not
// become the running flow (it did not validate, or the reload was
// refused) is not reported again until it changes: a broken edit is
// refused once, not every interval. The file is read whole and hashed
// with sha256, as the flow's hash is; an unreadable file is logged once
// and retried.
func (a *Agent) watchConfig(ctx context.Context, interval time.Duration, changed chan<- struct{}) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	settle := min(interval/4, 500*time.Millisecond)
	path := a.opts.ConfigPath
	t := time.NewTicker(interval)
	defer t.Stop()
	var tried string  // the last content reported
	var readErr error // the last read error, logged once
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e := a.engine.Load()
		if e == nil || !e.flow.Agent.WatchConfig || a.Reloading() {
			continue
		}
		h, err := hashFile(path)
		if err != nil {
			if readErr == nil || readErr.Error() != err.Error() {
				a.log.Warn("watch_config: reading the flow file", "err", err)
			}
			readErr = err
			continue
		}
		readErr = nil
		if h == e.flow.Hash {
			tried = "" // back to the running flow: a later edit is new again
			continue
		}
		if h == tried {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(settle):
		}
		if h2, err := hashFile(path); err != nil || h2 != h {
			continue // still being written: look again next time
		}
		tried = h
		a.log.Info("watch_config: the flow file changed; reloading", "flow", path, "sha256", h)
		select {
		case changed <- struct{}{}:
		default: // a reload is already pending
		}
	}
}

// hashFile returns the hex sha256 of the file's content.
func hashFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
