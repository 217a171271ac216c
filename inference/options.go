package inference

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// RequiredVersion is the ONNX Runtime version this package is built against
// (github.com/yalue/onnxruntime_go v1.36.0, C API version 29). Later 1.x
// releases work too; earlier ones are refused.
const RequiredVersion = "1.29.0"

// requiredAPI is the ONNX Runtime C API version of RequiredVersion.
const requiredAPI = 29

// LibraryEnv names the environment variable holding the path of the ONNX
// Runtime shared library.
const LibraryEnv = "ONNXRUNTIME_LIB"

// Provider is an ONNX Runtime execution provider.
type Provider string

// Execution providers, in the order a Jetson prefers them.
const (
	ProviderTensorRT Provider = "tensorrt"
	ProviderCUDA     Provider = "cuda"
	ProviderCPU      Provider = "cpu"
)

// ParseProviders parses a comma-separated provider list such as
// "tensorrt,cuda,cpu". Names are case-insensitive; an empty list, an unknown
// name or a repeated one is an error.
func ParseProviders(s string) ([]Provider, error) {
	var out []Provider
	for part := range strings.SplitSeq(s, ",") {
		p := Provider(strings.ToLower(strings.TrimSpace(part)))
		switch p {
		case ProviderTensorRT, ProviderCUDA, ProviderCPU:
		case "":
			continue
		default:
			return nil, fmt.Errorf("unknown execution provider %q (tensorrt, cuda, cpu)", part)
		}
		if slices.Contains(out, p) {
			return nil, fmt.Errorf("execution provider %s is listed twice", p)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("no execution provider listed (tensorrt, cuda, cpu)")
	}
	return out, nil
}

// ProviderError says why an execution provider could not start.
type ProviderError struct {
	Provider Provider `json:"provider"`
	Reason   string   `json:"reason"`
}

// Error renders "tensorrt: reason".
func (e ProviderError) Error() string { return string(e.Provider) + ": " + e.Reason }

// TensorRTOptions configures the TensorRT execution provider.
type TensorRTOptions struct {
	// DeviceID is the GPU to run on.
	DeviceID int
	// FP16 lets TensorRT use half precision where the GPU has it (on by
	// default: DefaultTensorRTOptions).
	FP16 bool
	// INT8 lets TensorRT use 8-bit integers; a model without Q/DQ nodes
	// needs INT8CalibrationTable.
	INT8 bool
	// INT8CalibrationTable is the calibration table: an absolute path, or a
	// name inside EngineCacheDir.
	INT8CalibrationTable string
	// NativeCalibrationTable says the table was written by TensorRT
	// (trtexec) rather than by ONNX Runtime's calibration tool.
	NativeCalibrationTable bool
	// EngineCacheDir keeps built engines (and timing caches) so a restart
	// does not rebuild them; empty disables the cache.
	EngineCacheDir string
	// MaxWorkspaceSize bounds TensorRT's scratch memory in bytes; 0 keeps
	// ONNX Runtime's default (1 GiB).
	MaxWorkspaceSize int64
}

// DefaultTensorRTOptions returns the defaults: device 0, FP16 on.
func DefaultTensorRTOptions() TensorRTOptions { return TensorRTOptions{FP16: true} }

func boolOpt(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// ProviderOptions returns the key/value options ONNX Runtime's
// UpdateTensorRTProviderOptions takes.
func (o TensorRTOptions) ProviderOptions() (map[string]string, error) {
	if o.DeviceID < 0 {
		return nil, fmt.Errorf("tensorrt device id %d is negative", o.DeviceID)
	}
	if o.MaxWorkspaceSize < 0 {
		return nil, fmt.Errorf("tensorrt workspace size %d is negative", o.MaxWorkspaceSize)
	}
	if o.INT8CalibrationTable != "" && !o.INT8 {
		return nil, errors.New("a tensorrt int8 calibration table needs int8 enabled")
	}
	m := map[string]string{
		"device_id":       strconv.Itoa(o.DeviceID),
		"trt_fp16_enable": boolOpt(o.FP16),
		"trt_int8_enable": boolOpt(o.INT8),
	}
	if o.INT8CalibrationTable != "" {
		m["trt_int8_calibration_table_name"] = o.INT8CalibrationTable
		m["trt_int8_use_native_calibration_table"] = boolOpt(o.NativeCalibrationTable)
	}
	if o.EngineCacheDir != "" {
		m["trt_engine_cache_enable"] = "1"
		m["trt_engine_cache_path"] = o.EngineCacheDir
		m["trt_timing_cache_enable"] = "1"
		m["trt_timing_cache_path"] = o.EngineCacheDir
	}
	if o.MaxWorkspaceSize > 0 {
		m["trt_max_workspace_size"] = strconv.FormatInt(o.MaxWorkspaceSize, 10)
	}
	return m, nil
}

// CUDAOptions configures the CUDA execution provider.
type CUDAOptions struct {
	// DeviceID is the GPU to run on.
	DeviceID int
	// MemoryLimit bounds the CUDA memory arena in bytes; 0 means no limit.
	MemoryLimit int64
}

// ProviderOptions returns the key/value options ONNX Runtime's
// UpdateCUDAProviderOptions takes.
func (o CUDAOptions) ProviderOptions() (map[string]string, error) {
	if o.DeviceID < 0 {
		return nil, fmt.Errorf("cuda device id %d is negative", o.DeviceID)
	}
	if o.MemoryLimit < 0 {
		return nil, fmt.Errorf("cuda memory limit %d is negative", o.MemoryLimit)
	}
	m := map[string]string{"device_id": strconv.Itoa(o.DeviceID)}
	if o.MemoryLimit > 0 {
		m["gpu_mem_limit"] = strconv.FormatInt(o.MemoryLimit, 10)
	}
	return m, nil
}

// Options configures how Load creates a model's session.
type Options struct {
	// LibraryPath is the ONNX Runtime shared library; empty: FindLibrary's
	// search.
	LibraryPath string
	// Providers are tried in order; empty means cpu only.
	Providers []Provider
	// TensorRT and CUDA configure those providers.
	TensorRT TensorRTOptions
	CUDA     CUDAOptions
	// IntraOpThreads is the number of threads one run uses on the CPU (0:
	// ONNX Runtime's default, one per core).
	IntraOpThreads int
	// MaxConcurrentRuns bounds the Run calls executing at once on the
	// session; 0 means 1.
	MaxConcurrentRuns int
	// Logger receives provider fallbacks; nil discards them.
	Logger *slog.Logger
}

// LibraryCandidate is a place FindLibrary looks for the ONNX Runtime
// library.
type LibraryCandidate struct {
	Path string
	// Source says where the path came from: config, ONNXRUNTIME_LIB,
	// system or cache.
	Source string
}

// libraryGlobs are the usual locations of libonnxruntime.so: JetPack and
// Debian multiarch directories, /usr/local (the release tarballs and
// source builds), /opt.
var libraryGlobs = []string{
	"/usr/lib/aarch64-linux-gnu/libonnxruntime.so*",
	"/usr/lib/x86_64-linux-gnu/libonnxruntime.so*",
	"/usr/local/lib/libonnxruntime.so*",
	"/usr/lib/libonnxruntime.so*",
	"/opt/onnxruntime/lib/libonnxruntime.so*",
	"/usr/local/onnxruntime/lib/libonnxruntime.so*",
}

// CacheLibrary is where scripts/fetch-onnx.sh puts the library for this
// machine's architecture, relative to the repository root.
var CacheLibrary = filepath.Join(".cache", "onnx", "lib", "linux-"+runtime.GOARCH, "libonnxruntime.so.1")

// FindLibrary lists the ONNX Runtime libraries to try, best first:
// configured (when not empty) and ONNXRUNTIME_LIB are taken as they are
// (a name without a directory is left to the dynamic loader's search), and
// when either is set it is the only candidate; otherwise the existing
// files of the usual system locations (an exact 1.29.0 file first, then
// .so.1, then the rest) and the fetch cache (.cache/onnx in the working
// directory or one of its parents, or beside the executable).
func FindLibrary(configured string) []LibraryCandidate {
	exe, _ := os.Executable()
	wd, _ := os.Getwd()
	return findLibrary(configured, os.Getenv, libraryGlobs, wd, exe)
}

func findLibrary(configured string, getenv func(string) string, globs []string, wd, exe string) []LibraryCandidate {
	if configured != "" {
		return []LibraryCandidate{{Path: configured, Source: "config"}}
	}
	if p := getenv(LibraryEnv); p != "" {
		return []LibraryCandidate{{Path: p, Source: LibraryEnv}}
	}
	var out []LibraryCandidate
	seen := map[string]bool{}
	add := func(p, src string) {
		if seen[p] {
			return
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			seen[p] = true
			out = append(out, LibraryCandidate{Path: p, Source: src})
		}
	}
	for _, g := range globs {
		matches, _ := filepath.Glob(g)
		slices.SortStableFunc(matches, func(a, b string) int { return libraryRank(a) - libraryRank(b) })
		for _, m := range matches {
			add(m, "system")
		}
	}
	for dir := wd; dir != ""; {
		add(filepath.Join(dir, CacheLibrary), "cache")
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	if exe != "" {
		add(filepath.Join(filepath.Dir(exe), CacheLibrary), "cache")
		add(filepath.Join(filepath.Dir(exe), "..", CacheLibrary), "cache")
	}
	return out
}

// libraryRank orders library file names: the exact version, the soname,
// the development link, anything else.
func libraryRank(p string) int {
	switch b := filepath.Base(p); {
	case b == "libonnxruntime.so."+RequiredVersion:
		return 0
	case b == "libonnxruntime.so.1":
		return 1
	case b == "libonnxruntime.so":
		return 2
	default:
		return 3
	}
}

// checkVersion returns an error unless v (as the library reports it,
// "1.29.0") is RequiredVersion or a later 1.x.
func checkVersion(v string) error {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("%w: library reports version %q; edgeagent needs ONNX Runtime %s", ErrRuntimeVersion, v, RequiredVersion)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%w: library reports version %q; edgeagent needs ONNX Runtime %s", ErrRuntimeVersion, v, RequiredVersion)
	}
	if major != 1 || minor < requiredAPI {
		return fmt.Errorf("%w: library is ONNX Runtime %s; edgeagent needs %s (or a later 1.x)", ErrRuntimeVersion, v, RequiredVersion)
	}
	return nil
}
