package processors_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
)

func TestRouteOnAttribute(t *testing.T) {
	// Routes are evaluated in flow order; the runner orders dynamic
	// properties by name.
	r := enginetest.NewRunner(t, processors.RouteOnAttributeSpec(), map[string]string{
		"a_text":  "${filename:endsWith('.txt')}",
		"b_large": "${size:gt(100)}",
	})
	txtLarge := r.Enqueue([]byte("both"), map[string]string{"filename": "a.txt", "size": "500"})
	txtOnly := r.Enqueue([]byte("text"), map[string]string{"filename": "b.txt", "size": "5"})
	none := r.Enqueue([]byte("none"), map[string]string{"filename": "c.bin", "size": "5"})
	bad := r.Enqueue([]byte("bad"), map[string]string{"filename": "d.bin", "size": "many"})
	r.Run(1)

	text := r.Output("a_text")
	require.Equal(t, []edgeagent.ID{txtLarge, txtOnly}, ids(text), "the first match gets the original")
	large := r.Output("b_large")
	require.Len(t, large, 1)
	clone := large[0]
	require.NotEqual(t, txtLarge, clone.FlowFile.ID)
	require.Equal(t, "both", string(clone.Content))
	require.Equal(t, "a.txt", clone.FlowFile.Attr("filename"))
	require.Equal(t, "b_large", clone.FlowFile.Attr(processors.AttrRoute))
	require.Equal(t, "a_text", text[0].FlowFile.Attr(processors.AttrRoute))

	unmatched := r.Output("unmatched")
	require.Equal(t, []edgeagent.ID{none}, ids(unmatched))
	require.Equal(t, "unmatched", unmatched[0].FlowFile.Attr(processors.AttrRoute))

	failure := r.Output("failure")
	require.Equal(t, []edgeagent.ID{bad}, ids(failure))
	require.Contains(t, failure[0].FlowFile.Attr(edgeagent.AttrErrorMessage), "b_large")

	evs := r.Events()
	clones := eventsOf(evs, provenance.EventClone)
	require.Len(t, clones, 1)
	require.Equal(t, txtLarge, clones[0].FlowFileID)
	require.Equal(t, []edgeagent.ID{clone.FlowFile.ID}, clones[0].Children)

	routes := map[edgeagent.ID][]string{}
	for _, e := range eventsOf(evs, provenance.EventRoute) {
		routes[e.FlowFileID] = append(routes[e.FlowFileID], e.Relationship)
	}
	require.Equal(t, map[edgeagent.ID][]string{
		txtLarge:          {"a_text"},
		clone.FlowFile.ID: {"b_large"},
		txtOnly:           {"a_text"},
		none:              {"unmatched"},
	}, routes)
}

func TestRouteOnAttributeDoesNotYieldWithoutInput(t *testing.T) {
	r := enginetest.NewRunner(t, processors.RouteOnAttributeSpec(), map[string]string{"a": "${x:equals('1')}"})
	r.Run(1)
	require.False(t, r.Yielded())
}

func TestRouteOnAttributeConfigErrors(t *testing.T) {
	spec := processors.RouteOnAttributeSpec()
	requireConfigError(t, spec, map[string]string{}, "no routes")
	requireConfigError(t, spec, map[string]string{"unmatched": "${a}"}, "fixed relationship")
	requireConfigError(t, spec, map[string]string{"failure": "${a}"}, "fixed relationship")
}
