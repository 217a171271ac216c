package provenance

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"edgeagent.dev"
)

// codecVersion is the first byte of every encoded event.
const codecVersion = 1

// Encoding, version 1. Integers are varints (encoding/binary: uvarint for
// unsigned, zig-zag varint for signed), strings are a uvarint length and the
// bytes, IDs are 16 raw bytes:
//
//	version        byte (1)
//	id             uvarint
//	type           byte (1..12, see eventTypes)
//	time           varint Unix seconds, uvarint nanoseconds (< 1e9)
//	flowfile       16 bytes
//	parents        uvarint count, 16 bytes each
//	children       uvarint count, 16 bytes each
//	lineage start  varint (time seconds - lineage seconds), uvarint nanoseconds
//	content size   varint
//	component, component type, relationship, transit URI: strings
//	updated        uvarint count, then key and value strings, keys strictly increasing
//	removed        uvarint count, then strings
//	details        string
//
// The fields up to and including children form the header, which Prune and
// Since read without decoding the rest.

// MarshalBinary encodes the event in the compact versioned binary form that
// the store keeps; its first byte is the codec version. It fails with
// ErrInvalidEvent when Type is not valid.
func (e *Event) MarshalBinary() ([]byte, error) {
	b, _, err := appendEvent(make([]byte, 0, encodedSizeHint(e)), e, nil)
	return b, err
}

// UnmarshalBinary decodes an event encoded by MarshalBinary, replacing every
// field of e. It never panics; on malformed input it returns an error
// wrapping ErrCorruptEvent and leaves e unspecified. The decoded event does
// not refer to b.
func (e *Event) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	*e = Event{}
	d.header(e, true)
	d.rest(e, string(b))
	return d.finish()
}

// encodedSizeHint estimates the encoded size of e, to size buffers.
func encodedSizeHint(e *Event) int {
	n := 64 + 16*(len(e.Parents)+len(e.Children)) +
		len(e.Component) + len(e.ComponentType) + len(e.Relationship) + len(e.TransitURI) + len(e.Details)
	for k, v := range e.Updated {
		n += len(k) + len(v) + 4
	}
	for _, r := range e.Removed {
		n += len(r) + 2
	}
	return n
}

// appendEvent appends the encoding of e to dst. keys is scratch space for
// sorting attribute names; the (possibly grown) scratch is returned for reuse.
func appendEvent(dst []byte, e *Event, keys []string) ([]byte, []string, error) {
	code := e.Type.code()
	if code == 0 {
		return dst, keys, fmt.Errorf("encoding event %d: type %q: %w", e.ID, e.Type, ErrInvalidEvent)
	}
	dst = append(dst, codecVersion)
	dst = binary.AppendUvarint(dst, e.ID)
	dst = append(dst, code)
	sec, nsec := e.Time.Unix(), e.Time.Nanosecond()
	dst = binary.AppendVarint(dst, sec)
	dst = binary.AppendUvarint(dst, uint64(nsec))
	dst = append(dst, e.FlowFileID[:]...)
	dst = appendIDs(dst, e.Parents)
	dst = appendIDs(dst, e.Children)
	// Wrapping subtraction; the decoder wraps back the same way.
	dst = binary.AppendVarint(dst, sec-e.LineageStart.Unix())
	dst = binary.AppendUvarint(dst, uint64(e.LineageStart.Nanosecond()))
	dst = binary.AppendVarint(dst, e.ContentSize)
	dst = appendString(dst, e.Component)
	dst = appendString(dst, e.ComponentType)
	dst = appendString(dst, e.Relationship)
	dst = appendString(dst, e.TransitURI)
	dst = binary.AppendUvarint(dst, uint64(len(e.Updated)))
	if len(e.Updated) > 0 {
		keys = keys[:0]
		for k := range e.Updated {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = appendString(dst, k)
			dst = appendString(dst, e.Updated[k])
		}
		clear(keys) // do not keep the caller's strings alive
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.Removed)))
	for _, r := range e.Removed {
		dst = appendString(dst, r)
	}
	dst = appendString(dst, e.Details)
	return dst, keys, nil
}

func appendIDs(dst []byte, ids []edgeagent.ID) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ids)))
	for i := range ids {
		dst = append(dst, ids[i][:]...)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decoder reads an encoded event. After the first problem every read returns
// a zero value and err says what went wrong.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("decoding %s at byte %d: %w", what, d.off, ErrCorruptEvent)
	}
}

func (d *decoder) byte(what string) byte {
	if d.err != nil || d.off >= len(d.b) {
		d.fail(what)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.off += n
	return v
}

// count reads a uvarint element count and checks that the rest of the input
// can hold that many elements of at least size bytes each, so garbage cannot
// make the decoder allocate much.
func (d *decoder) count(what string, size int) int {
	n := d.uvarint(what)
	if d.err != nil {
		return 0
	}
	if n > uint64((len(d.b)-d.off)/size) {
		d.fail(what)
		return 0
	}
	return int(n)
}

func (d *decoder) time(what string) (sec int64, nsec int64) {
	sec = d.varint(what)
	ns := d.uvarint(what)
	if ns >= 1e9 {
		d.fail(what)
		return 0, 0
	}
	return sec, int64(ns)
}

func (d *decoder) id(what string) (id edgeagent.ID) {
	if d.err != nil || len(d.b)-d.off < len(id) {
		d.fail(what)
		return id
	}
	copy(id[:], d.b[d.off:])
	d.off += len(id)
	return id
}

func (d *decoder) ids(what string) []edgeagent.ID {
	n := d.count(what, len(edgeagent.ID{}))
	if n == 0 {
		return nil
	}
	out := make([]edgeagent.ID, n)
	for i := range out {
		out[i] = d.id(what)
	}
	return out
}

// str returns the next string as a substring of s, which must hold the same
// bytes as d.b: one copy of the record serves every string field.
func (d *decoder) str(what string, s string) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(what)
		return ""
	}
	v := s[d.off : d.off+int(n)]
	d.off += int(n)
	return v
}

// header decodes the fields up to and including Children into e. With
// withIDs false, Parents and Children are skipped rather than decoded.
func (d *decoder) header(e *Event, withIDs bool) {
	if v := d.byte("codec version"); d.err == nil && v != codecVersion {
		d.err = fmt.Errorf("decoding event: codec version %d: %w", v, ErrCorruptEvent)
		return
	}
	e.ID = d.uvarint("event id")
	if t := typeOfCode(d.byte("event type")); t != "" {
		e.Type = t
	} else {
		d.fail("event type")
	}
	sec, nsec := d.time("event time")
	e.Time = time.Unix(sec, nsec).UTC()
	e.FlowFileID = d.id("flowfile id")
	if withIDs {
		e.Parents = d.ids("parents")
		e.Children = d.ids("children")
	} else {
		for range 2 {
			n := d.count("ids", len(edgeagent.ID{}))
			d.off += n * len(edgeagent.ID{})
		}
	}
}

// rest decodes the fields after the header; s holds the same bytes as d.b.
func (d *decoder) rest(e *Event, s string) {
	if d.err != nil {
		return
	}
	delta, linNsec := d.time("lineage start")
	e.LineageStart = time.Unix(e.Time.Unix()-delta, linNsec).UTC()
	e.ContentSize = d.varint("content size")
	e.Component = d.str("component", s)
	e.ComponentType = d.str("component type", s)
	e.Relationship = d.str("relationship", s)
	e.TransitURI = d.str("transit uri", s)
	if n := d.count("updated attributes", 2); n > 0 {
		e.Updated = make(map[string]string, n)
		prev := ""
		for i := range n {
			k := d.str("attribute name", s)
			v := d.str("attribute value", s)
			if d.err != nil {
				break
			}
			if i > 0 && strings.Compare(k, prev) <= 0 {
				d.fail("attribute order")
				break
			}
			e.Updated[k] = v
			prev = k
		}
	}
	if n := d.count("removed attributes", 1); n > 0 {
		e.Removed = make([]string, n)
		for i := range e.Removed {
			e.Removed[i] = d.str("removed attribute", s)
		}
	}
	e.Details = d.str("details", s)
}

// finish reports the first error, or trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("end of event (trailing bytes)")
	}
	return d.err
}

// eventHeader is what Prune and Since need from a record without decoding it
// whole.
type eventHeader struct {
	Time              time.Time
	FlowFileID        edgeagent.ID
	Parents, Children []edgeagent.ID
}

// decodeHeader decodes the header of an encoded event. With withIDs false the
// Parents and Children are skipped.
func decodeHeader(b []byte, withIDs bool) (eventHeader, error) {
	var e Event
	d := decoder{b: b}
	d.header(&e, withIDs)
	return eventHeader{Time: e.Time, FlowFileID: e.FlowFileID, Parents: e.Parents, Children: e.Children}, d.err
}
