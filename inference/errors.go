package inference

import "errors"

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrRuntimeNotFound is returned when no ONNX Runtime shared library is
	// found in the configured path, ONNXRUNTIME_LIB or the usual locations.
	ErrRuntimeNotFound = errors.New("onnx runtime library not found")
	// ErrRuntimeVersion is returned when the ONNX Runtime library found is
	// older than RequiredVersion, or another library is already loaded.
	ErrRuntimeVersion = errors.New("onnx runtime library version mismatch")
	// ErrNoProvider is returned when none of the configured execution
	// providers can start a session for the model.
	ErrNoProvider = errors.New("no execution provider could start")
	// ErrInputShape is returned when an input tensor does not fit the shape
	// or the number of inputs the model declares.
	ErrInputShape = errors.New("input does not fit the model")
	// ErrDecodeImage is returned when content is not a JPEG, a PNG or a raw
	// BGR frame of the stated size.
	ErrDecodeImage = errors.New("cannot decode image")
	// ErrModelOutput is returned when a model's outputs do not have the
	// layout the post-processing expects.
	ErrModelOutput = errors.New("unexpected model output")
	// ErrClosed is returned by Run on a closed Model.
	ErrClosed = errors.New("model is closed")
)
