package inference

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
)

// Image is an 8-bit, 3-channel image in BGR order, rows top to bottom with
// no padding: OpenCV's CV_8UC3 layout, which is also what cameras hand out as
// raw frames.
type Image struct {
	Width, Height int
	Pix           []byte // len Width*Height*3
}

// NewImage returns a black image.
func NewImage(w, h int) *Image {
	return &Image{Width: w, Height: h, Pix: make([]byte, w*h*3)}
}

// Clone returns a deep copy.
func (m *Image) Clone() *Image {
	return &Image{Width: m.Width, Height: m.Height, Pix: append([]byte(nil), m.Pix...)}
}

// BGR returns the pixel at x, y.
func (m *Image) BGR(x, y int) (b, g, r byte) {
	i := (y*m.Width + x) * 3
	return m.Pix[i], m.Pix[i+1], m.Pix[i+2]
}

// Fill paints the rectangle [x0,x1) x [y0,y1) (clipped) with one colour.
func (m *Image) Fill(x0, y0, x1, y1 int, b, g, r byte) {
	x0, y0 = max(x0, 0), max(y0, 0)
	x1, y1 = min(x1, m.Width), min(y1, m.Height)
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			i := (y*m.Width + x) * 3
			m.Pix[i], m.Pix[i+1], m.Pix[i+2] = b, g, r
		}
	}
}

// RawImage wraps a raw BGR frame of w x h pixels (no copy).
func RawImage(b []byte, w, h int) (*Image, error) {
	if w <= 0 || h <= 0 || len(b) != w*h*3 {
		return nil, fmt.Errorf("%w: %d bytes is not a %dx%d BGR frame (%d bytes)", ErrDecodeImage, len(b), w, h, w*h*3)
	}
	return &Image{Width: w, Height: h, Pix: b}, nil
}

// IsEncodedImage reports whether b starts like a JPEG or a PNG file.
func IsEncodedImage(b []byte) bool {
	return bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}) || bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n"))
}

// MaxPixels bounds the size of an image DecodeImage accepts (the decoded
// BGR image takes 3 bytes a pixel).
const MaxPixels = 64 << 20

// DecodeImage decodes a JPEG or PNG file into BGR (with OpenCV under the
// gocv build tag, with the standard library otherwise).
func DecodeImage(b []byte) (*Image, error) {
	if !IsEncodedImage(b) {
		return nil, fmt.Errorf("%w: not a JPEG or PNG file", ErrDecodeImage)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecodeImage, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > MaxPixels {
		return nil, fmt.Errorf("%w: %dx%d pixels is more than %d", ErrDecodeImage, cfg.Width, cfg.Height, MaxPixels)
	}
	return backendDecode(b)
}

// ResizeImage scales img to w x h with bilinear interpolation.
func ResizeImage(img *Image, w, h int) *Image {
	if w == img.Width && h == img.Height {
		return img
	}
	return backendResize(img, w, h)
}

// resizeInto resizes img to dst's size, into dst, and returns dst; an img
// already of that size is returned as is, with nothing copied.
func resizeInto(img, dst *Image) *Image {
	if img.Width == dst.Width && img.Height == dst.Height {
		return img
	}
	backendResizeInto(img, dst)
	return dst
}

// EncodeJPEG encodes img as a JPEG file of the given quality (1-100).
func EncodeJPEG(img *Image, quality int) ([]byte, error) { return backendEncodeJPEG(img, quality) }

// decodeGo decodes with image/jpeg and image/png.
func decodeGo(b []byte) (*Image, error) {
	var src image.Image
	var err error
	if bytes.HasPrefix(b, []byte{0xFF, 0xD8}) {
		src, err = jpeg.Decode(bytes.NewReader(b))
	} else {
		src, err = png.Decode(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecodeImage, err)
	}
	r := src.Bounds()
	img := NewImage(r.Dx(), r.Dy())
	i := 0
	switch s := src.(type) {
	case *image.YCbCr:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				yi, ci := s.YOffset(x, y), s.COffset(x, y)
				rr, gg, bb := color.YCbCrToRGB(s.Y[yi], s.Cb[ci], s.Cr[ci])
				img.Pix[i], img.Pix[i+1], img.Pix[i+2] = bb, gg, rr
				i += 3
			}
		}
	case *image.Gray:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				v := s.Pix[s.PixOffset(x, y)]
				img.Pix[i], img.Pix[i+1], img.Pix[i+2] = v, v, v
				i += 3
			}
		}
	case *image.NRGBA:
		// Straight (non-premultiplied) RGBA: drop alpha as OpenCV does.
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				o := s.PixOffset(x, y)
				img.Pix[i], img.Pix[i+1], img.Pix[i+2] = s.Pix[o+2], s.Pix[o+1], s.Pix[o]
				i += 3
			}
		}
	default:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				c := color.NRGBAModel.Convert(src.At(x, y)).(color.NRGBA)
				img.Pix[i], img.Pix[i+1], img.Pix[i+2] = c.B, c.G, c.R
				i += 3
			}
		}
	}
	return img, nil
}

// encodeJPEGGo encodes with image/jpeg.
func encodeJPEGGo(img *Image, quality int) ([]byte, error) {
	rgba := image.NewRGBA(image.Rect(0, 0, img.Width, img.Height))
	for i, j := 0, 0; i < len(img.Pix); i, j = i+3, j+4 {
		rgba.Pix[j], rgba.Pix[j+1], rgba.Pix[j+2], rgba.Pix[j+3] = img.Pix[i+2], img.Pix[i+1], img.Pix[i], 255
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, rgba, &jpeg.Options{Quality: quality}); err != nil {
		return nil, fmt.Errorf("encoding jpeg: %w", err)
	}
	return buf.Bytes(), nil
}

// axisWeights returns, for each of n destination coordinates, the first
// source coordinate and the weight of the second one, with OpenCV's
// INTER_LINEAR convention (pixel centres aligned, edges replicated).
func axisWeights(n, srcN int) ([]int, []float32) {
	idx := make([]int, n)
	w := make([]float32, n)
	scale := float64(srcN) / float64(n)
	for i := range n {
		f := (float64(i)+0.5)*scale - 0.5
		i0 := int(math.Floor(f))
		frac := f - float64(i0)
		if i0 < 0 {
			i0, frac = 0, 0
		}
		if i0 >= srcN-1 {
			i0, frac = srcN-1, 0
		}
		idx[i], w[i] = i0, float32(frac)
	}
	return idx, w
}

// resizeGo is a bilinear resize in pure Go.
func resizeGo(img *Image, w, h int) *Image {
	dst := NewImage(w, h)
	resizeGoInto(img, dst)
	return dst
}

// resizeGoInto resizes img to dst's size, into dst.
func resizeGoInto(img, dst *Image) {
	w, h := dst.Width, dst.Height
	xs, xw := axisWeights(w, img.Width)
	ys, yw := axisWeights(h, img.Height)
	stride := img.Width * 3
	for y := range h {
		r0 := ys[y] * stride
		r1 := r0
		if ys[y] < img.Height-1 {
			r1 += stride
		}
		wy := yw[y]
		o := y * w * 3
		for x := range w {
			c0 := xs[x] * 3
			c1 := c0
			if xs[x] < img.Width-1 {
				c1 += 3
			}
			wx := xw[x]
			for c := range 3 {
				top := float32(img.Pix[r0+c0+c])*(1-wx) + float32(img.Pix[r0+c1+c])*wx
				bot := float32(img.Pix[r1+c0+c])*(1-wx) + float32(img.Pix[r1+c1+c])*wx
				dst.Pix[o+c] = clampByte(top*(1-wy) + bot*wy)
			}
			o += 3
		}
	}
}

func clampByte(v float32) byte {
	v += 0.5
	if v <= 0 {
		return 0
	}
	if v >= 255 {
		return 255
	}
	return byte(v)
}

// Point is a position in an image, in pixels.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// perspective returns the 3x3 homography (row-major, h[8] = 1) that maps
// the corners of the w x h rectangle (0,0), (w,0), (w,h), (0,h) to q.
func perspective(q [4]Point, w, h float64) ([9]float64, bool) {
	src := [4]Point{{0, 0}, {w, 0}, {w, h}, {0, h}}
	var a [8][9]float64
	for i := range 4 {
		x, y, u, v := src[i].X, src[i].Y, q[i].X, q[i].Y
		a[2*i] = [9]float64{x, y, 1, 0, 0, 0, -u * x, -u * y, u}
		a[2*i+1] = [9]float64{0, 0, 0, x, y, 1, -v * x, -v * y, v}
	}
	for c := range 8 { // Gauss-Jordan with partial pivoting
		p := c
		for r := c + 1; r < 8; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[p][c]) {
				p = r
			}
		}
		if math.Abs(a[p][c]) < 1e-12 {
			return [9]float64{}, false
		}
		a[c], a[p] = a[p], a[c]
		for r := range 8 {
			if r == c {
				continue
			}
			f := a[r][c] / a[c][c]
			for k := c; k < 9; k++ {
				a[r][k] -= f * a[c][k]
			}
		}
	}
	var hm [9]float64
	for i := range 8 {
		hm[i] = a[i][8] / a[i][i]
	}
	hm[8] = 1
	return hm, true
}

// warpQuadGo cuts the quadrilateral q (top-left, top-right, bottom-right,
// bottom-left) out of img into a w x h image, sampling bilinearly with
// replicated borders.
func warpQuadGo(img *Image, q [4]Point, w, h int) *Image {
	dst := NewImage(w, h)
	hm, ok := perspective(q, float64(w), float64(h))
	if !ok {
		return dst
	}
	for y := range h {
		for x := range w {
			// Map the destination pixel centre, as OpenCV does.
			fx, fy := float64(x), float64(y)
			d := hm[6]*fx + hm[7]*fy + hm[8]
			sx := (hm[0]*fx + hm[1]*fy + hm[2]) / d
			sy := (hm[3]*fx + hm[4]*fy + hm[5]) / d
			sampleBilinear(img, sx, sy, dst.Pix[(y*w+x)*3:])
		}
	}
	return dst
}

func sampleBilinear(img *Image, sx, sy float64, out []byte) {
	sx = math.Max(0, math.Min(sx, float64(img.Width-1)))
	sy = math.Max(0, math.Min(sy, float64(img.Height-1)))
	x0, y0 := int(sx), int(sy)
	x1, y1 := min(x0+1, img.Width-1), min(y0+1, img.Height-1)
	wx, wy := float32(sx-float64(x0)), float32(sy-float64(y0))
	p := img.Pix
	i00, i01 := (y0*img.Width+x0)*3, (y0*img.Width+x1)*3
	i10, i11 := (y1*img.Width+x0)*3, (y1*img.Width+x1)*3
	for c := range 3 {
		top := float32(p[i00+c])*(1-wx) + float32(p[i01+c])*wx
		bot := float32(p[i10+c])*(1-wx) + float32(p[i11+c])*wx
		out[c] = clampByte(top*(1-wy) + bot*wy)
	}
}

// rotate90CCW returns img rotated a quarter turn counter-clockwise.
func rotate90CCW(img *Image) *Image {
	dst := NewImage(img.Height, img.Width)
	for y := range img.Height {
		for x := range img.Width {
			s := (y*img.Width + x) * 3
			d := ((img.Width-1-x)*dst.Width + y) * 3
			copy(dst.Pix[d:d+3], img.Pix[s:s+3])
		}
	}
	return dst
}

// drawLineGo draws a line of the given thickness (a square brush).
func drawLineGo(img *Image, a, b Point, bgr [3]byte, thickness int) {
	dx, dy := b.X-a.X, b.Y-a.Y
	steps := int(math.Ceil(math.Max(math.Abs(dx), math.Abs(dy))))
	r := thickness / 2
	for i := 0; i <= steps; i++ {
		t := 0.0
		if steps > 0 {
			t = float64(i) / float64(steps)
		}
		x, y := int(math.Round(a.X+t*dx)), int(math.Round(a.Y+t*dy))
		img.Fill(x-r, y-r, x-r+max(thickness, 1), y-r+max(thickness, 1), bgr[0], bgr[1], bgr[2])
	}
}
