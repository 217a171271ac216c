package mqttbroker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/testpki"
	"edgeagent.dev/transport/mqtt"
	"edgeagent.dev/transport/mqttbroker"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startBroker starts an embedded broker on a free loopback port.
func startBroker(t testing.TB, cfg mqttbroker.Config) *mqttbroker.Broker {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	b, err := mqttbroker.New(cfg)
	require.NoError(t, err)
	require.NoError(t, b.Start(ctxT(t, 5*time.Second)))
	t.Cleanup(func() { require.NoError(t, b.Close(ctxT(t, 10*time.Second))) })
	return b
}

func clientOptions(url, id string) mqtt.Options {
	return mqtt.Options{
		Broker:               url,
		ClientID:             id,
		KeepAlive:            10 * time.Second,
		ConnectTimeout:       2 * time.Second,
		MaxReconnectInterval: 200 * time.Millisecond,
	}
}

func connectPublisher(t testing.TB, opts mqtt.Options) *mqtt.Publisher {
	t.Helper()
	p := mqtt.NewPublisher(opts)
	t.Cleanup(func() { _ = p.Close(ctxT(t, 10*time.Second)) })
	require.NoError(t, p.Connect(ctxT(t, 5*time.Second)))
	return p
}

func TestNewRefusesOpenListenerWithoutAuth(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  mqttbroker.Config
		err  error
	}{
		{"default is loopback", mqttbroker.Config{}, nil},
		{"loopback IPv6", mqttbroker.Config{Listen: "[::1]:1883"}, nil},
		{"localhost", mqttbroker.Config{Listen: "localhost:1883"}, nil},
		{"all interfaces", mqttbroker.Config{Listen: ":1883"}, mqttbroker.ErrInsecureListen},
		{"0.0.0.0", mqttbroker.Config{Listen: "0.0.0.0:1883"}, mqttbroker.ErrInsecureListen},
		{"LAN address", mqttbroker.Config{Listen: "192.168.1.10:1883"}, mqttbroker.ErrInsecureListen},
		{"host name", mqttbroker.Config{Listen: "edge.local:1883"}, mqttbroker.ErrInsecureListen},
		{"TLS is not auth", mqttbroker.Config{Listen: ":8883", CertFile: "c", KeyFile: "k"}, mqttbroker.ErrInsecureListen},
		{"password file", mqttbroker.Config{Listen: ":1883", PasswordFile: "/etc/edgeagent/mqtt.passwd"}, nil},
		{"mutual TLS", mqttbroker.Config{Listen: ":8883", CertFile: "c", KeyFile: "k", ClientCAFile: "ca"}, nil},
		{"anonymous on purpose", mqttbroker.Config{Listen: ":1883", AllowAnonymous: true}, nil},
		{"bad address", mqttbroker.Config{Listen: "1883"}, mqttbroker.ErrInvalidConfig},
		{"cert without key", mqttbroker.Config{CertFile: "c"}, mqttbroker.ErrInvalidConfig},
		{"client CA without TLS", mqttbroker.Config{ClientCAFile: "ca"}, mqttbroker.ErrInvalidConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := mqttbroker.New(tc.cfg)
			if tc.err == nil {
				require.NoError(t, err)
				require.NotNil(t, b)
				return
			}
			require.ErrorIs(t, err, tc.err)
			if errors.Is(tc.err, mqttbroker.ErrInsecureListen) {
				require.ErrorContains(t, err, "password file")
			}
		})
	}
}

func TestRoundTripThroughEmbeddedBroker(t *testing.T) {
	b := startBroker(t, mqttbroker.Config{})
	url := "tcp://" + b.Addr()
	c := mqtt.NewConsumer(clientOptions(url, "sub"), map[string]byte{"sensors/#": 1}, 100)
	t.Cleanup(func() { _ = c.Close(ctxT(t, 5*time.Second)) })
	require.NoError(t, c.Connect(ctxT(t, 5*time.Second)))
	p := connectPublisher(t, clientOptions(url, "pub"))
	for i := range 100 {
		require.NoError(t, p.Publish(ctxT(t, 5*time.Second), "sensors/t", 1, false, fmt.Appendf(nil, "%d", i)).Wait(ctxT(t, 5*time.Second)))
	}
	for i := range 100 {
		select {
		case m := <-c.Messages():
			require.Equal(t, fmt.Sprint(i), string(m.Payload))
			m.Ack()
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not received", i)
		}
	}
	require.Equal(t, int64(100), b.Stats().MessagesReceived)
}

// Three publishers publish QoS 1 at full speed for 3 s while a slow
// persistent subscriber receives: every acknowledged message arrives, and
// the broker reports no drop. (With mochi's default settings the same load
// lost most messages: 98,492 acknowledged, 15,063 delivered, 83,429 counted
// in InflightDropped.)
func TestSlowSubscriberGetsEveryQoS1Message(t *testing.T) {
	b := startBroker(t, mqttbroker.Config{})
	url := "tcp://" + b.Addr()

	var (
		mu       sync.Mutex
		received = map[string]int{}
		count    atomic.Int64
	)
	subOpts := paho.NewClientOptions().AddBroker(url).SetClientID("slow-sub").
		SetCleanSession(false).SetOrderMatters(true).SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			mu.Lock()
			received[string(m.Payload())]++
			mu.Unlock()
			count.Add(1)
			time.Sleep(100 * time.Microsecond) // slow-ish: about 5-10k messages/s
		})
	sub := paho.NewClient(subOpts)
	require.True(t, sub.Connect().WaitTimeout(5*time.Second))
	t.Cleanup(func() { sub.Disconnect(1000) })
	tok := sub.Subscribe("load/#", 1, nil)
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())

	const publishers = 3
	acked := make([][]string, publishers)
	var failed atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(3 * time.Second)
	for w := range publishers {
		p := connectPublisher(t, clientOptions(url, fmt.Sprintf("load-pub-%d", w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			window := make(chan struct {
				id string
				pd *mqtt.Pending
			}, 1000)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for x := range window {
					if err := x.pd.Wait(ctx); err != nil {
						failed.Add(1)
						continue
					}
					acked[w] = append(acked[w], x.id)
				}
			}()
			for i := 0; time.Now().Before(stop); i++ {
				id := fmt.Sprintf("p%d-%d", w, i)
				window <- struct {
					id string
					pd *mqtt.Pending
				}{id, p.Publish(ctx, "load/"+fmt.Sprint(w), 1, false, []byte(id))}
			}
			close(window)
			<-done
		}()
	}
	wg.Wait()
	total := 0
	for _, a := range acked {
		total += len(a)
	}
	require.Zero(t, failed.Load(), "no publish failed")
	require.Positive(t, total)

	missing := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range acked {
			for _, id := range a {
				if received[id] == 0 {
					n++
				}
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return missing() == 0 }, 10*time.Second, 20*time.Millisecond,
		"subscriber is missing messages")
	st := b.Stats()
	t.Logf("%d messages acknowledged to 3 publishers in 3s (%.0f/s), %d received, %d publishes waited, %d dropped",
		total, float64(total)/3, count.Load(), st.PublishWaits, st.Dropped)
	require.Zero(t, st.Dropped)
	require.Positive(t, st.PublishWaits, "the subscriber was slow enough to push back")
}

func TestPasswordFileAndTLS(t *testing.T) {
	ca := testpki.NewCA(t)
	server := ca.IssueServerCert(t)
	client := ca.IssueClientCert(t, "sensor-7")
	line, err := mqttbroker.HashPassword("sensor", "correct horse")
	require.NoError(t, err)
	pwFile := filepath.Join(t.TempDir(), "passwd")
	require.NoError(t, os.WriteFile(pwFile, []byte("# users\n"+line+"\n"), 0o600))

	b := startBroker(t, mqttbroker.Config{
		Listen:       "127.0.0.1:0",
		CertFile:     server.CertFile,
		KeyFile:      server.KeyFile,
		ClientCAFile: ca.CertFile,
		PasswordFile: pwFile,
	})
	url := "ssl://" + b.Addr()
	opts := clientOptions(url, "tls-pub")
	opts.CAFile = ca.CertFile
	opts.CertFile, opts.KeyFile = client.CertFile, client.KeyFile
	opts.Username, opts.Password = "sensor", "correct horse"
	p := connectPublisher(t, opts)
	require.NoError(t, p.Publish(ctxT(t, 5*time.Second), "a/b", 1, false, []byte("x")).Wait(ctxT(t, 5*time.Second)))

	wrong := opts
	wrong.ClientID, wrong.Password = "tls-wrong", "battery staple"
	pw := mqtt.NewPublisher(wrong)
	t.Cleanup(func() { _ = pw.Close(ctxT(t, 5*time.Second)) })
	require.ErrorIs(t, pw.Connect(ctxT(t, 5*time.Second)), mqtt.ErrBadCredentials)

	anon := opts
	anon.ClientID, anon.Username, anon.Password = "tls-anon", "", ""
	pa := mqtt.NewPublisher(anon)
	t.Cleanup(func() { _ = pa.Close(ctxT(t, 5*time.Second)) })
	require.ErrorIs(t, pa.Connect(ctxT(t, 5*time.Second)), mqtt.ErrNotAuthorized)

	nocert := opts
	nocert.ClientID, nocert.CertFile, nocert.KeyFile = "tls-nocert", "", ""
	pn := mqtt.NewPublisher(nocert)
	t.Cleanup(func() { _ = pn.Close(ctxT(t, 5*time.Second)) })
	require.ErrorIs(t, pn.Connect(ctxT(t, 5*time.Second)), mqtt.ErrTLSHandshake)
}

// Password files written by mosquitto_passwd work here too.
func TestMosquittoPasswordFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	// $7$ (PBKDF2-SHA512, mosquitto 2.0's default) and $6$ (SHA-512), made
	// by mosquitto_passwd 2.0.11 for password "hunter2".
	require.NoError(t, os.WriteFile(file, []byte(
		"bob:$7$101$vcxaUAOsIclNsdLO$cXhn7KmwH7m675yntKJdLGZO3+R3w89s8oJsGWErTWziDUZ3S3OHpYHrznBZUXSP50xI1HVM/4LwYAW1qhpARA==\n"+
			"eve:$6$Jg2zfPYKjqC8ccth$9Q0AzesZNknwsv9OQCHbKDZdwE5xOR77bygiBj2iU8lgwEXmxInnIo1HMSM1gzDifv7A830juaHxz9mc3yGOtQ==\n"), 0o600))
	b := startBroker(t, mqttbroker.Config{PasswordFile: file})
	for _, user := range []string{"bob", "eve"} {
		opts := clientOptions("tcp://"+b.Addr(), "mosq-"+user)
		opts.Username, opts.Password = user, "hunter2"
		connectPublisher(t, opts)
	}
	opts := clientOptions("tcp://"+b.Addr(), "mosq-bad")
	opts.Username, opts.Password = "bob", "hunter3"
	p := mqtt.NewPublisher(opts)
	t.Cleanup(func() { _ = p.Close(ctxT(t, 5*time.Second)) })
	require.ErrorIs(t, p.Connect(ctxT(t, 5*time.Second)), mqtt.ErrBadCredentials)
}

func TestStartRejectsBadPasswordFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	require.NoError(t, os.WriteFile(file, []byte("bob:plaintext-secret\n"), 0o600))
	b, err := mqttbroker.New(mqttbroker.Config{Listen: "127.0.0.1:0", PasswordFile: file})
	require.NoError(t, err)
	err = b.Start(ctxT(t, time.Second))
	require.ErrorContains(t, err, "line 1")
	require.NotContains(t, err.Error(), "plaintext-secret")
}
