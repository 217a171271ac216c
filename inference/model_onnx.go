//go:build onnx

package inference

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// The ONNX Runtime environment is process-wide: the first Load opens the
// library, the last Close unloads it.
var runtimeState struct {
	mu      sync.Mutex
	refs    int
	path    string
	version string
}

// notFoundHint is appended to ErrRuntimeNotFound and ErrRuntimeVersion.
const notFoundHint = "set the processor's onnxruntime_lib or " + LibraryEnv + " to libonnxruntime.so of ONNX Runtime " + RequiredVersion +
	" (or a later 1.x); on a development machine `make setup` fetches it into " + ".cache/onnx/lib"

// acquireRuntime loads the ONNX Runtime library (once per process) and
// returns its path and version. Every successful call is paired with
// releaseRuntime.
func acquireRuntime(configured string) (string, string, error) {
	rs := &runtimeState
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.refs > 0 {
		if configured != "" && configured != rs.path {
			return "", "", fmt.Errorf("%w: ONNX Runtime is already loaded from %s; one process uses one library, not also %s", ErrRuntimeVersion, rs.path, configured)
		}
		rs.refs++
		return rs.path, rs.version, nil
	}
	cands := FindLibrary(configured)
	if len(cands) == 0 {
		return "", "", fmt.Errorf("%w: looked in %s and .cache/onnx: %s", ErrRuntimeNotFound, strings.Join(libraryGlobs, ", "), notFoundHint)
	}
	var reasons []string
	var sentinel error = ErrRuntimeNotFound
	for _, c := range cands {
		// A bare name ("libonnxruntime.so.1") is left to dlopen's search
		// (LD_LIBRARY_PATH, ld.so.cache).
		if _, err := os.Stat(c.Path); err != nil && strings.Contains(c.Path, "/") {
			reasons = append(reasons, fmt.Sprintf("%s (%s): %v", c.Path, c.Source, err))
			continue
		}
		ort.SetSharedLibraryPath(c.Path)
		if err := ort.InitializeEnvironment(); err != nil {
			if strings.Contains(err.Error(), "ORT API base") {
				// The library has no C API of our version: it is older.
				sentinel = ErrRuntimeVersion
				reasons = append(reasons, fmt.Sprintf("%s (%s): older than ONNX Runtime %s (no C API version %d)", c.Path, c.Source, RequiredVersion, requiredAPI))
			} else {
				reasons = append(reasons, fmt.Sprintf("%s (%s): %v", c.Path, c.Source, err))
			}
			continue
		}
		v := ort.GetVersion()
		if err := checkVersion(v); err != nil {
			_ = ort.DestroyEnvironment()
			sentinel = ErrRuntimeVersion
			reasons = append(reasons, fmt.Sprintf("%s (%s): %v", c.Path, c.Source, err))
			continue
		}
		rs.refs, rs.path, rs.version = 1, c.Path, v
		return c.Path, v, nil
	}
	return "", "", fmt.Errorf("%w: %s; %s", sentinel, strings.Join(reasons, "; "), notFoundHint)
}

func releaseRuntime() {
	rs := &runtimeState
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.refs--; rs.refs == 0 {
		_ = ort.DestroyEnvironment()
		rs.path, rs.version = "", ""
	}
}

// Model is an ONNX model loaded into an ONNX Runtime session. Run is safe
// for concurrent use; at most Options.MaxConcurrentRuns runs execute at
// once. Close releases the session (and the runtime with the last model).
type Model struct {
	info ModelInfo
	sem  chan struct{}

	mu   sync.RWMutex // Run holds it shared, Close exclusively
	sess *ort.DynamicAdvancedSession
}

var _ Runner = (*Model)(nil)

// Load reads the model file, computes its sha256, loads ONNX Runtime,
// reads the model's inputs and outputs and creates its session on the
// first of opts.Providers that starts (logging why the others did not).
func Load(path string, opts Options) (*Model, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading model %s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	libPath, version, err := acquireRuntime(opts.LibraryPath)
	if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", path, err)
	}
	m := &Model{info: ModelInfo{Path: path, SHA256: hex.EncodeToString(sum[:]), RuntimeVersion: version}}
	ok := false
	defer func() {
		if !ok {
			releaseRuntime()
		}
	}()
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("reading model %s: %w", path, err)
	}
	m.info.Inputs, m.info.Outputs = tensorInfos(ins), tensorInfos(outs)
	if len(ins) == 0 || len(outs) == 0 {
		return nil, fmt.Errorf("reading model %s: %w: it has %d inputs and %d outputs", path, ErrModelOutput, len(ins), len(outs))
	}
	for _, in := range m.info.Inputs {
		if in.Type != "float" && in.Type != "uint8" {
			return nil, fmt.Errorf("reading model %s: %w: input %s is %s; float and uint8 inputs are supported", path, ErrInputShape, in.Name, in.Type)
		}
	}
	providers := opts.Providers
	if len(providers) == 0 {
		providers = []Provider{ProviderCPU}
	}
	for _, p := range providers {
		sess, err := newSession(data, m.info, p, opts)
		if err != nil {
			reason := ortReason(err)
			m.info.Skipped = append(m.info.Skipped, ProviderError{Provider: p, Reason: reason})
			log.Warn("execution provider cannot start; trying the next one", "model", path, "provider", p, "reason", reason)
			continue
		}
		m.sess, m.info.Provider = sess, p
		break
	}
	if m.sess == nil {
		var reasons []string
		for _, s := range m.info.Skipped {
			reasons = append(reasons, s.Error())
		}
		return nil, fmt.Errorf("loading model %s: %w: %s", path, ErrNoProvider, strings.Join(reasons, "; "))
	}
	n := max(opts.MaxConcurrentRuns, 1)
	m.sem = make(chan struct{}, n)
	log.Info("model loaded", "model", path, "sha256", m.info.SHA256, "provider", m.info.Provider,
		"onnxruntime", version, "library", libPath, "inputs", fmt.Sprint(m.info.Inputs), "outputs", fmt.Sprint(m.info.Outputs))
	ok = true
	return m, nil
}

// ortReason shortens an ONNX Runtime error to its message: "/src/x.cc:12
// f() [ONNXRuntimeError] : 1 : FAIL : Failed to load ..." keeps the part
// after "FAIL : ".
func ortReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "[ONNXRuntimeError] : "); i >= 0 {
		head, tail := msg[:i], msg[i+len("[ONNXRuntimeError] : "):]
		if j := strings.Index(tail, " : "); j >= 0 {
			tail = tail[j+3:]
		}
		if k := strings.Index(tail, " : "); k >= 0 && k < 16 {
			tail = tail[k+3:]
		}
		// Keep our own context ("setting tensorrt options: ").
		if c := strings.Index(head, ": "); c >= 0 && !strings.Contains(head[:c], "/") {
			return head[:c+2] + tail
		}
		return tail
	}
	return msg
}

func tensorInfos(in []ort.InputOutputInfo) []TensorInfo {
	out := make([]TensorInfo, len(in))
	for i, t := range in {
		out[i] = TensorInfo{Name: t.Name, Shape: append([]int64(nil), t.Dimensions...), Type: strings.TrimPrefix(strings.ToLower(t.DataType.String()), "onnx_tensor_element_data_type_")}
		for k, d := range out[i].Shape {
			if d <= 0 {
				out[i].Shape[k] = -1
			}
		}
	}
	return out
}

func names(ts []TensorInfo) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

// newSession creates a session on one provider.
func newSession(data []byte, info ModelInfo, p Provider, opts Options) (*ort.DynamicAdvancedSession, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	defer so.Destroy()
	if opts.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(opts.IntraOpThreads); err != nil {
			return nil, fmt.Errorf("setting intra-op threads: %w", err)
		}
	}
	switch p {
	case ProviderTensorRT:
		if err := appendTensorRT(so, opts.TensorRT); err != nil {
			return nil, err
		}
		// Nodes TensorRT does not take run on CUDA rather than the CPU when
		// CUDA is there.
		_ = appendCUDA(so, CUDAOptions{DeviceID: opts.TensorRT.DeviceID})
	case ProviderCUDA:
		if err := appendCUDA(so, opts.CUDA); err != nil {
			return nil, err
		}
	case ProviderCPU:
	default:
		return nil, fmt.Errorf("unknown execution provider %q", p)
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, names(info.Inputs), names(info.Outputs), so)
	if err != nil {
		return nil, fmt.Errorf("creating session: %w", err)
	}
	return sess, nil
}

func appendTensorRT(so *ort.SessionOptions, o TensorRTOptions) error {
	kv, err := o.ProviderOptions()
	if err != nil {
		return err
	}
	if o.EngineCacheDir != "" {
		if err := os.MkdirAll(o.EngineCacheDir, 0o750); err != nil {
			return fmt.Errorf("creating the tensorrt engine cache: %w", err)
		}
	}
	trt, err := ort.NewTensorRTProviderOptions()
	if err != nil {
		return fmt.Errorf("creating tensorrt options: %w", err)
	}
	defer trt.Destroy()
	if err := trt.Update(kv); err != nil {
		return fmt.Errorf("setting tensorrt options: %w", err)
	}
	if err := so.AppendExecutionProviderTensorRT(trt); err != nil {
		return fmt.Errorf("adding the tensorrt provider: %w", err)
	}
	return nil
}

func appendCUDA(so *ort.SessionOptions, o CUDAOptions) error {
	kv, err := o.ProviderOptions()
	if err != nil {
		return err
	}
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("creating cuda options: %w", err)
	}
	defer cuda.Destroy()
	if err := cuda.Update(kv); err != nil {
		return fmt.Errorf("setting cuda options: %w", err)
	}
	if err := so.AppendExecutionProviderCUDA(cuda); err != nil {
		return fmt.Errorf("adding the cuda provider: %w", err)
	}
	return nil
}

// Info describes the model and the provider it runs on.
func (m *Model) Info() *ModelInfo { return &m.info }

// Run feeds inputs to the model and returns its outputs. It waits for a
// free run slot (or ctx), and a cancelled ctx terminates a run in progress.
func (m *Model) Run(ctx context.Context, inputs []Tensor) ([]Tensor, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.sess == nil {
		return nil, ErrClosed
	}
	if len(inputs) != len(m.info.Inputs) {
		return nil, fmt.Errorf("%w: %s takes %d inputs, got %d", ErrInputShape, m.info.Path, len(m.info.Inputs), len(inputs))
	}
	values := make([]ort.Value, len(inputs))
	defer func() {
		for _, v := range values {
			if v != nil {
				_ = v.Destroy()
			}
		}
	}()
	for i, in := range inputs {
		if err := m.info.Inputs[i].Fits(in.Shape); err != nil {
			return nil, err
		}
		if len(in.Data) != Elements(in.Shape) {
			return nil, fmt.Errorf("%w: input %s has %d values for shape %s", ErrInputShape, m.info.Inputs[i].Name, len(in.Data), ShapeString(in.Shape))
		}
		v, err := newInput(m.info.Inputs[i].Type, in)
		if err != nil {
			return nil, err
		}
		values[i] = v
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-m.sem }()
	ro, err := ort.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("creating run options: %w", err)
	}
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		_ = ro.Terminate()
	})
	outs := make([]ort.Value, len(m.info.Outputs))
	runErr := m.sess.RunWithOptions(values, outs, ro)
	if !stop() {
		<-done
	}
	_ = ro.Destroy()
	defer func() {
		for _, v := range outs {
			if v != nil {
				_ = v.Destroy()
			}
		}
	}()
	if runErr != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("running %s: %w", m.info.Path, ctx.Err())
		}
		return nil, fmt.Errorf("running %s: %w", m.info.Path, runErr)
	}
	result := make([]Tensor, len(outs))
	for i, v := range outs {
		t, err := toTensor(v)
		if err != nil {
			return nil, fmt.Errorf("reading output %s: %w", m.info.Outputs[i].Name, err)
		}
		t.Name = m.info.Outputs[i].Name
		result[i] = t
	}
	return result, nil
}

func newInput(typ string, in Tensor) (ort.Value, error) {
	shape := ort.NewShape(in.Shape...)
	switch typ {
	case "float":
		return ort.NewTensor(shape, in.Data)
	case "uint8":
		b := make([]uint8, len(in.Data))
		for i, v := range in.Data {
			b[i] = uint8(max(0, min(255, v+0.5)))
		}
		return ort.NewTensor(shape, b)
	}
	return nil, fmt.Errorf("%w: %s inputs are not supported", ErrInputShape, typ)
}

func convert[T float64 | int64 | int32 | uint8 | int8](d []T) []float32 {
	out := make([]float32, len(d))
	for i, v := range d {
		out[i] = float32(v)
	}
	return out
}

func toTensor(v ort.Value) (Tensor, error) {
	t := Tensor{Shape: append([]int64(nil), v.GetShape()...)}
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		d := x.GetData()
		t.Data = getFloats(len(d)) // a pipeline may give it back once read
		copy(t.Data, d)
	case *ort.Tensor[float64]:
		t.Data = convert(x.GetData())
	case *ort.Tensor[int64]:
		t.Data = convert(x.GetData())
	case *ort.Tensor[int32]:
		t.Data = convert(x.GetData())
	case *ort.Tensor[uint8]:
		t.Data = convert(x.GetData())
	case *ort.Tensor[int8]:
		t.Data = convert(x.GetData())
	default:
		return t, fmt.Errorf("%w: an output of ONNX type %v is not a numeric tensor", ErrModelOutput, v.GetONNXType())
	}
	return t, nil
}

// Close releases the session, waiting for runs in progress. It is
// idempotent.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess == nil {
		return nil
	}
	err := m.sess.Destroy()
	m.sess = nil
	releaseRuntime()
	if err != nil {
		return fmt.Errorf("closing model %s: %w", m.info.Path, err)
	}
	return nil
}

// RuntimeVersion returns the version of the loaded ONNX Runtime library,
// or "" when none is loaded.
func RuntimeVersion() string {
	runtimeState.mu.Lock()
	defer runtimeState.mu.Unlock()
	return runtimeState.version
}
