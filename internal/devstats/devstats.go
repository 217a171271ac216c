package devstats

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
)

// ErrNoData is returned by Reader.Read when no source at all could be read
// (a wrong root, or not a Linux system).
var ErrNoData = errors.New("no device statistics could be read")

// Stats is one reading. Every source that could not be read is left out:
// pointer, map and slice fields are then nil and omitted from the JSON.
type Stats struct {
	// Model is the board model from the device tree ("NVIDIA Jetson Nano
	// Developer Kit", "Raspberry Pi 4 Model B Rev 1.4").
	Model string `json:"model,omitempty"`
	// UptimeSeconds is the time since boot (/proc/uptime).
	UptimeSeconds *float64 `json:"uptime_seconds,omitempty"`
	// LoadAverage is the 1, 5 and 15 minute load average (/proc/loadavg).
	LoadAverage *LoadAverage `json:"load_average,omitempty"`
	// CPUPercent is the busy share of all CPUs over the interval since the
	// previous Read of the same Reader (/proc/stat). It is left out of the
	// first reading, and when no clock tick passed since the previous one.
	CPUPercent *float64 `json:"cpu_percent,omitempty"`
	// CPUCorePercent is CPUPercent per online core ("cpu0", "cpu1", ...).
	CPUCorePercent map[string]float64 `json:"cpu_core_percent,omitempty"`
	// Memory is RAM and swap usage (/proc/meminfo).
	Memory *Memory `json:"memory,omitempty"`
	// Disks is the usage of each configured path's filesystem, in the
	// configured order.
	Disks []Disk `json:"disks,omitempty"`
	// TemperaturesC maps each thermal zone's type ("CPU-therm",
	// "cpu-thermal", "tj-therm") to its temperature in °C. Zones that report
	// the Tegra "offline" value (-256 °C) are left out; a type that occurs
	// twice gets the zone number appended ("CPU-therm_5").
	TemperaturesC map[string]float64 `json:"temperatures_c,omitempty"`
	// GPULoadPercent is the integrated GPU's load on NVIDIA Jetson.
	GPULoadPercent *float64 `json:"gpu_load_percent,omitempty"`
	// PowerRails maps each INA3221 rail name ("POM_5V_IN", "VDD_IN") to its
	// reading (NVIDIA Jetson).
	PowerRails map[string]PowerRail `json:"power_rails,omitempty"`
	// Throttling is the Raspberry Pi firmware's throttling state.
	Throttling *Throttling `json:"throttling,omitempty"`
}

// LoadAverage is the system load average.
type LoadAverage struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
}

// Memory is RAM and swap usage in bytes. Used is Total minus Available
// (MemAvailable, or MemFree+Buffers+Cached on kernels without it).
type Memory struct {
	TotalBytes     uint64  `json:"total_bytes"`
	AvailableBytes uint64  `json:"available_bytes"`
	UsedBytes      uint64  `json:"used_bytes"`
	UsedPercent    float64 `json:"used_percent"`
	SwapTotalBytes uint64  `json:"swap_total_bytes"`
	SwapUsedBytes  uint64  `json:"swap_used_bytes"`
}

// Disk is the usage of the filesystem holding Path. UsedPercent is computed
// as df does: used / (used + available to unprivileged users).
type Disk struct {
	Path           string  `json:"path"`
	TotalBytes     uint64  `json:"total_bytes"`
	FreeBytes      uint64  `json:"free_bytes"`
	AvailableBytes uint64  `json:"available_bytes"`
	UsedBytes      uint64  `json:"used_bytes"`
	UsedPercent    float64 `json:"used_percent"`
}

// PowerRail is one INA3221 channel. PowerMW is the driver's own reading
// where it reports one (JetPack 4), otherwise voltage × current.
type PowerRail struct {
	VoltageMV *int64  `json:"voltage_mv,omitempty"`
	CurrentMA *int64  `json:"current_ma,omitempty"`
	PowerMW   float64 `json:"power_mw"`
}

// FSStats is what statfs(2) reports about a filesystem.
type FSStats struct {
	BlockSize       uint64 // fragment size, the unit of the block counts
	Blocks          uint64 // total blocks
	BlocksFree      uint64 // free blocks
	BlocksAvailable uint64 // free blocks available to unprivileged users
}

// StatfsFunc reports on the filesystem that holds path.
type StatfsFunc func(path string) (FSStats, error)

// Options configures a Reader.
type Options struct {
	// Root is the directory that holds sys/ and proc/; "" means "/".
	Root string
	// DiskPaths are the paths whose filesystems' usage is reported. They are
	// used as they are (not joined with Root).
	DiskPaths []string
	// Statfs replaces the statfs(2) system call (for tests); nil uses it.
	Statfs StatfsFunc
	// Logger receives a debug record for every source that could not be
	// read; nil discards them.
	Logger *slog.Logger
}

// Reader reads Stats. It is safe for concurrent use; the CPU usage of each
// Read covers the interval since the Read before it, whichever goroutine
// made it.
type Reader struct {
	root   string
	disks  []string
	statfs StatfsFunc
	log    *slog.Logger

	mu      sync.Mutex
	prevCPU map[string]cpuTimes // the previous /proc/stat snapshot; nil before the first
}

// NewReader returns a Reader. It does no I/O.
func NewReader(opts Options) *Reader {
	r := &Reader{root: opts.Root, disks: append([]string(nil), opts.DiskPaths...), statfs: opts.Statfs, log: opts.Logger}
	if r.root == "" {
		r.root = "/"
	}
	if r.statfs == nil {
		r.statfs = sysStatfs
	}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r
}

// Root returns the directory that holds sys/ and proc/.
func (r *Reader) Root() string { return r.root }

// Read takes one reading. It returns ErrNoData (and empty Stats) only when
// no source at all could be read.
func (r *Reader) Read() (*Stats, error) {
	s := &Stats{}
	s.Model = r.model()
	statRead := r.readProc(s) // the first /proc/stat gives no value but counts as read
	r.readDisks(s)
	s.TemperaturesC = r.thermalZones()
	s.GPULoadPercent = r.gpuLoad()
	s.PowerRails = r.powerRails()
	s.Throttling = r.throttling()
	if s.empty() && !statRead {
		return s, ErrNoData
	}
	return s, nil
}

func (s *Stats) empty() bool {
	return s.Model == "" && s.UptimeSeconds == nil && s.LoadAverage == nil && s.CPUPercent == nil &&
		s.CPUCorePercent == nil && s.Memory == nil && s.Disks == nil && s.TemperaturesC == nil &&
		s.GPULoadPercent == nil && s.PowerRails == nil && s.Throttling == nil
}

// path returns the absolute path of rel (slash separated) below the root.
func (r *Reader) path(rel string) string { return filepath.Join(r.root, filepath.FromSlash(rel)) }

// readFile reads a file below the root; a failure is logged at debug level.
func (r *Reader) readFile(rel string) ([]byte, bool) {
	return r.readAbs(r.path(rel))
}

// readAbs reads a file by absolute path; a failure is logged at debug level.
func (r *Reader) readAbs(p string) ([]byte, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		r.skip(p, err)
		return nil, false
	}
	return b, true
}

// skip logs a source that could not be read or parsed.
func (r *Reader) skip(source string, err error) {
	r.log.Debug("skipping device statistic", "source", source, "error", err)
}

// readProc fills the procfs-based statistics. It reports whether
// /proc/stat was read.
func (r *Reader) readProc(s *Stats) (statRead bool) {
	s.UptimeSeconds = parseFile(r, "proc/uptime", parseUptime)
	s.LoadAverage = parseFile(r, "proc/loadavg", parseLoadavg)
	s.Memory = parseFile(r, "proc/meminfo", parseMeminfo)
	cur := parseFile(r, "proc/stat", parseStat)
	if cur == nil {
		return false
	}
	s.CPUPercent, s.CPUCorePercent = r.cpuUsage(*cur)
	return true
}

// parseFile reads a file below the root and parses it; nil when it cannot
// be read or parsed (logged at debug level).
func parseFile[T any](r *Reader, rel string, parse func([]byte) (T, error)) *T {
	b, ok := r.readFile(rel)
	if !ok {
		return nil
	}
	v, err := parse(b)
	if err != nil {
		r.skip(r.path(rel), err)
		return nil
	}
	return &v
}

// cpuUsage compares cur with the previous snapshot and keeps cur for the
// next call.
func (r *Reader) cpuUsage(cur map[string]cpuTimes) (*float64, map[string]float64) {
	r.mu.Lock()
	prev := r.prevCPU
	r.prevCPU = cur
	r.mu.Unlock()
	if prev == nil {
		return nil, nil
	}
	var total *float64
	var cores map[string]float64
	for name, c := range cur {
		p, ok := prev[name]
		if !ok {
			continue // a core that came online since the previous reading
		}
		pct, ok := busyPercent(p, c)
		if !ok {
			continue
		}
		if name == "cpu" {
			total = &pct
			continue
		}
		if cores == nil {
			cores = map[string]float64{}
		}
		cores[name] = pct
	}
	return total, cores
}

// readDisks fills the disk usage of the configured paths.
func (r *Reader) readDisks(s *Stats) {
	for _, p := range r.disks {
		st, err := r.statfs(p)
		if err != nil {
			r.skip(p, err)
			continue
		}
		d := Disk{
			Path:           p,
			TotalBytes:     st.Blocks * st.BlockSize,
			FreeBytes:      st.BlocksFree * st.BlockSize,
			AvailableBytes: st.BlocksAvailable * st.BlockSize,
		}
		if d.FreeBytes <= d.TotalBytes {
			d.UsedBytes = d.TotalBytes - d.FreeBytes
		}
		if d.UsedBytes+d.AvailableBytes > 0 {
			d.UsedPercent = round2(100 * float64(d.UsedBytes) / float64(d.UsedBytes+d.AvailableBytes))
		}
		s.Disks = append(s.Disks, d)
	}
}

// round2 rounds to two decimals, so readings print without float noise.
func round2(v float64) float64 { return math.Round(v*100) / 100 }
