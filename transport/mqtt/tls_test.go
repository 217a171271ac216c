package mqtt_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/testpki"
	"edgeagent.dev/transport/mqtt"
	"edgeagent.dev/transport/mqtt/mqtttest"
)

const testPassword = "s3cret-Pa55word-never-printed"

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(f, []byte(content), 0o600))
	return f
}

// connectErr connects a publisher expected to fail and returns the error.
func connectErr(t *testing.T, opts mqtt.Options) error {
	t.Helper()
	p := mqtt.NewPublisher(opts)
	t.Cleanup(func() { _ = p.Close(ctxT(t, 5*time.Second)) })
	err := p.Connect(ctxT(t, 5*time.Second))
	require.Error(t, err)
	return err
}

// requireNoSecrets checks that s contains neither the password nor any part
// of the files' contents (keys, certificates).
func requireNoSecrets(t *testing.T, s string, files ...string) {
	t.Helper()
	require.NotContains(t, s, testPassword)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) > 16 && !strings.HasPrefix(line, "-----") {
				require.NotContains(t, s, line, "content of %s leaked", f)
			}
		}
	}
}

func TestTLS(t *testing.T) {
	broker := mqtttest.Start(t, mqtttest.WithTLS())
	require.True(t, strings.HasPrefix(broker.URL(), "ssl://"))
	opts := testOptions(broker.URL(), "tls-pub")
	opts.CAFile = broker.CA().CertFile
	p := connectPublisher(t, opts)
	publishAll(t, p, "tls/x", 1, 0, 10)

	sub := testOptions(broker.URL(), "tls-sub")
	sub.CAFile = broker.CA().CertFile
	sub.ServerName = "localhost" // also in the certificate
	c := connectConsumer(t, sub, map[string]byte{"tls/#": 1}, 10)
	publishAll(t, p, "tls/x", 1, 10, 3)
	require.Len(t, receive(t, c, 3, true, 5*time.Second), 3)
}

func TestTLSWrongCA(t *testing.T) {
	broker := mqtttest.Start(t, mqtttest.WithTLS())
	other := testpki.NewCA(t)
	opts := testOptions(broker.URL(), "tls-wrong-ca")
	opts.CAFile = other.CertFile
	err := connectErr(t, opts)
	require.ErrorIs(t, err, mqtt.ErrCertificateVerification)
	require.Contains(t, err.Error(), "certificate verification failed for the broker")
	require.Contains(t, err.Error(), broker.URL())
	requireNoSecrets(t, err.Error(), other.CertFile)
	t.Log(err)
}

func TestTLSWrongServerName(t *testing.T) {
	broker := mqtttest.Start(t, mqtttest.WithTLS())
	opts := testOptions(broker.URL(), "tls-wrong-name")
	opts.CAFile = broker.CA().CertFile
	opts.ServerName = "central.example.com"
	err := connectErr(t, opts)
	require.ErrorIs(t, err, mqtt.ErrCertificateVerification)
	t.Log(err)
}

func TestMutualTLS(t *testing.T) {
	broker := mqtttest.Start(t, mqtttest.WithMutualTLS())
	client := broker.CA().IssueClientCert(t, "jetson-01")

	opts := testOptions(broker.URL(), "mtls-pub")
	opts.CAFile = broker.CA().CertFile
	opts.CertFile, opts.KeyFile = client.CertFile, client.KeyFile
	p := connectPublisher(t, opts)
	publishAll(t, p, "mtls/x", 2, 0, 10)

	t.Run("no client certificate", func(t *testing.T) {
		opts := testOptions(broker.URL(), "mtls-nocert")
		opts.CAFile = broker.CA().CertFile
		err := connectErr(t, opts)
		require.ErrorIs(t, err, mqtt.ErrTLSHandshake)
		t.Log(err)
	})
	t.Run("client certificate from another CA", func(t *testing.T) {
		stranger := testpki.NewCA(t).IssueClientCert(t, "intruder")
		opts := testOptions(broker.URL(), "mtls-stranger")
		opts.CAFile = broker.CA().CertFile
		opts.CertFile, opts.KeyFile = stranger.CertFile, stranger.KeyFile
		err := connectErr(t, opts)
		require.ErrorIs(t, err, mqtt.ErrTLSHandshake)
		requireNoSecrets(t, err.Error(), stranger.KeyFile, stranger.CertFile)
		t.Log(err)
	})
	t.Run("key file that does not match", func(t *testing.T) {
		other := broker.CA().IssueClientCert(t, "other")
		opts := testOptions(broker.URL(), "mtls-mismatch")
		opts.CAFile = broker.CA().CertFile
		opts.CertFile, opts.KeyFile = client.CertFile, other.KeyFile
		err := mqtt.NewPublisher(opts).Connect(ctxT(t, time.Second)) // fails before any I/O: nothing to close
		require.Error(t, err)
		require.Contains(t, err.Error(), other.KeyFile, "names the file")
		requireNoSecrets(t, err.Error(), other.KeyFile, client.CertFile)
		t.Log(err)
	})
}

func TestPassword(t *testing.T) {
	broker := mqtttest.Start(t, mqtttest.WithPassword("edge", testPassword))

	t.Run("from file", func(t *testing.T) {
		opts := testOptions(broker.URL(), "pw-file")
		opts.Username = "edge"
		opts.PasswordFile = writeFile(t, "password", testPassword+"\n")
		p := connectPublisher(t, opts)
		publishAll(t, p, "pw/x", 1, 0, 3)
	})
	t.Run("from environment", func(t *testing.T) {
		t.Setenv("EDGE_MQTT_PASSWORD", testPassword)
		opts := testOptions(broker.URL(), "pw-env")
		opts.Username = "edge"
		opts.PasswordEnv = "EDGE_MQTT_PASSWORD"
		c := connectConsumer(t, opts, map[string]byte{"pw/#": 1}, 10)
		require.True(t, c.Stats().Connected)
	})
	t.Run("wrong password", func(t *testing.T) {
		opts := testOptions(broker.URL(), "pw-wrong")
		opts.Username = "edge"
		opts.PasswordFile = writeFile(t, "password", testPassword+"-not")
		err := connectErr(t, opts)
		require.ErrorIs(t, err, mqtt.ErrBadCredentials)
		require.Contains(t, err.Error(), "the broker refused the connection: bad user name or password")
		requireNoSecrets(t, err.Error(), opts.PasswordFile)
		t.Log(err)
	})
	t.Run("no credentials", func(t *testing.T) {
		// mosquitto answers an anonymous client with "not authorized" (5).
		err := connectErr(t, testOptions(broker.URL(), "pw-none"))
		require.ErrorIs(t, err, mqtt.ErrNotAuthorized)
		t.Log(err)
	})
	t.Run("publish while refused says why", func(t *testing.T) {
		opts := testOptions(broker.URL(), "pw-refused")
		opts.Username = "edge"
		opts.Password = testPassword + "-not"
		p := mqtt.NewPublisher(opts)
		t.Cleanup(func() { _ = p.Close(ctxT(t, 5*time.Second)) })
		require.ErrorIs(t, p.Connect(ctxT(t, 5*time.Second)), mqtt.ErrBadCredentials)
		err := p.Publish(ctxT(t, time.Second), "pw/x", 1, false, nil).Err()
		require.ErrorIs(t, err, mqtt.ErrNotConnected)
		require.ErrorIs(t, err, mqtt.ErrBadCredentials)
		requireNoSecrets(t, err.Error())
		requireNoSecrets(t, opts.String())
	})
}

// TLS and password together, with a bad password: the error is about the
// password, and contains neither the password nor the key.
func TestTLSAndWrongPassword(t *testing.T) {
	broker := mqtttest.Start(t, mqtttest.WithMutualTLS(), mqtttest.WithPassword("edge", testPassword))
	client := broker.CA().IssueClientCert(t, "jetson-01")
	opts := testOptions(broker.URL(), "tls-pw")
	opts.CAFile = broker.CA().CertFile
	opts.CertFile, opts.KeyFile = client.CertFile, client.KeyFile
	opts.Username = "edge"
	opts.PasswordEnv = "EDGE_TEST_PW"
	t.Setenv("EDGE_TEST_PW", testPassword+"x")
	err := connectErr(t, opts)
	require.ErrorIs(t, err, mqtt.ErrBadCredentials)
	requireNoSecrets(t, err.Error(), client.KeyFile)

	t.Setenv("EDGE_TEST_PW", testPassword)
	opts.ClientID = "tls-pw-ok"
	p := connectPublisher(t, opts)
	publishAll(t, p, "tlspw/x", 1, 0, 3)
}
