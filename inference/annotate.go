package inference

import (
	"fmt"
	"strings"
)

// shape is an outline to draw, with an optional label at its first point.
type shape struct {
	points    []Point
	color     [3]byte // BGR
	thickness int
	label     string
}

// palette holds distinct BGR colours, picked by class index.
var palette = [][3]byte{
	{56, 56, 255}, {151, 157, 255}, {31, 112, 255}, {29, 178, 255}, {49, 210, 207},
	{10, 249, 72}, {23, 204, 146}, {134, 219, 61}, {52, 147, 26}, {187, 212, 0},
	{168, 153, 44}, {255, 194, 0}, {147, 69, 52}, {255, 115, 100}, {236, 24, 0},
	{255, 56, 132}, {133, 0, 82}, {255, 56, 203}, {200, 149, 255}, {199, 55, 255},
}

func colorOf(class int) [3]byte { return palette[((class%len(palette))+len(palette))%len(palette)] }

func boxPoints(b Box) []Point {
	return []Point{{X: float64(b.X1), Y: float64(b.Y1)}, {X: float64(b.X2), Y: float64(b.Y1)}, {X: float64(b.X2), Y: float64(b.Y2)}, {X: float64(b.X1), Y: float64(b.Y2)}}
}

// Annotate returns a copy of img with r drawn on it: detection boxes and
// text boxes outlined and labelled, the best classes written in the top
// left corner. Labels need the gocv build (the pure Go backend has no
// font and draws outlines only).
func Annotate(img *Image, r *Result) *Image {
	out := img.Clone()
	thick := max(1, min(img.Width, img.Height)/300)
	var shapes []shape
	for _, d := range r.Detections {
		name := d.Label
		if name == "" {
			name = fmt.Sprint(d.Class)
		}
		shapes = append(shapes, shape{points: boxPoints(d.Box), color: colorOf(d.Class), thickness: thick, label: fmt.Sprintf("%s %.2f", name, d.Score)})
	}
	for _, t := range r.Texts {
		shapes = append(shapes, shape{points: t.Quad[:], color: [3]byte{0, 200, 0}, thickness: thick, label: t.Text})
	}
	if len(r.Classes) > 0 {
		parts := make([]string, len(r.Classes))
		for i, c := range r.Classes {
			name := c.Label
			if name == "" {
				name = fmt.Sprint(c.Index)
			}
			parts[i] = fmt.Sprintf("%s %.2f", name, c.Score)
		}
		shapes = append(shapes, shape{points: []Point{{X: 0, Y: 0}}, color: colorOf(r.Classes[0].Index), thickness: 1, label: strings.Join(parts, ", ")})
	}
	backendDraw(out, shapes)
	return out
}
