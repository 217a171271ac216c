package pulsartest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"testing"

	"edgeagent.dev/internal/testpki"
)

// TLSFiles are PEM files of a test CA generated for one test: the CA
// certificate, the broker's certificate and key (valid for 127.0.0.1 and
// localhost), and a client certificate and key for mutual TLS.
type TLSFiles struct {
	CAFile         string
	ServerCertFile string
	ServerKeyFile  string
	ClientCertFile string
	ClientKeyFile  string
}

// TLSFiles returns the broker's test CA files; nil without WithTLS.
func (b *Broker) TLSFiles() *TLSFiles { return b.certs }

// NewTLSFiles generates a test CA and certificates into a temporary
// directory of t (for tests that need a second, untrusted CA).
func NewTLSFiles(t testing.TB) *TLSFiles { return newTLSFiles(t) }

func newTLSFiles(t testing.TB) *TLSFiles {
	t.Helper()
	ca := testpki.NewCA(t)
	server := ca.IssueServerCert(t, "127.0.0.1", "::1", "localhost")
	client := ca.IssueClientCert(t, "edgeagent-test-client")
	return &TLSFiles{
		CAFile:         ca.CertFile,
		ServerCertFile: server.CertFile,
		ServerKeyFile:  server.KeyFile,
		ClientCertFile: client.CertFile,
		ClientKeyFile:  client.KeyFile,
	}
}

func (f *TLSFiles) serverConfig(mutual bool) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.ServerCertFile, f.ServerKeyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if mutual {
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM(ca) {
			return nil, errors.New("parsing test CA")
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
