//go:build !onnx

package processors

import "edgeagent.dev"

// ApplyONNXModelSpec returns the spec of ApplyONNXModel. This binary was
// built without the onnx tag: the type is known (flows validate and say
// which tag to build with) but cannot run.
func ApplyONNXModelSpec() edgeagent.ProcessorSpec { return applyONNXModelSpec(nil) }
