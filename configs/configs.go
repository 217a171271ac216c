// Package configs holds the example flows. CI validates every one of them;
// demo.yaml is embedded in the binary and run by `edgeagent demo`.
package configs

import (
	"embed"
	"io/fs"
)

//go:embed demo.yaml
var demo []byte

//go:embed demo-images/*.png
var demoImages embed.FS

//go:embed demo-frames/*.png
var demoFrames embed.FS

// Demo returns the demo flow. Its paths start with DEMO_DIR, which the
// demo command replaces with its working directory.
func Demo() []byte { return append([]byte(nil), demo...) }

// DemoImages returns three PNG signs (made with OpenCV's putText) that the
// demo's inference branch reads with PP-OCR: "HELLO JETSON",
// "EDGEAGENT 2026" and "GATE 3 OPEN".
func DemoImages() fs.FS { return sub(demoImages, "demo-images") }

// DemoFrames returns 24 PNG frames of a fixed camera (made with OpenCV): a
// still yard for 8 frames, then a sign reading "GATE 3 OPEN" carried into
// view, for the demo's camera branch.
func DemoFrames() fs.FS { return sub(demoFrames, "demo-frames") }

func sub(f embed.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the embedded directory exists
	}
	return s
}
