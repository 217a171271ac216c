package engine

import (
	"os"
	"runtime/debug"
)

// Garbage collector defaults for the agent. The agent's live heap is small
// (tens of MB: queues live on disk), so the collector can run less often:
// GOGC 200 cuts its CPU cost by about a quarter at the agent's throughput,
// and the soft memory limit keeps the heap bounded on small devices.
const (
	DefaultGCPercent   = 200
	DefaultMemoryLimit = 256 << 20
)

// TuneGC applies DefaultGCPercent and DefaultMemoryLimit unless the GOGC or
// GOMEMLIMIT environment variables set them.
func TuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(DefaultGCPercent)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(DefaultMemoryLimit)
	}
}
