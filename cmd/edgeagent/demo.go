package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/configs"
	"edgeagent.dev/internal/engine"
	"edgeagent.dev/provenance"
)

// cmdDemo runs the embedded demo flow for a while in ./edgeagent-demo (or
// --dir), then shows what happened: output files, queues and the lineage of
// one batch file.
func cmdDemo(args []string, reg *edgeagent.Registry, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo")
	dir := fs.String("dir", "edgeagent-demo", "working directory for the demo's data and output")
	dur := fs.Duration("duration", 12*time.Second, "how long to run (Ctrl-C stops earlier)")
	http := fs.String("http", "127.0.0.1:9100", "address of the status API while the demo runs (\"\" to disable)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return fmt.Errorf("creating demo directory: %w", err)
	}
	flow := string(configs.Demo())
	withInference, why := inferenceBranch(reg)
	if withInference != nil {
		flow = withInference(flow)
		if err := copyDemoFiles(configs.DemoImages(), filepath.Join(abs, "in", "signs")); err != nil {
			return err
		}
		if err := copyDemoFiles(configs.DemoFrames(), filepath.Join(abs, "in", "camera")); err != nil {
			return err
		}
	}
	flow = strings.ReplaceAll(flow, "DEMO_DIR", abs)
	flow = strings.Replace(flow, "http: 127.0.0.1:9100", "http: \""+*http+"\"", 1)
	path := filepath.Join(abs, "flow.yaml")
	if err := os.WriteFile(path, []byte(flow), 0o640); err != nil {
		return fmt.Errorf("writing demo flow: %w", err)
	}
	fmt.Fprintf(stdout, "edgeagent demo: running %s for %s (data and output in %s)\n", path, *dur, abs)
	if withInference != nil {
		fmt.Fprintln(stdout, "  inference: PP-OCRv4 (ONNX Runtime) reads the text of three signs")
		fmt.Fprintln(stdout, "  camera: CaptureFrame -> MotionDetector -> ApplyONNXModel -> PublishMQTT on 24 frames of a yard")
	} else {
		fmt.Fprintf(stdout, "  inference: not in this demo (%s)\n", why)
	}
	if *http != "" {
		fmt.Fprintf(stdout, "  while it runs: curl http://%s/api/status\n", *http)
	}
	fmt.Fprintln(stdout)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()
	if err := engine.RunAgent(ctx, engine.AgentOptions{ConfigPath: path, Registry: reg, LogOutput: stderr, Version: version}); err != nil {
		return err
	}
	return demoReport(stdout, abs)
}

// The demo's inference branch: GetFile -> ApplyONNXModel (PP-OCRv4) -> PutFile.
const (
	inferenceProcessors = `
  - name: signs
    type: GetFile
    properties: {input_directory: DEMO_DIR/in/signs}
  - name: read-text
    type: ApplyONNXModel
    properties: {model: "DET", ppocr_rec_model: "REC", ppocr_keys: "KEYS", postprocess: ppocr, providers: "tensorrt,cuda,cpu", output: both, onnxruntime_lib: "LIB"}
    auto_terminate: [failure, annotated]
  - name: write-text
    type: PutFile
    properties: {directory: DEMO_DIR/out/ocr, conflict_resolution: replace}
    auto_terminate: [success, failure]
  - name: camera
    type: CaptureFrame
    properties: {source: DEMO_DIR/in/camera, fps: "10", encoding: jpeg, camera_id: yard}
  - name: motion
    type: MotionDetector
    properties: {warmup_frames: "3", min_area: "400"}
    auto_terminate: [no_motion, failure]
  - name: read-frame
    type: ApplyONNXModel
    properties: {model: "DET", ppocr_rec_model: "REC", ppocr_keys: "KEYS", postprocess: ppocr, providers: "cpu", output: both, onnxruntime_lib: "LIB"}
    auto_terminate: [failure, annotated]
  - name: publish-detection
    type: PublishMQTT
    properties: {broker: "tcp://127.0.0.1:18830", topic: "demo/${agent.id}/${camera.id}/detections", qos: "1", payload: envelope, envelope_attributes: 'camera\.id|frame\.seq|capture\.time|inference\..*|motion\..*'}
    auto_terminate: [success, failure]
  - name: write-detection
    type: PutFile
    properties: {directory: DEMO_DIR/out/detections, conflict_resolution: replace}
    auto_terminate: [success, failure]
connections:`
	inferenceConnections = `
  - {from: signs, relationship: success, to: read-text}
  - {from: read-text, relationship: success, to: write-text}
  - {from: camera, relationship: success, to: motion, max_count: 10, when_full: drop_oldest}
  - {from: motion, relationship: motion, to: read-frame}
  - {from: read-frame, relationship: success, to: publish-detection}
  - {from: read-frame, relationship: success, to: write-detection}
`
)

// inferenceBranch returns a function adding the inference branch to the demo
// flow, or nil and the reason it cannot run: the binary lacks the onnx tag or
// the runtime and models are not in .cache/onnx (make setup fetches them).
func inferenceBranch(reg *edgeagent.Registry) (func(string) string, string) {
	for _, typ := range []string{"ApplyONNXModel", "CaptureFrame", "MotionDetector"} {
		if s, ok := reg.Lookup(typ); !ok || !s.Available() {
			return nil, "this binary was built without -tags gocv,onnx; make demo builds the full agent"
		}
	}
	cache, err := filepath.Abs(filepath.Join(".cache", "onnx"))
	if err != nil {
		return nil, err.Error()
	}
	paths := map[string]string{
		"DET":  filepath.Join(cache, "models", "ch_PP-OCRv4_det_infer.onnx"),
		"REC":  filepath.Join(cache, "models", "ch_PP-OCRv4_rec_infer.onnx"),
		"KEYS": filepath.Join(cache, "models", "ppocr_keys_v1.txt"),
		"LIB":  filepath.Join(cache, "lib", "linux-"+runtime.GOARCH, "libonnxruntime.so.1"),
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Sprintf("%s is missing: run make setup in the repository", p)
		}
	}
	procs := inferenceProcessors
	for k, v := range paths {
		procs = strings.ReplaceAll(procs, `"`+k+`"`, `"`+v+`"`)
	}
	return func(flow string) string {
		flow = strings.Replace(flow, "\nconnections:", procs, 1)
		return strings.TrimRight(flow, "\n") + inferenceConnections
	}, ""
}

func copyDemoFiles(imgs fs.FS, dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	names, err := fs.Glob(imgs, "*.png")
	if err != nil {
		return err
	}
	for _, n := range names {
		b, err := fs.ReadFile(imgs, n)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o640); err != nil {
			return fmt.Errorf("writing demo image: %w", err)
		}
	}
	return nil
}

func demoReport(w io.Writer, dir string) error {
	count := func(sub string) int {
		es, _ := os.ReadDir(filepath.Join(dir, "out", sub))
		return len(es)
	}
	if texts := ocrTexts(filepath.Join(dir, "out", "ocr")); len(texts) > 0 {
		fmt.Fprintf(w, "\n== inference (PP-OCRv4 on ONNX Runtime) ==\n%s\n", strings.Join(texts, "\n"))
	}
	if texts := ocrTexts(filepath.Join(dir, "out", "detections")); len(texts) > 0 {
		fmt.Fprintf(w, "\n== camera: frames with motion, read by PP-OCRv4 and published over MQTT ==\n%s\n", strings.Join(texts, "\n"))
	}
	fmt.Fprintf(w, "\n== output ==\n%s/out/alerts:  %d alert files (each went out over MQTT QoS 1 to the embedded broker and came back)\n%s/out/batches: %d gzip batches of readings\n", dir, count("alerts"), dir, count("batches"))
	repo, err := buffer.Open(filepath.Join(dir, "data"), buffer.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer repo.Close()
	qs, err := engine.RepositoryQueues(repo)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "\n== queues (kept on disk across restarts) ==")
	for _, q := range qs {
		fmt.Fprintf(w, "%-40s %6d flowfiles %10s\n", q.Name, q.Count, edgeagent.FormatSize(q.Bytes))
	}
	var lin *provenance.LineageGraph
	var stats provenance.Stats
	var mqttSent, mqttReceived, detections int
	err = repo.DB().View(func(tx *bolt.Tx) error {
		var err error
		if stats, err = provenance.ReadStats(tx); err != nil {
			return err
		}
		evs, err := provenance.Latest(tx, 0)
		if err != nil {
			return err
		}
		for _, e := range evs {
			switch {
			case e.Type == provenance.EventSend && e.Component == "publish-alert":
				mqttSent++
			case e.Type == provenance.EventReceive && e.Component == "consume-alert":
				mqttReceived++
			case e.Type == provenance.EventSend && e.Component == "publish-detection":
				detections++
			}
		}
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Type == provenance.EventSend && evs[i].Component == "write-batch" {
				lin, err = provenance.Lineage(tx, evs[i].FlowFileID)
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n== provenance: %d events ==\n", stats.Count)
	fmt.Fprintf(w, "MQTT: %d alerts published (SEND after PUBACK), %d received (RECEIVE); %d camera detections published\n", mqttSent, mqttReceived, detections)
	if lin == nil {
		fmt.Fprintln(w, "(no batch was written yet: run longer with --duration)")
		return nil
	}
	fmt.Fprintf(w, "lineage of the last batch file (flowfile %s): %d flowfiles, %d events; the first and last:\n", lin.Root, len(lin.FlowFiles), len(lin.Events))
	show := lin.Events
	if len(show) > 12 {
		show = append(append([]provenance.Event(nil), show[:6]...), show[len(show)-6:]...)
	}
	for i, e := range show {
		if i == 6 && len(lin.Events) > 12 {
			fmt.Fprintf(w, "  ... %d more ...\n", len(lin.Events)-12)
		}
		fmt.Fprintf(w, "  %-20s %-10s %s %s\n", e.Type, e.Component, e.FlowFileID, eventDetails(e))
	}
	fmt.Fprintf(w, "\nexplore: edgeagent provenance --data-dir %s/data --flowfile %s\n", dir, lin.Root)
	return nil
}

// ocrTexts reads the JSON results the inference branch wrote.
func ocrTexts(dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	sort.Strings(files)
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var res struct {
			SHA256    string  `json:"sha256"`
			Provider  string  `json:"provider"`
			LatencyMS float64 `json:"latency_ms"`
			Result    struct {
				Texts []struct {
					Text  string  `json:"text"`
					Score float64 `json:"score"`
				} `json:"texts"`
			} `json:"result"`
		}
		if json.Unmarshal(b, &res) != nil {
			continue
		}
		var texts []string
		for _, t := range res.Result.Texts {
			texts = append(texts, fmt.Sprintf("%q (%.2f)", t.Text, t.Score))
		}
		out = append(out, fmt.Sprintf("%s: %s  [provider %s, %.0f ms, model sha256 %.12s…]",
			filepath.Base(f), strings.Join(texts, ", "), res.Provider, res.LatencyMS, res.SHA256))
	}
	return out
}
