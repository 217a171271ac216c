// Package mqtttest starts real mosquitto brokers for tests, on free loopback
// ports, with persistence in a temporary directory and optional TLS, mutual
// TLS (certificates from internal/testpki) and password authentication, and
// a TCP proxy whose connections a test can cut.
//
// mosquitto must be installed (`make setup` installs it); when it is not, the
// test fails with a message saying so rather than skipping.
package mqtttest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/testpki"
)

// MaxQueuedMessages is the max_queued_messages the brokers run with: how
// many QoS 1/2 messages mosquitto queues per persistent session (its default,
// 1000, silently drops the rest).
const MaxQueuedMessages = 1_000_000

// Option configures a Broker.
type Option func(*config)

type config struct {
	tls, mutualTLS bool
	websockets     bool
	users          [][2]string
	extra          []string
}

// WithTLS serves TLS (URL ssl://) with a server certificate for 127.0.0.1
// and localhost, issued by a CA the test gets from Broker.CA.
func WithTLS() Option { return func(c *config) { c.tls = true } }

// WithMutualTLS is WithTLS plus require_certificate: clients must present a
// certificate issued by Broker.CA.
func WithMutualTLS() Option { return func(c *config) { c.tls, c.mutualTLS = true, true } }

// WithWebsockets serves MQTT over WebSocket (URL ws://, or wss:// with TLS).
func WithWebsockets() Option { return func(c *config) { c.websockets = true } }

// WithPassword adds a user (created with mosquitto_passwd -b) and turns
// anonymous access off. It may be given several times.
func WithPassword(username, password string) Option {
	return func(c *config) { c.users = append(c.users, [2]string{username, password}) }
}

// WithConfig appends lines to the generated mosquitto.conf (they apply to
// the listener, e.g. "max_inflight_messages 100").
func WithConfig(lines ...string) Option {
	return func(c *config) { c.extra = append(c.extra, lines...) }
}

// Broker is a mosquitto process. Its methods are safe for concurrent use.
type Broker struct {
	t      testing.TB
	bin    string
	dir    string
	conf   string
	port   int
	scheme string
	ca     *testpki.CA

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process exited
	out  *syncBuffer
}

// Start writes a configuration, starts mosquitto on a free 127.0.0.1 port
// and waits until the port accepts connections. The broker is stopped when
// the test ends; when the test failed, mosquitto's output goes to the test
// log.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	b := &Broker{t: t, bin: findMosquitto(t), dir: t.TempDir(), out: &syncBuffer{}}
	b.scheme = "tcp"
	switch {
	case cfg.websockets && cfg.tls:
		b.scheme = "wss"
	case cfg.websockets:
		b.scheme = "ws"
	case cfg.tls:
		b.scheme = "ssl"
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mosquitto output (%s):\n%s", b.Addr(), b.Output())
		}
	})
	t.Cleanup(b.Stop)
	// freePort's port is free only until mosquitto binds it: another test
	// (another package's, in parallel) can take it in between. mosquitto
	// then exits at once with "Address already in use"; try other ports.
	for attempt := 1; ; attempt++ {
		b.port = freePort(t)
		b.conf = b.writeConfig(cfg)
		exited, out := b.tryStart()
		if !exited {
			return b
		}
		if attempt == 5 || !strings.Contains(out, "Address already in use") {
			t.Fatalf("mosquitto exited at start:\n%s", b.Output())
		}
	}
}

// URL is the broker URL: tcp://, ssl://, ws:// or wss://127.0.0.1:PORT.
func (b *Broker) URL() string { return b.scheme + "://" + b.Addr() }

// Addr is 127.0.0.1:PORT.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// CA is the CA that signed the server certificate (nil without TLS). Use it
// to issue client certificates for mutual TLS.
func (b *Broker) CA() *testpki.CA { return b.ca }

// Output is what mosquitto logged so far.
func (b *Broker) Output() string { return b.out.String() }

// Stop terminates mosquitto with SIGTERM (it saves its persistence file)
// and waits for it to exit; SIGKILL after 5s. A stopped broker does nothing.
func (b *Broker) Stop() { b.signal(syscall.SIGTERM, 5*time.Second) }

// Kill ends mosquitto with SIGKILL and waits: what it had not saved to its
// persistence file (it saves on SIGTERM only) is lost, like a power cut.
func (b *Broker) Kill() { b.signal(syscall.SIGKILL, 0) }

// Pause freezes mosquitto with SIGSTOP: connections stay open, nothing is
// read or acknowledged (a hung broker). Resume undoes it.
func (b *Broker) Pause() { b.sendSignal(syscall.SIGSTOP) }

// Resume continues a paused broker with SIGCONT.
func (b *Broker) Resume() { b.sendSignal(syscall.SIGCONT) }

func (b *Broker) sendSignal(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		_ = b.cmd.Process.Signal(sig)
	}
}

// Restart stops a running broker and starts it again on the same port with
// the same configuration and persistence directory.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

func (b *Broker) start() {
	b.t.Helper()
	if exited, _ := b.tryStart(); exited {
		b.t.Fatalf("mosquitto exited at start:\n%s", b.Output())
	}
}

// tryStart starts mosquitto and waits until it says it runs (its listeners
// are open: a connection to the port then reaches this mosquitto, not a
// process that took the port first) and accepts connections. It reports
// whether mosquitto exited instead, and what it logged.
func (b *Broker) tryStart() (exited bool, out string) {
	b.t.Helper()
	from := len(b.Output())
	logged := func() string { return b.Output()[from:] }
	b.mu.Lock()
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = b.out, b.out
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		b.t.Fatalf("starting mosquitto: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()

	hasExited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	require.Eventually(b.t, func() bool {
		if hasExited() {
			return true
		}
		if !strings.Contains(logged(), " running\n") {
			return false
		}
		c, err := net.DialTimeout("tcp", b.Addr(), 100*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, 10*time.Second, 10*time.Millisecond, "mosquitto did not accept connections on %s:\n%s", b.Addr(), b.Output())
	if !hasExited() {
		return false, logged()
	}
	b.mu.Lock()
	b.cmd = nil // nothing left to stop
	b.mu.Unlock()
	return true, logged()
}

func (b *Broker) signal(sig syscall.Signal, grace time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	if sig != syscall.SIGKILL {
		_ = b.cmd.Process.Signal(syscall.SIGCONT) // a paused broker cannot handle SIGTERM
	}
	_ = b.cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-b.done:
		case <-time.After(grace):
			_ = b.cmd.Process.Kill()
		}
	}
	<-b.done
	b.cmd = nil
}

func (b *Broker) writeConfig(cfg config) string {
	t := b.t
	t.Helper()
	persist := filepath.Join(b.dir, "data") + string(filepath.Separator)
	if err := os.MkdirAll(persist, 0o700); err != nil {
		t.Fatalf("creating persistence directory: %v", err)
	}
	var c strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&c, format+"\n", args...) }
	if u, err := user.Current(); err == nil {
		line("user %s", u.Username) // mosquitto run as root would switch to user "mosquitto" and lose the temp dir
	}
	line("persistence true")
	line("persistence_location %s", persist)
	line("max_queued_messages %d", MaxQueuedMessages)
	line("log_dest stderr") // unbuffered: tryStart waits for "running"
	line("log_type error")
	line("log_type warning")
	line("log_type notice")
	line("log_type information")
	line("connection_messages true")
	if cfg.websockets {
		// mosquitto 2.0.11 exits with "Unable to start any listening
		// sockets" when its only listener is a websockets one.
		line("listener %d 127.0.0.1", freePort(t))
	}
	line("listener %d 127.0.0.1", b.port)
	if cfg.websockets {
		line("protocol websockets")
	}
	if len(cfg.users) == 0 {
		line("allow_anonymous true")
	} else {
		line("allow_anonymous false")
		line("password_file %s", b.passwordFile(cfg.users))
	}
	if cfg.tls {
		b.ca = testpki.NewCA(t)
		server := b.ca.IssueServerCert(t)
		line("cafile %s", b.ca.CertFile)
		line("certfile %s", server.CertFile)
		line("keyfile %s", server.KeyFile)
		line("require_certificate %t", cfg.mutualTLS)
	}
	for _, l := range cfg.extra {
		line("%s", l)
	}
	file := filepath.Join(b.dir, "mosquitto.conf")
	if err := os.WriteFile(file, []byte(c.String()), 0o600); err != nil {
		t.Fatalf("writing mosquitto.conf: %v", err)
	}
	return file
}

func (b *Broker) passwordFile(users [][2]string) string {
	t := b.t
	t.Helper()
	tool := findTool(t, "mosquitto_passwd")
	file := filepath.Join(b.dir, "passwd")
	for i, u := range users {
		args := []string{"-b", file, u[0], u[1]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd for user %s: %v: %s", u[0], err, out)
		}
	}
	return file
}

func findMosquitto(t testing.TB) string {
	t.Helper()
	return findTool(t, "mosquitto")
}

// findTool looks in PATH, then in the sbin directories Debian installs
// mosquitto into (often not in a user's PATH).
func findTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin", "/opt/homebrew/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	t.Fatalf("%s is not installed: run `make setup` (it installs mosquitto; on Debian/Ubuntu: apt-get install -y mosquitto)", name)
	return ""
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for the process's writes and our reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
