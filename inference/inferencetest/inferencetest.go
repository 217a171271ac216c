// Package inferencetest finds what tests of the inference code need: the
// ONNX Runtime library and the PP-OCRv4 models fetched by
// scripts/fetch-onnx.sh (`make setup`) into .cache/onnx, and the small
// models of inference/testdata. When something is missing the test fails
// and says how to get it; it is never skipped.
package inferencetest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// setupHint is how a developer gets what is missing.
const setupHint = "run `make setup` (scripts/fetch-onnx.sh fetches ONNX Runtime 1.29.0 and the PP-OCRv4 models into .cache/onnx)"

// RepoRoot returns the repository root: the first directory holding go.mod
// above the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func mustExist(t testing.TB, path, what string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing (%v): %s", what, err, setupHint)
	}
	return path
}

// Library returns the ONNX Runtime library: ONNXRUNTIME_LIB when set, else
// the fetch cache's library for this architecture.
func Library(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ONNXRUNTIME_LIB"); p != "" {
		return mustExist(t, p, "ONNXRUNTIME_LIB ("+p+")")
	}
	p := filepath.Join(RepoRoot(t), ".cache", "onnx", "lib", "linux-"+runtime.GOARCH, "libonnxruntime.so.1")
	return mustExist(t, p, "the ONNX Runtime library")
}

// PPOCR returns the PP-OCRv4 detection model, recognition model and keys
// file.
func PPOCR(t testing.TB) (det, rec, keys string) {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), ".cache", "onnx", "models")
	det = mustExist(t, filepath.Join(dir, "ch_PP-OCRv4_det_infer.onnx"), "the PP-OCRv4 detection model")
	rec = mustExist(t, filepath.Join(dir, "ch_PP-OCRv4_rec_infer.onnx"), "the PP-OCRv4 recognition model")
	keys = mustExist(t, filepath.Join(dir, "ppocr_keys_v1.txt"), "the PP-OCR keys file")
	return det, rec, keys
}

// Testdata returns the path of a file in inference/testdata (the models
// scripts/gen-test-models.py generates).
func Testdata(t testing.TB, name string) string {
	t.Helper()
	return mustExist(t, filepath.Join(RepoRoot(t), "inference", "testdata", name), "inference/testdata/"+name+" (scripts/gen-test-models.py makes it)")
}
