package processors_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
)

func TestGenerateFlowFile(t *testing.T) {
	tests := []struct {
		name     string
		props    map[string]string
		triggers int
		count    int
		size     int
		mime     string
		same     bool   // every content equal
		text     bool   // content printable
		content  string // exact content, when set
	}{
		{name: "defaults", triggers: 1, count: 1, size: 0, mime: "text/plain", same: true},
		{name: "text reused", props: map[string]string{"file_size": "1KiB", "batch_size": "3"}, triggers: 2, count: 6, size: 1024, mime: "text/plain", same: true, text: true},
		{name: "text unique", props: map[string]string{"file_size": "64B", "batch_size": "4", "unique_flowfiles": "true"}, triggers: 1, count: 4, size: 64, mime: "text/plain", text: true},
		{name: "binary unique", props: map[string]string{"file_size": "256B", "batch_size": "3", "data_format": "binary", "unique_flowfiles": "true"}, triggers: 1, count: 3, size: 256, mime: "application/octet-stream"},
		{name: "binary reused", props: map[string]string{"file_size": "100B", "batch_size": "2", "data_format": "binary"}, triggers: 2, count: 4, size: 100, mime: "application/octet-stream", same: true},
		{name: "custom text", props: map[string]string{"custom_text": "hello world", "file_size": "1MiB", "batch_size": "2"}, triggers: 1, count: 2, size: 11, mime: "text/plain", same: true, content: "hello world"},
		{name: "custom text expression", props: map[string]string{"custom_text": "agent ${agent.id}"}, triggers: 1, count: 1, size: 16, mime: "text/plain", content: "agent test-agent", same: true},
		{name: "mime type", props: map[string]string{"custom_text": "{}", "mime_type": "application/json"}, triggers: 1, count: 1, size: 2, mime: "application/json", content: "{}", same: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := enginetest.NewRunner(t, processors.GenerateFlowFileSpec(), tt.props)
			r.Run(tt.triggers)
			out := r.Output("success")
			require.Len(t, out, tt.count)
			distinct := map[string]bool{}
			for _, o := range out {
				require.Len(t, o.Content, tt.size)
				require.Equal(t, o.FlowFile.ID.String(), o.FlowFile.Attr(edgeagent.AttrFilename))
				require.Equal(t, tt.mime, o.FlowFile.Attr(edgeagent.AttrMimeType))
				if tt.text {
					require.Regexp(t, `^[A-Za-z0-9+/]*$`, string(o.Content))
				}
				if tt.content != "" {
					require.Equal(t, tt.content, string(o.Content))
				}
				distinct[string(o.Content)] = true
			}
			if tt.same {
				require.Len(t, distinct, 1)
			} else {
				require.Len(t, distinct, tt.count, "unique content per flowfile")
			}
			require.Len(t, eventsOf(r.Events(), provenance.EventCreate), tt.count)
		})
	}
}

func TestGenerateFlowFileConfigErrors(t *testing.T) {
	spec := processors.GenerateFlowFileSpec()
	requireConfigError(t, spec, map[string]string{"batch_size": "0"}, "batch_size")
	requireConfigError(t, spec, map[string]string{"data_format": "csv"}, "data_format")
	requireConfigError(t, spec, map[string]string{"file_size": "lots"}, "file_size")
}
