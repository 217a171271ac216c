//go:build gocv

package inference

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"runtime"

	"gocv.io/x/gocv"
)

// ImageBackend names the code that decodes, resizes and draws images: "go"
// (the standard library and this package) or "opencv" (build tag gocv).
const ImageBackend = "opencv"

// pureGo switches the backend to the pure Go code; tests set it to check
// both on the same data.
var pureGo bool

// toMat copies img into a new Mat; the caller closes it.
func toMat(img *Image) (gocv.Mat, error) {
	return gocv.NewMatFromBytes(img.Height, img.Width, gocv.MatTypeCV8UC3, append([]byte(nil), img.Pix...))
}

// fromMat copies a CV_8UC3 Mat out.
func fromMat(m gocv.Mat) (*Image, error) {
	if m.Empty() || m.Type() != gocv.MatTypeCV8UC3 {
		return nil, fmt.Errorf("%w: opencv produced a %v image", ErrDecodeImage, m.Type())
	}
	return &Image{Width: m.Cols(), Height: m.Rows(), Pix: m.ToBytes()}, nil
}

func backendDecode(b []byte) (*Image, error) {
	if pureGo {
		return decodeGo(b)
	}
	m, err := gocv.IMDecode(b, gocv.IMReadColor)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecodeImage, err)
	}
	defer m.Close()
	if m.Empty() {
		return nil, fmt.Errorf("%w: opencv could not decode the data", ErrDecodeImage)
	}
	return fromMat(m)
}

func backendResize(img *Image, w, h int) *Image {
	if pureGo {
		return resizeGo(img, w, h)
	}
	src, err := toMat(img)
	if err != nil {
		return resizeGo(img, w, h)
	}
	defer src.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	gocv.Resize(src, &dst, image.Pt(w, h), 0, 0, gocv.InterpolationLinear)
	out, err := fromMat(dst)
	if err != nil {
		return resizeGo(img, w, h)
	}
	return out
}

// backendResizeInto resizes straight from img.Pix into dst.Pix: both Mats
// wrap the Go buffers (pinned for the calls), so nothing is copied. OpenCV
// writes into a destination Mat of the right size and type in place; should
// it ever reallocate, the pure Go resize fills dst instead.
func backendResizeInto(img, dst *Image) {
	if pureGo || len(img.Pix) == 0 || len(dst.Pix) == 0 {
		resizeGoInto(img, dst)
		return
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&img.Pix[0])
	pin.Pin(&dst.Pix[0])
	src, err := gocv.NewMatFromBytes(img.Height, img.Width, gocv.MatTypeCV8UC3, img.Pix)
	if err != nil {
		resizeGoInto(img, dst)
		return
	}
	defer src.Close()
	out, err := gocv.NewMatFromBytes(dst.Height, dst.Width, gocv.MatTypeCV8UC3, dst.Pix)
	if err != nil {
		resizeGoInto(img, dst)
		return
	}
	defer out.Close()
	gocv.Resize(src, &out, image.Pt(dst.Width, dst.Height), 0, 0, gocv.InterpolationLinear)
	if p, err := out.DataPtrUint8(); err != nil || len(p) != len(dst.Pix) || &p[0] != &dst.Pix[0] {
		resizeGoInto(img, dst)
	}
}

func backendEncodeJPEG(img *Image, quality int) ([]byte, error) {
	m, err := toMat(img)
	if err != nil {
		return nil, fmt.Errorf("encoding jpeg: %w", err)
	}
	defer m.Close()
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, m, []int{gocv.IMWriteJpegQuality, quality})
	if err != nil {
		return nil, fmt.Errorf("encoding jpeg: %w", err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...), nil
}

// backendWarpQuad crops with a perspective transform, bicubic with
// replicated borders as PaddleOCR does.
func backendWarpQuad(img *Image, q [4]Point, w, h int) *Image {
	if pureGo {
		return warpQuadGo(img, q, w, h)
	}
	src, err := toMat(img)
	if err != nil {
		return warpQuadGo(img, q, w, h)
	}
	defer src.Close()
	from := gocv.NewPoint2fVectorFromPoints([]gocv.Point2f{
		{X: float32(q[0].X), Y: float32(q[0].Y)}, {X: float32(q[1].X), Y: float32(q[1].Y)},
		{X: float32(q[2].X), Y: float32(q[2].Y)}, {X: float32(q[3].X), Y: float32(q[3].Y)},
	})
	defer from.Close()
	to := gocv.NewPoint2fVectorFromPoints([]gocv.Point2f{{X: 0, Y: 0}, {X: float32(w), Y: 0}, {X: float32(w), Y: float32(h)}, {X: 0, Y: float32(h)}})
	defer to.Close()
	m := gocv.GetPerspectiveTransform2f(from, to)
	defer m.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	gocv.WarpPerspectiveWithParams(src, &dst, m, image.Pt(w, h), gocv.InterpolationCubic, gocv.BorderReplicate, color.RGBA{})
	out, err := fromMat(dst)
	if err != nil {
		return warpQuadGo(img, q, w, h)
	}
	return out
}

func backendDraw(img *Image, shapes []shape) {
	m, err := toMat(img)
	if err != nil {
		return
	}
	defer m.Close()
	for _, s := range shapes {
		c := color.RGBA{B: s.color[0], G: s.color[1], R: s.color[2], A: 255}
		pts := make([]image.Point, len(s.points))
		for i, p := range s.points {
			pts[i] = image.Pt(int(math.Round(p.X)), int(math.Round(p.Y)))
		}
		if len(pts) > 1 {
			pv := gocv.NewPointsVectorFromPoints([][]image.Point{pts})
			gocv.Polylines(&m, pv, true, c, s.thickness)
			pv.Close()
		}
		if s.label == "" || len(pts) == 0 {
			continue
		}
		scale := 0.5
		size := gocv.GetTextSize(s.label, gocv.FontHersheySimplex, scale, 1)
		org := pts[0]
		top := org.Y - size.Y - 4
		if top < 0 {
			top = org.Y
		}
		gocv.Rectangle(&m, image.Rect(org.X, top, org.X+size.X+4, top+size.Y+4), c, -1)
		gocv.PutText(&m, s.label, image.Pt(org.X+2, top+size.Y+1), gocv.FontHersheySimplex, scale, color.RGBA{R: 255, G: 255, B: 255, A: 255}, 1)
	}
	if out, err := fromMat(m); err == nil {
		copy(img.Pix, out.Pix)
	}
}
