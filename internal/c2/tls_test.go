package c2_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/testpki"
)

// mtlsServer is a C2 endpoint that only talks to clients with a
// certificate from ca; it counts the heartbeats it got.
func mtlsServer(t *testing.T, ca *testpki.CA) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	server := ca.IssueServerCert(t)
	cert, err := tls.LoadX509KeyPair(server.CertFile, server.KeyFile)
	require.NoError(t, err)
	pem, err := os.ReadFile(ca.CertFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	var beats atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		beats.Add(1)
		fmt.Fprint(w, `{}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &beats
}

func TestHTTPChannelMutualTLS(t *testing.T) {
	ca := testpki.NewCA(t)
	client := ca.IssueClientCert(t, "edge-1")
	tests := []struct {
		name  string
		extra string
		beats bool
	}{
		{"client certificate", "    tls_ca_file: " + ca.CertFile + "\n    tls_cert_file: " + client.CertFile + "\n    tls_key_file: " + client.KeyFile + "\n", true},
		{"no client certificate", "    tls_ca_file: " + ca.CertFile + "\n", false},
		{"untrusted server", "    tls_ca_file: " + testpki.NewCA(t).CertFile + "\n    tls_cert_file: " + client.CertFile + "\n    tls_key_file: " + client.KeyFile + "\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, beats := mtlsServer(t, ca)
			dir := t.TempDir()
			section := "    protocol: http\n    url: " + srv.URL + "/c2/api/heartbeat\n    heartbeat_period: 100ms\n" + tt.extra
			r := startAgent(t, dir, flowYAML(dir, section, ""))
			r.startC2(nil)
			if tt.beats {
				require.Eventually(t, func() bool { return beats.Load() >= 2 }, 10*time.Second, 20*time.Millisecond)
				return
			}
			time.Sleep(500 * time.Millisecond)
			require.Zero(t, beats.Load(), "the TLS handshake fails: no heartbeat is accepted")
			// startAgent waits for a healthy flow only; gen fills backlog on
			// its own schedule.
			require.Eventually(t, func() bool { return r.backlog() == 20 }, 10*time.Second, 10*time.Millisecond,
				"the agent keeps running and fills backlog")
			require.NoError(t, r.a.Healthy())
		})
	}
}
