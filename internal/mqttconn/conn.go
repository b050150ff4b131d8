// Package mqttconn holds what edged's MQTT source and MQTT output share
// around paho: the network connection (buffered reads, coalesced writes)
// and the TLS configuration from the config's files.
package mqttconn

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Dial opens the network connection for paho (its
// CustomOpenConnectionFn) and wraps it in an conn. paho reads every
// packet with several small reads and writes every acknowledgement with a
// write of its own: two to four system calls per message, most of the CPU
// an MQTT source spends. The wrapper reads through a buffer and coalesces
// writes.
func Dial(dialer *net.Dialer, tlsCfg *tls.Config, timeout time.Duration) mqtt.OpenConnectionFunc {
	return func(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		var c net.Conn
		var err error
		switch u.Scheme {
		case "tcp", "mqtt":
			c, err = dialer.Dial("tcp", hostPort(u, "1883"))
		case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
			c, err = tls.DialWithDialer(dialer, "tcp", hostPort(u, "8883"), tlsCfg)
		case "ws", "wss":
			wu := *u
			wu.User = nil
			c, err = mqtt.NewWebsocket(wu.String(), tlsCfg, timeout, o.HTTPHeaders, o.WebsocketOptions)
		default:
			return nil, fmt.Errorf("unknown scheme %q: use tcp, ssl, ws or wss", u.Scheme)
		}
		if err != nil {
			return nil, err
		}
		return newConn(c), nil
	}
}

// hostPort is u's host:port, with port def when u names none.
func hostPort(u *url.URL, def string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), def)
}

// conn reads through a buffer and writes asynchronously: Write queues
// the bytes and returns; one goroutine writes what has queued meanwhile in
// one system call, in order. A write error is returned by the next Write
// (and the broken connection also fails the reader). Close sends what is
// queued (a DISCONNECT) within a second, then closes.
type conn struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	err     error
	closing bool
	done    chan struct{} // the writer goroutine has stopped
}

const connMaxQueued = 256 << 10 // Write waits beyond this

func newConn(c net.Conn) *conn {
	m := &conn{Conn: c, r: bufio.NewReaderSize(c, 32<<10), done: make(chan struct{})}
	m.cond = sync.NewCond(&m.mu)
	go m.writer()
	return m
}

func (c *conn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closing && len(c.buf) >= connMaxQueued {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closing:
		return 0, net.ErrClosed
	}
	c.buf = append(c.buf, p...)
	c.cond.Broadcast()
	return len(p), nil
}

func (c *conn) writer() {
	defer close(c.done)
	var out []byte
	c.mu.Lock()
	for {
		for len(c.buf) == 0 && !c.closing {
			c.cond.Wait()
		}
		if len(c.buf) == 0 {
			c.mu.Unlock()
			return
		}
		out, c.buf = c.buf, out[:0]
		c.cond.Broadcast() // room for Write
		c.mu.Unlock()
		_, err := c.Conn.Write(out)
		c.mu.Lock()
		if err != nil {
			c.err, c.buf = err, nil
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
	}
}

func (c *conn) Close() error {
	c.mu.Lock()
	already := c.closing
	c.closing = true
	c.cond.Broadcast()
	c.mu.Unlock()
	if !already {
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		<-c.done
	}
	return c.Conn.Close()
}
