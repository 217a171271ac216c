package inference

import (
	"fmt"
	"strconv"
	"strings"
)

// Tensor is a dense tensor of float32 values in row-major order. Model
// outputs of other numeric types (int64 class IDs, for example) are
// converted to float32.
type Tensor struct {
	Name  string    `json:"name,omitempty"`
	Shape []int64   `json:"shape"`
	Data  []float32 `json:"data"`
}

// NewTensor returns a zeroed tensor of the given shape.
func NewTensor(name string, shape ...int64) Tensor {
	return Tensor{Name: name, Shape: shape, Data: make([]float32, Elements(shape))}
}

// Elements returns the number of elements of a shape (1 for a scalar).
func Elements(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// ShapeString renders a shape as [1 3 640 640], with ? for dynamic
// dimensions.
func ShapeString(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		if d < 0 {
			parts[i] = "?"
		} else {
			parts[i] = strconv.FormatInt(d, 10)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TensorInfo describes one input or output of a model.
type TensorInfo struct {
	Name string `json:"name"`
	// Shape holds the declared dimensions; -1 marks a dynamic one.
	Shape []int64 `json:"shape"`
	// Type is the element type as ONNX names it: float, uint8, int64 ...
	Type string `json:"type"`
}

// String renders the info as name float[1 3 ? ?].
func (i TensorInfo) String() string { return i.Name + " " + i.Type + ShapeString(i.Shape) }

// Fits reports whether shape matches the declared one: the same rank, and
// equal dimensions wherever the declared one is fixed.
func (i TensorInfo) Fits(shape []int64) error {
	if len(shape) != len(i.Shape) {
		return fmt.Errorf("%w: input %s wants rank %d %s, got %s", ErrInputShape, i.Name, len(i.Shape), ShapeString(i.Shape), ShapeString(shape))
	}
	for k, d := range i.Shape {
		if shape[k] <= 0 || (d > 0 && shape[k] != d) {
			return fmt.Errorf("%w: input %s wants %s, got %s", ErrInputShape, i.Name, ShapeString(i.Shape), ShapeString(shape))
		}
	}
	return nil
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	// Path is the model file.
	Path string `json:"path"`
	// SHA256 is the hex sha256 of the model file's bytes, as loaded.
	SHA256 string `json:"sha256"`
	// Inputs and Outputs are in the model's order.
	Inputs  []TensorInfo `json:"inputs"`
	Outputs []TensorInfo `json:"outputs"`
	// Provider is the execution provider the session runs on: tensorrt,
	// cuda or cpu.
	Provider Provider `json:"provider"`
	// Skipped lists the providers tried before Provider, with the reason
	// each could not start.
	Skipped []ProviderError `json:"skipped,omitempty"`
	// RuntimeVersion is the ONNX Runtime library's version.
	RuntimeVersion string `json:"runtime_version"`
}

// Output returns the output with that name.
func (m *ModelInfo) Output(name string) (TensorInfo, bool) {
	for _, o := range m.Outputs {
		if o.Name == name {
			return o, true
		}
	}
	return TensorInfo{}, false
}
