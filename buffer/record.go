package buffer

import (
	"encoding/binary"
	"fmt"
	"time"

	"edgeagent.dev"
)

// recordVersion is the first byte of every encoded flowfile record.
const recordVersion = 1

// maxRecordAttrs bounds decoding of hostile input.
const maxRecordAttrs = 1 << 16

// AppendRecord appends the binary record of ff to dst and returns the
// extended slice. The record holds everything but the content bytes.
func AppendRecord(dst []byte, ff *edgeagent.FlowFile) []byte {
	dst = append(dst, recordVersion)
	dst = append(dst, ff.ID[:]...)
	dst = binary.AppendUvarint(dst, ff.Claim)
	dst = binary.AppendUvarint(dst, uint64(ff.Size))
	dst = binary.AppendVarint(dst, timeNanos(ff.EntryTime))
	dst = binary.AppendVarint(dst, timeNanos(ff.LineageStart))
	dst = binary.AppendUvarint(dst, uint64(len(ff.Parents)))
	for _, p := range ff.Parents {
		dst = append(dst, p[:]...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(ff.Attributes)))
	for k, v := range ff.Attributes {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// InlineMax is the largest content stored inside the queue item itself
// instead of the content store: small flowfiles then cost no content writes,
// deletions or reads of their own. Clones copy inline content.
const InlineMax = 4096

// IsInline reports whether content of size bytes is stored inline.
func IsInline(size int64) bool { return size > 0 && size <= InlineMax }

// appendItem appends a queue item value: the enqueue time (8 bytes), the
// record's length (4 bytes) and the record, then the inline content (if any).
func appendItem(dst []byte, enq int64, ff *edgeagent.FlowFile, inline []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(enq))
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = AppendRecord(dst, ff)
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return append(dst, inline...)
}

// decodeItem splits a queue item value. inline aliases v.
func decodeItem(v []byte) (enq int64, ff *edgeagent.FlowFile, inline []byte, err error) {
	if len(v) < 12 {
		return 0, nil, nil, fmt.Errorf("decoding queue item: short value: %w", edgeagent.ErrRepositoryCorrupt)
	}
	enq = int64(binary.BigEndian.Uint64(v))
	n := uint64(binary.BigEndian.Uint32(v[8:]))
	if n > uint64(len(v)-12) {
		return 0, nil, nil, fmt.Errorf("decoding queue item: bad record length: %w", edgeagent.ErrRepositoryCorrupt)
	}
	rec := v[12 : 12+n]
	if ff, err = DecodeRecord(rec); err != nil {
		return 0, nil, nil, err
	}
	inline = v[12+n:]
	want := 0
	if IsInline(ff.Size) {
		want = int(ff.Size)
	}
	if len(inline) != want {
		return 0, nil, nil, fmt.Errorf("decoding queue item %s: %d inline content bytes, want %d: %w", ff.ID, len(inline), want, edgeagent.ErrRepositoryCorrupt)
	}
	return enq, ff, inline, nil
}

// DecodeRecord decodes a record made by AppendRecord. It never panics;
// malformed input returns an error wrapping edgeagent.ErrRepositoryCorrupt.
func DecodeRecord(b []byte) (*edgeagent.FlowFile, error) {
	d := decoder{b: b}
	if v := d.byte(); v != recordVersion {
		if d.err == nil {
			d.fail("unknown record version %d", v)
		}
		return nil, d.err
	}
	ff := &edgeagent.FlowFile{}
	copy(ff.ID[:], d.bytes(16))
	ff.Claim = d.uvarint()
	ff.Size = int64(d.uvarint())
	ff.EntryTime = nanosTime(d.varint())
	ff.LineageStart = nanosTime(d.varint())
	if n := d.count(16); n > 0 {
		ff.Parents = make([]edgeagent.ID, n)
		for i := range ff.Parents {
			copy(ff.Parents[i][:], d.bytes(16))
		}
	}
	n := d.count(2)
	ff.Attributes = make(map[string]string, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := string(d.bytes(int(d.uvarintMax(uint64(len(d.b))))))
		v := string(d.bytes(int(d.uvarintMax(uint64(len(d.b))))))
		ff.Attributes[k] = v
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err == nil && ff.Size < 0 {
		d.fail("negative size")
	}
	if d.err != nil {
		return nil, d.err
	}
	return ff, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("decoding flowfile record: %s: %w", fmt.Sprintf(format, args...), edgeagent.ErrRepositoryCorrupt)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.fail("truncated")
		return make([]byte, max(n, 0))
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarintMax(limit uint64) uint64 {
	v := d.uvarint()
	if v > limit {
		d.fail("length %d beyond record", v)
		return 0
	}
	return v
}

// count reads an element count whose elements take at least minSize bytes.
func (d *decoder) count(minSize int) int {
	v := d.uvarint()
	if v > maxRecordAttrs || v*uint64(minSize) > uint64(len(d.b)) {
		d.fail("count %d beyond record", v)
		return 0
	}
	return int(v)
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
