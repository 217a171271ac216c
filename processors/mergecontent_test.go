package processors_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
)

func TestMergeContentBins(t *testing.T) {
	type input struct {
		content string
		attrs   map[string]string
	}
	tests := []struct {
		name      string
		props     map[string]string
		in        []input
		merged    []string // merged contents, in order
		originals int
		remaining int // left in the input queue
	}{
		{
			name:      "by count",
			props:     map[string]string{"min_entries": "3", "max_entries": "3"},
			in:        []input{{content: "a"}, {content: "b"}, {content: "c"}, {content: "d"}, {content: "e"}, {content: "f"}, {content: "g"}},
			merged:    []string{"abc", "def"},
			originals: 6, remaining: 1,
		},
		{
			name:      "header footer demarcator with escapes",
			props:     map[string]string{"min_entries": "2", "max_entries": "2", "header": `[\n`, "footer": `\n]`, "demarcator": `,\n`},
			in:        []input{{content: "1"}, {content: "2"}},
			merged:    []string{"[\n1,\n2\n]"},
			originals: 2,
		},
		{
			name:      "by size",
			props:     map[string]string{"min_size": "10B", "max_size": "20B", "min_entries": "1"},
			in:        []input{{content: "aaaaaa"}, {content: "bbbbbb"}, {content: "cccccc"}, {content: "dddddd"}, {content: "eeeeee"}},
			merged:    []string{"aaaaaabbbbbbcccccc", "ddddddeeeeee"},
			originals: 5,
		},
		{
			name:      "below min size stays queued",
			props:     map[string]string{"min_size": "100B"},
			in:        []input{{content: "aaaaaa"}, {content: "bbbbbb"}},
			remaining: 2,
		},
		{
			name:      "larger than max size alone",
			props:     map[string]string{"max_size": "4B"},
			in:        []input{{content: "ab"}, {content: "toolarge"}, {content: "cd"}},
			merged:    []string{"ab", "toolarge", "cd"},
			originals: 3,
		},
		{
			name:  "correlation attribute",
			props: map[string]string{"correlation_attribute": "sensor", "min_entries": "2", "max_entries": "2"},
			in: []input{
				{content: "a1", attrs: map[string]string{"sensor": "a"}},
				{content: "b1", attrs: map[string]string{"sensor": "b"}},
				{content: "x1"},
				{content: "a2", attrs: map[string]string{"sensor": "a"}},
				{content: "c1", attrs: map[string]string{"sensor": "c"}},
				{content: "b2", attrs: map[string]string{"sensor": "b"}},
			},
			merged:    []string{"a1a2", "b1b2"},
			originals: 4, remaining: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := enginetest.NewRunner(t, processors.MergeContentSpec(), tt.props)
			for _, in := range tt.in {
				r.Enqueue([]byte(in.content), in.attrs)
			}
			r.Run(1)
			require.Equal(t, tt.merged, nilIfEmpty(contents(r.Output("merged"))))
			require.Len(t, r.Output("original"), tt.originals)
			require.Equal(t, tt.remaining, r.InputCount())
			require.Equal(t, len(tt.merged) == 0, r.Yielded())
		})
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestMergeContentAttributesAndLineage(t *testing.T) {
	r := enginetest.NewRunner(t, processors.MergeContentSpec(), map[string]string{"min_entries": "3"})
	var parents []edgeagent.ID
	for i := range 3 {
		parents = append(parents, r.Enqueue([]byte(strconv.Itoa(i)), map[string]string{
			edgeagent.AttrMimeType: "text/plain", "common": "yes", "index": strconv.Itoa(i),
		}))
	}
	r.Run(1)
	merged := r.Output("merged")
	require.Len(t, merged, 1)
	m := merged[0].FlowFile
	require.Equal(t, "012", string(merged[0].Content))
	require.Equal(t, "3", m.Attr("merge.count"))
	age, err := strconv.Atoi(m.Attr("merge.bin_age"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, age, 0)
	require.Equal(t, "text/plain", m.Attr(edgeagent.AttrMimeType))
	require.Equal(t, "yes", m.Attr("common"))
	_, hasIndex := m.Lookup("index")
	require.False(t, hasIndex, "attributes the parents disagree on are dropped")
	require.ElementsMatch(t, parents, m.Parents)
	require.Equal(t, parents, ids(r.Output("original")))

	joins := eventsOf(r.Events(), provenance.EventJoin)
	require.Len(t, joins, 1)
	require.Equal(t, m.ID, joins[0].FlowFileID)
	require.ElementsMatch(t, parents, joins[0].Parents)
}

func TestMergeContentMimeTypesDisagree(t *testing.T) {
	r := enginetest.NewRunner(t, processors.MergeContentSpec(), map[string]string{"min_entries": "2"})
	r.Enqueue([]byte("a"), map[string]string{edgeagent.AttrMimeType: "text/plain"})
	r.Enqueue([]byte("b"), map[string]string{edgeagent.AttrMimeType: "application/json"})
	r.Run(1)
	merged := r.Output("merged")
	require.Len(t, merged, 1)
	_, ok := merged[0].FlowFile.Lookup(edgeagent.AttrMimeType)
	require.False(t, ok)
}

func TestMergeContentByAge(t *testing.T) {
	// The first run must come before the bin is max_bin_age old; the two
	// enqueues before it each commit with an fsync, which takes a while on
	// a loaded machine: 2s leaves room.
	r := enginetest.NewRunner(t, processors.MergeContentSpec(), map[string]string{"min_entries": "10", "max_bin_age": "2s"})
	r.Enqueue([]byte("a"), nil)
	r.Enqueue([]byte("b"), nil)
	r.Run(1)
	require.True(t, r.Yielded())
	require.Equal(t, 2, r.InputCount(), "a bin that is not ready stays queued")
	require.Empty(t, r.Output("merged"))

	var merged []enginetest.Output
	require.Eventually(t, func() bool {
		require.NoError(t, r.Trigger())
		merged = append(merged, r.Output("merged")...)
		return len(merged) > 0
	}, 10*time.Second, 50*time.Millisecond)
	require.Len(t, merged, 1)
	require.Equal(t, "ab", string(merged[0].Content))
	age, err := strconv.Atoi(merged[0].FlowFile.Attr("merge.bin_age"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, age, 2000)
	require.Zero(t, r.InputCount())
}

func TestMergeContentLargeBin(t *testing.T) {
	// 4 x max_entries are taken per run: four full bins; the rest waits for
	// the next run, where it is not enough for a bin.
	r := enginetest.NewRunner(t, processors.MergeContentSpec(), map[string]string{"min_entries": "100", "max_entries": "100", "demarcator": `\n`})
	var want []string
	for i := range 430 {
		s := strconv.Itoa(i)
		want = append(want, s)
		r.Enqueue([]byte(s), nil)
	}
	r.Run(1)
	merged := r.Output("merged")
	require.Len(t, merged, 4)
	for i, m := range merged {
		require.Equal(t, joinLines(want[i*100:(i+1)*100]), string(m.Content))
	}
	require.Len(t, r.Output("original"), 400)
	require.Equal(t, 30, r.InputCount())
	r.Run(1)
	require.Empty(t, r.Output("merged"))
	require.True(t, r.Yielded())
	require.Equal(t, 30, r.InputCount())
}

func joinLines(s []string) string {
	var b []byte
	for i, l := range s {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, l...)
	}
	return string(b)
}

func TestMergeContentConfigErrors(t *testing.T) {
	spec := processors.MergeContentSpec()
	requireConfigError(t, spec, map[string]string{"min_entries": "5", "max_entries": "2"}, "min_entries")
	requireConfigError(t, spec, map[string]string{"min_size": "2KiB", "max_size": "1KiB"}, "min_size")
	requireConfigError(t, spec, map[string]string{"merge_format": "tar"}, "merge_format")
	requireConfigError(t, spec, map[string]string{"max_entries": "0"}, "max_entries")
}
