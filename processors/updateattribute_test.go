package processors_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/buffer"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
)

func TestUpdateAttribute(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		in    map[string]string
		want  map[string]string // every attribute afterwards
	}{
		{
			name:  "static and expression",
			props: map[string]string{"site": "north", "name.upper": "${filename:toUpper()}"},
			in:    map[string]string{"filename": "a.txt"},
			want:  map[string]string{"filename": "a.txt", "site": "north", "name.upper": "A.TXT"},
		},
		{
			name:  "all evaluated before any is applied",
			props: map[string]string{"a": "${b}", "b": "new"},
			in:    map[string]string{"b": "old"},
			want:  map[string]string{"a": "old", "b": "new"},
		},
		{
			name:  "overwrite",
			props: map[string]string{"filename": "${filename}.bak"},
			in:    map[string]string{"filename": "x"},
			want:  map[string]string{"filename": "x.bak"},
		},
		{
			name:  "delete by expression",
			props: map[string]string{"delete_attributes_expression": `tmp\..*|uuid`, "kept": "1"},
			in:    map[string]string{"tmp.a": "1", "tmp.b": "2", "tmpc": "3"},
			want:  map[string]string{"tmpc": "3", "kept": "1"},
		},
		{
			name:  "delete wins over set for incoming attributes, as in NiFi",
			props: map[string]string{"delete_attributes_expression": `tmp\..*`, "tmp.a": "set", "tmp.new": "added"},
			in:    map[string]string{"tmp.a": "1"},
			want:  map[string]string{"tmp.new": "added"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := enginetest.NewRunner(t, processors.UpdateAttributeSpec(), tt.props)
			id := r.Enqueue([]byte("c"), tt.in)
			r.Run(1)
			out := r.Output("success")
			require.Len(t, out, 1)
			require.Equal(t, id, out[0].FlowFile.ID)
			require.Equal(t, tt.want, out[0].FlowFile.Attributes)
			require.Equal(t, "c", string(out[0].Content))
			mods := eventsOf(r.Events(), provenance.EventAttributesModified)
			require.Len(t, mods, 1)
			require.Equal(t, id, mods[0].FlowFileID)
		})
	}
}

func TestUpdateAttributeBatchAndNoChange(t *testing.T) {
	r := enginetest.NewRunner(t, processors.UpdateAttributeSpec(), map[string]string{"n": "${i}"})
	for i := range 150 {
		r.Enqueue(nil, map[string]string{"i": strconv.Itoa(i), "n": strconv.Itoa(i)})
	}
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 100, "one batch per trigger")
	require.Equal(t, 50, r.InputCount())
	for i, o := range out {
		require.Equal(t, strconv.Itoa(i), o.FlowFile.Attr("n"))
	}
	require.Empty(t, eventsOf(r.Events(), provenance.EventAttributesModified), "nothing changed")
	r.Run(1)
	require.Len(t, r.Output("success"), 50)
	r.Run(1)
	require.False(t, r.Yielded())
	require.Empty(t, r.Output("success"))
}

func TestUpdateAttributeEvaluationErrorPenalizes(t *testing.T) {
	r := enginetest.NewRunner(t, processors.UpdateAttributeSpec(), map[string]string{"next": "${count:plus(1)}"})
	r.Enqueue(nil, map[string]string{"count": "abc"})
	r.Enqueue(nil, map[string]string{"count": "41"})
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 1)
	require.Equal(t, "42", out[0].FlowFile.Attr("next"))
	require.Equal(t, 1, r.InputCount(), "the flowfile that failed stays queued (penalized)")
	require.Empty(t, eventsOf(r.Events(), provenance.EventDrop))
}

func TestUpdateAttributeConfigErrors(t *testing.T) {
	requireConfigError(t, processors.UpdateAttributeSpec(), map[string]string{"delete_attributes_expression": "("}, "delete_attributes_expression")
}

// BenchmarkUpdateAttribute measures whole triggers (a batch of 100
// flowfiles: get, evaluate, set, commit to the bbolt repository), reported
// as flowfiles per second.
func BenchmarkUpdateAttribute(b *testing.B) {
	r := enginetest.NewRunner(b, processors.UpdateAttributeSpec(), map[string]string{
		"site": "north", "name.upper": "${filename:toUpper()}", "seq": "${i}",
	})
	const perTrigger = 100
	enqueue := func(n int) {
		ch := &buffer.Change{}
		now := time.Now()
		for i := range n {
			ff := &edgeagent.FlowFile{ID: edgeagent.NewID(), EntryTime: now, LineageStart: now,
				Attributes: map[string]string{"filename": "frame-" + strconv.Itoa(i) + ".jpg", "i": strconv.Itoa(i)}}
			ch.Add = append(ch.Add, buffer.Add{Queue: r.Harness().Input, FlowFile: ff})
		}
		require.NoError(b, r.Repo.Commit(context.Background(), ch))
	}
	b.ResetTimer()
	for done := 0; done < b.N; done += perTrigger {
		b.StopTimer()
		if r.InputCount() < perTrigger {
			enqueue(100 * perTrigger)
			r.Output("success")
		}
		b.StartTimer()
		require.NoError(b, r.Trigger())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flowfiles/s")
}
