package devstats

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// model reads the board model from the device tree. The file ends with a
// NUL byte. /proc/device-tree is a link to /sys/firmware/devicetree/base,
// tried second for a root where only sys/ is mounted.
func (r *Reader) model() string {
	for _, rel := range []string{"proc/device-tree/model", "sys/firmware/devicetree/base/model"} {
		if b, ok := r.readFile(rel); ok {
			if m := strings.TrimSpace(strings.TrimRight(string(b), "\x00")); m != "" {
				return m
			}
		}
	}
	return ""
}

// offlineMilliC is what Tegra thermal zones report for a sensor that is
// powered off (tegrastats prints "CV0@-256C" on an Orin Nano, which has no
// DLA; jtop's TEMPERATURE_OFFLINE in jtop/core/temperature.py).
const offlineMilliC = -256000

// thermalZones reads every /sys/class/thermal/thermal_zone*/{type,temp}
// (temp in millidegrees Celsius), in zone order.
func (r *Reader) thermalZones() map[string]float64 {
	dirs, _ := filepath.Glob(r.path("sys/class/thermal/thermal_zone*"))
	slices.SortFunc(dirs, func(a, b string) int { return zoneNumber(a) - zoneNumber(b) })
	var out map[string]float64
	for _, dir := range dirs {
		tb, ok := r.readAbs(filepath.Join(dir, "type"))
		if !ok {
			continue
		}
		typ := strings.TrimSpace(string(tb))
		vb, ok := r.readAbs(filepath.Join(dir, "temp")) // EIO when the sensor is off
		if !ok {
			continue
		}
		milli, err := strconv.ParseInt(strings.TrimSpace(string(vb)), 10, 64)
		if err != nil {
			r.skip(filepath.Join(dir, "temp"), err)
			continue
		}
		if milli <= offlineMilliC || typ == "" {
			continue
		}
		if out == nil {
			out = map[string]float64{}
		}
		out[uniqueKey(out, typ, strconv.Itoa(zoneNumber(dir)))] = float64(milli) / 1000
	}
	return out
}

// zoneNumber returns N of ".../thermal_zoneN" (-1 when there is none).
func zoneNumber(dir string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), "thermal_zone"))
	if err != nil {
		return -1
	}
	return n
}

// uniqueKey returns name, or name_suffix when name is taken in m.
func uniqueKey[V any](m map[string]V, name, suffix string) string {
	if _, taken := m[name]; !taken {
		return name
	}
	return name + "_" + suffix
}

// gpuLoadFiles are the Jetson iGPU load files (per mille: 249 is 24.9%),
// tried in order. The nvgpu driver puts "load" in the GPU's platform
// device directory, whose name depends on the SoC and the kernel:
//
//   - gpu.0 on Jetson Nano / TX1 (57000000.gpu) and TX2 (17000000.gp10b)
//     with L4T R32 (JetPack 4): /sys/devices/gpu.0/load, the path tegrastats
//     wrappers and most monitoring scripts read; some R32 kernels put it
//     under platform/.
//   - 17000000.gv11b on Xavier NX / AGX (JetPack 4 and 5).
//   - 17000000.ga10b on Orin (JetPack 5, L4T R35); jetson_stats documents
//     /sys/devices/17000000.ga10b/enable_3d_scaling for it, and recent
//     scripts read /sys/devices/platform/17000000.ga10b/load.
//   - 17000000.gpu under platform/bus@0 on Orin with JetPack 6 (L4T R36).
//
// When none exists, the devfreq scan of jetson_stats (jtop/core/gpu.py,
// find_igpu) is used: the /sys/class/devfreq entry whose
// device/of_node/name is gpu, gp10b, gv11b or ga10b, and its device/load.
var gpuLoadFiles = []string{
	"sys/devices/gpu.0/load",
	"sys/devices/platform/gpu.0/load",
	"sys/devices/17000000.gv11b/load",
	"sys/devices/platform/17000000.gv11b/load",
	"sys/devices/17000000.ga10b/load",
	"sys/devices/platform/17000000.ga10b/load",
	"sys/devices/platform/bus@0/17000000.gpu/load",
}

// igpuNames are the device tree node names of Jetson integrated GPUs
// (jetson_stats, jtop/core/gpu.py).
var igpuNames = []string{"gpu", "gp10b", "gv11b", "ga10b"}

// gpuLoad reads the Jetson iGPU load in percent.
func (r *Reader) gpuLoad() *float64 {
	candidates := make([]string, 0, len(gpuLoadFiles)+2)
	for _, rel := range gpuLoadFiles {
		candidates = append(candidates, r.path(rel))
	}
	devs, _ := filepath.Glob(r.path("sys/class/devfreq/*"))
	for _, d := range devs {
		b, err := readSmall(filepath.Join(d, "device", "of_node", "name"))
		if err == nil && slices.Contains(igpuNames, strings.TrimSpace(strings.TrimRight(b, "\x00"))) {
			candidates = append(candidates, filepath.Join(d, "device", "load"))
		}
	}
	for _, p := range candidates {
		b, err := readSmall(p)
		if err != nil {
			continue // most candidates do not exist on a given board
		}
		permille, err := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
		if err != nil || permille < 0 {
			r.skip(p, fmt.Errorf("parsing GPU load %q", strings.TrimSpace(b)))
			continue
		}
		v := float64(permille) / 10
		return &v
	}
	return nil
}

// powerRails reads the INA3221 power monitors of Jetson modules:
//
//   - JetPack 4 (L4T R32), the downstream ina3221x IIO driver:
//     /sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<N>/ with
//     rail_name_<c>, in_voltage<c>_input (mV), in_current<c>_input (mA) and
//     in_power<c>_input (mW), e.g. POM_5V_IN / POM_5V_GPU / POM_5V_CPU on a
//     Nano at 6-0040.
//   - JetPack 5 and later, the mainline ina3221 hwmon driver: a
//     /sys/class/hwmon/hwmon<N> whose name is "ina3221", with in<c>_label,
//     in<c>_input (bus voltage, mV) and curr<c>_input (mA) for c = 1..3
//     (e.g. VDD_IN / VDD_CPU_GPU_CV / VDD_SOC on an Orin Nano at 1-0040).
//     Channel 7 ("sum of shunt voltages") and channels labelled "NC" (not
//     connected) are not rails and are skipped, as jetson_stats does
//     (jtop/core/power.py).
func (r *Reader) powerRails() map[string]PowerRail {
	var out map[string]PowerRail
	add := func(name, dev string, rail PowerRail) {
		if out == nil {
			out = map[string]PowerRail{}
		}
		out[uniqueKey(out, name, dev)] = rail
	}
	// JetPack 4.
	iio, _ := filepath.Glob(r.path("sys/bus/i2c/drivers/ina3221x/*/iio:device*"))
	for _, dir := range iio {
		names, _ := filepath.Glob(filepath.Join(dir, "rail_name_*"))
		slices.SortFunc(names, func(a, b string) int { return suffixNumber(a, "rail_name_") - suffixNumber(b, "rail_name_") })
		for _, nameFile := range names {
			c := suffixNumber(nameFile, "rail_name_")
			b, ok := r.readAbs(nameFile)
			name := strings.TrimSpace(string(b))
			if !ok || c < 0 || name == "" {
				continue
			}
			var rail PowerRail
			rail.VoltageMV = r.readInt(filepath.Join(dir, fmt.Sprintf("in_voltage%d_input", c)))
			rail.CurrentMA = r.readInt(filepath.Join(dir, fmt.Sprintf("in_current%d_input", c)))
			if p := r.readInt(filepath.Join(dir, fmt.Sprintf("in_power%d_input", c))); p != nil {
				rail.PowerMW = float64(*p)
			} else if rail.VoltageMV != nil && rail.CurrentMA != nil {
				rail.PowerMW = milliWatts(*rail.VoltageMV, *rail.CurrentMA)
			} else {
				continue
			}
			add(name, filepath.Base(filepath.Dir(dir)), rail)
		}
	}
	// JetPack 5 and later.
	hwmons, _ := filepath.Glob(r.path("sys/class/hwmon/hwmon*"))
	slices.SortFunc(hwmons, func(a, b string) int { return suffixNumber(a, "hwmon") - suffixNumber(b, "hwmon") })
	for _, dir := range hwmons {
		if b, err := readSmall(filepath.Join(dir, "name")); err != nil || strings.TrimSpace(b) != "ina3221" {
			continue
		}
		labels, _ := filepath.Glob(filepath.Join(dir, "in*_label"))
		slices.SortFunc(labels, func(a, b string) int { return channel(a) - channel(b) })
		for _, lf := range labels {
			c := channel(lf)
			b, ok := r.readAbs(lf)
			name := strings.TrimSpace(string(b))
			if !ok || c < 1 || c > 3 || name == "" || name == "NC" || strings.Contains(strings.ToLower(name), "shunt") {
				continue
			}
			mv := r.readInt(filepath.Join(dir, fmt.Sprintf("in%d_input", c)))
			ma := r.readInt(filepath.Join(dir, fmt.Sprintf("curr%d_input", c)))
			if mv == nil || ma == nil {
				continue
			}
			add(name, filepath.Base(dir), PowerRail{VoltageMV: mv, CurrentMA: ma, PowerMW: milliWatts(*mv, *ma)})
		}
	}
	return out
}

// milliWatts is mV × mA in mW, to two decimals.
func milliWatts(mv, ma int64) float64 { return round2(float64(mv) * float64(ma) / 1000) }

// channel returns c of ".../in<c>_label" (-1 when there is none).
func channel(labelFile string) int {
	s := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(labelFile), "in"), "_label")
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// suffixNumber returns N of ".../<prefix>N" (-1 when there is none).
func suffixNumber(p, prefix string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(p), prefix))
	if err != nil {
		return -1
	}
	return n
}

// readInt reads a file holding one integer (some drivers append a unit,
// like "32760 ma"); nil when it cannot be read or parsed.
func (r *Reader) readInt(p string) *int64 {
	b, ok := r.readAbs(p)
	if !ok {
		return nil
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		r.skip(p, fmt.Errorf("empty file"))
		return nil
	}
	v, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		r.skip(p, err)
		return nil
	}
	return &v
}

// Throttling is the Raspberry Pi firmware's throttling state, decoded from
// the bitmask that `vcgencmd get_throttled` prints and the firmware driver
// exposes in sysfs. The first four flags are the current state, the
// *Occurred ones are sticky since boot.
type Throttling struct {
	// Raw is the bitmask in hex ("0x50005").
	Raw                   string `json:"raw"`
	UnderVoltage          bool   `json:"under_voltage"`            // bit 0
	FreqCapped            bool   `json:"freq_capped"`              // bit 1: ARM frequency capped
	Throttled             bool   `json:"throttled"`                // bit 2
	SoftTempLimit         bool   `json:"soft_temp_limit"`          // bit 3: soft temperature limit active
	UnderVoltageOccurred  bool   `json:"under_voltage_occurred"`   // bit 16
	FreqCappedOccurred    bool   `json:"freq_capped_occurred"`     // bit 17
	ThrottledOccurred     bool   `json:"throttled_occurred"`       // bit 18
	SoftTempLimitOccurred bool   `json:"soft_temp_limit_occurred"` // bit 19
}

// DecodeThrottled decodes the Raspberry Pi get_throttled bitmask.
func DecodeThrottled(v uint32) Throttling {
	bit := func(n uint) bool { return v&(1<<n) != 0 }
	return Throttling{
		Raw:                   fmt.Sprintf("0x%x", v),
		UnderVoltage:          bit(0),
		FreqCapped:            bit(1),
		Throttled:             bit(2),
		SoftTempLimit:         bit(3),
		UnderVoltageOccurred:  bit(16),
		FreqCappedOccurred:    bit(17),
		ThrottledOccurred:     bit(18),
		SoftTempLimitOccurred: bit(19),
	}
}

// throttledFile is where the Raspberry Pi firmware driver
// (raspberrypi-firmware, get_throttled attribute) exposes the bitmask, in
// hex without a prefix ("50005"), on Raspberry Pi OS kernels. Later SoCs
// name the soc node with its address (soc@107c000000 on a Pi 5), so a glob
// is tried second.
const throttledFile = "sys/devices/platform/soc/soc:firmware/get_throttled"

// throttling reads the Raspberry Pi throttling flags.
func (r *Reader) throttling() *Throttling {
	candidates := []string{r.path(throttledFile)}
	more, _ := filepath.Glob(r.path("sys/devices/platform/soc*/soc*:firmware/get_throttled"))
	candidates = append(candidates, more...)
	for _, p := range candidates {
		b, err := readSmall(p)
		if err != nil {
			continue
		}
		s := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(b)), "0x")
		v, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			r.skip(p, fmt.Errorf("parsing throttled bitmask %q", s))
			continue
		}
		t := DecodeThrottled(uint32(v))
		return &t
	}
	return nil
}

// readSmall reads a file that may well not exist (a probe); failures are
// not logged.
func readSmall(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}
