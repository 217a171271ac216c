package processors_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
)

// loggerPC replaces the logger of a ProcessContext.
type loggerPC struct {
	edgeagent.ProcessContext
	log *slog.Logger
}

func (c loggerPC) Logger() *slog.Logger { return c.log }

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// records decodes the JSON log records written so far.
func (b *lockedBuffer) records(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.b.String()) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		out = append(out, m)
	}
	return out
}

// logCapturingSpec wraps spec so that its processors log as JSON into buf,
// at level and above.
func logCapturingSpec(spec edgeagent.ProcessorSpec, buf *lockedBuffer, level slog.Level) edgeagent.ProcessorSpec {
	log := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level}))
	return wrapSpec(spec, func(p edgeagent.Processor) edgeagent.Processor {
		return triggerFunc(func(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
			return p.OnTrigger(ctx, loggerPC{pc, log}, s)
		})
	})
}

func TestLogAttribute(t *testing.T) {
	long := strings.Repeat("x", 3000)
	tests := []struct {
		name        string
		props       map[string]string
		handlerLvl  slog.Level
		wantRecords int
		wantLevel   string
		wantMsg     string
		wantAttrs   map[string]any
		wantPayload any // nil: no payload field
	}{
		{
			name:        "defaults",
			wantRecords: 1, wantLevel: "INFO", wantMsg: "flowfile attributes",
			wantAttrs: map[string]any{"filename": "a.txt", "tmp.x": "1", "site": "north"},
		},
		{
			name:        "filters, prefix and payload",
			props:       map[string]string{"attributes_to_log": "tmp\\..*|site", "attributes_to_ignore": "site", "log_prefix": "[in]", "log_payload": "true", "log_level": "warn"},
			wantRecords: 1, wantLevel: "WARN", wantMsg: "[in] flowfile attributes",
			wantAttrs:   map[string]any{"tmp.x": "1"},
			wantPayload: long[:1024],
		},
		{
			name:        "level below the handler's",
			props:       map[string]string{"log_level": "debug"},
			handlerLvl:  slog.LevelInfo,
			wantRecords: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf lockedBuffer
			r := enginetest.NewRunner(t, logCapturingSpec(processors.LogAttributeSpec(), &buf, tt.handlerLvl), tt.props)
			id := r.Enqueue([]byte(long), map[string]string{"filename": "a.txt", "tmp.x": "1", "site": "north"})
			r.Run(1)
			out := r.Output("success")
			require.Equal(t, []edgeagent.ID{id}, ids(out))
			require.Equal(t, long, string(out[0].Content), "content unchanged")

			recs := buf.records(t)
			require.Len(t, recs, tt.wantRecords)
			if tt.wantRecords == 0 {
				return
			}
			rec := recs[0]
			require.Equal(t, tt.wantLevel, rec["level"])
			require.Equal(t, tt.wantMsg, rec["msg"])
			require.Equal(t, id.String(), rec["uuid"])
			require.EqualValues(t, len(long), rec["size"])
			require.Equal(t, tt.wantAttrs, rec["attributes"])
			require.Equal(t, tt.wantPayload, rec["payload"])
		})
	}
}

func TestLogAttributeDoesNotYieldWithoutInput(t *testing.T) {
	r := enginetest.NewRunner(t, processors.LogAttributeSpec(), nil)
	r.Run(1)
	require.False(t, r.Yielded(), "an empty queue is the engine's business: yielding would pause the other tasks")
}

func TestLogAttributeConfigErrors(t *testing.T) {
	spec := processors.LogAttributeSpec()
	requireConfigError(t, spec, map[string]string{"log_level": "trace"}, "log_level")
	requireConfigError(t, spec, map[string]string{"attributes_to_ignore": "["}, "attributes_to_ignore")
}
