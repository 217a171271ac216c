package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseRetiredConnections(t *testing.T) {
	f, err := Load("testdata/valid/retired.yaml", testRegistry())
	require.NoError(t, err)
	require.True(t, f.Agent.WatchConfig)
	require.Equal(t, []*RetiredConnection{
		{Name: "frames/success/publish", Action: RetireDrain, To: "publish-v2", Line: 17, Col: 5},
		{Name: "debug-tap", Action: RetireDrop, Line: 18, Col: 5},
		{Name: "archive-feed", Action: RetireKeep, Line: 20, Col: 5},
		{Name: "old-batch", Action: RetireDrain, To: "publish-v2", Line: 21, Col: 5},
	}, f.Retired)
	require.Equal(t, f.Retired[1], f.RetiredConnection("debug-tap"))
	require.Nil(t, f.RetiredConnection("frames/success/publish-v2"), "a live connection is not retired")

	f, err = Load("testdata/valid/minimal.yaml", testRegistry())
	require.NoError(t, err)
	require.False(t, f.Agent.WatchConfig)
	require.Empty(t, f.Retired)
}

// TestRetiredDrainCountsAsInput: a processor whose only input is a retired
// connection being drained is not "missing an incoming connection".
func TestRetiredDrainCountsAsInput(t *testing.T) {
	const flow = `
processors:
  - {name: gen, type: GenerateFlowFile, auto_terminate: [success]}
  - {name: old, type: PutFile, properties: {directory: /tmp/x}, auto_terminate: [success, failure]}
`
	_, err := Parse("f.yaml", []byte(flow), testRegistry())
	require.EqualError(t, err, `f.yaml:4:5: processors[1]: processor "old" (PutFile) needs an incoming connection`)
	_, err = Parse("f.yaml", []byte(flow+
		"retired_connections: [{name: gen/success/old, to: old}]\n"), testRegistry())
	require.NoError(t, err)
	_, err = Parse("f.yaml", []byte(flow+
		"retired_connections: [{name: gen/success/old, action: drop}]\n"), testRegistry())
	require.ErrorContains(t, err, "needs an incoming connection", "only a drain feeds a processor")
}
