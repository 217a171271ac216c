//go:build gocv

package inference

// UsePureGoImages makes the OpenCV build decode, resize and crop with the
// pure Go code until restore is called.
func UsePureGoImages() (restore func()) {
	pureGo = true
	return func() { pureGo = false }
}
