#!/usr/bin/python3
"""Generates the small ONNX models the inference tests run through ONNX
Runtime, into inference/testdata/ (the files are committed; run this again
only to change them). Needs Debian's python3-onnx and python3-numpy:

    scripts/gen-test-models.py [output-dir]

Every model takes an image batch "images" [N, 3, H, W] (float, RGB scaled to
0..1 by the tests' pre-processing) and either computes something simple from
it or returns a fixed tensor with a known answer (plus 0 x the mean of the
input, so the input is used):

  classifier.onnx  [N,3,8,8] -> logits [N,4]: from the mean of each channel,
                   classes red, green, blue, black (classifier.labels).
  yolov5.onnx      [1,3,64,64] -> output0 [1,6,8]: YOLOv5 rows (cx, cy, w, h,
                   objectness, 3 class scores) in input pixels.
  yolov8.onnx      [1,3,64,64] -> output0 [1,7,6]: the same boxes in the
                   YOLOv8 layout (4+3 rows of 6 boxes, no objectness).
  ssd.onnx         [1,3,64,64] -> detection_boxes [1,4,4] (ymin, xmin, ymax,
                   xmax, normalised), detection_scores [1,4],
                   detection_classes [1,4], num_detections [1].
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def save(model, out, name):
    model.producer_name = "edgeagent gen-test-models.py"
    onnx.checker.check_model(model)
    path = os.path.normpath(os.path.join(out, name))
    onnx.save(model, path)
    print(path, os.path.getsize(path), "bytes")


def fixed_output_model(graph_name, size, outputs):
    """A model whose outputs are constants plus 0 * mean(images)."""
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, dtype=np.float32), "zero")]
    outs = []
    for name, value in outputs:
        inits.append(numpy_helper.from_array(value.astype(np.float32), name + "_value"))
        nodes.append(helper.make_node("Add", [name + "_value", "nothing"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes, graph_name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        outs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def classifier():
    # logits_k = 10 * (mean_k - other channel means) for red, green, blue;
    # black = 5 - 10 * (R + G + B).
    w = np.array([[10, -10, -10, -10],
                  [-10, 10, -10, -10],
                  [-10, -10, 10, -10]], dtype=np.float32)
    b = np.array([0, 0, 0, 5], dtype=np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["means"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["means", "w"], ["scaled"]),
        helper.make_node("Add", ["scaled", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


# The YOLO boxes: cx, cy, w, h, objectness, class scores (3 classes), in the
# 64x64 input's pixels. With confidence 0.25 and IoU 0.45 the answer is
# rows 0 (class 0, 0.81), 4 (class 2, 0.9025) and 2 (class 1, 0.72): row 1
# overlaps row 0 with the same class, row 3's objectness and row 5's class
# scores are too low.
YOLO_ROWS = np.array([
    [32, 32, 20, 20, 0.90, 0.90, 0.05, 0.05],
    [33, 33, 20, 20, 0.80, 0.90, 0.05, 0.05],
    [33, 33, 20, 20, 0.80, 0.05, 0.90, 0.05],
    [10, 10, 8, 8, 0.10, 0.90, 0.05, 0.05],
    [50, 16, 10, 12, 0.95, 0.02, 0.03, 0.95],
    [20, 50, 10, 10, 0.90, 0.20, 0.20, 0.20],
], dtype=np.float32)


def yolov5():
    return fixed_output_model("yolov5", 64, [("output0", YOLO_ROWS[np.newaxis])])


def yolov8():
    # No objectness: class scores are objectness x class score of v5.
    rows = np.concatenate([YOLO_ROWS[:, :4], YOLO_ROWS[:, 5:] * YOLO_ROWS[:, 4:5]], axis=1)
    return fixed_output_model("yolov8", 64, [("output0", rows.T[np.newaxis])])


def ssd():
    # TensorFlow detection API layout: normalised ymin, xmin, ymax, xmax;
    # class IDs as floats; num_detections says only 3 rows are valid.
    boxes = np.array([[[0.25, 0.50, 0.75, 1.00],
                       [0.00, 0.00, 0.50, 0.25],
                       [0.10, 0.10, 0.20, 0.20],
                       [0.50, 0.50, 0.60, 0.60]]], dtype=np.float32)
    scores = np.array([[0.95, 0.60, 0.10, 0.99]], dtype=np.float32)
    classes = np.array([[1, 2, 1, 0]], dtype=np.float32)
    num = np.array([3], dtype=np.float32)
    return fixed_output_model("ssd", 64, [
        ("detection_boxes", boxes), ("detection_scores", scores),
        ("detection_classes", classes), ("num_detections", num)])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "inference", "testdata")
    os.makedirs(out, exist_ok=True)
    save(classifier(), out, "classifier.onnx")
    save(yolov5(), out, "yolov5.onnx")
    save(yolov8(), out, "yolov8.onnx")
    save(ssd(), out, "ssd.onnx")
    with open(os.path.join(out, "classifier.labels"), "w") as f:
        f.write("red\ngreen\nblue\nblack\n")


if __name__ == "__main__":
    main()
