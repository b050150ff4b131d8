package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestSend: states arrive as datagrams on the socket $NOTIFY_SOCKET names,
// a real unixgram socket, also an abstract one.
func TestSend(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		name := filepath.Join(t.TempDir(), "notify")
		env := name
		if abstract {
			name = "\x00edged-sdnotify-test-" + strconv.Itoa(os.Getpid())
			env = "@" + name[1:]
		}
		l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("NOTIFY_SOCKET", env)
		n := FromEnv()
		for _, s := range []string{"READY=1", "WATCHDOG=1"} {
			if err := n.Send(s); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			l.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, _, err := l.ReadFromUnix(buf)
			if err != nil || string(buf[:k]) != s {
				t.Fatalf("abstract %v: got %q, %v; want %q", abstract, buf[:k], err, s)
			}
		}
		l.Close()
	}
}

// TestNoSocket: without $NOTIFY_SOCKET nothing is sent and nothing fails.
func TestNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := FromEnv()
	if n != nil {
		t.Fatal("a notifier without NOTIFY_SOCKET")
	}
	if err := n.Send("READY=1"); err != nil {
		t.Fatal(err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "")
	if d := WatchdogInterval(); d != 30*time.Second {
		t.Errorf("got %v", d)
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if d := WatchdogInterval(); d != 30*time.Second {
		t.Errorf("own pid: got %v", d)
	}
	t.Setenv("WATCHDOG_PID", "1")
	if d := WatchdogInterval(); d != 0 {
		t.Errorf("another pid: got %v", d)
	}
	t.Setenv("WATCHDOG_USEC", "")
	if d := WatchdogInterval(); d != 0 {
		t.Errorf("unset: got %v", d)
	}
}
