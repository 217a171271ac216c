//go:build unix

package sdnotify_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"edgeagent.dev/internal/sdnotify"
)

// listen opens a unixgram socket the way systemd does and points
// $NOTIFY_SOCKET at it. name is a path, or an abstract name with '@'.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	t.Setenv(sdnotify.SocketEnv, name)
	return conn
}

func listenTemp(t *testing.T) *net.UnixConn {
	return listen(t, filepath.Join(t.TempDir(), "notify.sock"))
}

// read returns the next datagram, failing the test after timeout.
func read(t *testing.T, conn *net.UnixConn, timeout time.Duration) string {
	t.Helper()
	msg, err := tryRead(conn, timeout)
	require.NoError(t, err, "no notification within %v", timeout)
	return msg
}

func tryRead(conn *net.UnixConn, timeout time.Duration) (string, error) {
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv(sdnotify.SocketEnv, "")
	require.False(t, sdnotify.Enabled())
	require.NoError(t, sdnotify.Ready())
	require.NoError(t, sdnotify.Stopping())
	require.NoError(t, sdnotify.Reloading())
	require.NoError(t, sdnotify.Status("x"))
	require.NoError(t, sdnotify.Watchdog())
	t.Setenv(sdnotify.WatchdogUSecEnv, "1000")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, sdnotify.Run(ctx, nil), "Run without a socket returns at once")
	require.Less(t, time.Since(start), 500*time.Millisecond)
}

func TestNotifications(t *testing.T) {
	conn := listenTemp(t)
	require.True(t, sdnotify.Enabled())

	require.NoError(t, sdnotify.Ready())
	require.Equal(t, "READY=1", read(t, conn, time.Second))

	require.NoError(t, sdnotify.Status("flow running\n3 processors"))
	require.Equal(t, "STATUS=flow running 3 processors", read(t, conn, time.Second))

	require.NoError(t, sdnotify.Watchdog())
	require.Equal(t, "WATCHDOG=1", read(t, conn, time.Second))

	require.NoError(t, sdnotify.Stopping())
	require.Equal(t, "STOPPING=1", read(t, conn, time.Second))

	var before unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &before))
	require.NoError(t, sdnotify.Reloading())
	lines := strings.Split(read(t, conn, time.Second), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, "RELOADING=1", lines[0])
	v, ok := strings.CutPrefix(lines[1], "MONOTONIC_USEC=")
	require.True(t, ok, "second line %q", lines[1])
	usec, err := strconv.ParseUint(v, 10, 64)
	require.NoError(t, err)
	b := uint64(before.Sec)*1e6 + uint64(before.Nsec)/1e3
	require.GreaterOrEqual(t, usec, b, "MONOTONIC_USEC is CLOCK_MONOTONIC")
	require.Less(t, usec, b+uint64(5*time.Second/time.Microsecond))

	require.NoError(t, sdnotify.Notify("READY=1", "STATUS=reloaded"))
	require.Equal(t, "READY=1\nSTATUS=reloaded", read(t, conn, time.Second))
}

func TestAbstractSocket(t *testing.T) {
	conn := listen(t, fmt.Sprintf("@edgeagent-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	require.NoError(t, sdnotify.Ready())
	require.Equal(t, "READY=1", read(t, conn, time.Second))
}

func TestSocketErrors(t *testing.T) {
	t.Setenv(sdnotify.SocketEnv, "vsock:2:9999")
	require.ErrorIs(t, sdnotify.Ready(), sdnotify.ErrUnsupportedSocket)
	t.Setenv(sdnotify.SocketEnv, "relative/path")
	require.ErrorIs(t, sdnotify.Ready(), sdnotify.ErrUnsupportedSocket)
	t.Setenv(sdnotify.SocketEnv, filepath.Join(t.TempDir(), "nobody-listens"))
	require.Error(t, sdnotify.Ready())
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{usec: "", want: 0},
		{usec: "30000000", want: 30 * time.Second},
		{usec: "30000000", pid: self, want: 30 * time.Second},
		{usec: "30000000", pid: "1", want: 0}, // another process's watchdog
		{usec: "500", want: 500 * time.Microsecond},
		{usec: "0", err: true},
		{usec: "30s", err: true},
		{usec: "-5", err: true},
		{usec: "1000", pid: "me", err: true},
	} {
		t.Run(tc.usec+"/"+tc.pid, func(t *testing.T) {
			t.Setenv(sdnotify.WatchdogUSecEnv, tc.usec)
			t.Setenv(sdnotify.WatchdogPIDEnv, tc.pid)
			got, err := sdnotify.WatchdogInterval()
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestRunKeepAliveOnlyWhileHealthy(t *testing.T) {
	conn := listenTemp(t)
	t.Setenv(sdnotify.WatchdogUSecEnv, "200000") // 200ms: a keep-alive every 100ms
	t.Setenv(sdnotify.WatchdogPIDEnv, strconv.Itoa(os.Getpid()))
	var healthy atomic.Bool
	healthy.Store(true)
	var checks atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sdnotify.Run(ctx, func() bool { checks.Add(1); return healthy.Load() })
	}()

	// Healthy: keep-alives at about half the interval.
	start := time.Now()
	for range 4 {
		require.Equal(t, "WATCHDOG=1", read(t, conn, time.Second))
	}
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, 250*time.Millisecond, "4 keep-alives (the first at once) take 3 periods of 100ms")
	require.Less(t, elapsed, 2*time.Second)

	// Unhealthy (a wedged flow): no keep-alive, so systemd's timer runs out.
	healthy.Store(false)
	c := checks.Load()
	// Once a check has started after the switch, the loop (check, send,
	// wait) has sent any keep-alive decided before it: drain those.
	require.Eventually(t, func() bool { return checks.Load() > c }, 2*time.Second, 5*time.Millisecond)
	for {
		msg, err := tryRead(conn, 20*time.Millisecond)
		if err != nil {
			break
		}
		require.Equal(t, "WATCHDOG=1", msg)
	}
	c = checks.Load()
	_, err := tryRead(conn, 500*time.Millisecond)
	require.Error(t, err, "no keep-alive while unhealthy")
	require.Greater(t, checks.Load(), c, "health is still checked each period")

	// Healthy again: keep-alives resume.
	healthy.Store(true)
	require.Equal(t, "WATCHDOG=1", read(t, conn, time.Second))

	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after ctx was cancelled")
	}
}

func TestRunWithoutWatchdog(t *testing.T) {
	conn := listenTemp(t)
	t.Setenv(sdnotify.WatchdogUSecEnv, "")
	require.NoError(t, sdnotify.Run(context.Background(), nil))
	t.Setenv(sdnotify.WatchdogUSecEnv, "1000000")
	t.Setenv(sdnotify.WatchdogPIDEnv, "1")
	require.NoError(t, sdnotify.Run(context.Background(), nil), "the watchdog is another process's")
	_, err := tryRead(conn, 100*time.Millisecond)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "nothing was sent: %v", err)
	t.Setenv(sdnotify.WatchdogPIDEnv, "")
	t.Setenv(sdnotify.WatchdogUSecEnv, "soon")
	require.Error(t, sdnotify.Run(context.Background(), nil))
}
