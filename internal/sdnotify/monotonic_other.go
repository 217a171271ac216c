//go:build !unix

package sdnotify

// monotonicUsec is 0 where there is no CLOCK_MONOTONIC (and no systemd).
func monotonicUsec() uint64 { return 0 }
