package pulsar_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/transport/pulsar"
)

// logBuffer collects a client's logs (at debug level) for assertions and
// prints them when the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client log:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// newClient makes a client for url with short timeouts, closed at the end
// of the test.
func newClient(t testing.TB, url string, mod ...func(*pulsar.Options)) (*pulsar.Client, *logBuffer) {
	t.Helper()
	logger, lb := newLogger(t)
	opts := pulsar.Options{
		ServiceURL:        url,
		OperationTimeout:  3 * time.Second,
		ConnectionTimeout: time.Second,
		Logger:            logger,
		LibraryDebugLogs:  true, // the token must not leak even there
	}
	for _, m := range mod {
		m(&opts)
	}
	c, err := pulsar.NewClient(opts)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c, lb
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func flowFileID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

// sendAll sends n messages numbered from first (payload "msg-i", flowfile
// ID flowFileID(i), sequence ID i when seq) and returns their Pendings.
func sendAll(ctx context.Context, p *pulsar.Producer, first, n int, seq bool) []*pulsar.Pending {
	out := make([]*pulsar.Pending, 0, n)
	for i := first; i < first+n; i++ {
		m := pulsar.Message{
			FlowFileID: flowFileID(i),
			Payload:    []byte(fmt.Sprintf("msg-%d", i)),
			Properties: map[string]string{"n": fmt.Sprint(i)},
		}
		if seq {
			m.SequenceID = uint64(i)
		}
		out = append(out, p.SendAsync(ctx, m))
	}
	return out
}

func waitAll(t testing.TB, ctx context.Context, pending []*pulsar.Pending) []pulsar.Receipt {
	t.Helper()
	out := make([]pulsar.Receipt, len(pending))
	for i, p := range pending {
		r, err := p.Wait(ctx)
		require.NoError(t, err, "send %d", i)
		out[i] = r
	}
	return out
}

// reconnected waits until the client counted a reconnection (the library
// logs it after re-sending, so it can come just after the receipts).
func reconnected(t testing.TB, c *pulsar.Client) {
	t.Helper()
	require.Eventually(t, func() bool { return c.Stats().Reconnects >= 1 }, 5*time.Second, 10*time.Millisecond)
}
