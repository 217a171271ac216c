package provenance

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"edgeagent.dev"
	"github.com/stretchr/testify/require"
)

// canonical returns e as decoding gives it back: times in UTC without a
// monotonic reading, empty collections nil.
func canonical(e Event) Event {
	e.Time = time.Unix(e.Time.Unix(), int64(e.Time.Nanosecond())).UTC()
	e.LineageStart = time.Unix(e.LineageStart.Unix(), int64(e.LineageStart.Nanosecond())).UTC()
	if len(e.Parents) == 0 {
		e.Parents = nil
	}
	if len(e.Children) == 0 {
		e.Children = nil
	}
	if len(e.Updated) == 0 {
		e.Updated = nil
	}
	if len(e.Removed) == 0 {
		e.Removed = nil
	}
	return e
}

func ids(n int) []edgeagent.ID {
	out := make([]edgeagent.ID, n)
	for i := range out {
		out[i] = edgeagent.NewID()
	}
	return out
}

func codecCases() []struct {
	name string
	ev   Event
} {
	now := time.Now()
	return []struct {
		name string
		ev   Event
	}{
		{"minimal", Event{Type: EventDrop, FlowFileID: edgeagent.NewID()}},
		{"create with attributes", Event{
			ID: 1, Type: EventCreate, Time: now, FlowFileID: edgeagent.NewID(),
			Component: "frames", ComponentType: "CaptureFrame", Relationship: "success",
			Updated:     map[string]string{"filename": "f.jpg", "mime.type": "image/jpeg", "capture.time": now.Format(time.RFC3339Nano), "empty": ""},
			ContentSize: 123456, LineageStart: now,
		}},
		{"send", Event{
			ID: 1 << 40, Type: EventSend, Time: now, FlowFileID: edgeagent.NewID(),
			Component: "publish", ComponentType: "PublishMQTT", TransitURI: "tcp://central:1883/edge/jetson-01/frames",
			ContentSize: 10, LineageStart: now.Add(-time.Hour), Details: "qos=1",
		}},
		{"fork", Event{Type: EventFork, Time: now, FlowFileID: edgeagent.NewID(), Children: ids(3), LineageStart: now.Add(-time.Minute)}},
		{"join of many", Event{Type: EventJoin, Time: now, FlowFileID: edgeagent.NewID(), Parents: ids(500), ContentSize: 1 << 33}},
		{"clone", Event{Type: EventClone, Time: now, FlowFileID: edgeagent.NewID(), Children: ids(1), Parents: ids(1)}},
		{"attributes modified", Event{
			Type: EventAttributesModified, Time: now, FlowFileID: edgeagent.NewID(),
			Updated: map[string]string{"a": "1", "é": "ü\x00\xff"}, Removed: []string{"old", "", "old"},
		}},
		{"unicode and long strings", Event{
			Type: EventContentModified, Time: now, FlowFileID: edgeagent.NewID(),
			Component: "推論", Details: strings.Repeat("sha256:abcdef", 1000),
		}},
		{"zero times", Event{Type: EventRoute, FlowFileID: edgeagent.NewID()}},
		{"pre-1970 and far future", Event{
			Type: EventExpire, FlowFileID: edgeagent.NewID(),
			Time:         time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			LineageStart: time.Date(1901, 1, 1, 0, 0, 0, 1, time.FixedZone("x", 3600)),
		}},
		{"negative size", Event{Type: EventFetch, Time: now, FlowFileID: edgeagent.NewID(), ContentSize: -1}},
		{"receive", Event{Type: EventReceive, Time: now, FlowFileID: edgeagent.NewID(), TransitURI: "file:///data/in/a.txt"}},
	}
}

func TestEventTypes(t *testing.T) {
	seen := map[byte]bool{}
	for _, typ := range EventTypes() {
		require.True(t, typ.Valid(), typ)
		c := typ.code()
		require.False(t, seen[c], "duplicate code %d", c)
		seen[c] = true
		require.Equal(t, typ, typeOfCode(c))
	}
	require.Len(t, seen, 12)
	for _, typ := range []EventType{"", "create", "UNKNOWN"} {
		require.False(t, typ.Valid(), typ)
	}
	require.Equal(t, EventType(""), typeOfCode(0))
	require.Equal(t, EventType(""), typeOfCode(13))
}

func TestCodecRoundTrip(t *testing.T) {
	for _, tc := range codecCases() {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.ev.MarshalBinary()
			require.NoError(t, err)
			require.Equal(t, byte(codecVersion), b[0])
			var got Event
			require.NoError(t, got.UnmarshalBinary(b))
			require.Equal(t, canonical(tc.ev), got)

			// The encoding is deterministic (attributes are sorted).
			b2, err := got.MarshalBinary()
			require.NoError(t, err)
			require.Equal(t, b, b2)

			// The header decoder agrees with the full decoder.
			h, err := decodeHeader(b, true)
			require.NoError(t, err)
			require.Equal(t, got.Time, h.Time)
			require.Equal(t, got.FlowFileID, h.FlowFileID)
			require.Equal(t, got.Parents, h.Parents)
			require.Equal(t, got.Children, h.Children)
			h, err = decodeHeader(b, false)
			require.NoError(t, err)
			require.Equal(t, got.Time, h.Time)

			// Every truncation is an error, never a panic.
			for n := range len(b) {
				var e Event
				require.ErrorIs(t, e.UnmarshalBinary(b[:n]), ErrCorruptEvent, "prefix %d", n)
			}
			require.ErrorIs(t, got.UnmarshalBinary(append(b, 0)), ErrCorruptEvent, "trailing byte")
		})
	}
}

func TestCodecErrors(t *testing.T) {
	_, err := (&Event{Type: "BOGUS", FlowFileID: edgeagent.NewID()}).MarshalBinary()
	require.ErrorIs(t, err, ErrInvalidEvent)

	good, err := (&Event{Type: EventCreate, Time: time.Unix(1, 0), FlowFileID: edgeagent.NewID(),
		Updated: map[string]string{"a": "1", "b": "2"}}).MarshalBinary()
	require.NoError(t, err)

	// Swap the two attribute names: keys out of order are rejected.
	swapped := bytes.Replace(good, []byte("\x01a\x011\x01b\x012"), []byte("\x01b\x012\x01a\x011"), 1)
	require.NotEqual(t, good, swapped)
	// A duplicate attribute name is rejected too.
	dup := bytes.Replace(good, []byte("\x01a\x011\x01b\x012"), []byte("\x01a\x011\x01a\x012"), 1)
	require.NotEqual(t, good, dup)

	badVersion := bytes.Clone(good)
	badVersion[0] = 2
	badType := bytes.Clone(good)
	badType[2] = 99
	// good[4] is the nanoseconds of the time (0); make it 1e9.
	require.Equal(t, byte(0), good[4])
	badNanos := append(binary.AppendUvarint(bytes.Clone(good[:4]), 1e9), good[5:]...)

	for name, b := range map[string][]byte{
		"empty":            nil,
		"version only":     {codecVersion},
		"unknown version":  badVersion,
		"unknown type":     badType,
		"bad nanoseconds":  badNanos,
		"attribute order":  swapped,
		"duplicate name":   dup,
		"huge count":       append(bytes.Clone(good[:21]), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"overlong varint":  {codecVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"trailing garbage": append(bytes.Clone(good), 1, 2, 3),
	} {
		t.Run(name, func(t *testing.T) {
			var e Event
			require.ErrorIs(t, e.UnmarshalBinary(b), ErrCorruptEvent)
		})
	}
}

func TestSortableTime(t *testing.T) {
	times := []time.Time{
		{}, time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(-1, 999999999), time.Unix(0, 0), time.Unix(0, 1), base, base.Add(1),
		time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for i := 1; i < len(times); i++ {
		a, b := sortableTime(times[i-1]), sortableTime(times[i])
		require.LessOrEqual(t, a, b, "%s vs %s", times[i-1], times[i])
		if i > 2 && i < len(times)-2 {
			require.Less(t, a, b, "%s vs %s", times[i-1], times[i])
		}
	}
}

func TestEventJSON(t *testing.T) {
	e := canonical(codecCases()[1].ev)
	e.Parents = ids(1)
	b, err := json.Marshal(e)
	require.NoError(t, err)
	require.Contains(t, string(b), `"flowfile_id":"`+e.FlowFileID.String()+`"`)
	require.Contains(t, string(b), `"updated_attributes":{`)
	require.Contains(t, string(b), `"type":"CREATE"`)
	var back Event
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, e, canonical(back))
}

func TestInvolved(t *testing.T) {
	a, b, c := edgeagent.NewID(), edgeagent.NewID(), edgeagent.NewID()
	require.Equal(t, []edgeagent.ID{a}, involved(nil, a, nil, nil))
	require.Equal(t, []edgeagent.ID{a, b, c}, involved(nil, a, []edgeagent.ID{b, a, b}, []edgeagent.ID{c, a}))
	many := ids(100)
	got := involved(nil, a, append(many, a), many[:50])
	require.Equal(t, append([]edgeagent.ID{a}, many...), got)
	e := Event{FlowFileID: a, Parents: []edgeagent.ID{b}}
	require.True(t, e.Involves(a))
	require.True(t, e.Involves(b))
	require.False(t, e.Involves(c))
}

// FuzzEventUnmarshal checks that no input makes the decoder panic, and that
// whatever decodes re-encodes to something that decodes to the same event.
func FuzzEventUnmarshal(f *testing.F) {
	for _, tc := range codecCases() {
		if len(tc.ev.Parents) > 10 {
			continue // keep the corpus small
		}
		b, err := tc.ev.MarshalBinary()
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{codecVersion})
	f.Add([]byte{codecVersion, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if err := e.UnmarshalBinary(b); err != nil {
			require.ErrorIs(t, err, ErrCorruptEvent)
			return
		}
		enc, err := e.MarshalBinary()
		require.NoError(t, err)
		var again Event
		require.NoError(t, again.UnmarshalBinary(enc))
		require.Equal(t, e, again)
		enc2, err := again.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, enc, enc2)
		_, err = decodeHeader(b, true)
		require.NoError(t, err)
	})
}
