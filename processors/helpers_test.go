package processors_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/provenance"
)

// triggerFunc is a Processor made of a function.
type triggerFunc func(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error

func (f triggerFunc) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	return f(ctx, pc, s)
}

// wrapSpec returns spec with every processor it builds wrapped by wrap.
func wrapSpec(spec edgeagent.ProcessorSpec, wrap func(p edgeagent.Processor) edgeagent.Processor) edgeagent.ProcessorSpec {
	inner := spec.New
	spec.New = func(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
		p, err := inner(cfg)
		if err != nil {
			return nil, err
		}
		return wrap(p), nil
	}
	return spec
}

// requireConfigError checks that the spec refuses props, at validation or
// in its constructor, with a message containing want.
func requireConfigError(t *testing.T, spec edgeagent.ProcessorSpec, props map[string]string, want string) {
	t.Helper()
	_, err := enginetest.TryNewRunner(t, spec, props)
	require.Error(t, err)
	require.Contains(t, err.Error(), want)
}

// eventsOf returns the events of type typ.
func eventsOf(evs []provenance.Event, typ provenance.EventType) []provenance.Event {
	var out []provenance.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// ids returns the flowfile IDs of outs.
func ids(outs []enginetest.Output) []edgeagent.ID {
	out := make([]edgeagent.ID, len(outs))
	for i, o := range outs {
		out[i] = o.FlowFile.ID
	}
	return out
}

// contents returns the contents of outs as strings.
func contents(outs []enginetest.Output) []string {
	out := make([]string, len(outs))
	for i, o := range outs {
		out[i] = string(o.Content)
	}
	return out
}
