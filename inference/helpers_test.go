package inference_test

import (
	"fmt"
	"math"
)

type mismatch struct{ got, want []float32 }

func (m *mismatch) Error() string { return fmt.Sprintf("got %v, want %v", m.got, m.want) }

func equalApprox(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-4 {
			return false
		}
	}
	return true
}
