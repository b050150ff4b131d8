package mqttconn

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"
)

// Options configures Dial.
type Options struct {
	ClientID string
	// Username and Password; when Username is empty, those of the broker
	// URL (tcp://user:pass@host) are used.
	Username string
	Password string
	// CleanSession false asks the broker to keep the subscriptions and the
	// unacknowledged messages while the client is away.
	CleanSession bool
	Keepalive    time.Duration // default 30 s
	WillTopic    string
	WillBody     []byte
	WillQoS      byte
	WillRetain   bool
	TLS          *tls.Config
	// Timeout bounds dialing and the wait for the CONNACK. Default 10 s.
	Timeout time.Duration
	// MaxPayload bounds the payload of a PUBLISH that Next returns whole; a
	// larger one is returned truncated (Packet.Truncated). Default 1 MiB.
	MaxPayload int
}

// Packet is one packet from the broker, as Next returns it. Its slices
// point into the connection's read buffer: valid until the next Next.
type Packet struct {
	Type byte   // PUBLISH, PUBACK, PUBCOMP, SUBACK, UNSUBACK
	ID   uint16 // packet identifier (QoS > 0 PUBLISH, acknowledgements, SUBACK)
	// PUBLISH
	QoS     byte
	Retain  bool
	Dup     bool
	Topic   []byte
	Payload []byte
	// Size is the full size of the payload; Truncated means it was larger
	// than Options.MaxPayload: Payload holds its first bytes only and the
	// rest was skipped.
	Size      int
	Truncated bool
	// Body is the variable header and payload of other packets (a
	// SUBACK's return codes follow its 2-byte id).
	Body []byte
}

// Conn is one MQTT connection: after an error, dial a new one.
type Conn struct {
	nc             net.Conn
	rd             reader
	keepalive      time.Duration
	sessionPresent bool
	wsTransport    bool

	mu      sync.Mutex
	cond    *sync.Cond
	out     []byte // queued for the writer
	err     error  // why the connection ended
	closing bool
	wrote   time.Time // when a packet was last queued
	nextID  uint16
	// kickLater: the reader queued a PUBCOMP; the writer is woken before
	// the reader next blocks, so that a burst of them goes in one write.
	kickLater bool

	done     chan struct{} // closed by fail or Close
	stopOnce sync.Once
	writerWG sync.WaitGroup
}

// maxQueued bounds what Publish queues; it waits beyond (acknowledgements
// never wait: they are few per message read).
const maxQueued = 256 << 10

// Dial connects to broker (a tcp, ssl, ws or wss URL) and returns once the
// broker accepted the CONNECT. A refusal is a *ConnectError. ctx bounds
// the dial and the CONNECT only.
func Dial(ctx context.Context, broker string, o Options) (*Conn, error) {
	u, err := url.Parse(broker)
	if err != nil {
		return nil, fmt.Errorf("broker URL: %w", err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Keepalive <= 0 {
		o.Keepalive = 30 * time.Second
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1 << 20
	}
	if o.Username == "" && u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	dctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	nc, err := dial(dctx, u, o.TLS, o.Timeout)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(dctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	c := &Conn{nc: nc, keepalive: o.Keepalive, done: make(chan struct{})}
	_, c.wsTransport = nc.(*wsConn)
	c.cond = sync.NewCond(&c.mu)
	c.rd = reader{nc: nc, buf: make([]byte, readBufSize), maxPayload: o.MaxPayload}
	nc.SetDeadline(time.Now().Add(o.Timeout))
	if _, err := nc.Write(connectPacket(&o)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	var p Packet
	if err := c.rd.next(&p); err != nil {
		nc.Close()
		if dctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("no CONNACK within %s", o.Timeout)
		}
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	if p.Type != CONNACK || len(p.Body) != 2 {
		nc.Close()
		return nil, fmt.Errorf("%w: expected CONNACK, got packet type %d", ErrProtocol, p.Type)
	}
	if p.Body[1] != 0 {
		nc.Close()
		return nil, &ConnectError{Code: p.Body[1]}
	}
	c.sessionPresent = p.Body[0]&1 == 1
	if !stop() { // ctx ended meanwhile
		nc.Close()
		return nil, ctx.Err()
	}
	nc.SetDeadline(time.Time{})
	c.rd.timeout = o.Keepalive * 3 / 2
	c.rd.beforeRead = c.flushLater
	c.writerWG.Add(2)
	go c.writer()
	go c.pinger()
	return c, nil
}

// SessionPresent reports whether the broker resumed a session it kept.
func (c *Conn) SessionPresent() bool { return c.sessionPresent }

// RecoverableDeadline reports whether a read cut short by SetReadTimeout
// may be resumed (not over a websocket, whose connection a read timeout
// breaks).
func (c *Conn) RecoverableDeadline() bool { return !c.wsTransport }

// Done is closed when the connection ends; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns the error that ended the connection, or nil.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// fail ends the connection with err (the first error is kept).
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.closing = true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.stopOnce.Do(func() { close(c.done) })
	c.nc.Close()
}

// Abort ends the connection with err, from any goroutine: Next returns
// err. Nothing queued is sent.
func (c *Conn) Abort(err error) { c.fail(err) }

// Next reads the next packet: a PUBLISH, an acknowledgement of what the
// caller sent (PUBACK, PUBCOMP, SUBACK, UNSUBACK), or one the connection
// handles itself and the caller may ignore (PINGRESP; PUBREC, answered
// with PUBREL; PUBREL, answered with PUBCOMP). Until Next is called,
// nothing is read from the socket.
func (c *Conn) Next(p *Packet) error {
	if err := c.rd.next(p); err != nil {
		if e := c.Err(); e != nil {
			return e
		}
		return err
	}
	switch p.Type {
	case PUBLISH, PUBACK, PUBCOMP, SUBACK, UNSUBACK, PINGRESP:
	case PUBREC:
		c.queueAck(PUBREL, p.ID)
	case PUBREL:
		c.queueAck(PUBCOMP, p.ID)
	default:
		err := fmt.Errorf("%w: unexpected packet type %d", ErrProtocol, p.Type)
		c.fail(err)
		return err
	}
	return nil
}

// Buffered reports whether Next would return without reading the socket:
// a caller that batches flushes its batch when it is false.
func (c *Conn) Buffered() bool { return c.rd.buffered() }

// SetReadTimeout bounds the next reads from the socket: Next then returns
// a net.Error whose Timeout() is true, and may be called again (see
// RecoverableDeadline). Zero restores the keepalive timeout.
func (c *Conn) SetReadTimeout(d time.Duration) {
	if d <= 0 {
		d = c.keepalive * 3 / 2
	}
	c.rd.timeout = d
}

// Interrupt makes a Next blocked on the socket return now (with a timeout
// error); from any goroutine. For shutting down.
func (c *Conn) Interrupt() {
	c.rd.interrupted.Store(true)
	c.nc.SetReadDeadline(time.Now())
}

// queueAck queues one acknowledgement for the reader (a PUBREL or
// PUBCOMP answering the broker); the writer is woken before the reader
// blocks.
func (c *Conn) queueAck(typ byte, id uint16) {
	c.mu.Lock()
	if !c.closing {
		c.out = appendAck(c.out, typ, id) // sent with the next write
		c.kickLater = true
	}
	c.mu.Unlock()
}

// flushLater wakes the writer if the reader queued something.
func (c *Conn) flushLater() {
	c.mu.Lock()
	if c.kickLater {
		c.kickLater = false
		c.cond.Broadcast()
	}
	c.mu.Unlock()
}

// Ack is the acknowledgement a received PUBLISH is owed: PUBACK for QoS 1,
// PUBREC for QoS 2.
type Ack struct {
	ID  uint16
	QoS byte
}

// Ack queues the acknowledgements of acks, in that order, and wakes the
// writer: they go out together, usually in one write. It never waits; on
// a connection that has ended it does nothing (the broker sends those
// messages again on the next connection). It returns whether they were
// queued.
func (c *Conn) Ack(acks []Ack) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	for _, a := range acks {
		switch a.QoS {
		case 1:
			c.out = appendAck(c.out, PUBACK, a.ID)
		case 2:
			c.out = appendAck(c.out, PUBREC, a.ID)
		}
	}
	c.wrote = time.Now()
	c.cond.Broadcast()
	return true
}

// write queues b, waiting while too much is queued.
func (c *Conn) write(b ...[]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.closing && len(c.out) >= maxQueued {
		c.cond.Wait()
	}
	if c.closing {
		if c.err != nil {
			return c.err
		}
		return ErrClosed
	}
	for _, p := range b {
		c.out = append(c.out, p...)
	}
	c.wrote = time.Now()
	c.cond.Broadcast()
	return nil
}

// Publish queues a PUBLISH and returns its packet id (0 for QoS 0). The
// broker's acknowledgement (PUBACK for QoS 1, PUBCOMP for QoS 2) comes
// from Next.
func (c *Conn) Publish(topic string, qos byte, retain bool, payload []byte) (uint16, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.closing && len(c.out) >= maxQueued {
		c.cond.Wait()
	}
	if c.closing {
		if c.err != nil {
			return 0, c.err
		}
		return 0, ErrClosed
	}
	var id uint16
	if qos > 0 {
		id = c.newID()
	}
	c.out = appendPublishHeader(c.out, topic, qos, retain, id, len(payload))
	c.out = append(c.out, payload...)
	c.wrote = time.Now()
	c.cond.Broadcast()
	return id, nil
}

func (c *Conn) newID() uint16 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// Subscribe queues a SUBSCRIBE of filters, each at qos, and returns its
// packet id: the SUBACK with that id comes from Next, its return codes
// (the granted QoS, or 0x80 for a refusal) in Packet.Body[2:], in the
// order of filters.
func (c *Conn) Subscribe(filters []string, qos byte) (uint16, error) {
	c.mu.Lock()
	id := c.newID()
	c.mu.Unlock()
	var v []byte
	v = binary.BigEndian.AppendUint16(v, id)
	for _, f := range filters {
		v = appendString(v, f)
		v = append(v, qos)
	}
	h := appendLength([]byte{SUBSCRIBE<<4 | 2}, len(v))
	return id, c.write(h, v)
}

// writer sends what is queued, in one write each time it wakes.
func (c *Conn) writer() {
	defer c.writerWG.Done()
	var out []byte
	c.mu.Lock()
	for {
		for len(c.out) == 0 && !c.closing {
			c.cond.Wait()
		}
		if len(c.out) == 0 || c.err != nil {
			c.mu.Unlock()
			return
		}
		out, c.out = c.out, out[:0]
		c.cond.Broadcast() // room for Publish
		c.mu.Unlock()
		_, err := c.nc.Write(out)
		c.mu.Lock()
		if err != nil {
			c.mu.Unlock()
			c.fail(fmt.Errorf("write: %w", err))
			return
		}
	}
}

// pinger sends a PINGREQ when nothing was sent for half the keepalive,
// whether or not the caller reads: a paused reader keeps its session. It
// looks four times per keepalive, so that a late wake-up on a busy
// machine still pings well within the keepalive.
func (c *Conn) pinger() {
	defer c.writerWG.Done()
	t := time.NewTicker(c.keepalive / 4)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		if now := time.Now(); now.Sub(c.wrote) >= c.keepalive/2 && !c.closing {
			c.out = append(c.out, PINGREQ<<4, 0)
			c.wrote = now
			c.cond.Broadcast()
		}
		c.mu.Unlock()
	}
}

// Close sends what is queued (acknowledgements: what is not sent comes
// again) and a DISCONNECT (so the broker does not publish the will),
// within 5 seconds, then closes the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	if !c.closing {
		c.out = append(c.out, DISCONNECT<<4, 0)
		c.closing = true
		c.cond.Broadcast()
	}
	c.mu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.stopOnce.Do(func() { close(c.done) })
	c.writerWG.Wait()
	c.mu.Lock()
	if c.err == nil {
		c.err = ErrClosed
	}
	c.mu.Unlock()
	return c.nc.Close()
}

// IsTimeout reports whether err is a read timeout (SetReadTimeout,
// Interrupt).
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
