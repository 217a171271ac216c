//go:build !gocv

package main

import "fmt"

// benchCamera needs the gocv build tag (make bench passes it).
func benchCamera(string) {
	fmt.Printf("camera benchmark skipped: build with -tags gocv (make bench does)\n\n")
}
