package pulsartest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file is the wire layer: protobuf fields by number (PulsarApi.proto,
// protocol version 20) encoded and decoded with protowire, and the frame
// layout of the Pulsar binary protocol:
//
//	simple:  [totalSize u32][commandSize u32][BaseCommand]
//	payload: [totalSize u32][commandSize u32][BaseCommand]
//	         [magic 0x0e01 u16][crc32c u32][metadataSize u32][MessageMetadata][payload]
//
// The CRC32C covers everything from metadataSize to the end of the frame.

// BaseCommand.Type values (the field number of each command inside
// BaseCommand is the same as its type value).
const (
	cmdConnect             = 2
	cmdConnected           = 3
	cmdSubscribe           = 4
	cmdProducer            = 5
	cmdSend                = 6
	cmdSendReceipt         = 7
	cmdSendError           = 8
	cmdMessage             = 9
	cmdAck                 = 10
	cmdFlow                = 11
	cmdUnsubscribe         = 12
	cmdSuccess             = 13
	cmdError               = 14
	cmdCloseProducer       = 15
	cmdCloseConsumer       = 16
	cmdProducerSuccess     = 17
	cmdPing                = 18
	cmdPong                = 19
	cmdRedeliverUnacked    = 20
	cmdPartitionedMetadata = 21
	cmdPartitionedMetaResp = 22
	cmdLookup              = 23
	cmdLookupResponse      = 24
	cmdSeek                = 28
	cmdGetLastMessageID    = 29
	cmdGetLastMessageIDRes = 30
	cmdActiveConsumerChg   = 31
	cmdGetTopicsOfNS       = 32
	cmdGetTopicsOfNSResp   = 33
	cmdAckResponse         = 38
)

// ServerError values.
const (
	errUnknown                   = 0
	errPersistence               = 2
	errAuthentication            = 3
	errConsumerBusy              = 5
	errChecksumCode              = 9
	errUnsupportedVersion        = 10
	errConsumerNotFound          = 13
	errProducerBusy              = 16
	errNotAllowed                = 22
	maxProtocolVersion           = 20
	minProtocolVersion           = 6 // checksums on payloads
	defaultMaxMessageSize        = 5 * 1024 * 1024
	maxFrameSize                 = defaultMaxMessageSize + 10*1024
	magicCRC32C           uint16 = 0x0e01
)

// CompressionType values of MessageMetadata.compression.
const (
	compressionNone   = 0
	compressionLZ4    = 1
	compressionZLib   = 2
	compressionZstd   = 3
	compressionSnappy = 4
)

// Subscription types of CommandSubscribe.subType.
const (
	subExclusive = 0
	subShared    = 1
	subFailover  = 2
	subKeyShared = 3
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// noID is -1 in an unsigned varint field, which is how brokers write the
// ledger and entry of a message ID that does not exist (a de-duplicated send,
// an empty topic).
const noID = math.MaxUint64

// ---- decoding ----

type value struct {
	typ protowire.Type
	num uint64 // varint, fixed32 and fixed64 values
	buf []byte // bytes values (strings, nested messages, packed repeated)
}

// fields is one decoded protobuf message: every value of every field number,
// in the order they appeared.
type fields map[protowire.Number][]value

func decode(b []byte) (fields, error) {
	f := fields{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		v := value{typ: typ}
		switch typ {
		case protowire.VarintType:
			v.num, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			v.num = uint64(x)
		case protowire.Fixed64Type:
			v.num, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v.buf, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		f[num] = append(f[num], v)
	}
	return f, nil
}

func (f fields) has(n protowire.Number) bool { return len(f[n]) > 0 }

// uint returns the last value of a scalar field, or def when it is absent.
func (f fields) uint(n protowire.Number, def uint64) uint64 {
	vs := f[n]
	if len(vs) == 0 {
		return def
	}
	return vs[len(vs)-1].num
}

// int returns a scalar int32/int64 field (negative values arrive as 64-bit
// two's complement varints).
func (f fields) int(n protowire.Number, def int64) int64 {
	return int64(f.uint(n, uint64(def)))
}

func (f fields) bool(n protowire.Number) bool { return f.uint(n, 0) != 0 }

func (f fields) bytes(n protowire.Number) []byte {
	vs := f[n]
	if len(vs) == 0 {
		return nil
	}
	return vs[len(vs)-1].buf
}

func (f fields) str(n protowire.Number) string { return string(f.bytes(n)) }

// msg decodes a nested message field; absent fields decode as empty.
func (f fields) msg(n protowire.Number) fields {
	sub, err := decode(f.bytes(n))
	if err != nil {
		return fields{}
	}
	return sub
}

func (f fields) msgs(n protowire.Number) []fields {
	var out []fields
	for _, v := range f[n] {
		if sub, err := decode(v.buf); err == nil {
			out = append(out, sub)
		}
	}
	return out
}

// uints returns a repeated scalar field, packed or not.
func (f fields) uints(n protowire.Number) []uint64 {
	var out []uint64
	for _, v := range f[n] {
		if v.typ != protowire.BytesType {
			out = append(out, v.num)
			continue
		}
		b := v.buf
		for len(b) > 0 {
			x, k := protowire.ConsumeVarint(b)
			if k < 0 {
				break
			}
			out = append(out, x)
			b = b[k:]
		}
	}
	return out
}

// keyValues decodes repeated KeyValue{key=1, value=2}.
func (f fields) keyValues(n protowire.Number) map[string]string {
	kvs := f.msgs(n)
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.str(1)] = kv.str(2)
	}
	return m
}

// ---- encoding ----

// enc builds one protobuf message.
type enc []byte

func (e enc) uint(n protowire.Number, v uint64) enc {
	e = protowire.AppendTag(e, n, protowire.VarintType)
	return protowire.AppendVarint(e, v)
}

// int writes int32/int64 fields: negative values as 64-bit two's complement.
func (e enc) int(n protowire.Number, v int64) enc { return e.uint(n, uint64(v)) }

func (e enc) bool(n protowire.Number, v bool) enc {
	if v {
		return e.uint(n, 1)
	}
	return e.uint(n, 0)
}

func (e enc) bytes(n protowire.Number, b []byte) enc {
	e = protowire.AppendTag(e, n, protowire.BytesType)
	return protowire.AppendBytes(e, b)
}

func (e enc) str(n protowire.Number, s string) enc {
	e = protowire.AppendTag(e, n, protowire.BytesType)
	return protowire.AppendString(e, s)
}

func (e enc) msg(n protowire.Number, sub enc) enc { return e.bytes(n, sub) }

// messageIDData encodes MessageIdData{ledgerId=1, entryId=2, partition=3, batch_index=4}.
func messageIDData(ledger, entry uint64) enc {
	return enc(nil).uint(1, ledger).uint(2, entry)
}

// command wraps a command body in BaseCommand{type=1, <typ>=body}.
func command(typ int, body enc) enc {
	return enc(nil).uint(1, uint64(typ)).msg(protowire.Number(typ), body)
}

// ---- frames ----

type frame struct {
	typ  int
	body fields // the command's own message (BaseCommand field <typ>)
	// headersAndPayload is everything after the command: magic, checksum,
	// metadata size, metadata and payload. Empty for simple commands.
	headersAndPayload []byte
}

var errFrameTooBig = errors.New("frame too big")

func readFrame(r io.Reader) (*frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	total := binary.BigEndian.Uint32(hdr[:])
	if total > maxFrameSize || total < 4 {
		return nil, fmt.Errorf("%w: %d bytes", errFrameTooBig, total)
	}
	buf := make([]byte, total)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	cmdSize := binary.BigEndian.Uint32(buf)
	if cmdSize > total-4 {
		return nil, fmt.Errorf("command size %d exceeds frame size %d", cmdSize, total)
	}
	base, err := decode(buf[4 : 4+cmdSize])
	if err != nil {
		return nil, fmt.Errorf("decoding BaseCommand: %w", err)
	}
	typ := int(base.uint(1, 0))
	return &frame{
		typ:               typ,
		body:              base.msg(protowire.Number(typ)),
		headersAndPayload: buf[4+cmdSize:],
	}, nil
}

// simpleFrame renders a command without payload.
func simpleFrame(cmd enc) []byte {
	out := make([]byte, 8, 8+len(cmd))
	binary.BigEndian.PutUint32(out, uint32(4+len(cmd)))
	binary.BigEndian.PutUint32(out[4:], uint32(len(cmd)))
	return append(out, cmd...)
}

// payloadFrame renders a command followed by stored headersAndPayload
// (magic, checksum, metadata and payload exactly as the producer sent them).
func payloadFrame(cmd enc, headersAndPayload []byte) []byte {
	out := make([]byte, 8, 8+len(cmd)+len(headersAndPayload))
	binary.BigEndian.PutUint32(out, uint32(4+len(cmd)+len(headersAndPayload)))
	binary.BigEndian.PutUint32(out[4:], uint32(len(cmd)))
	out = append(out, cmd...)
	return append(out, headersAndPayload...)
}

var errChecksum = errors.New("checksum mismatch")

// splitPayload checks the magic number and CRC32C of headersAndPayload and
// returns the raw MessageMetadata and the (possibly compressed) payload.
func splitPayload(hp []byte) (meta, payload []byte, err error) {
	if len(hp) < 10 {
		return nil, nil, errors.New("missing message header")
	}
	if binary.BigEndian.Uint16(hp) != magicCRC32C {
		return nil, nil, fmt.Errorf("unexpected magic number %#04x", binary.BigEndian.Uint16(hp))
	}
	want := binary.BigEndian.Uint32(hp[2:])
	if got := crc32.Checksum(hp[6:], crcTable); got != want {
		return nil, nil, fmt.Errorf("%w: frame says %#08x, computed %#08x", errChecksum, want, got)
	}
	size := binary.BigEndian.Uint32(hp[6:])
	if uint64(size) > uint64(len(hp)-10) {
		return nil, nil, fmt.Errorf("metadata size %d exceeds payload", size)
	}
	return hp[10 : 10+size], hp[10+size:], nil
}
