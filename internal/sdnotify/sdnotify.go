// Package sdnotify implements the service side of systemd's notification
// protocol (sd_notify(3)) in pure Go: readiness, reloading and stopping
// notifications, free-form status and watchdog keep-alives, sent as
// datagrams to the AF_UNIX socket named by $NOTIFY_SOCKET.
//
// Every function is a no-op that returns nil when $NOTIFY_SOCKET is unset,
// so the agent behaves the same in a terminal, a container or a test as it
// does under systemd. Only AF_UNIX sockets are supported (a path, or an
// abstract name starting with '@'), which is what systemd passes to services;
// the vsock: form systemd uses for virtual machines is reported as an error.
//
// The protocol is documented in sd_notify(3) and, for the keep-alive, in
// systemd.service(5) (WatchdogSec=) and sd_watchdog_enabled(3).
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Variables systemd sets in the service's environment.
const (
	SocketEnv       = "NOTIFY_SOCKET"
	WatchdogUSecEnv = "WATCHDOG_USEC"
	WatchdogPIDEnv  = "WATCHDOG_PID"
)

// Notification states (sd_notify(3)).
const (
	StateReady     = "READY=1"
	StateStopping  = "STOPPING=1"
	StateReloading = "RELOADING=1"
	StateWatchdog  = "WATCHDOG=1"
)

// ErrUnsupportedSocket is returned for a $NOTIFY_SOCKET that is not an
// AF_UNIX path or abstract name.
var ErrUnsupportedSocket = errors.New("sdnotify: unsupported NOTIFY_SOCKET address")

// Enabled reports whether $NOTIFY_SOCKET is set, that is whether a service
// manager listens for notifications.
func Enabled() bool { return os.Getenv(SocketEnv) != "" }

// Notify sends the given assignments (such as "READY=1", "STATUS=...") in
// one datagram. It returns nil without sending anything when $NOTIFY_SOCKET
// is unset.
func Notify(assignments ...string) error {
	addr := os.Getenv(SocketEnv)
	if addr == "" {
		return nil
	}
	return send(addr, strings.Join(assignments, "\n"))
}

func send(addr, msg string) error {
	if strings.HasPrefix(addr, "vsock:") || !(strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "@")) {
		return fmt.Errorf("%w: %q", ErrUnsupportedSocket, addr)
	}
	// Go maps a leading '@' to the abstract namespace (a leading NUL byte).
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: connecting to %s: %w", addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: sending to %s: %w", addr, err)
	}
	return nil
}

// Ready tells the service manager that start-up (or a reload) is complete:
// a Type=notify unit becomes active, a reloading one active again.
func Ready() error { return Notify(StateReady) }

// Stopping tells the service manager that the service is shutting down
// (draining); systemd then no longer expects keep-alives.
func Stopping() error { return Notify(StateStopping) }

// Reloading tells the service manager that the service is reloading its
// configuration; Ready must follow once it is done (whether or not the new
// configuration was taken). MONOTONIC_USEC is included because systemd 253
// and later (Type=notify-reload) require it with RELOADING=1; older
// versions ignore it.
func Reloading() error {
	return Notify(StateReloading, "MONOTONIC_USEC="+strconv.FormatUint(monotonicUsec(), 10))
}

// Status sets the free-form status line that `systemctl status` shows.
// Newlines would end the assignment, so they are replaced by spaces.
func Status(msg string) error {
	return Notify("STATUS=" + strings.NewReplacer("\n", " ", "\r", " ").Replace(msg))
}

// Watchdog sends one keep-alive (WATCHDOG=1).
func Watchdog() error { return Notify(StateWatchdog) }

// WatchdogInterval returns the watchdog timeout systemd set for this
// process ($WATCHDOG_USEC, from the unit's WatchdogSec=), or 0 when the
// watchdog is off: the variable is unset, or $WATCHDOG_PID names another
// process. A keep-alive should be sent every half of it (see Run). A value
// that does not parse is an error.
func WatchdogInterval() (time.Duration, error) {
	s := os.Getenv(WatchdogUSecEnv)
	if s == "" {
		return 0, nil
	}
	if p := os.Getenv(WatchdogPIDEnv); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("sdnotify: parsing %s=%q: %w", WatchdogPIDEnv, p, err)
		}
		if pid != os.Getpid() {
			return 0, nil
		}
	}
	usec, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sdnotify: parsing %s=%q: %w", WatchdogUSecEnv, s, err)
	}
	if usec == 0 {
		return 0, fmt.Errorf("sdnotify: %s=0 is not a valid timeout", WatchdogUSecEnv)
	}
	return time.Duration(usec) * time.Microsecond, nil
}

// Run sends a keep-alive every half watchdog interval while checkHealthy
// returns true, until ctx is done. When checkHealthy returns false, or
// blocks (a wedged flow or repository), no keep-alive is sent, so systemd
// kills the service after WatchdogSec= and, with Restart=on-failure,
// starts it again. A nil checkHealthy counts as always healthy.
//
// Run returns nil at once when there is no watchdog for this process
// ($NOTIFY_SOCKET or $WATCHDOG_USEC unset, or $WATCHDOG_PID another
// process), ctx.Err() when ctx is done, and an error if the environment
// does not parse. Failed sends are not fatal: the next tick tries again.
//
// Start Run once the service is ready (after Ready) and end it (cancel ctx)
// when it starts stopping: systemd arms the watchdog timer on every
// WATCHDOG=1 it receives, so a keep-alive sent while the unit is still
// starting or already stopping would make a slow start-up or drain subject
// to WatchdogSec= as well as to TimeoutStartSec= and TimeoutStopSec=.
func Run(ctx context.Context, checkHealthy func() bool) error {
	if !Enabled() {
		return nil
	}
	interval, err := WatchdogInterval()
	if err != nil || interval == 0 {
		return err
	}
	return keepAlive(ctx, interval/2, checkHealthy)
}

func keepAlive(ctx context.Context, period time.Duration, checkHealthy func() bool) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if checkHealthy == nil || checkHealthy() {
			_ = Watchdog()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
