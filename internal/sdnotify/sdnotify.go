// Package sdnotify speaks the service manager's notify protocol
// (sd_notify(3)): "READY=1" once started, "WATCHDOG=1" while healthy,
// "STOPPING=1" on the way out, each one datagram on the unix socket named
// by $NOTIFY_SOCKET. Without that variable (not started by systemd, or
// Type= is not notify) everything here does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Notifier sends states to the service manager. A nil *Notifier does
// nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET, or nil when it is unset.
// An abstract socket ("@name") is supported.
func FromEnv() *Notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// Send sends one state, such as "READY=1" or "WATCHDOG=1".
func (n *Notifier) Send(state string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", state, err)
	}
	return nil
}

// WatchdogInterval is the service's WatchdogSec= ($WATCHDOG_USEC), or 0
// when there is none or it is meant for another process ($WATCHDOG_PID).
func WatchdogInterval() time.Duration {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(us) * time.Microsecond
}
