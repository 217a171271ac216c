package buffer

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
)

func TestRecordRoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	tests := []struct {
		name string
		ff   *edgeagent.FlowFile
	}{
		{"empty", &edgeagent.FlowFile{ID: edgeagent.NewID(), Attributes: map[string]string{}}},
		{"full", &edgeagent.FlowFile{
			ID: edgeagent.NewID(), Claim: 42, Size: 1 << 40, EntryTime: now, LineageStart: now.Add(-time.Hour),
			Parents:    []edgeagent.ID{edgeagent.NewID(), edgeagent.NewID()},
			Attributes: map[string]string{"filename": "a.txt", "": "empty key", "unicode": "héllo ✓", "big": string(make([]byte, 5000))},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendRecord([]byte("prefix"), tt.ff)
			got, err := DecodeRecord(b[len("prefix"):])
			require.NoError(t, err)
			require.Equal(t, tt.ff.ID, got.ID)
			require.Equal(t, tt.ff.Claim, got.Claim)
			require.Equal(t, tt.ff.Size, got.Size)
			require.True(t, tt.ff.EntryTime.Equal(got.EntryTime))
			require.True(t, tt.ff.LineageStart.Equal(got.LineageStart))
			require.Equal(t, len(tt.ff.Parents), len(got.Parents))
			for i := range tt.ff.Parents {
				require.Equal(t, tt.ff.Parents[i], got.Parents[i])
			}
			require.Equal(t, tt.ff.Attributes, got.Attributes)
		})
	}
}

func TestRecordRejectsGarbage(t *testing.T) {
	valid := AppendRecord(nil, &edgeagent.FlowFile{ID: edgeagent.NewID(), Attributes: map[string]string{"a": "b"}})
	cases := map[string][]byte{
		"empty":        nil,
		"bad version":  append([]byte{9}, valid[1:]...),
		"truncated":    valid[:len(valid)-1],
		"trailing":     append(append([]byte(nil), valid...), 0),
		"huge count":   append(append([]byte(nil), valid[:len(valid)-7]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"only version": {recordVersion},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeRecord(b)
			require.Error(t, err)
			require.True(t, errors.Is(err, edgeagent.ErrRepositoryCorrupt))
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(AppendRecord(nil, &edgeagent.FlowFile{ID: edgeagent.NewID(), Claim: 7, Size: 3, Attributes: map[string]string{"k": "v"}, Parents: []edgeagent.ID{{1}}}))
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ff, err := DecodeRecord(b)
		if err != nil {
			return
		}
		again, err := DecodeRecord(AppendRecord(nil, ff))
		if err != nil {
			t.Fatalf("re-decoding an encoded record: %v", err)
		}
		if again.ID != ff.ID || again.Claim != ff.Claim || again.Size != ff.Size || len(again.Attributes) != len(ff.Attributes) || len(again.Parents) != len(ff.Parents) {
			t.Fatalf("round trip changed the record")
		}
	})
}

func FuzzDecodeItem(f *testing.F) {
	ff := &edgeagent.FlowFile{ID: edgeagent.NewID(), Size: 3, Claim: 9, Attributes: map[string]string{"a": "b"}}
	f.Add(appendItem(nil, 12345, ff, []byte("abc")))
	f.Add(appendItem(nil, 1, &edgeagent.FlowFile{ID: edgeagent.NewID(), Size: 1 << 20, Claim: 2}, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		enq, ff, inline, err := decodeItem(v)
		if err != nil {
			return
		}
		again := appendItem(nil, enq, ff, inline)
		_, ff2, inline2, err := decodeItem(again)
		if err != nil || ff2.ID != ff.ID || string(inline2) != string(inline) {
			t.Fatalf("round trip changed the item: %v", err)
		}
	})
}
