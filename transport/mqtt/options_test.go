package mqtt_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/mqtt"
)

func TestOptionsValidate(t *testing.T) {
	valid := mqtt.Options{Broker: "tcp://central:1883", ClientID: "edge-1"}
	for _, tc := range []struct {
		name string
		edit func(*mqtt.Options)
		want string // substring of the error; "" means valid
	}{
		{"minimal", func(*mqtt.Options) {}, ""},
		{"tcp without port", func(o *mqtt.Options) { o.Broker = "tcp://central" }, ""},
		{"ssl with CA", func(o *mqtt.Options) { o.Broker = "ssl://central"; o.CAFile = "/ca.pem" }, ""},
		{"wss", func(o *mqtt.Options) { o.Broker = "wss://central/mqtt"; o.ServerName = "x" }, ""},
		{"ws", func(o *mqtt.Options) { o.Broker = "ws://central:8080/mqtt" }, ""},
		{"password file", func(o *mqtt.Options) { o.Username = "u"; o.PasswordFile = "/pw" }, ""},
		{"empty broker", func(o *mqtt.Options) { o.Broker = "" }, "broker URL is empty"},
		{"bad scheme", func(o *mqtt.Options) { o.Broker = "http://central:1883" }, `scheme "http" is not supported`},
		{"no host", func(o *mqtt.Options) { o.Broker = "central:1883" }, "has no host"},
		{"credentials in URL", func(o *mqtt.Options) { o.Broker = "tcp://u:pw@central:1883" }, "must not contain credentials"},
		{"no client id", func(o *mqtt.Options) { o.ClientID = "" }, "client id is empty"},
		{"keepalive below 1s", func(o *mqtt.Options) { o.KeepAlive = 500 * time.Millisecond }, "below 1s"},
		{"negative timeout", func(o *mqtt.Options) { o.ConnectTimeout = -1 }, "negative"},
		{"window too big", func(o *mqtt.Options) { o.MaxInFlight = 70000 }, "outside 1..65535"},
		{"two passwords", func(o *mqtt.Options) { o.Username = "u"; o.Password = "p"; o.PasswordEnv = "E" }, "only one of"},
		{"password without user", func(o *mqtt.Options) { o.PasswordFile = "/pw" }, "needs a user name"},
		{"cert without key", func(o *mqtt.Options) { o.Broker = "ssl://c"; o.CertFile = "/c.pem" }, "set together"},
		{"TLS on tcp", func(o *mqtt.Options) { o.CAFile = "/ca.pem" }, "need an ssl:// or wss://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid
			tc.edit(&o)
			err := o.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, mqtt.ErrInvalidOptions)
			require.ErrorContains(t, err, tc.want)
		})
	}
	t.Run("every problem is reported", func(t *testing.T) {
		err := mqtt.Options{Broker: "x://", PasswordFile: "/pw"}.Validate()
		require.ErrorContains(t, err, "client id is empty")
		require.ErrorContains(t, err, "needs a user name")
	})
}

func TestResolvePassword(t *testing.T) {
	file := writeFile(t, "pw", testPassword+"\r\n")
	got, err := mqtt.Options{PasswordFile: file}.ResolvePassword()
	require.NoError(t, err)
	require.Equal(t, testPassword, got)

	t.Setenv("EDGE_PW_TEST", testPassword)
	got, err = mqtt.Options{PasswordEnv: "EDGE_PW_TEST"}.ResolvePassword()
	require.NoError(t, err)
	require.Equal(t, testPassword, got)

	got, err = mqtt.Options{Password: testPassword}.ResolvePassword()
	require.NoError(t, err)
	require.Equal(t, testPassword, got)

	got, err = mqtt.Options{}.ResolvePassword()
	require.NoError(t, err)
	require.Empty(t, got)

	_, err = mqtt.Options{PasswordEnv: "EDGE_PW_TEST_UNSET"}.ResolvePassword()
	require.ErrorContains(t, err, "EDGE_PW_TEST_UNSET is not set")
	_, err = mqtt.Options{PasswordFile: writeFile(t, "empty", "")}.ResolvePassword()
	require.ErrorContains(t, err, "empty")
	_, err = mqtt.Options{PasswordFile: "/does/not/exist"}.ResolvePassword()
	require.ErrorContains(t, err, "/does/not/exist")
}

func TestOptionsNeverPrintThePassword(t *testing.T) {
	o := mqtt.Options{Broker: "ssl://central:8883/?token=" + testPassword, ClientID: "c", Username: "u", Password: testPassword}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("connecting", "options", o)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("connecting", "options", o)
	for _, s := range []string{
		o.String(), fmt.Sprint(o), fmt.Sprintf("%v %+v %#v %s", o, o, o, o), fmt.Sprint(&o), logs.String(),
	} {
		require.NotContains(t, s, testPassword)
		require.Contains(t, s, "central:8883")
	}
	require.Contains(t, o.String(), "[redacted]")
	o.Password, o.PasswordFile = "", "/run/secrets/mqtt"
	require.Contains(t, o.String(), "file /run/secrets/mqtt")
}

func TestDefaultClientID(t *testing.T) {
	require.Equal(t, "jetson-01-publish", mqtt.DefaultClientID("jetson-01", "publish"))
	require.Equal(t, "edgeagent-pub", mqtt.DefaultClientID("", "pub"))

	long := mqtt.DefaultClientID("jetson-orin-nano-factory-7", "publish-frames-to-central")
	require.Len(t, long, 23)
	require.Equal(t, long, mqtt.DefaultClientID("jetson-orin-nano-factory-7", "publish-frames-to-central"), "stable")
	require.NotEqual(t, long, mqtt.DefaultClientID("jetson-orin-nano-factory-7", "publish-frames-to-central2"))

	odd := mqtt.DefaultClientID("jetson.01", "pub")
	require.Regexp(t, `^jetson-01-pub-[0-9a-f]{8}$`, odd, "replaced characters get a hash so IDs stay distinct")
	require.NotEqual(t, odd, mqtt.DefaultClientID("jetson-01", "pub"))
}
