package c2

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"edgeagent.dev/internal/config"
)

// httpClient builds the HTTP client of the http channel and of downloads:
// agent.c2.tls_ca_file verifies the server, tls_cert_file and tls_key_file
// are the client certificate (mutual TLS).
func httpClient(cfg *config.C2) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading agent.c2.tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reading agent.c2.tls_ca_file %s: no PEM certificate in it", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading agent.c2.tls_cert_file %s and tls_key_file %s: %w", cfg.CertFile, cfg.KeyFile, errors.Unwrap(err))
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}, nil
}

// authorize adds basic authentication when agent.c2.username is set.
func (c *Client) authorize(req *http.Request) error {
	if c.cfg.Username == "" {
		return nil
	}
	var pw string
	if c.cfg.PasswordFile != "" {
		b, err := os.ReadFile(c.cfg.PasswordFile)
		if err != nil {
			return fmt.Errorf("reading agent.c2.password_file: %w", err)
		}
		pw = strings.TrimSuffix(string(b), "\n")
	}
	req.SetBasicAuth(c.cfg.Username, pw)
	return nil
}

// httpChannel speaks the MiNiFi C2 REST protocol: POST heartbeat, POST
// acknowledge.
type httpChannel struct {
	c      *Client
	hbURL  string
	ackURL string
}

func newHTTPChannel(c *Client) (*httpChannel, error) {
	ack, err := AckURL(c.cfg.URL, c.cfg.AckURL)
	if err != nil {
		return nil, err
	}
	return &httpChannel{c: c, hbURL: c.cfg.URL, ackURL: ack}, nil
}

// AckURL returns ackURL, or when it is empty heartbeatURL with its last
// path element replaced by "acknowledge" (/c2/api/heartbeat ->
// /c2/api/acknowledge, MiNiFi's default layout).
func AckURL(heartbeatURL, ackURL string) (string, error) {
	if ackURL != "" {
		return ackURL, nil
	}
	u, err := url.Parse(heartbeatURL)
	if err != nil {
		return "", fmt.Errorf("parsing agent.c2.url: %w", err)
	}
	u.Path = path.Join(path.Dir(u.Path), "acknowledge")
	return u.String(), nil
}

func (h *httpChannel) post(ctx context.Context, u string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if err := h.c.authorize(req); err != nil {
		return nil, err
	}
	resp, err := h.c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("posting to %s: %w", u, err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxDownload))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", u, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("posting to %s: %s", u, resp.Status)
	}
	return reply, nil
}

func (h *httpChannel) heartbeat(ctx context.Context, hb *Heartbeat) ([]Operation, error) {
	reply, err := h.post(ctx, h.hbURL, hb)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(reply)) == 0 {
		return nil, nil
	}
	var resp HeartbeatResponse
	if err := json.Unmarshal(reply, &resp); err != nil {
		return nil, fmt.Errorf("decoding the heartbeat response: %w", err)
	}
	return resp.RequestedOperations, nil
}

func (h *httpChannel) ack(ctx context.Context, a *Ack) error {
	_, err := h.post(ctx, h.ackURL, a)
	return err
}

func (h *httpChannel) operations() <-chan Operation { return nil }

func (h *httpChannel) close(context.Context) {}
