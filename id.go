package edgeagent

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

// ID is a flowfile identifier: a UUID version 7 (RFC 9562), so IDs sort by
// creation time.
type ID [16]byte

// idGen hands out monotonic UUIDv7 values: within one millisecond the 12-bit
// rand_a field is used as a counter (RFC 9562 section 6.2, method 1).
type idGen struct {
	mu     sync.Mutex
	lastMS int64
	seq    uint16
}

var ids idGen

// NewID returns a new, time-ordered UUIDv7. IDs returned by one process are
// strictly increasing.
func NewID() ID {
	return ids.next(time.Now())
}

func (g *idGen) next(now time.Time) ID {
	var id ID
	if _, err := rand.Read(id[6:]); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err))
	}
	g.mu.Lock()
	ms := now.UnixMilli()
	if ms > g.lastMS {
		g.lastMS = ms
		g.seq = binary.BigEndian.Uint16(id[6:8]) & 0x07ff // leave room to count up
	} else {
		g.seq++
		if g.seq > 0x0fff { // counter exhausted: borrow the next millisecond
			g.lastMS++
			g.seq = 0
		}
	}
	ms, seq := g.lastMS, g.seq
	g.mu.Unlock()
	id[0] = byte(ms >> 40)
	id[1] = byte(ms >> 32)
	id[2] = byte(ms >> 24)
	id[3] = byte(ms >> 16)
	id[4] = byte(ms >> 8)
	id[5] = byte(ms)
	id[6] = 0x70 | byte(seq>>8)
	id[7] = byte(seq)
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id
}

// ParseID parses the canonical 36-character form of a UUID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("parsing flowfile id %q: %w", s, ErrInvalidID)
	}
	b := []byte(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
	if _, err := hex.Decode(id[:], b); err != nil {
		return ID{}, fmt.Errorf("parsing flowfile id %q: %w", s, ErrInvalidID)
	}
	return id, nil
}

// IsZero reports whether id is the zero value.
func (id ID) IsZero() bool { return id == ID{} }

// Time returns the creation time encoded in a UUIDv7 (millisecond precision).
func (id ID) Time() time.Time {
	ms := int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 | int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
	return time.UnixMilli(ms)
}

// String returns the canonical 36-character form.
func (id ID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
