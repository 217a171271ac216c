// Package devstats reads the health of an edge device from sysfs and procfs:
// thermal zones, CPU and GPU load, memory, disk usage, load average, uptime,
// INA3221 power rails (NVIDIA Jetson), Raspberry Pi throttling flags and the
// board model.
//
// Everything is read below an injectable root directory (sysfs at ROOT/sys,
// procfs at ROOT/proc), so the same code runs on the device ("/"), in a
// container that mounts the host's filesystem elsewhere ("/host"), and in
// tests against recorded trees.
//
// A Reader never fails a whole reading because one source is missing or
// malformed: that source is left out of Stats (and logged at debug level).
// Read returns ErrNoData only when nothing at all could be read.
//
// The GetDeviceStats processor emits Stats as JSON; agent heartbeats can
// reuse the same Reader.
package devstats
