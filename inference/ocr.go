package inference

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"strings"
)

// Quad is a text box: four corners clockwise from the top-left one.
type Quad [4]Point

// MarshalJSON writes the corners as [[x, y], ...], as PaddleOCR does.
func (q Quad) MarshalJSON() ([]byte, error) {
	var a [4][2]float64
	for i, p := range q {
		a[i] = [2]float64{p.X, p.Y}
	}
	return json.Marshal(a)
}

// UnmarshalJSON reads [[x, y], ...].
func (q *Quad) UnmarshalJSON(b []byte) error {
	var a [4][2]float64
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	for i := range a {
		q[i] = Point{X: a[i][0], Y: a[i][1]}
	}
	return nil
}

// Bounds returns the axis-aligned box around q.
func (q Quad) Bounds() Box {
	b := Box{X1: float32(q[0].X), Y1: float32(q[0].Y), X2: float32(q[0].X), Y2: float32(q[0].Y)}
	for _, p := range q[1:] {
		b.X1, b.Y1 = min(b.X1, float32(p.X)), min(b.Y1, float32(p.Y))
		b.X2, b.Y2 = max(b.X2, float32(p.X)), max(b.Y2, float32(p.Y))
	}
	return b
}

// DBOptions are the post-processing settings of DB (Differentiable
// Binarization) text detection, with PaddleOCR's names and defaults.
type DBOptions struct {
	// Thresh binarises the probability map (det_db_thresh, 0.3).
	Thresh float32
	// BoxThresh drops boxes whose mean probability is lower
	// (det_db_box_thresh, 0.6).
	BoxThresh float32
	// UnclipRatio grows each box by area*ratio/perimeter on every side
	// (det_db_unclip_ratio, 1.5), undoing the shrink DB trains with.
	UnclipRatio float64
	// MinSize drops boxes whose short side is smaller, in map pixels (3).
	MinSize float64
	// MaxCandidates bounds the regions looked at (1000).
	MaxCandidates int
}

// DefaultDBOptions returns PaddleOCR's defaults.
func DefaultDBOptions() DBOptions {
	return DBOptions{Thresh: 0.3, BoxThresh: 0.6, UnclipRatio: 1.5, MinSize: 3, MaxCandidates: 1000}
}

// TextBox is a detected text region with its detection score.
type TextBox struct {
	Quad  Quad    `json:"quad"`
	Score float32 `json:"score"`
}

// DBBoxes finds text boxes in a w x h probability map: pixels above
// Thresh are grouped into 8-connected regions; each region's minimum-area
// rectangle is scored by the mean probability over the region, grown by the
// unclip distance and returned in map coordinates, top to bottom then left
// to right.
//
// Regions are found as runs of pixels above Thresh, row by row, joined
// with the runs of the row above that touch them (union-find), in one pass
// over the map. A region's convex hull is that of its runs' end points:
// every pixel lies on a run between two of them.
func DBBoxes(prob []float32, w, h int, o DBOptions) []TextBox {
	if len(prob) < w*h || w == 0 || h == 0 {
		return nil
	}
	type run struct {
		y, x0, x1 int // x1 inclusive
		parent    int // union-find; a root is its region's first run
		sum       float64
	}
	var runs []run
	find := func(i int) int {
		for runs[i].parent != i {
			runs[i].parent = runs[runs[i].parent].parent
			i = runs[i].parent
		}
		return i
	}
	prevLo, prevEnd := 0, 0
	for y := range h {
		row := prob[y*w : (y+1)*w]
		curStart := len(runs)
		for x := 0; x < w; {
			if row[x] <= o.Thresh {
				x++
				continue
			}
			x0 := x
			var sum float64
			for x < w && row[x] > o.Thresh {
				sum += float64(row[x])
				x++
			}
			idx := len(runs)
			runs = append(runs, run{y: y, x0: x0, x1: x - 1, parent: idx, sum: sum})
			// Runs of the row above touching [x0-1, x] (8-connected).
			for k := prevLo; k < prevEnd; k++ {
				if runs[k].x1 < x0-1 {
					prevLo = k + 1
					continue
				}
				if runs[k].x0 > x {
					break
				}
				a, b := find(idx), find(k)
				if a != b {
					runs[max(a, b)].parent = min(a, b)
				}
			}
		}
		prevLo, prevEnd = curStart, len(runs)
	}
	// Gather each region's pixel count, probability sum and run end
	// points; a root comes before the rest of its region, so regions are
	// numbered in raster order of their first pixel.
	type region struct {
		count int
		sum   float64
		pts   []Point
	}
	var regions []region
	regionOf := make([]int, len(runs)) // of a root run
	for i, rn := range runs {
		r := find(i)
		if r == i {
			regionOf[i] = len(regions)
			regions = append(regions, region{})
		}
		g := &regions[regionOf[r]]
		g.count += rn.x1 - rn.x0 + 1
		g.sum += rn.sum
		g.pts = append(g.pts, Point{X: float64(rn.x0), Y: float64(rn.y)}, Point{X: float64(rn.x1), Y: float64(rn.y)})
	}
	var out []TextBox
	for n, g := range regions {
		if o.MaxCandidates > 0 && n >= o.MaxCandidates {
			break
		}
		if g.count < 4 {
			continue
		}
		rect, side := minAreaRect(convexHull(g.pts))
		if side < o.MinSize {
			continue
		}
		score := float32(g.sum / float64(g.count))
		if score < o.BoxThresh {
			continue
		}
		grown, side := unclip(rect, o.UnclipRatio)
		if side < o.MinSize+2 {
			continue
		}
		for k := range grown {
			grown[k].X = clamp(grown[k].X, 0, float64(w))
			grown[k].Y = clamp(grown[k].Y, 0, float64(h))
		}
		out = append(out, TextBox{Quad: grown, Score: score})
	}
	SortTextBoxes(out)
	return out
}

func cross(o, a, b Point) float64 { return (a.X-o.X)*(b.Y-o.Y) - (a.Y-o.Y)*(b.X-o.X) }

// convexHull returns the convex hull of pts counter-clockwise in image
// coordinates (Andrew's monotone chain).
func convexHull(pts []Point) []Point {
	p := slices.Clone(pts)
	slices.SortFunc(p, func(a, b Point) int {
		if c := cmp.Compare(a.X, b.X); c != 0 {
			return c
		}
		return cmp.Compare(a.Y, b.Y)
	})
	p = slices.Compact(p)
	if len(p) < 3 {
		return p
	}
	hull := make([]Point, 0, 2*len(p))
	for _, q := range p {
		for len(hull) >= 2 && cross(hull[len(hull)-2], hull[len(hull)-1], q) <= 0 {
			hull = hull[:len(hull)-1]
		}
		hull = append(hull, q)
	}
	lower := len(hull) + 1
	for i := len(p) - 2; i >= 0; i-- {
		for len(hull) >= lower && cross(hull[len(hull)-2], hull[len(hull)-1], p[i]) <= 0 {
			hull = hull[:len(hull)-1]
		}
		hull = append(hull, p[i])
	}
	return hull[:len(hull)-1]
}

// minAreaRect returns the minimum-area rectangle around a convex hull
// (rotating calipers: one side lies on a hull edge), with corners ordered
// by orderQuad, and its shorter side.
func minAreaRect(hull []Point) (Quad, float64) {
	if len(hull) == 0 {
		return Quad{}, 0
	}
	if len(hull) < 3 {
		b := Quad{hull[0], hull[len(hull)-1], hull[len(hull)-1], hull[0]}
		return orderQuad(b), 0
	}
	best := math.Inf(1)
	var rect Quad
	var short float64
	for i := range hull {
		a, b := hull[i], hull[(i+1)%len(hull)]
		ex, ey := b.X-a.X, b.Y-a.Y
		l := math.Hypot(ex, ey)
		if l == 0 {
			continue
		}
		ux, uy := ex/l, ey/l // edge direction
		vx, vy := -uy, ux    // normal
		minU, maxU, minV, maxV := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
		for _, p := range hull {
			u := (p.X-a.X)*ux + (p.Y-a.Y)*uy
			v := (p.X-a.X)*vx + (p.Y-a.Y)*vy
			minU, maxU = math.Min(minU, u), math.Max(maxU, u)
			minV, maxV = math.Min(minV, v), math.Max(maxV, v)
		}
		area := (maxU - minU) * (maxV - minV)
		if area < best-1e-9 {
			best = area
			at := func(u, v float64) Point { return Point{X: a.X + u*ux + v*vx, Y: a.Y + u*uy + v*vy} }
			rect = Quad{at(minU, minV), at(maxU, minV), at(maxU, maxV), at(minU, maxV)}
			short = math.Min(maxU-minU, maxV-minV)
		}
	}
	return orderQuad(rect), short
}

// orderQuad orders a rectangle's corners as PaddleOCR does: sorted by x,
// the left pair top then bottom, the right pair top then bottom, giving
// top-left, top-right, bottom-right, bottom-left.
func orderQuad(q Quad) Quad {
	p := q
	slices.SortStableFunc(p[:], func(a, b Point) int { return cmp.Compare(a.X, b.X) })
	tl, bl := p[0], p[1]
	if p[1].Y < p[0].Y {
		tl, bl = p[1], p[0]
	}
	tr, br := p[2], p[3]
	if p[3].Y < p[2].Y {
		tr, br = p[3], p[2]
	}
	return Quad{tl, tr, br, bl}
}

// unclip grows a rectangle by d = area*ratio/perimeter on every side (what
// offsetting the polygon with rounded joins and taking the minimum-area
// rectangle again gives for a rectangle), and returns its new short side.
func unclip(q Quad, ratio float64) (Quad, float64) {
	w := math.Hypot(q[1].X-q[0].X, q[1].Y-q[0].Y)
	h := math.Hypot(q[3].X-q[0].X, q[3].Y-q[0].Y)
	if w == 0 || h == 0 {
		return q, 0
	}
	d := w * h * ratio / (2 * (w + h))
	ux, uy := (q[1].X-q[0].X)/w, (q[1].Y-q[0].Y)/w
	vx, vy := (q[3].X-q[0].X)/h, (q[3].Y-q[0].Y)/h
	move := func(p Point, su, sv float64) Point {
		return Point{X: p.X + su*d*ux + sv*d*vx, Y: p.Y + su*d*uy + sv*d*vy}
	}
	g := Quad{move(q[0], -1, -1), move(q[1], 1, -1), move(q[2], 1, 1), move(q[3], -1, 1)}
	return orderQuad(g), math.Min(w, h) + 2*d
}

// SortTextBoxes orders boxes in reading order: by the top-left corner's y,
// and left to right for boxes whose tops are within 10 pixels.
func SortTextBoxes(b []TextBox) {
	slices.SortStableFunc(b, func(x, y TextBox) int {
		if math.Abs(x.Quad[0].Y-y.Quad[0].Y) < 10 {
			return cmp.Compare(x.Quad[0].X, y.Quad[0].X)
		}
		return cmp.Compare(x.Quad[0].Y, y.Quad[0].Y)
	})
}

// CropText cuts a text box out of img, straightened (a perspective warp to
// the box's width and height), and turned upright when it is much taller
// than wide, as PaddleOCR's get_rotate_crop_image does.
func CropText(img *Image, q Quad) *Image {
	w := int(math.Max(math.Hypot(q[1].X-q[0].X, q[1].Y-q[0].Y), math.Hypot(q[2].X-q[3].X, q[2].Y-q[3].Y)))
	h := int(math.Max(math.Hypot(q[3].X-q[0].X, q[3].Y-q[0].Y), math.Hypot(q[2].X-q[1].X, q[2].Y-q[1].Y)))
	w, h = max(w, 1), max(h, 1)
	crop := backendWarpQuad(img, q, w, h)
	if float64(h)/float64(w) >= 1.5 {
		crop = rotate90CCW(crop)
	}
	return crop
}

// RecInput prepares a text crop for PP-OCR recognition: resized to height
// h keeping the aspect ratio (width at most maxW, at least 1), normalised
// to (x/255 - 0.5) / 0.5 in BGR order, and right-padded with zeros to
// padW (0: no padding). It returns the CHW data and its width.
func RecInput(crop *Image, h, maxW, padW int) ([]float32, int) {
	w := int(math.Ceil(float64(h) * float64(crop.Width) / float64(crop.Height)))
	w = max(1, min(w, maxW))
	resized := ResizeImage(crop, w, h)
	outW := max(w, padW)
	data := make([]float32, 3*h*outW)
	for c := range 3 {
		for y := range h {
			for x := range w {
				v := float32(resized.Pix[(y*w+x)*3+c])
				data[c*h*outW+y*outW+x] = (v/255 - 0.5) / 0.5
			}
		}
	}
	return data, outW
}

// CTCDecode decodes one sequence of T steps of C class probabilities
// (index 0 the CTC blank): best class per step, repeats collapsed, blanks
// dropped, class i > 0 mapped to keys[i-1], and class len(keys)+1 to a
// space (PaddleOCR's use_space_char). The score is the mean probability of
// the characters kept (0 for an empty text).
func CTCDecode(probs []float32, t, c int, keys []string) (string, float32) {
	var b strings.Builder
	var sum float32
	n := 0
	prev := -1
	for s := range t {
		row := probs[s*c : (s+1)*c]
		best := 0
		for k := 1; k < c; k++ {
			if row[k] > row[best] {
				best = k
			}
		}
		if best != 0 && best != prev {
			switch {
			case best <= len(keys):
				b.WriteString(keys[best-1])
			default:
				b.WriteByte(' ')
			}
			sum += row[best]
			n++
		}
		prev = best
	}
	if n == 0 {
		return "", 0
	}
	return b.String(), sum / float32(n)
}
