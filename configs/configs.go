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

// Demo returns the demo flow. Its paths start with DEMO_DIR, which the
// demo command replaces with its working directory.
func Demo() []byte { return append([]byte(nil), demo...) }

// DemoImages returns three PNG signs (made with OpenCV's putText) that the
// demo's inference branch reads with PP-OCR: "HELLO JETSON",
// "EDGEAGENT 2026" and "GATE 3 OPEN".
func DemoImages() fs.FS {
	sub, err := fs.Sub(demoImages, "demo-images")
	if err != nil {
		panic(err) // the embedded directory exists
	}
	return sub
}
