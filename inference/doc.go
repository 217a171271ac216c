// Package inference runs ONNX models next to the camera: it loads a model
// into ONNX Runtime with the first execution provider that starts (TensorRT,
// CUDA, CPU), turns images into input tensors and turns output tensors into
// results (classes, boxes, text).
//
// The package is split by what a build needs:
//
//   - Pure Go, always built (CGO_ENABLED=0 included): tensors, provider
//     options, library lookup, image decoding and resizing (image/jpeg,
//     image/png and a bilinear resize), pre-processing (resize or letterbox,
//     BGR/RGB, mean/std, NCHW float32, batches) and every post-processing
//     step (softmax and top-k, YOLOv5/YOLOv8/SSD decoding, class-aware NMS,
//     DB text detection, CTC decoding), and Pipeline, which ties them to any
//     Runner.
//   - Build tag onnx (cgo, github.com/yalue/onnxruntime_go): Model, a Runner
//     on an ONNX Runtime session. The runtime is the shared library
//     libonnxruntime.so of version RequiredVersion, found by FindLibrary.
//   - Build tag gocv (cgo, gocv.io/x/gocv, OpenCV 4.6): image decoding,
//     resizing, cropping and drawing go through OpenCV instead of the pure Go
//     code (faster, and annotations get text labels).
//
// Concurrency: a Model holds one session shared by all callers. ONNX Runtime
// allows concurrent Run calls on a session; Model bounds them with a
// semaphore of Options.MaxConcurrentRuns (1 by default, so intra-op threads
// are not oversubscribed). Pipeline and the post-processing functions keep no
// mutable state and are safe for concurrent use.
package inference
