package devstats

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// parseUptime parses /proc/uptime ("350735.47 234388.90": seconds since
// boot, then idle seconds summed over CPUs).
func parseUptime(b []byte) (float64, error) {
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, errors.New("empty uptime")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("parsing uptime %q", f[0])
	}
	return v, nil
}

// parseLoadavg parses /proc/loadavg ("0.52 0.61 0.58 1/345 12345").
func parseLoadavg(b []byte) (LoadAverage, error) {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return LoadAverage{}, fmt.Errorf("parsing load average %q: too few fields", strings.TrimSpace(string(b)))
	}
	var v [3]float64
	for i := range v {
		x, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return LoadAverage{}, fmt.Errorf("parsing load average %q", f[i])
		}
		v[i] = x
	}
	return LoadAverage{Load1: v[0], Load5: v[1], Load15: v[2]}, nil
}

// parseMeminfo parses /proc/meminfo ("MemTotal:        4059400 kB").
func parseMeminfo(b []byte) (Memory, error) {
	kb := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		kb[key] = v
	}
	total, ok := kb["MemTotal"]
	if !ok || total == 0 {
		return Memory{}, errors.New("no MemTotal in meminfo")
	}
	avail, ok := kb["MemAvailable"]
	if !ok { // kernels before 3.14
		avail = kb["MemFree"] + kb["Buffers"] + kb["Cached"]
	}
	avail = min(avail, total)
	m := Memory{
		TotalBytes:     total,
		AvailableBytes: avail,
		UsedBytes:      total - avail,
		SwapTotalBytes: kb["SwapTotal"],
	}
	m.UsedPercent = round2(100 * float64(m.UsedBytes) / float64(total))
	if free := kb["SwapFree"]; free <= m.SwapTotalBytes {
		m.SwapUsedBytes = m.SwapTotalBytes - free
	}
	return m, nil
}

// cpuTimes is one CPU line of /proc/stat, in clock ticks.
type cpuTimes struct {
	total uint64 // every state except guest time (already counted in user and nice)
	idle  uint64 // idle + iowait
}

// parseStat parses the cpu lines of /proc/stat:
//
//	cpu  user nice system idle iowait irq softirq steal guest guest_nice
//	cpu0 ...
//
// keyed "cpu" (all CPUs) and "cpu0", "cpu1", ... (online cores).
func parseStat(b []byte) (map[string]cpuTimes, error) {
	out := map[string]cpuTimes{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20) // the intr line is long
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		var v [8]uint64 // user nice system idle iowait irq softirq steal
		n := min(len(f)-1, len(v))
		bad := false
		for i := 0; i < n; i++ {
			x, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				bad = true
				break
			}
			v[i] = x
		}
		if bad {
			continue
		}
		var t cpuTimes
		for _, x := range v {
			t.total += x
		}
		t.idle = v[3] + v[4]
		out[f[0]] = t
	}
	if _, ok := out["cpu"]; !ok {
		return nil, errors.New("no cpu line in stat")
	}
	return out, nil
}

// busyPercent is the share of non-idle ticks between two snapshots. It is
// false when no tick passed or a counter went back (a core that went
// offline and came back starts again from zero).
func busyPercent(prev, cur cpuTimes) (float64, bool) {
	if cur.total <= prev.total || cur.idle < prev.idle {
		return 0, false
	}
	dt := cur.total - prev.total
	di := min(cur.idle-prev.idle, dt)
	return round2(100 * float64(dt-di) / float64(dt)), true
}
