package pulsar_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/pulsar"
	"edgeagent.dev/transport/pulsar/pulsartest"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts pulsar.Options
		errs []string // substrings, one per expected problem; none means valid
	}{
		{name: "plain", opts: pulsar.Options{ServiceURL: "pulsar://broker:6650"}},
		{name: "tls", opts: pulsar.Options{
			ServiceURL: "pulsar+ssl://broker:6651",
			TLS:        pulsar.TLSOptions{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ValidateHostname: true},
			TokenEnv:   "PULSAR_TOKEN",
		}},
		{name: "empty", opts: pulsar.Options{}, errs: []string{"service URL is empty"}},
		{name: "scheme", opts: pulsar.Options{ServiceURL: "http://broker:8080"}, errs: []string{"scheme must be"}},
		{name: "no host", opts: pulsar.Options{ServiceURL: "pulsar://"}, errs: []string{"has no host"}},
		{name: "tls on plain url", opts: pulsar.Options{
			ServiceURL: "pulsar://broker:6650", TLS: pulsar.TLSOptions{CAFile: "ca.pem"},
		}, errs: []string{"need a pulsar+ssl://"}},
		{name: "half a key pair", opts: pulsar.Options{
			ServiceURL: "pulsar+ssl://broker:6651", TLS: pulsar.TLSOptions{CertFile: "c.pem"},
		}, errs: []string{"set together"}},
		{name: "two token sources and bad timeouts", opts: pulsar.Options{
			ServiceURL: "pulsar://b:6650", TokenFile: "/t", TokenEnv: "T",
			OperationTimeout: -time.Second, ConnectionTimeout: -time.Second,
		}, errs: []string{"at most one", "operation timeout", "connection timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if len(tc.errs) == 0 {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, pulsar.ErrInvalidOptions)
			require.Len(t, strings.Split(err.Error(), "\n"), len(tc.errs), err.Error())
			for _, want := range tc.errs {
				require.Contains(t, err.Error(), want)
			}
		})
	}
}

func TestProducerConsumerOptionsValidate(t *testing.T) {
	require.NoError(t, pulsar.ProducerOptions{Topic: "t", Compression: pulsar.CompressionZstd}.Validate())
	err := pulsar.ProducerOptions{Compression: "gzip", BatchingMaxMessages: -1}.Validate()
	require.ErrorIs(t, err, pulsar.ErrInvalidOptions)
	for _, want := range []string{"topic is empty", `compression "gzip"`, "max messages -1"} {
		require.Contains(t, err.Error(), want)
	}

	require.NoError(t, pulsar.ConsumerOptions{Topics: []string{"a"}, Subscription: "s", Type: pulsar.KeyShared}.Validate())
	err = pulsar.ConsumerOptions{
		Topics: []string{"a"}, TopicsPattern: "(", Type: "round_robin", InitialPosition: "middle",
	}.Validate()
	require.ErrorIs(t, err, pulsar.ErrInvalidOptions)
	for _, want := range []string{"not both", "topics pattern", "subscription name is empty", `type "round_robin"`, `position "middle"`} {
		require.Contains(t, err.Error(), want)
	}
}

func TestTLS(t *testing.T) {
	b := pulsartest.Start(t, pulsartest.WithTLS())
	files := b.TLSFiles()
	require.True(t, strings.HasPrefix(b.URL(), "pulsar+ssl://"))

	t.Run("trusted", func(t *testing.T) {
		c, _ := newClient(t, b.URL(), func(o *pulsar.Options) {
			o.TLS = pulsar.TLSOptions{CAFile: files.CAFile, ValidateHostname: true}
		})
		ctx := ctxT(t)
		p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "tls"})
		require.NoError(t, err)
		_, err = p.Send(ctx, pulsar.Message{FlowFileID: flowFileID(1), Payload: []byte("secure")})
		require.NoError(t, err)
		require.Equal(t, "secure", string(b.Messages("tls")[0].Payload))
	})

	t.Run("untrusted CA", func(t *testing.T) {
		other := pulsartest.NewTLSFiles(t)
		c, lb := newClient(t, b.URL(), func(o *pulsar.Options) {
			o.TLS = pulsar.TLSOptions{CAFile: other.CAFile}
			o.OperationTimeout = 500 * time.Millisecond
		})
		_, err := c.NewProducer(ctxT(t), pulsar.ProducerOptions{Topic: "tls"})
		require.ErrorContains(t, err, "certificate signed by unknown authority")
		require.Contains(t, lb.String(), "certificate signed by unknown authority")
	})
}

// TLS files that exist but cannot be used fail NewClient, naming the file,
// instead of failing every connection attempt later.
func TestNewClientRefusesUnusableTLSFiles(t *testing.T) {
	files := pulsartest.NewTLSFiles(t)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	require.NoError(t, os.WriteFile(junk, []byte("not PEM\n"), 0o600))
	for _, tc := range []struct {
		name string
		tls  pulsar.TLSOptions
		want string
	}{
		{"missing CA file", pulsar.TLSOptions{CAFile: junk + ".gone"}, "no such file"},
		{"CA file without a certificate", pulsar.TLSOptions{CAFile: junk}, "no PEM certificate found"},
		{"key that is not the certificate's", pulsar.TLSOptions{CAFile: files.CAFile, CertFile: files.ClientCertFile, KeyFile: junk}, "loading TLS client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pulsar.NewClient(pulsar.Options{ServiceURL: "pulsar+ssl://127.0.0.1:1", TLS: tc.tls})
			require.ErrorIs(t, err, pulsar.ErrInvalidOptions)
			require.ErrorContains(t, err, tc.want)
		})
	}
	c, err := pulsar.NewClient(pulsar.Options{ServiceURL: "pulsar+ssl://127.0.0.1:1",
		TLS: pulsar.TLSOptions{CAFile: files.CAFile, CertFile: files.ClientCertFile, KeyFile: files.ClientKeyFile}})
	require.NoError(t, err, "usable files")
	c.Close()
}

func TestMutualTLS(t *testing.T) {
	b := pulsartest.Start(t, pulsartest.WithMutualTLS())
	files := b.TLSFiles()
	c, _ := newClient(t, b.URL(), func(o *pulsar.Options) {
		o.TLS = pulsar.TLSOptions{CAFile: files.CAFile, CertFile: files.ClientCertFile, KeyFile: files.ClientKeyFile}
	})
	ctx := ctxT(t)
	p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "mtls"})
	require.NoError(t, err)
	_, err = p.Send(ctx, pulsar.Message{Payload: []byte("x")})
	require.NoError(t, err)

	// Without a client certificate the broker refuses the handshake.
	c2, _ := newClient(t, b.URL(), func(o *pulsar.Options) {
		o.TLS = pulsar.TLSOptions{CAFile: files.CAFile}
		o.OperationTimeout = 500 * time.Millisecond
	})
	_, err = c2.NewProducer(ctx, pulsar.ProducerOptions{Topic: "mtls"})
	require.Error(t, err)
}

func TestTokenAuth(t *testing.T) {
	const good = "eyJhbGciOiJIUzI1NiJ9.good-token-for-edge"
	const bad = "eyJhbGciOiJIUzI1NiJ9.WRONG-token-value"
	b := pulsartest.Start(t, pulsartest.WithToken(good))
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(good+"\n"), 0o600))

	t.Run("file", func(t *testing.T) {
		c, lb := newClient(t, b.URL(), func(o *pulsar.Options) { o.TokenFile = tokenFile })
		ctx := ctxT(t)
		p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "auth"})
		require.NoError(t, err)
		_, err = p.Send(ctx, pulsar.Message{Payload: []byte("ok")})
		require.NoError(t, err)
		require.NotContains(t, lb.String(), good)
	})

	t.Run("wrong token from env", func(t *testing.T) {
		t.Setenv("EDGE_PULSAR_TOKEN", bad)
		c, lb := newClient(t, b.URL(), func(o *pulsar.Options) {
			o.TokenEnv = "EDGE_PULSAR_TOKEN"
			o.OperationTimeout = 500 * time.Millisecond
		})
		before := b.AuthFailures()
		_, err := c.NewProducer(ctxT(t), pulsar.ProducerOptions{Topic: "auth"})
		require.ErrorIs(t, err, pulsar.ErrAuthentication)
		require.Contains(t, err.Error(), "Unable to authenticate")
		require.NotContains(t, err.Error(), bad)
		require.NotContains(t, err.Error(), good)
		require.NotContains(t, lb.String(), bad, "token in the logs")
		require.Contains(t, lb.String(), "Unable to authenticate")
		require.Greater(t, b.AuthFailures(), before)
		require.Positive(t, c.Stats().ConnectFailures)
		// pulsar-client-go counts the refused connection as closed just
		// after waking the waiting request (connection.Close closes closeCh,
		// then increments pulsar_client_connections_closed).
		require.Eventually(t, func() bool { return !c.Stats().Connected }, 5*time.Second, time.Millisecond)
	})

	t.Run("missing token", func(t *testing.T) {
		t.Setenv("EDGE_PULSAR_TOKEN", "")
		_, err := pulsar.NewClient(pulsar.Options{ServiceURL: b.URL(), TokenEnv: "EDGE_PULSAR_TOKEN"})
		require.ErrorIs(t, err, pulsar.ErrCredentials)
		require.Contains(t, err.Error(), "EDGE_PULSAR_TOKEN")
		_, err = pulsar.NewClient(pulsar.Options{ServiceURL: b.URL(), TokenFile: filepath.Join(dir, "absent")})
		require.ErrorIs(t, err, pulsar.ErrCredentials)
	})

	t.Run("no token", func(t *testing.T) {
		c, _ := newClient(t, b.URL(), func(o *pulsar.Options) { o.OperationTimeout = 500 * time.Millisecond })
		_, err := c.NewProducer(ctxT(t), pulsar.ProducerOptions{Topic: "auth"})
		require.ErrorIs(t, err, pulsar.ErrAuthentication)
	})
}

// The token file is read on every new connection: a rotated token is used
// after a reconnection.
func TestTokenRotation(t *testing.T) {
	b := pulsartest.Start(t, pulsartest.WithToken("first"))
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("first"), 0o600))
	c, _ := newClient(t, b.URL(), func(o *pulsar.Options) { o.TokenFile = tokenFile })
	ctx := ctxT(t)
	p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "rot", Name: "rot"})
	require.NoError(t, err)
	_, err = p.Send(ctx, pulsar.Message{Payload: []byte("1"), SequenceID: 1})
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(tokenFile, []byte("second"), 0o600))
	b.RequireToken("second")
	b.Restart()
	_, err = p.Send(ctx, pulsar.Message{Payload: []byte("2"), SequenceID: 2})
	require.NoError(t, err)
	require.Len(t, b.Messages("rot"), 2)
}

func TestStatsConnection(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL())
	require.False(t, c.Stats().Connected, "no connection before the first producer")
	ctx := ctxT(t)
	_, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "stats"})
	require.NoError(t, err)
	require.True(t, c.Stats().Connected)
	b.Stop()
	require.Eventually(t, func() bool { return !c.Stats().Connected }, 5*time.Second, 10*time.Millisecond)
	b.Restart()
	require.Eventually(t, func() bool { return c.Stats().Connected && c.Stats().Reconnects == 1 },
		10*time.Second, 10*time.Millisecond)
	fams, err := c.Metrics().Gather()
	require.NoError(t, err)
	require.NotEmpty(t, fams)
}

// The library's per-message debug records stay off unless asked for; its
// informational records come at debug level, reconnections at info.
func TestLibraryLogLevels(t *testing.T) {
	b := pulsartest.Start(t)
	c, lb := newClient(t, b.URL(), func(o *pulsar.Options) { o.LibraryDebugLogs = false })
	ctx := ctxT(t)
	p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: "logs"})
	require.NoError(t, err)
	_, err = p.Send(ctx, pulsar.Message{Payload: []byte("x")})
	require.NoError(t, err)
	b.Restart()
	_, err = p.Send(ctx, pulsar.Message{Payload: []byte("y")})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(lb.String(), `level=INFO msg="Reconnected producer to broker"`)
	}, 5*time.Second, 10*time.Millisecond)
	logs := lb.String()
	require.NotContains(t, logs, "Received send request")
	require.Contains(t, logs, `level=DEBUG msg="Connecting to broker"`)
	require.Contains(t, logs, `level=INFO msg="pulsar producer ready"`)
}

// Closing a client whose broker is gone takes about one operation timeout,
// not one per producer, and fails what was pending.
func TestCloseWithBrokerGone(t *testing.T) {
	b := pulsartest.Start(t)
	c, _ := newClient(t, b.URL(), func(o *pulsar.Options) { o.OperationTimeout = 300 * time.Millisecond })
	ctx := ctxT(t)
	var producers []*pulsar.Producer
	for i := range 4 {
		p, err := c.NewProducer(ctx, pulsar.ProducerOptions{Topic: fmt.Sprintf("gone-%d", i)})
		require.NoError(t, err)
		producers = append(producers, p)
	}
	b.Stop()
	var pending []*pulsar.Pending
	for _, p := range producers {
		pending = append(pending, p.SendAsync(ctx, pulsar.Message{Payload: []byte("x")}))
	}
	start := time.Now()
	c.Close()
	require.Less(t, time.Since(start), 4*300*time.Millisecond)
	for _, pend := range pending {
		_, err := pend.Wait(ctx)
		require.ErrorIs(t, err, pulsar.ErrClosed)
	}
}
