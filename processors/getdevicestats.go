package processors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/internal/devstats"
)

// attrDeviceModel is the board model GetDeviceStats puts on its flowfiles.
const attrDeviceModel = "device.model"

// GetDeviceStatsSpec returns the spec of GetDeviceStats, a source that
// reports the health of the device it runs on (temperatures, CPU and GPU
// load, memory, disks, power rails, throttling) as one JSON flowfile per run.
func GetDeviceStatsSpec() edgeagent.ProcessorSpec { return getDeviceStatsSpec(nil) }

// getDeviceStatsSpec is GetDeviceStatsSpec with statfs(2) replaced (nil:
// the system call), for tests.
func getDeviceStatsSpec(statfs devstats.StatfsFunc) edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "GetDeviceStats",
		Summary: "Reports the device's temperatures, CPU/GPU load, memory, disk usage, power rails and throttling state as JSON.",
		Description: "Each run reads sysfs and procfs below root and emits one application/json flowfile with the " +
			"fields model, uptime_seconds, load_average {load1, load5, load15}, cpu_percent and cpu_core_percent " +
			"(busy share since the previous run: left out of the first run, which has nothing to compare with), " +
			"memory {total_bytes, available_bytes, used_bytes, used_percent, swap_total_bytes, swap_used_bytes}, " +
			"disks [{path, total_bytes, free_bytes, available_bytes, used_bytes, used_percent}], temperatures_c " +
			"(thermal zone type -> °C, e.g. CPU-therm, GPU-therm, tj-therm on Jetson, cpu-thermal on Raspberry Pi; " +
			"Tegra zones that read -256 °C are powered off and left out), gpu_load_percent (Jetson iGPU), " +
			"power_rails (INA3221 rail -> {voltage_mv, current_ma, power_mw}; Jetson, JetPack 4 and later) and " +
			"throttling (Raspberry Pi firmware flags: raw, under_voltage, freq_capped, throttled, soft_temp_limit " +
			"and their *_occurred counterparts, sticky since boot). A source that is missing or malformed is left " +
			"out (logged at debug level); only when nothing at all can be read does the run send a flowfile with " +
			"error.message to failure and yield. Attributes: mime.type, capture.time (RFC 3339, UTC) and " +
			"device.model (when the device tree names the board).",
		Input: edgeagent.InputForbidden,
		Properties: []edgeagent.PropertySpec{
			{Name: "root", Description: "The directory that holds the sys/ and proc/ trees to read: / on the device, or where the host's / is mounted when the agent runs in a container (e.g. /host).", Default: "/", Validate: absolutePath},
			{Name: "disk_paths", Description: "Comma-separated absolute paths whose filesystem usage is reported, as the agent sees them (not below root). Default: / and the agent's data directory.", Validate: absolutePaths},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess, edgeagent.RelFailure},
		DefaultPeriod: 10 * time.Second,
		New: func(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
			return newGetDeviceStats(cfg, statfs)
		},
	}
}

type getDeviceStats struct {
	reader *devstats.Reader
}

func newGetDeviceStats(cfg *edgeagent.ProcessorConfig, statfs devstats.StatfsFunc) (edgeagent.Processor, error) {
	root := cfg.Property("root").String()
	if root == "" {
		root = "/"
	}
	if err := absolutePath(root); err != nil {
		return nil, fmt.Errorf("property root: %w", err)
	}
	disks := splitPathList(cfg.Property("disk_paths").String())
	if len(disks) == 0 {
		disks = defaultDiskPaths(cfg.StateDir)
	}
	if err := absolutePaths(strings.Join(disks, ",")); err != nil {
		return nil, fmt.Errorf("property disk_paths: %w", err)
	}
	return &getDeviceStats{reader: devstats.NewReader(devstats.Options{
		Root: root, DiskPaths: disks, Statfs: statfs, Logger: cfg.Logger,
	})}, nil
}

// defaultDiskPaths is / and the agent's data directory, which holds the
// processor's state directory at DATA_DIR/state/NAME.
func defaultDiskPaths(stateDir string) []string {
	paths := []string{"/"}
	if stateDir != "" {
		if dataDir := filepath.Dir(filepath.Dir(filepath.Clean(stateDir))); filepath.IsAbs(dataDir) && dataDir != "/" {
			paths = append(paths, dataDir)
		}
	}
	return paths
}

func (p *getDeviceStats) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	stats, err := p.reader.Read()
	now := time.Now()
	if err != nil {
		err = fmt.Errorf("reading device statistics below %s: %w", p.reader.Root(), err)
		pc.Logger().Warn("no device statistics; yielding", "error", err)
		ff := s.Create()
		ff = s.PutAttribute(ff, edgeagent.AttrCaptureTime, sensorTimestamp(now))
		routeToFailure(s, ff, err)
		pc.Yield()
		return nil
	}
	b, err := json.Marshal(stats)
	if err != nil {
		return fmt.Errorf("encoding device statistics: %w", err)
	}
	ff := s.Create()
	attrs := map[string]string{
		edgeagent.AttrMimeType:    "application/json",
		edgeagent.AttrCaptureTime: sensorTimestamp(now),
	}
	if stats.Model != "" {
		attrs[attrDeviceModel] = stats.Model
	}
	ff = s.PutAttributes(ff, attrs)
	ff = s.Write(ff, b)
	s.Transfer(ff, edgeagent.RelSuccess)
	return nil
}

// sensorTimestamp formats an event time for the capture.time attribute.
func sensorTimestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// splitPathList splits a comma-separated list, trimming spaces and dropping
// empty items.
func splitPathList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" && !slices.Contains(out, item) {
			out = append(out, item)
		}
	}
	return out
}

// absolutePath is a PropertySpec.Validate function for an absolute path.
func absolutePath(v string) error {
	if !filepath.IsAbs(v) {
		return fmt.Errorf("%q is not an absolute path", v)
	}
	return nil
}

// absolutePaths is a PropertySpec.Validate function for a comma-separated
// list of absolute paths.
func absolutePaths(v string) error {
	var errs []error
	for _, p := range splitPathList(v) {
		errs = append(errs, absolutePath(p))
	}
	return errors.Join(errs...)
}
