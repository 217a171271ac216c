package inference

import "sync"

// Buffers reused across frames. A pipeline's input tensors, resized images,
// and probability maps have the same size frame after frame;
// taking them from a pool spares a fresh multi-megabyte allocation per frame
// (page faults, zeroing and garbage collection). There is one pool per
// element type and exact length, and only large buffers are pooled, so the
// number of pools stays that of the distinct input sizes. Buffers come back
// with stale contents: callers overwrite or clear them.

// minPooled is the smallest buffer (in elements) worth pooling.
const minPooled = 1 << 16

type poolKey struct {
	kind byte // 'f' float32, 'b' byte
	n    int
}

var pools sync.Map // poolKey -> *sync.Pool

func getBuf[T any](kind byte, n int) []T {
	if n >= minPooled {
		if p, ok := pools.Load(poolKey{kind, n}); ok {
			if b, ok := p.(*sync.Pool).Get().(*[]T); ok {
				return *b
			}
		}
	}
	return make([]T, n)
}

func putBuf[T any](kind byte, b []T) {
	if len(b) < minPooled {
		return
	}
	key := poolKey{kind, len(b)}
	p, ok := pools.Load(key)
	if !ok {
		p, _ = pools.LoadOrStore(key, new(sync.Pool))
	}
	p.(*sync.Pool).Put(&b)
}

func getFloats(n int) []float32 { return getBuf[float32]('f', n) }
func putFloats(b []float32)     { putBuf('f', b) }
func getBytes(n int) []byte     { return getBuf[byte]('b', n) }
func putBytes(b []byte)         { putBuf('b', b) }
