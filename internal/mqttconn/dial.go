package mqttconn

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
)

// dial opens the network connection to u: tcp:// (mqtt://), ssl:// (tls://,
// mqtts://, mqtt+ssl://, tcps://), ws:// or wss://.
func dial(ctx context.Context, u *url.URL, tlsCfg *tls.Config, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	switch u.Scheme {
	case "tcp", "mqtt":
		return d.DialContext(ctx, "tcp", hostPort(u, "1883"))
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		if tlsCfg == nil {
			tlsCfg = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		}
		td := &tls.Dialer{NetDialer: d, Config: tlsCfg}
		return td.DialContext(ctx, "tcp", hostPort(u, "8883"))
	case "ws", "wss":
		wu := *u
		wu.User = nil
		wd := websocket.Dialer{NetDialContext: d.DialContext, TLSClientConfig: tlsCfg, HandshakeTimeout: timeout,
			Subprotocols: []string{"mqtt"}, ReadBufferSize: 16 << 10, WriteBufferSize: 16 << 10}
		ws, resp, err := wd.DialContext(ctx, wu.String(), nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			return nil, err
		}
		return &wsConn{ws: ws}, nil
	}
	return nil, fmt.Errorf("unknown scheme %q: use tcp, ssl, ws or wss", u.Scheme)
}

// hostPort is u's host:port, with port def when u names none.
func hostPort(u *url.URL, def string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), def)
}

// wsConn is a websocket connection as a byte stream: MQTT packets in
// binary messages (a packet may span messages, a message hold several).
// As with gorilla's connection, a read that timed out leaves it unusable.
type wsConn struct {
	ws *websocket.Conn
	r  io.Reader // the current message
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error                       { return c.ws.Close() }
func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	c.ws.SetReadDeadline(t)
	return c.ws.SetWriteDeadline(t)
}
