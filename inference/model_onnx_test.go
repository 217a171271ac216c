//go:build onnx

package inference_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/inference"
	"edgeagent.dev/inference/inferencetest"
)

// load loads a testdata model on the CPU and closes it with the test.
func load(t *testing.T, name string, opts inference.Options) *inference.Model {
	t.Helper()
	opts.LibraryPath = inferencetest.Library(t)
	m, err := inference.Load(inferencetest.Testdata(t, name), opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	return m
}

func TestLoadReadsModelInfo(t *testing.T) {
	m := load(t, "classifier.onnx", inference.Options{})
	data, err := os.ReadFile(inferencetest.Testdata(t, "classifier.onnx"))
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	info := m.Info()
	require.Equal(t, hex.EncodeToString(sum[:]), info.SHA256)
	require.Equal(t, []inference.TensorInfo{{Name: "images", Shape: []int64{-1, 3, 8, 8}, Type: "float"}}, info.Inputs)
	require.Equal(t, []inference.TensorInfo{{Name: "logits", Shape: []int64{-1, 4}, Type: "float"}}, info.Outputs)
	require.Equal(t, inference.ProviderCPU, info.Provider)
	require.Empty(t, info.Skipped)
	require.Equal(t, inference.RequiredVersion, info.RuntimeVersion)
	require.Equal(t, inference.RequiredVersion, inference.RuntimeVersion())
}

func TestProviderFallbackToCPU(t *testing.T) {
	var logs bytes.Buffer
	m := load(t, "classifier.onnx", inference.Options{
		Providers: []inference.Provider{inference.ProviderTensorRT, inference.ProviderCUDA, inference.ProviderCPU},
		TensorRT:  inference.TensorRTOptions{FP16: true, EngineCacheDir: filepath.Join(t.TempDir(), "trt")},
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
	})
	info := m.Info()
	require.Equal(t, inference.ProviderCPU, info.Provider)
	require.Len(t, info.Skipped, 2)
	require.Equal(t, inference.ProviderTensorRT, info.Skipped[0].Provider)
	require.Equal(t, inference.ProviderCUDA, info.Skipped[1].Provider)
	for _, s := range info.Skipped {
		require.NotEmpty(t, s.Reason)
		require.NotContains(t, s.Reason, "[ONNXRuntimeError]", "the runtime's source location is cut")
		require.Contains(t, logs.String(), "provider="+string(s.Provider))
	}
	t.Logf("skipped: %v", info.Skipped)
	// It runs.
	out, err := m.Run(context.Background(), []inference.Tensor{inference.NewTensor("images", 1, 3, 8, 8)})
	require.NoError(t, err)
	require.Equal(t, []int64{1, 4}, out[0].Shape)
	require.Equal(t, []float32{0, 0, 0, 5}, out[0].Data)
}

func TestNoProviderStarts(t *testing.T) {
	_, err := inference.Load(inferencetest.Testdata(t, "classifier.onnx"), inference.Options{
		LibraryPath: inferencetest.Library(t),
		Providers:   []inference.Provider{inference.ProviderTensorRT, inference.ProviderCUDA},
	})
	require.ErrorIs(t, err, inference.ErrNoProvider)
	require.ErrorContains(t, err, "tensorrt: ")
	require.ErrorContains(t, err, "cuda: ")
	require.Empty(t, inference.RuntimeVersion(), "the runtime is released after a failed load")
}

func TestLoadErrors(t *testing.T) {
	lib := inferencetest.Library(t)
	t.Run("missing library", func(t *testing.T) {
		_, err := inference.Load(inferencetest.Testdata(t, "classifier.onnx"), inference.Options{LibraryPath: "/nonexistent/libonnxruntime.so.1"})
		require.ErrorIs(t, err, inference.ErrRuntimeNotFound)
		require.ErrorContains(t, err, "/nonexistent/libonnxruntime.so.1")
		require.ErrorContains(t, err, "1.29.0")
		require.ErrorContains(t, err, "make setup")
	})
	t.Run("not onnx runtime", func(t *testing.T) {
		libc, err := filepath.Glob("/usr/lib/*-linux-gnu/libz.so.1")
		require.NoError(t, err)
		require.NotEmpty(t, libc)
		_, err = inference.Load(inferencetest.Testdata(t, "classifier.onnx"), inference.Options{LibraryPath: libc[0]})
		require.ErrorIs(t, err, inference.ErrRuntimeNotFound)
		require.ErrorContains(t, err, "OrtGetApiBase")
	})
	t.Run("missing model", func(t *testing.T) {
		_, err := inference.Load(filepath.Join(t.TempDir(), "none.onnx"), inference.Options{LibraryPath: lib})
		require.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("not a model", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "bad.onnx")
		require.NoError(t, os.WriteFile(p, []byte("this is not a protobuf"), 0o600))
		_, err := inference.Load(p, inference.Options{LibraryPath: lib})
		require.ErrorContains(t, err, "reading model")
		require.Empty(t, inference.RuntimeVersion())
	})
}

func TestRunChecksInputs(t *testing.T) {
	m := load(t, "classifier.onnx", inference.Options{})
	ctx := context.Background()
	for _, in := range [][]inference.Tensor{
		{inference.NewTensor("images", 1, 3, 16, 16)},
		{inference.NewTensor("images", 1, 8, 8)},
		{{Name: "images", Shape: []int64{1, 3, 8, 8}, Data: make([]float32, 5)}},
		{},
		{inference.NewTensor("images", 1, 3, 8, 8), inference.NewTensor("images", 1, 3, 8, 8)},
	} {
		_, err := m.Run(ctx, in)
		require.ErrorIs(t, err, inference.ErrInputShape)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := m.Run(cancelled, []inference.Tensor{inference.NewTensor("images", 1, 3, 8, 8)})
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, m.Close())
	_, err = m.Run(ctx, []inference.Tensor{inference.NewTensor("images", 1, 3, 8, 8)})
	require.ErrorIs(t, err, inference.ErrClosed)
}

func TestModelConcurrentRuns(t *testing.T) {
	m := load(t, "classifier.onnx", inference.Options{MaxConcurrentRuns: 2, IntraOpThreads: 1})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			in := inference.NewTensor("images", 2, 3, 8, 8)
			for i := range 64 { // image 0 all R = g, image 1 all B = 1
				in.Data[i] = float32(g)
				in.Data[3*64+2*64+i] = 1
			}
			for range 20 {
				out, err := m.Run(context.Background(), []inference.Tensor{in})
				if err != nil {
					errs <- err
					return
				}
				want := []float32{10 * float32(g), -10 * float32(g), -10 * float32(g), 5 - 10*float32(g), -10, -10, 10, -5}
				if !equalApprox(out[0].Data, want) {
					errs <- &mismatch{got: out[0].Data, want: want}
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestLoadLibraryByName(t *testing.T) {
	// A bare name goes to the dynamic loader's search; its error names the
	// library and the version needed.
	_, err := inference.Load(inferencetest.Testdata(t, "classifier.onnx"), inference.Options{LibraryPath: "libonnxruntime-not-there.so.1"})
	require.ErrorIs(t, err, inference.ErrRuntimeNotFound)
	require.ErrorContains(t, err, "libonnxruntime-not-there.so.1: cannot open shared object file")
	require.ErrorContains(t, err, "1.29.0")
}
