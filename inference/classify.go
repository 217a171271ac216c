package inference

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// Class is one classification result.
type Class struct {
	Index int     `json:"index"`
	Label string  `json:"label,omitempty"`
	Score float32 `json:"score"`
}

// Softmax returns exp(x_i) / sum(exp(x)), computed stably.
func Softmax(x []float32) []float32 {
	out := make([]float32, len(x))
	if len(x) == 0 {
		return out
	}
	m := slices.Max(x)
	var sum float64
	for i, v := range x {
		e := math.Exp(float64(v - m))
		out[i] = float32(e)
		sum += e
	}
	for i := range out {
		out[i] = float32(float64(out[i]) / sum)
	}
	return out
}

// IsDistribution reports whether x already looks like probabilities:
// every value in [0, 1] and a sum within 1e-3 of 1.
func IsDistribution(x []float32) bool {
	var sum float64
	for _, v := range x {
		if v < 0 || v > 1 {
			return false
		}
		sum += float64(v)
	}
	return math.Abs(sum-1) < 1e-3
}

// TopK returns the k highest scores, best first (ties by lower index), with
// their labels when labels has them.
func TopK(scores []float32, k int, labels []string) []Class {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	k = min(max(k, 0), len(idx))
	out := make([]Class, k)
	for i := range k {
		out[i] = Class{Index: idx[i], Label: label(labels, idx[i]), Score: scores[idx[i]]}
	}
	return out
}

func label(labels []string, i int) string {
	if i >= 0 && i < len(labels) {
		return labels[i]
	}
	return ""
}

// Classify turns one row of logits or probabilities into the top k classes
// scoring at least minScore; softmax is applied unless the row already is a
// distribution.
func Classify(row []float32, k int, minScore float32, labels []string) []Class {
	probs := row
	if !IsDistribution(row) {
		probs = Softmax(row)
	}
	top := TopK(probs, k, labels)
	n := 0
	for _, c := range top {
		if c.Score >= minScore {
			top[n] = c
			n++
		}
	}
	return top[:n]
}

// ReadLines reads a labels or keys file: one entry per line, the trailing
// newline of each line (\n or \r\n) removed, nothing else trimmed (a key
// may be a space). A final empty line is not an entry.
func ReadLines(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		out = append(out, strings.TrimSuffix(sc.Text(), "\r"))
	}
	return out, sc.Err()
}

// LoadLines reads a labels or keys file (ReadLines).
func LoadLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	lines, err := ReadLines(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("reading %s: the file is empty", path)
	}
	return lines, nil
}
