package devstats

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeTree creates files (slash-separated path relative to root -> content).
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
}

func ptr[T any](v T) *T { return &v }

func TestParseMeminfo(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Memory
		err  bool
	}{
		{
			name: "MemAvailable",
			in:   "MemTotal:        4000 kB\nMemFree:  1000 kB\nMemAvailable:    3000 kB\nSwapTotal: 2000 kB\nSwapFree: 1500 kB\nHugePages_Total:       0\n",
			want: Memory{TotalBytes: 4000 * 1024, AvailableBytes: 3000 * 1024, UsedBytes: 1000 * 1024, UsedPercent: 25, SwapTotalBytes: 2000 * 1024, SwapUsedBytes: 500 * 1024},
		},
		{
			name: "old kernel without MemAvailable",
			in:   "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
			want: Memory{TotalBytes: 1000 * 1024, AvailableBytes: 350 * 1024, UsedBytes: 650 * 1024, UsedPercent: 65},
		},
		{name: "no MemTotal", in: "MemFree: 100 kB\n", err: true},
		{name: "garbage", in: "not meminfo at all", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMeminfo([]byte(tt.in))
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseLoadavgAndUptime(t *testing.T) {
	la, err := parseLoadavg([]byte("0.52 0.61 0.58 1/345 12345\n"))
	require.NoError(t, err)
	require.Equal(t, LoadAverage{Load1: 0.52, Load5: 0.61, Load15: 0.58}, la)
	_, err = parseLoadavg([]byte("0.52 x 0.58 1/345 12345\n"))
	require.Error(t, err)
	_, err = parseLoadavg([]byte("0.52\n"))
	require.Error(t, err)

	up, err := parseUptime([]byte("350735.47 234388.90\n"))
	require.NoError(t, err)
	require.Equal(t, 350735.47, up)
	_, err = parseUptime([]byte(""))
	require.Error(t, err)
	_, err = parseUptime([]byte("-1 0"))
	require.Error(t, err)
}

func TestParseStatAndBusyPercent(t *testing.T) {
	in := "cpu  100 0 50 800 50 0 0 0 10 0\ncpu0 100 0 50 800 50 0 0 0 10 0\nintr 1 2 3\nctxt 99\n"
	got, err := parseStat([]byte(in))
	require.NoError(t, err)
	// guest (10) is already part of user and is not counted twice
	require.Equal(t, cpuTimes{total: 1000, idle: 850}, got["cpu"])
	require.Equal(t, got["cpu"], got["cpu0"])

	_, err = parseStat([]byte("intr 1 2 3\n"))
	require.Error(t, err)

	pct, ok := busyPercent(cpuTimes{total: 1000, idle: 850}, cpuTimes{total: 2000, idle: 1600})
	require.True(t, ok)
	require.Equal(t, 25.0, pct)
	_, ok = busyPercent(cpuTimes{total: 1000, idle: 850}, cpuTimes{total: 1000, idle: 850})
	require.False(t, ok, "no tick passed")
	_, ok = busyPercent(cpuTimes{total: 1000, idle: 850}, cpuTimes{total: 10, idle: 5})
	require.False(t, ok, "counters restarted (core went offline and back)")
}

// TestCPUUsageBetweenReads reads two /proc/stat snapshots: the first
// reading has no CPU usage, the second one covers the interval between.
func TestCPUUsageBetweenReads(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"proc/stat": "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\ncpu1 50 0 50 400 0 0 0 0 0 0\n"})
	r := NewReader(Options{Root: root})
	s, err := r.Read()
	require.NoError(t, err, "proc/stat alone is something")
	require.Nil(t, s.CPUPercent, "the first reading has nothing to compare with")
	require.Nil(t, s.CPUCorePercent)

	// cpu0: 100 busy of 200; cpu1: 20 busy of 200; cpu2 came online.
	writeTree(t, root, map[string]string{"proc/stat": "cpu  220 0 100 1080 0 0 0 0 0 0\ncpu0 100 0 100 500 0 0 0 0 0 0\ncpu1 70 0 50 580 0 0 0 0 0 0\ncpu2 50 0 0 0 0 0 0 0 0 0\n"})
	s, err = r.Read()
	require.NoError(t, err)
	require.Equal(t, ptr(30.0), s.CPUPercent)
	require.Equal(t, map[string]float64{"cpu0": 50, "cpu1": 10}, s.CPUCorePercent)

	// Unchanged counters: no tick passed, so no usage.
	s, err = r.Read()
	require.NoError(t, err)
	require.Nil(t, s.CPUPercent)
}

func TestThermalZones(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"sys/class/thermal/thermal_zone0/type":   "CPU-therm\n",
		"sys/class/thermal/thermal_zone0/temp":   "34500\n",
		"sys/class/thermal/thermal_zone2/type":   "CV0-therm\n",
		"sys/class/thermal/thermal_zone2/temp":   "-256000\n", // offline
		"sys/class/thermal/thermal_zone3/type":   "broken\n",
		"sys/class/thermal/thermal_zone3/temp":   "n/a\n",
		"sys/class/thermal/thermal_zone4/type":   "no-temp\n",
		"sys/class/thermal/thermal_zone10/type":  "CPU-therm\n", // duplicate type
		"sys/class/thermal/thermal_zone10/temp":  "-5250\n",
		"sys/class/thermal/cooling_device0/type": "pwm-fan\n",
	})
	var logs bytes.Buffer
	r := NewReader(Options{Root: root, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	s, err := r.Read()
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"CPU-therm": 34.5, "CPU-therm_10": -5.25}, s.TemperaturesC)
	require.Contains(t, logs.String(), "thermal_zone3/temp", "malformed values are logged at debug")
	require.Contains(t, logs.String(), "level=DEBUG")
	require.NotContains(t, logs.String(), "level=WARN")
}

func TestGPULoad(t *testing.T) {
	t.Run("fixed path wins", func(t *testing.T) {
		root := t.TempDir()
		writeTree(t, root, map[string]string{
			"sys/devices/17000000.gv11b/load":                      "517\n",
			"sys/class/devfreq/17000000.gv11b/device/of_node/name": "gv11b\x00",
			"sys/class/devfreq/17000000.gv11b/device/load":         "1\n",
		})
		s, err := NewReader(Options{Root: root}).Read()
		require.NoError(t, err)
		require.Equal(t, ptr(51.7), s.GPULoadPercent)
	})
	t.Run("devfreq scan", func(t *testing.T) {
		root := t.TempDir()
		writeTree(t, root, map[string]string{
			"sys/class/devfreq/17000000.gpu/device/of_node/name":   "gpu\x00",
			"sys/class/devfreq/17000000.gpu/device/load":           "1000\n",
			"sys/class/devfreq/3d00000.host1x/device/of_node/name": "host1x\x00",
		})
		s, err := NewReader(Options{Root: root}).Read()
		require.NoError(t, err)
		require.Equal(t, ptr(100.0), s.GPULoadPercent)
	})
	t.Run("malformed", func(t *testing.T) {
		root := t.TempDir()
		writeTree(t, root, map[string]string{"sys/devices/gpu.0/load": "busy\n", "proc/uptime": "1.00 2.00\n"})
		s, err := NewReader(Options{Root: root}).Read()
		require.NoError(t, err)
		require.Nil(t, s.GPULoadPercent)
	})
}

func TestPowerRails(t *testing.T) {
	root := t.TempDir()
	iio := "sys/bus/i2c/drivers/ina3221x/1-0040/iio:device0/"
	hw := "sys/class/hwmon/hwmon2/"
	writeTree(t, root, map[string]string{
		// JetPack 4 on a Xavier NX: power given by the driver, or computed.
		iio + "rail_name_0":       "GPU\n",
		iio + "in_voltage0_input": "19064\n",
		iio + "in_current0_input": "40\n",
		iio + "in_power0_input":   "762\n",
		iio + "rail_name_1":       "CPU\n",
		iio + "in_voltage1_input": "19000\n",
		iio + "in_current1_input": "100\n",
		iio + "rail_name_2":       "SOC\n", // nothing to read
		// JetPack 5 on an AGX Orin.
		hw + "name":        "ina3221\n",
		hw + "in1_label":   "VDD_GPU_SOC\n",
		hw + "in1_input":   "19056\n",
		hw + "curr1_input": "1304\n",
		hw + "in2_label":   "NC\n",
		hw + "in2_input":   "0\n",
		hw + "curr2_input": "0\n",
		hw + "in3_label":   "VIN_SYS_5V0\n",
		hw + "in3_input":   "4960\n", // no current: not a rail reading
		hw + "in7_label":   "sum of shunt voltages\n",
		hw + "in7_input":   "1040\n",
		hw + "curr4_input": "1304\n",
		// Another INA3221 with a rail name that is already taken.
		"sys/class/hwmon/hwmon5/name":        "ina3221\n",
		"sys/class/hwmon/hwmon5/in1_label":   "GPU\n",
		"sys/class/hwmon/hwmon5/in1_input":   "1000\n",
		"sys/class/hwmon/hwmon5/curr1_input": "1\n",
		// Not a power monitor.
		"sys/class/hwmon/hwmon0/name":      "pwmfan\n",
		"sys/class/hwmon/hwmon0/in1_label": "VDD_FAN\n",
	})
	s, err := NewReader(Options{Root: root}).Read()
	require.NoError(t, err)
	require.Equal(t, map[string]PowerRail{
		"GPU":         {VoltageMV: ptr[int64](19064), CurrentMA: ptr[int64](40), PowerMW: 762},
		"CPU":         {VoltageMV: ptr[int64](19000), CurrentMA: ptr[int64](100), PowerMW: 1900},
		"VDD_GPU_SOC": {VoltageMV: ptr[int64](19056), CurrentMA: ptr[int64](1304), PowerMW: 24849.02},
		"GPU_hwmon5":  {VoltageMV: ptr[int64](1000), CurrentMA: ptr[int64](1), PowerMW: 1},
	}, s.PowerRails)
}

func TestThrottling(t *testing.T) {
	require.Equal(t, Throttling{Raw: "0x0"}, DecodeThrottled(0))
	require.Equal(t, Throttling{
		Raw: "0xf000f", UnderVoltage: true, FreqCapped: true, Throttled: true, SoftTempLimit: true,
		UnderVoltageOccurred: true, FreqCappedOccurred: true, ThrottledOccurred: true, SoftTempLimitOccurred: true,
	}, DecodeThrottled(0xf000f))
	require.Equal(t, Throttling{Raw: "0x80000", SoftTempLimitOccurred: true}, DecodeThrottled(0x80000))

	tests := []struct {
		name, path, content string
		want                *Throttling
	}{
		{"pi 4", throttledFile, "50005\n", &Throttling{Raw: "0x50005", UnderVoltage: true, Throttled: true, UnderVoltageOccurred: true, ThrottledOccurred: true}},
		{"prefixed", throttledFile, "0x20000\n", &Throttling{Raw: "0x20000", FreqCappedOccurred: true}},
		{"pi 5 soc node", "sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled", "0\n", &Throttling{Raw: "0x0"}},
		{"malformed", throttledFile, "zz\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, map[string]string{tt.path: tt.content, "proc/uptime": "1 1\n"})
			s, err := NewReader(Options{Root: root}).Read()
			require.NoError(t, err)
			require.Equal(t, tt.want, s.Throttling)
		})
	}
}

func TestModel(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"sys/firmware/devicetree/base/model": "Raspberry Pi 5 Model B Rev 1.0\x00"})
	s, err := NewReader(Options{Root: root}).Read()
	require.NoError(t, err)
	require.Equal(t, "Raspberry Pi 5 Model B Rev 1.0", s.Model)
}

func TestDisks(t *testing.T) {
	statfs := func(p string) (FSStats, error) {
		switch p {
		case "/":
			return FSStats{BlockSize: 4096, Blocks: 1000, BlocksFree: 300, BlocksAvailable: 250}, nil
		case "/data":
			return FSStats{BlockSize: 1024, Blocks: 100, BlocksFree: 100, BlocksAvailable: 100}, nil
		}
		return FSStats{}, os.ErrNotExist
	}
	s, err := NewReader(Options{Root: t.TempDir(), DiskPaths: []string{"/", "/missing", "/data"}, Statfs: statfs}).Read()
	require.NoError(t, err, "disk usage alone is something")
	require.Equal(t, []Disk{
		{Path: "/", TotalBytes: 4096000, FreeBytes: 1228800, AvailableBytes: 1024000, UsedBytes: 2867200, UsedPercent: 73.68},
		{Path: "/data", TotalBytes: 102400, FreeBytes: 102400, AvailableBytes: 102400},
	}, s.Disks)
}

func TestReadNothing(t *testing.T) {
	s, err := NewReader(Options{Root: filepath.Join(t.TempDir(), "no-such-root"), DiskPaths: []string{"/no/such/dir"}}).Read()
	require.ErrorIs(t, err, ErrNoData)
	require.NotNil(t, s)
}

// TestReadThisMachine reads the real /proc and /sys of the test machine.
func TestReadThisMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("procfs is Linux only")
	}
	r := NewReader(Options{DiskPaths: []string{"/"}})
	require.Equal(t, "/", r.Root())
	s, err := r.Read()
	require.NoError(t, err)
	require.NotNil(t, s.Memory)
	require.NotZero(t, s.Memory.TotalBytes)
	require.NotNil(t, s.UptimeSeconds)
	require.NotNil(t, s.LoadAverage)
	require.Len(t, s.Disks, 1)
	require.NotZero(t, s.Disks[0].TotalBytes)
	_, err = sysStatfs("/no/such/dir")
	require.True(t, errors.Is(err, os.ErrNotExist), "%v", err)
}
