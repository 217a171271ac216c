package processors

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/devstats"
	"edgeagent.dev/internal/enginetest"
)

// updateStatsGolden rewrites the golden files instead of comparing with them.
var updateStatsGolden = os.Getenv("UPDATE_GOLDEN") == "1"

// materializeSysfs copies the recorded tree testdata/sysfs/<board> to a
// temporary directory, turning the %3A that stands for ':' in the recorded
// file names back into ':', and returns the copy's root.
func materializeSysfs(t *testing.T, board string) string {
	t.Helper()
	src := filepath.Join("testdata", "sysfs", board)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, strings.ReplaceAll(rel, "%3A", ":"))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	require.NoError(t, err)
	return dst
}

// requireStatsGolden compares JSON content, indented, with a golden file
// byte for byte (or rewrites the file when UPDATE_GOLDEN=1).
func requireStatsGolden(t *testing.T, golden string, content []byte) {
	t.Helper()
	var got bytes.Buffer
	require.NoError(t, json.Indent(&got, content, "", "  "))
	got.WriteByte('\n')
	if updateStatsGolden {
		require.NoError(t, os.WriteFile(golden, got.Bytes(), 0o644))
		return
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run with UPDATE_GOLDEN=1 to create it")
	require.Equal(t, string(want), got.String(), "differs from %s (UPDATE_GOLDEN=1 rewrites it)", golden)
}

// fakeStatfs reports fixed filesystems: a 64 GB SD card for / and a 256 GB
// NVMe drive for the data directory.
func fakeStatfs(p string) (devstats.FSStats, error) {
	switch p {
	case "/":
		return devstats.FSStats{BlockSize: 4096, Blocks: 15_196_112, BlocksFree: 6_811_537, BlocksAvailable: 6_034_905}, nil
	case "/var/lib/edgeagent":
		return devstats.FSStats{BlockSize: 4096, Blocks: 61_020_558, BlocksFree: 52_114_870, BlocksAvailable: 49_002_117}, nil
	}
	return devstats.FSStats{}, &fs.PathError{Op: "statfs", Path: p, Err: fs.ErrNotExist}
}

// TestGetDeviceStatsGolden reads each recorded board twice, with the
// second /proc/stat snapshot swapped in between, and compares the second
// reading with the golden JSON.
func TestGetDeviceStatsGolden(t *testing.T) {
	tests := []struct {
		board string
		model string
	}{
		{"jetson-nano", "NVIDIA Jetson Nano Developer Kit"},
		{"jetson-orin", "NVIDIA Orin Nano Developer Kit"},
		{"rpi4", "Raspberry Pi 4 Model B Rev 1.4"},
	}
	for _, tt := range tests {
		t.Run(tt.board, func(t *testing.T) {
			root := materializeSysfs(t, tt.board)
			r := enginetest.NewRunner(t, getDeviceStatsSpec(fakeStatfs), map[string]string{
				"root": root, "disk_paths": "/, /var/lib/edgeagent, /media/usb",
			})
			r.Run(1)
			first := r.Output("success")
			require.Len(t, first, 1)
			var m map[string]any
			require.NoError(t, json.Unmarshal(first[0].Content, &m))
			require.NotContains(t, m, "cpu_percent", "the first reading has no interval to measure CPU usage over")
			require.Contains(t, m, "memory")

			next, err := os.ReadFile(filepath.Join("testdata", "sysfs", tt.board+".stat.next"))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(root, "proc", "stat"), next, 0o644))
			before := time.Now()
			r.Run(1)
			out := r.Output("success")
			require.Len(t, out, 1)
			require.Empty(t, r.Output("failure"))
			ff := out[0].FlowFile
			require.Equal(t, "application/json", ff.Attr(edgeagent.AttrMimeType))
			require.Equal(t, tt.model, ff.Attr(attrDeviceModel))
			ct, err := time.Parse(time.RFC3339Nano, ff.Attr(edgeagent.AttrCaptureTime))
			require.NoError(t, err)
			require.WithinDuration(t, before, ct, time.Minute)
			require.True(t, strings.HasSuffix(ff.Attr(edgeagent.AttrCaptureTime), "Z"), "capture.time is UTC")
			requireStatsGolden(t, filepath.Join("testdata", "getdevicestats-"+tt.board+".golden.json"), out[0].Content)
		})
	}
}

// TestGetDeviceStatsPartial breaks some sources of a recorded tree: they
// are left out and the rest is still reported.
func TestGetDeviceStatsPartial(t *testing.T) {
	root := materializeSysfs(t, "jetson-nano")
	require.NoError(t, os.WriteFile(filepath.Join(root, "proc", "meminfo"), []byte("garbage\n"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(root, "proc", "loadavg")))
	require.NoError(t, os.WriteFile(filepath.Join(root, "sys", "devices", "gpu.0", "load"), []byte("\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "sys", "class", "thermal", "thermal_zone1", "temp"), []byte("hot\n"), 0o644))
	r := enginetest.NewRunner(t, getDeviceStatsSpec(fakeStatfs), map[string]string{"root": root, "disk_paths": "/"})
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 1)
	var m map[string]any
	require.NoError(t, json.Unmarshal(out[0].Content, &m))
	for _, k := range []string{"memory", "load_average", "gpu_load_percent"} {
		require.NotContains(t, m, k)
	}
	require.NotContains(t, m["temperatures_c"], "CPU-therm")
	require.Contains(t, m["temperatures_c"], "GPU-therm")
	require.Contains(t, m, "power_rails")
	require.Contains(t, m, "uptime_seconds")
	require.False(t, r.Yielded())
}

// TestGetDeviceStatsNothingToRead points root at an empty directory: the
// run sends the error to failure and yields, and the processor keeps
// running.
func TestGetDeviceStatsNothingToRead(t *testing.T) {
	root := t.TempDir()
	r := enginetest.NewRunner(t, getDeviceStatsSpec(fakeStatfs), map[string]string{"root": root, "disk_paths": "/no/such/mount"})
	for range 2 {
		r.Run(1)
		require.True(t, r.Yielded())
		require.Empty(t, r.Output("success"))
		fail := r.Output("failure")
		require.Len(t, fail, 1)
		require.Contains(t, fail[0].FlowFile.Attr(edgeagent.AttrErrorMessage), "no device statistics could be read")
		require.Contains(t, fail[0].FlowFile.Attr(edgeagent.AttrErrorMessage), root)
		require.NotEmpty(t, fail[0].FlowFile.Attr(edgeagent.AttrCaptureTime))
	}
}

// TestGetDeviceStatsThisMachine reads the test machine's own /proc and /sys
// and statfs(2) of /.
func TestGetDeviceStatsThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no procfs here")
	}
	r := enginetest.NewRunner(t, GetDeviceStatsSpec(), map[string]string{"disk_paths": "/"})
	r.Run(2)
	out := r.Output("success")
	require.Len(t, out, 2)
	var st devstats.Stats
	require.NoError(t, json.Unmarshal(out[1].Content, &st))
	require.NotNil(t, st.Memory)
	require.Len(t, st.Disks, 1)
	require.NotZero(t, st.Disks[0].TotalBytes)
}

func TestGetDeviceStatsDefaultDiskPaths(t *testing.T) {
	require.Equal(t, []string{"/", "/var/lib/edgeagent"}, defaultDiskPaths("/var/lib/edgeagent/state/stats"))
	require.Equal(t, []string{"/"}, defaultDiskPaths(""))
	require.Equal(t, []string{"/"}, defaultDiskPaths("/state/stats"))
	require.Equal(t, []string{"/a", "/b"}, splitPathList(" /a, ,/b,/a "))
}

func TestGetDeviceStatsConfigErrors(t *testing.T) {
	spec := GetDeviceStatsSpec()
	for _, tt := range []struct {
		props map[string]string
		want  string
	}{
		{map[string]string{"root": "host"}, "root"},
		{map[string]string{"disk_paths": "/, data"}, "disk_paths"},
		{map[string]string{"period": "5s"}, "unknown property"},
	} {
		_, err := enginetest.TryNewRunner(t, spec, tt.props)
		require.Error(t, err)
		require.Contains(t, err.Error(), tt.want)
	}
	require.Equal(t, 10*time.Second, spec.DefaultPeriod)
	require.Equal(t, edgeagent.InputForbidden, spec.Input)
}
