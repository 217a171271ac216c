package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestC2Section(t *testing.T) {
	f, err := Load("testdata/valid/c2.yaml", testRegistry())
	require.NoError(t, err)
	c := f.Agent.C2
	require.NotNil(t, c)
	require.Equal(t, &C2{
		Protocol: "mqtt", Broker: "ssl://central:8883", AgentClass: "jetson-cams",
		HeartbeatPeriod: 10 * time.Second, UpdateTimeout: 20 * time.Second,
		Allow:     []string{"update_configuration", "update_asset", "describe"},
		AssetsDir: "/tmp/edgeagent-c2/assets",
		CAFile:    "/etc/edgeagent/ca.pem", CertFile: "/etc/edgeagent/agent.pem", KeyFile: "/etc/edgeagent/agent.key",
	}, c)
	require.True(t, c.Allows("describe"))
	require.False(t, c.Allows("restart"))

	f, err = Load("testdata/valid/minimal.yaml", testRegistry())
	require.NoError(t, err)
	require.Nil(t, f.Agent.C2, "no agent.c2: command and control is off")
}
