//go:build !gocv

package inference

// ImageBackend names the code that decodes, resizes and draws images: "go"
// (the standard library and this package) or "opencv" (build tag gocv).
const ImageBackend = "go"

func backendDecode(b []byte) (*Image, error) { return decodeGo(b) }

func backendResize(img *Image, w, h int) *Image { return resizeGo(img, w, h) }

func backendResizeInto(img, dst *Image) { resizeGoInto(img, dst) }

func backendEncodeJPEG(img *Image, quality int) ([]byte, error) { return encodeJPEGGo(img, quality) }

func backendWarpQuad(img *Image, q [4]Point, w, h int) *Image { return warpQuadGo(img, q, w, h) }

// backendDraw draws the outlines; the pure Go backend has no font, so
// labels are left out.
func backendDraw(img *Image, shapes []shape) {
	for _, s := range shapes {
		if len(s.points) < 2 {
			continue
		}
		for i := range s.points {
			drawLineGo(img, s.points[i], s.points[(i+1)%len(s.points)], s.color, s.thickness)
		}
	}
}
