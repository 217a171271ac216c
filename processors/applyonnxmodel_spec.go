package processors

import (
	"fmt"
	"strings"

	"edgeagent.dev"
	"edgeagent.dev/inference"
)

// RelAnnotated carries ApplyONNXModel's annotated images.
var RelAnnotated = edgeagent.Relationship{Name: "annotated", Description: "With annotate, a JPEG copy of each input image with the results drawn on it (a child of the input)."}

// Attributes ApplyONNXModel writes.
const (
	AttrInferenceModel    = "inference.model"        // the model file
	AttrInferenceSHA256   = "inference.model.sha256" // the model file's sha256
	AttrInferenceProvider = "inference.provider"     // tensorrt, cuda or cpu
	AttrInferenceLatency  = "inference.latency_ms"   // time for the batch holding the flowfile
	AttrInferenceTask     = "inference.task"         // the postprocess kind
)

func onnxTasks() []string {
	out := make([]string, len(inference.Tasks))
	for i, t := range inference.Tasks {
		out[i] = string(t)
	}
	return out
}

func validateProviders(v string) error {
	_, err := inference.ParseProviders(v)
	return err
}

func validateInputSize(v string) error {
	_, _, err := inference.ParseSize(v)
	return err
}

func validateTriple(v string) error {
	_, err := inference.ParseTriple(v)
	return err
}

func validateFraction(v string) error {
	var f float64
	if _, err := fmt.Sscan(v, &f); err != nil || f < 0 || f > 1 {
		return fmt.Errorf("%q is not a number from 0 to 1", v)
	}
	return nil
}

// applyONNXModelSpec returns ApplyONNXModel's spec with the constructor
// newFn (nil in a build without the onnx tag).
func applyONNXModelSpec(newFn func(*edgeagent.ProcessorConfig) (edgeagent.Processor, error)) edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "ApplyONNXModel",
		Summary: "Runs an ONNX model on images (ONNX Runtime on TensorRT, CUDA or the CPU) and writes the results as JSON and/or attributes.",
		Description: "Each flowfile holds a JPEG or PNG image, or a raw BGR frame whose size is in the width and height " +
			"attributes. Up to batch_size images are decoded, fitted to the model's input (resize or letterbox, colour " +
			"order, scale, mean, std; NCHW float32) and run together; postprocess turns the outputs into classes " +
			"(classification: softmax, top_k, labels), boxes (yolov5, yolov8, ssd: confidence, class-aware NMS at iou, " +
			"boxes in the source image's pixels), text (ppocr: PP-OCR DB detection with model, then CTC recognition with " +
			"ppocr_rec_model and ppocr_keys) or the raw output tensors. With output json the content becomes a JSON " +
			"document {model, sha256, provider, latency_ms, capture_time, result} (mime.type application/json, the " +
			"filename's extension becomes .json); with attributes the content is kept and the results go to attributes " +
			"(inference.class, inference.class.score, inference.detections, inference.labels, inference.text, " +
			"inference.texts); both does both. Every result has inference.model, inference.model.sha256, " +
			"inference.provider, inference.latency_ms and inference.task, keeps capture.time, and gets a provenance " +
			"event naming the model, its sha256 and the provider. With annotate, a JPEG with the results drawn goes to " +
			"annotated. The model is loaded once in Start, its session shared by the processor's tasks; providers are " +
			"tried in order and the ones that cannot start are logged. An image that does not decode, or a batch the " +
			"model rejects, goes to failure with error.message.",
		Input: edgeagent.InputRequired,
		Properties: []edgeagent.PropertySpec{
			{Name: "model", Description: "Path of the .onnx model (for ppocr: the text detection model).", Required: true, Kind: edgeagent.KindString},
			{Name: "postprocess", Description: "What the outputs are: " + strings.Join(onnxTasks(), ", ") + ".", Required: true, Kind: edgeagent.KindEnum, Allowed: onnxTasks()},
			{Name: "labels", Description: "A labels file: one class name per line, line N naming class N-1.", Kind: edgeagent.KindString},
			{Name: "providers", Description: "Execution providers to try in order: tensorrt, cuda, cpu.", Kind: edgeagent.KindString, Default: "tensorrt,cuda,cpu", Validate: validateProviders},
			{Name: "input_size", Description: "The model's input as WIDTHxHEIGHT (640x640); needed when the model's input size is dynamic (ppocr fits the image instead).", Kind: edgeagent.KindString, Validate: validateInputSize},
			{Name: "resize_mode", Description: "resize (stretch to the input size) or letterbox (keep the aspect ratio, pad with grey); default letterbox for yolov5 and yolov8, resize otherwise.", Kind: edgeagent.KindEnum, Allowed: []string{string(inference.ResizeStretch), string(inference.ResizeLetterbox)}},
			{Name: "color_order", Description: "Channel order of the input tensor: rgb or bgr (default rgb; bgr for ppocr).", Kind: edgeagent.KindEnum, Allowed: []string{string(inference.RGB), string(inference.BGR)}},
			{Name: "scale", Description: "Pixel values are multiplied by scale before mean and std (default 1/255).", Kind: edgeagent.KindFloat},
			{Name: "mean", Description: "Subtracted after scaling, per channel in color_order: one number or three (0.485,0.456,0.406); default 0 (ppocr: ImageNet's).", Kind: edgeagent.KindString, Validate: validateTriple},
			{Name: "std", Description: "Divides after the mean, per channel: one number or three; default 1 (ppocr: ImageNet's).", Kind: edgeagent.KindString, Validate: validateTriple},
			{Name: "confidence", Description: "Lowest score kept: a detection's score, a class's probability, a recognised text's score (default 0.25 for detection, 0 for classification, 0.5 for ppocr).", Kind: edgeagent.KindFloat, Validate: validateFraction},
			{Name: "iou", Description: "Overlap (intersection over union) above which NMS drops the weaker of two boxes of a class.", Kind: edgeagent.KindFloat, Default: "0.45", Validate: validateFraction},
			{Name: "top_k", Description: "Classes reported (classification, default 5), or most detections kept per image (default 300).", Kind: edgeagent.KindInt, Validate: atLeast(1)},
			{Name: "class_offset", Description: "Added to class numbers before looking up labels (-1 for 1-based COCO IDs against a 0-based labels file).", Kind: edgeagent.KindInt, Default: "0"},
			{Name: "ssd_box_format", Description: "ssd: the order of box coordinates, yxyx (TensorFlow) or xyxy.", Kind: edgeagent.KindEnum, Allowed: []string{"yxyx", "xyxy"}, Default: "yxyx"},
			{Name: "ssd_normalized", Description: "ssd: whether box coordinates are fractions of the input size: auto, true or false.", Kind: edgeagent.KindEnum, Allowed: []string{"auto", "true", "false"}, Default: "auto"},
			{Name: "ssd_background_class", Description: "ssd with one score per class: the background class skipped when picking a box's class; -1 for none.", Kind: edgeagent.KindInt, Default: "-1"},
			{Name: "ppocr_rec_model", Description: "ppocr: the text recognition model; without it only boxes are found.", Kind: edgeagent.KindString},
			{Name: "ppocr_keys", Description: "ppocr: the recognition model's keys file (ppocr_keys_v1.txt).", Kind: edgeagent.KindString},
			{Name: "ppocr_det_limit_side", Description: "ppocr: the longer side of the detection input, at most (when input_size is not set).", Kind: edgeagent.KindInt, Default: "960", Validate: atLeast(32)},
			{Name: "ppocr_box_thresh", Description: "ppocr: the lowest mean probability of a text box.", Kind: edgeagent.KindFloat, Default: "0.6", Validate: validateFraction},
			{Name: "ppocr_unclip_ratio", Description: "ppocr: how much text boxes are grown.", Kind: edgeagent.KindFloat, Default: "1.5"},
			{Name: "batch_size", Description: "Flowfiles taken per trigger and run through the model together (one by one when the model's batch size is fixed at 1).", Kind: edgeagent.KindInt, Default: "1", Validate: atLeast(1)},
			{Name: "output", Description: "json (the content becomes the results), attributes (the content is kept), or both.", Kind: edgeagent.KindEnum, Allowed: []string{"json", "attributes", "both"}, Default: "json"},
			{Name: "annotate", Description: "Whether to send a JPEG of each image with the results drawn on it to annotated.", Kind: edgeagent.KindBool, Default: "false"},
			{Name: "device_id", Description: "The GPU TensorRT and CUDA run on.", Kind: edgeagent.KindInt, Default: "0", Validate: atLeast(0)},
			{Name: "trt_fp16", Description: "TensorRT: allow half precision.", Kind: edgeagent.KindBool, Default: "true"},
			{Name: "trt_int8", Description: "TensorRT: allow 8-bit integers (a model without Q/DQ nodes needs trt_int8_calibration_table).", Kind: edgeagent.KindBool, Default: "false"},
			{Name: "trt_int8_calibration_table", Description: "TensorRT: the INT8 calibration table (an absolute path, or a name in trt_engine_cache_dir).", Kind: edgeagent.KindString},
			{Name: "trt_engine_cache_dir", Description: "TensorRT: where built engines are kept so a restart does not rebuild them (default: the processor's state directory); \"none\" disables the cache.", Kind: edgeagent.KindString},
			{Name: "trt_max_workspace_size", Description: "TensorRT: scratch memory limit (e.g. 1GiB); default ONNX Runtime's.", Kind: edgeagent.KindSize},
			{Name: "cuda_memory_limit", Description: "CUDA: memory arena limit (e.g. 2GiB); default none.", Kind: edgeagent.KindSize},
			{Name: "intra_op_threads", Description: "CPU threads one run uses (0: one per core).", Kind: edgeagent.KindInt, Default: "0", Validate: atLeast(0)},
			{Name: "concurrent_runs", Description: "Runs executing at once on the shared session (with schedule.concurrency tasks).", Kind: edgeagent.KindInt, Default: "1", Validate: atLeast(1)},
			{Name: "onnxruntime_lib", Description: "Path of libonnxruntime.so (ONNX Runtime " + inference.RequiredVersion + " or a later 1.x); default: ONNXRUNTIME_LIB, then the usual system locations.", Kind: edgeagent.KindString},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess, edgeagent.RelFailure, RelAnnotated},
		BuildTag:      "onnx",
		New:           newFn,
	}
}
