//go:build gocv

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"edgeagent.dev/internal/camera/camerabench"
)

// benchCamera compares CaptureFrame decoding gocv's test video into JPEG
// flowfiles with durable queues against a bare gocv read-and-encode loop.
func benchCamera(base string) {
	video, err := camerabench.TestVideo()
	check(err)
	dir := filepath.Join(base, "camera")
	check(os.MkdirAll(dir, 0o750))
	res, err := camerabench.Run(context.Background(), dir, video, 4, 5)
	check(err)
	fmt.Printf("%s\n", res.String()) // its ratio line names the target
}
