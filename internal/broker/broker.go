// Package broker is edged's embedded MQTT broker ([broker] in the config):
// mochi-mqtt/server v2 on a TCP listener and optionally a websocket one, so
// that one binary can serve sensors and dashboards on a gateway with no
// other broker. It keeps nothing on disk: sessions, retained messages and
// queued messages live in memory and are gone after a restart (sources that
// need a message acknowledged only once it is durable use QoS 1 with edged's
// MQTT source, which acknowledges after the log commit).
//
// Authentication: with Username and Password set, only that user may
// connect (and then publish and subscribe to anything); otherwise anyone
// who can reach the listeners may.
package broker

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edged/edged/internal/config"
)

// Broker is a running embedded broker.
type Broker struct {
	srv    *mqtt.Server
	addr   string
	wsAddr string
	once   sync.Once
	log    *slog.Logger
}

// Start binds the listeners of cfg (Listen, and WSListen when set) and
// serves MQTT until Close; cfg.Enabled is not looked at. A port that cannot
// be bound is an error naming the address and the way out. ctx bounds the
// start only.
func Start(ctx context.Context, cfg config.Broker, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.Listen == "" {
		return nil, errors.New("embedded MQTT broker: no listen address: set [broker] listen, e.g. \"127.0.0.1:1883\"")
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, errors.New("embedded MQTT broker: set both [broker] username and password, or neither")
	}
	// mochi is chatty at info: keep warn and up, under our logger.
	mlog := slog.New(&warnHandler{h: log.Handler(), rl: &refusals{}}).With("component", "mqtt-broker")
	caps := mqtt.NewDefaultServerCapabilities()
	srv := mqtt.New(&mqtt.Options{
		Logger:       mlog,
		Capabilities: caps,
		// $SYS topics every 10 s rather than every second: each costs a
		// runtime.ReadMemStats, and few gateways have anyone reading them.
		SysTopicResendInterval: 10,
	})
	var err error
	if cfg.Username != "" {
		err = srv.AddHook(&userHook{user: []byte(cfg.Username), pass: []byte(cfg.Password)}, nil)
	} else {
		err = srv.AddHook(new(allowHook), nil)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded MQTT broker: %w", err)
	}

	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Listen})
	if err := srv.AddListener(tcp); err != nil {
		return nil, bindError("listen", cfg.Listen, err)
	}
	b := &Broker{srv: srv, addr: tcp.Address(), log: log}
	if cfg.WSListen != "" {
		ws, err := newWebsocket("ws", cfg.WSListen)
		if err != nil {
			srv.Close()
			return nil, bindError("ws_listen", cfg.WSListen, err)
		}
		if err := srv.AddListener(ws); err != nil {
			ws.ln.Close()
			srv.Close()
			return nil, fmt.Errorf("embedded MQTT broker: %w", err)
		}
		b.wsAddr = ws.Address()
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded MQTT broker: %w", err)
	}
	attrs := []any{"listen", b.addr, "auth", cfg.Username != ""}
	if b.wsAddr != "" {
		attrs = append(attrs, "ws_listen", b.wsAddr)
	}
	log.Info("embedded MQTT broker started", attrs...)
	return b, nil
}

// bindError explains a listener that could not be opened.
func bindError(key, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("embedded MQTT broker: cannot listen on %s: port in use: another broker (mosquitto?) or another edged may hold it: stop it, or set [broker] %s to a free address", addr, key)
	}
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("embedded MQTT broker: cannot listen on %s: permission denied (ports below 1024 need privileges): set [broker] %s to a port above 1024, e.g. 1883", addr, key)
	}
	return fmt.Errorf("embedded MQTT broker: cannot listen on %s: %v: set [broker] %s to an address of this host, e.g. \"127.0.0.1:1883\" or \":1883\"", addr, err, key)
}

// Addr is the TCP listener's address (with the port chosen when Listen's
// port was 0).
func (b *Broker) Addr() string { return b.addr }

// WSAddr is the websocket listener's address, or "".
func (b *Broker) WSAddr() string { return b.wsAddr }

// Close disconnects the clients and closes the listeners. It may be called
// more than once.
func (b *Broker) Close() error {
	b.once.Do(func() {
		b.srv.Close()
		b.log.Info("embedded MQTT broker stopped")
	})
	return nil
}

// allowHook lets everyone in, with read and write access to every topic:
// mochi's auth.AllowHook, which cannot be imported without its ledger's
// YAML dependency.
type allowHook struct{ mqtt.HookBase }

func (h *allowHook) ID() string { return "allow-all-auth" }

func (h *allowHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *allowHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *allowHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// userHook lets one user in, with read and write access to every topic.
type userHook struct {
	mqtt.HookBase
	user, pass []byte
}

func (h *userHook) ID() string { return "edged-single-user" }

func (h *userHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *userHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	u := subtle.ConstantTimeCompare(pk.Connect.Username, h.user)
	p := subtle.ConstantTimeCompare(pk.Connect.Password, h.pass)
	return u&p == 1
}

func (h *userHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool { return true }

// warnHandler passes mochi's records at warn and above to h. mochi logs
// every client connection that ends, even cleanly, at warn with an empty
// message: those go at debug, except refused logins, which stay warnings
// (at most one a minute, with the count of those not shown).
type warnHandler struct {
	h  slog.Handler
	rl *refusals
}

type refusals struct {
	mu    sync.Mutex
	last  time.Time
	quiet int
}

func (w *warnHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.h.Enabled(ctx, l)
}

func (w *warnHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "" {
		return w.h.Handle(ctx, r)
	}
	refused := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "error" {
			refused = errors.Is(err, packets.ErrBadUsernameOrPassword) || errors.Is(err, packets.ErrNotAuthorized)
		}
		return true
	})
	if !refused {
		if !w.h.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r2 := slog.NewRecord(r.Time, slog.LevelDebug, "mqtt client connection ended", r.PC)
		r.Attrs(func(a slog.Attr) bool { r2.AddAttrs(a); return true })
		return w.h.Handle(ctx, r2)
	}
	w.rl.mu.Lock()
	if !w.rl.last.IsZero() && time.Since(w.rl.last) < time.Minute {
		w.rl.quiet++
		w.rl.mu.Unlock()
		return nil
	}
	quiet := w.rl.quiet
	w.rl.last, w.rl.quiet = time.Now(), 0
	w.rl.mu.Unlock()
	r2 := slog.NewRecord(r.Time, slog.LevelWarn, "mqtt client refused: bad username or password", r.PC)
	r.Attrs(func(a slog.Attr) bool { r2.AddAttrs(a); return true })
	r2.AddAttrs(slog.Int("not_shown_since_last", quiet))
	return w.h.Handle(ctx, r2)
}

func (w *warnHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &warnHandler{w.h.WithAttrs(as), w.rl}
}

func (w *warnHandler) WithGroup(name string) slog.Handler {
	return &warnHandler{w.h.WithGroup(name), w.rl}
}

// wsListener is MQTT over websockets. mochi's own listener binds its port
// only once serving, in the background, so a port in use would go
// unreported; this one binds in newWebsocket and otherwise does the same
// (binary frames, subprotocol "mqtt").
type wsListener struct {
	id  string
	ln  net.Listener
	srv *http.Server
	mu  sync.Mutex
	end bool
}

func newWebsocket(id, addr string) (*wsListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &wsListener{id: id, ln: ln}, nil
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Init(log *slog.Logger) error { return nil }

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = establish(l.id, &wsConn{Conn: c.UnderlyingConn(), c: c})
	})
	l.mu.Lock()
	if l.end {
		l.mu.Unlock()
		return
	}
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	l.mu.Unlock()
	_ = l.srv.Serve(l.ln)
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	srv := l.srv
	already := l.end
	l.end = true
	l.mu.Unlock()
	if already {
		return
	}
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(ctx) // hijacked websocket connections are not waited for
		cancel()
	} else {
		l.ln.Close()
	}
	closeClients(l.id)
}

var (
	errNotBinary = errors.New("websocket message not binary")
	upgrader     = &websocket.Upgrader{Subprotocols: []string{"mqtt"}, CheckOrigin: func(*http.Request) bool { return true }}
)

// wsConn is a websocket connection as a net.Conn carrying MQTT bytes in
// binary messages.
type wsConn struct {
	net.Conn
	c *websocket.Conn
	r io.Reader
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errNotBinary
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if err != nil {
			ws.r = nil
			if errors.Is(err, io.EOF) {
				if n == 0 {
					continue // next message
				}
				err = nil
			}
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error { return ws.Conn.Close() }
