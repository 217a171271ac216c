package pulsartest

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Message is one message the broker stored, as a consumer would see it: a
// batch entry is split into its messages and the payload is decompressed.
type Message struct {
	Topic        string // full topic name: persistent://tenant/namespace/name
	ID           string // ledger:entry:batchIndex
	Payload      []byte
	Key          string
	OrderingKey  string
	Properties   map[string]string
	ProducerName string
	SequenceID   uint64
	PublishTime  time.Time
	EventTime    time.Time // zero when the producer set none
	// Compression is the codec the entry arrived with: none, lz4, zlib, zstd or snappy.
	Compression string
	// BatchSize is the number of messages in the entry this message came in
	// (1 for a message sent without batching).
	BatchSize int
}

// entryMeta is what the broker needs from an entry's MessageMetadata.
type entryMeta struct {
	numMessages int
	batched     bool
	key         string // partition_key, or ordering_key when set (Key_Shared routing)
}

func parseEntryMeta(meta []byte) (entryMeta, error) {
	f, err := decode(meta)
	if err != nil {
		return entryMeta{}, fmt.Errorf("decoding MessageMetadata: %w", err)
	}
	m := entryMeta{
		numMessages: 1,
		batched:     f.has(11),
		key:         f.str(6),
	}
	if k := f.bytes(18); len(k) > 0 {
		m.key = string(k)
	}
	if m.batched {
		m.numMessages = max(1, int(f.int(11, 1)))
	}
	return m, nil
}

var compressionNames = map[uint64]string{
	compressionNone:   "none",
	compressionLZ4:    "lz4",
	compressionZLib:   "zlib",
	compressionZstd:   "zstd",
	compressionSnappy: "snappy",
}

// maxUncompressed bounds what decompress produces: far above any batch a
// test sends, far below what a corrupt size field could ask for.
const maxUncompressed = 64 << 20

func decompress(codec uint64, src []byte, size int) ([]byte, error) {
	switch codec {
	case compressionNone:
		return src, nil
	case compressionLZ4:
		if size < 0 || size > maxUncompressed {
			return nil, fmt.Errorf("uncompressed size %d out of range", size)
		}
		dst := make([]byte, size)
		n, err := lz4.UncompressBlock(src, dst)
		if err != nil {
			return nil, err
		}
		return dst[:n], nil
	case compressionZLib:
		r, err := zlib.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(io.LimitReader(r, maxUncompressed))
	case compressionZstd:
		d, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxUncompressed), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		return d.DecodeAll(src, nil)
	case compressionSnappy:
		if n, err := snappy.DecodedLen(src); err != nil || n > maxUncompressed {
			return nil, fmt.Errorf("snappy: decoded length out of range")
		}
		return snappy.Decode(nil, src)
	}
	return nil, fmt.Errorf("unknown compression type %d", codec)
}

// decodeEntry splits one stored entry into the messages a consumer would
// receive.
func decodeEntry(topic string, e *entry) ([]Message, error) {
	rawMeta, payload, err := splitPayload(e.data)
	if err != nil {
		return nil, err
	}
	f, err := decode(rawMeta)
	if err != nil {
		return nil, fmt.Errorf("decoding MessageMetadata: %w", err)
	}
	codec := f.uint(8, compressionNone)
	payload, err = decompress(codec, payload, int(f.uint(9, 0)))
	if err != nil {
		return nil, fmt.Errorf("decompressing %s payload: %w", compressionNames[codec], err)
	}
	base := Message{
		Topic:        topic,
		ProducerName: f.str(1),
		SequenceID:   f.uint(2, 0),
		PublishTime:  time.UnixMilli(int64(f.uint(3, 0))),
		Compression:  compressionNames[codec],
		BatchSize:    1,
	}
	if !f.has(11) {
		m := base
		m.ID = fmt.Sprintf("%d:%d:-1", e.ledger, e.id)
		m.Payload = payload
		m.Key = f.str(6)
		m.OrderingKey = string(f.bytes(18))
		m.Properties = f.keyValues(4)
		if t := f.uint(12, 0); t > 0 {
			m.EventTime = time.UnixMilli(int64(t))
		}
		return []Message{m}, nil
	}
	n := int(f.int(11, 1))
	if n < 0 || n > len(payload)/4 {
		return nil, fmt.Errorf("batch of %d messages in %d bytes", n, len(payload))
	}
	out := make([]Message, 0, n)
	for i := 0; i < n; i++ {
		if len(payload) < 4 {
			return nil, fmt.Errorf("batch entry %d of %d: truncated", i, n)
		}
		size := binary.BigEndian.Uint32(payload)
		if uint64(size) > uint64(len(payload)-4) {
			return nil, fmt.Errorf("batch entry %d of %d: metadata size %d exceeds payload", i, n, size)
		}
		smm, err := decode(payload[4 : 4+size])
		if err != nil {
			return nil, fmt.Errorf("batch entry %d of %d: decoding SingleMessageMetadata: %w", i, n, err)
		}
		payload = payload[4+size:]
		psize := smm.uint(3, 0)
		if psize > uint64(len(payload)) {
			return nil, fmt.Errorf("batch entry %d of %d: payload size %d exceeds batch", i, n, psize)
		}
		m := base
		m.ID = fmt.Sprintf("%d:%d:%d", e.ledger, e.id, i)
		m.BatchSize = n
		m.Payload = payload[:psize]
		payload = payload[psize:]
		m.Key = smm.str(2)
		m.OrderingKey = string(smm.bytes(7))
		m.Properties = smm.keyValues(1)
		if smm.has(8) {
			m.SequenceID = smm.uint(8, 0)
		} else {
			m.SequenceID = base.SequenceID + uint64(i)
		}
		if t := smm.uint(5, 0); t > 0 {
			m.EventTime = time.UnixMilli(int64(t))
		}
		out = append(out, m)
	}
	return out, nil
}
