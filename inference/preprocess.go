package inference

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ResizeMode says how an image is fitted to the model's input size.
type ResizeMode string

// Resize modes.
const (
	// ResizeStretch scales each axis to the input size (the aspect ratio
	// may change).
	ResizeStretch ResizeMode = "resize"
	// ResizeLetterbox scales by one factor so the whole image fits, and pads
	// the rest with PadValue, centred (YOLO's letterbox).
	ResizeLetterbox ResizeMode = "letterbox"
)

// ColorOrder is the channel order of the input tensor.
type ColorOrder string

// Colour orders.
const (
	RGB ColorOrder = "rgb"
	BGR ColorOrder = "bgr"
)

// Preprocess turns images into an NCHW float32 tensor: resize or
// letterbox to Width x Height, order the channels, then
// value = (pixel*Scale - Mean[c]) / Std[c] for output channel c.
type Preprocess struct {
	Width, Height int
	Mode          ResizeMode
	Order         ColorOrder
	Scale         float32
	Mean, Std     [3]float32
	// PadValue fills the letterbox border (114, YOLO's grey).
	PadValue byte
}

// DefaultPreprocess returns the YOLO-style defaults for a w x h input:
// letterbox, RGB, pixels scaled to 0..1.
func DefaultPreprocess(w, h int) Preprocess {
	return Preprocess{Width: w, Height: h, Mode: ResizeLetterbox, Order: RGB, Scale: 1.0 / 255, Std: [3]float32{1, 1, 1}, PadValue: 114}
}

// Transform maps coordinates of the model's input back to the source
// image: source = (model - Pad) / Scale.
type Transform struct {
	SrcWidth, SrcHeight int
	ScaleX, ScaleY      float64
	PadX, PadY          float64
}

// ToSource maps a point of the model's input to the source image.
func (t Transform) ToSource(p Point) Point {
	return Point{X: (p.X - t.PadX) / t.ScaleX, Y: (p.Y - t.PadY) / t.ScaleY}
}

// BoxToSource maps a box of the model's input to the source image,
// clipped to it.
func (t Transform) BoxToSource(b Box) Box {
	a := t.ToSource(Point{X: float64(b.X1), Y: float64(b.Y1)})
	c := t.ToSource(Point{X: float64(b.X2), Y: float64(b.Y2)})
	w, h := float64(t.SrcWidth), float64(t.SrcHeight)
	return Box{
		X1: float32(clamp(a.X, 0, w)), Y1: float32(clamp(a.Y, 0, h)),
		X2: float32(clamp(c.X, 0, w)), Y2: float32(clamp(c.Y, 0, h)),
	}
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(v, hi)) }

// Fit resizes or letterboxes img to the input size and returns the
// transform back to img.
func (p Preprocess) Fit(img *Image) (*Image, Transform) {
	return p.fitInto(img, NewImage(p.Width, p.Height))
}

// fitInto is Fit into out, an image of the input size; an img already of
// the input size is returned as is.
func (p Preprocess) fitInto(img, out *Image) (*Image, Transform) {
	t := Transform{SrcWidth: img.Width, SrcHeight: img.Height}
	if p.Mode != ResizeLetterbox {
		t.ScaleX = float64(p.Width) / float64(img.Width)
		t.ScaleY = float64(p.Height) / float64(img.Height)
		return resizeInto(img, out), t
	}
	s := math.Min(float64(p.Width)/float64(img.Width), float64(p.Height)/float64(img.Height))
	nw := max(1, min(p.Width, int(math.Round(float64(img.Width)*s))))
	nh := max(1, min(p.Height, int(math.Round(float64(img.Height)*s))))
	t.ScaleX, t.ScaleY = float64(nw)/float64(img.Width), float64(nh)/float64(img.Height)
	px, py := (p.Width-nw)/2, (p.Height-nh)/2
	t.PadX, t.PadY = float64(px), float64(py)
	if nw == p.Width && nh == p.Height {
		return resizeInto(img, out), t
	}
	small := img
	if nw != img.Width || nh != img.Height {
		small = &Image{Width: nw, Height: nh, Pix: getBytes(nw * nh * 3)}
		defer putBytes(small.Pix)
		resizeInto(img, small)
	}
	for i := range out.Pix {
		out.Pix[i] = p.PadValue
	}
	for y := range nh {
		copy(out.Pix[((y+py)*p.Width+px)*3:], small.Pix[y*nw*3:(y+1)*nw*3])
	}
	return out, t
}

// WriteNCHW writes img (already Width x Height) into dst, 3*Width*Height
// values in channel-major order, normalised.
func (p Preprocess) WriteNCHW(dst []float32, img *Image) error {
	plane := img.Width * img.Height
	if len(dst) < 3*plane {
		return fmt.Errorf("%w: %d values cannot hold a %dx%d image", ErrInputShape, len(dst), img.Width, img.Height)
	}
	// lut[k] maps the k-th byte of a BGR pixel to its normalised value in
	// output channel ch[k].
	ch := [3]int{2, 1, 0} // RGB: B goes to channel 2
	if p.Order == BGR {
		ch = [3]int{0, 1, 2}
	}
	var lut [3][256]float32
	for k := range 3 {
		c := ch[k]
		mul := p.Scale
		if mul == 0 {
			mul = 1
		}
		std := p.Std[c]
		if std == 0 {
			std = 1
		}
		for v := range 256 {
			lut[k][v] = (float32(v)*mul - p.Mean[c]) / std
		}
	}
	o0, o1, o2 := dst[ch[0]*plane:][:plane], dst[ch[1]*plane:][:plane], dst[ch[2]*plane:][:plane]
	pix := img.Pix[:3*plane]
	for i := range plane {
		px := pix[3*i : 3*i+3]
		o0[i], o1[i], o2[i] = lut[0][px[0]], lut[1][px[1]], lut[2][px[2]]
	}
	return nil
}

// Tensor fits each image and packs them as one NCHW batch
// [len(imgs), 3, Height, Width], with the transform of each.
func (p Preprocess) Tensor(name string, imgs []*Image) (Tensor, []Transform, error) {
	t := NewTensor(name, int64(len(imgs)), 3, int64(p.Height), int64(p.Width))
	ts, err := p.writeTensor(t.Data, imgs)
	if err != nil {
		return Tensor{}, nil, err
	}
	return t, ts, nil
}

// writeTensor fits each image and writes them NCHW into data, which holds
// len(imgs)*3*Height*Width values.
func (p Preprocess) writeTensor(data []float32, imgs []*Image) ([]Transform, error) {
	ts := make([]Transform, len(imgs))
	per := 3 * p.Width * p.Height
	fit := &Image{Width: p.Width, Height: p.Height, Pix: getBytes(per)}
	defer putBytes(fit.Pix)
	for i, img := range imgs {
		var in *Image
		in, ts[i] = p.fitInto(img, fit)
		if err := p.WriteNCHW(data[i*per:(i+1)*per], in); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// ParseSize parses an input size "640x640" (width x height), or "640"
// for a square.
func ParseSize(s string) (w, h int, err error) {
	ws, hs, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	if !ok {
		hs = ws
	}
	w, err1 := strconv.Atoi(strings.TrimSpace(ws))
	h, err2 := strconv.Atoi(strings.TrimSpace(hs))
	if err1 != nil || err2 != nil || w <= 0 || h <= 0 || w > 16384 || h > 16384 {
		return 0, 0, fmt.Errorf("%q is not a size like 640x640 (width x height)", s)
	}
	return w, h, nil
}

// ParseTriple parses three comma-separated numbers ("0.485,0.456,0.406"),
// or one number used three times.
func ParseTriple(s string) ([3]float32, error) {
	var out [3]float32
	parts := strings.Split(s, ",")
	if len(parts) != 1 && len(parts) != 3 {
		return out, fmt.Errorf("%q is not one or three comma-separated numbers", s)
	}
	for i := range 3 {
		v, err := strconv.ParseFloat(strings.TrimSpace(parts[min(i, len(parts)-1)]), 32)
		if err != nil {
			return out, fmt.Errorf("%q is not one or three comma-separated numbers", s)
		}
		out[i] = float32(v)
	}
	return out, nil
}
