package mqtttest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Publisher is a minimal, fast MQTT 3.1.1 publisher for tests and
// benchmarks: it pipelines up to a window of unacknowledged QoS 1/2
// messages over one connection and knows when the broker has taken them
// all. It is not a general client: no reconnects, no subscriptions.
type Publisher struct {
	// Retain sets the retain flag on the messages published from then on.
	Retain bool

	conn net.Conn
	qos  byte

	wmu sync.Mutex
	w   *bufio.Writer

	sem   chan struct{} // one token per message in flight
	mu    sync.Mutex
	inUse map[uint16]bool
	next  uint16

	acked atomic.Int64
	done  chan struct{} // closed when the reader stops
	err   error         // why the reader stopped, read after done
}

// Dial connects a publisher with a clean session. window bounds the QoS
// 1/2 messages in flight (default 1000).
func Dial(addr, clientID string, qos byte, window int) (*Publisher, error) {
	return DialWith(addr, clientID, qos, window, DialOptions{})
}

// DialOptions are a publisher's credentials and TLS.
type DialOptions struct {
	Username, Password string
	TLS                *tls.Config // nil: plain TCP
}

// DialWith is Dial with credentials or TLS.
func DialWith(addr, clientID string, qos byte, window int, o DialOptions) (*Publisher, error) {
	if window <= 0 {
		window = 1000
	}
	var conn net.Conn
	var err error
	if o.TLS != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, o.TLS)
	} else {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		return nil, err
	}
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.CleanSession = true
	cp.ClientIdentifier = clientID
	if o.Username != "" {
		cp.UsernameFlag, cp.Username = true, o.Username
		cp.PasswordFlag, cp.Password = o.Password != "", []byte(o.Password)
	}
	if err := cp.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	pk, err := packets.ReadPacket(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	ca, ok := pk.(*packets.ConnackPacket)
	if !ok || ca.ReturnCode != 0 {
		conn.Close()
		return nil, fmt.Errorf("connect refused: %v", pk)
	}
	conn.SetReadDeadline(time.Time{})
	p := &Publisher{conn: conn, qos: qos, w: bufio.NewWriterSize(conn, 64<<10), sem: make(chan struct{}, window),
		inUse: map[uint16]bool{}, done: make(chan struct{})}
	go p.read()
	return p, nil
}

func (p *Publisher) read() {
	defer close(p.done)
	r := bufio.NewReaderSize(p.conn, 64<<10)
	for {
		pk, err := packets.ReadPacket(r)
		if err != nil {
			p.err = err
			return
		}
		switch m := pk.(type) {
		case *packets.PubackPacket:
			p.release(m.MessageID)
		case *packets.PubrecPacket:
			rel := packets.NewControlPacket(packets.Pubrel).(*packets.PubrelPacket)
			rel.MessageID = m.MessageID
			p.wmu.Lock()
			err = rel.Write(p.w)
			if err == nil {
				err = p.w.Flush()
			}
			p.wmu.Unlock()
			if err != nil {
				p.err = err
				return
			}
		case *packets.PubcompPacket:
			p.release(m.MessageID)
		}
	}
}

func (p *Publisher) release(id uint16) {
	p.mu.Lock()
	ok := p.inUse[id]
	delete(p.inUse, id)
	p.mu.Unlock()
	if ok {
		p.acked.Add(1)
		<-p.sem
	}
}

// Acked is the number of QoS 1/2 messages the broker has acknowledged.
func (p *Publisher) Acked() int64 { return p.acked.Load() }

// Publish sends one message, waiting while the window is full.
func (p *Publisher) Publish(topic string, payload []byte) error {
	var id uint16
	if p.qos > 0 {
		select {
		case p.sem <- struct{}{}:
		default:
			p.wmu.Lock()
			p.w.Flush()
			p.wmu.Unlock()
			select {
			case p.sem <- struct{}{}:
			case <-p.done:
				return p.failure()
			}
		}
		p.mu.Lock()
		for {
			p.next++
			if p.next != 0 && !p.inUse[p.next] {
				break
			}
		}
		id = p.next
		p.inUse[id] = true
		p.mu.Unlock()
	}
	rl := 2 + len(topic) + len(payload)
	if p.qos > 0 {
		rl += 2
	}
	var hdr [5]byte
	hdr[0] = 0x30 | p.qos<<1
	if p.Retain {
		hdr[0] |= 1
	}
	n := 1
	for {
		b := byte(rl % 128)
		rl /= 128
		if rl > 0 {
			b |= 0x80
		}
		hdr[n] = b
		n++
		if rl == 0 {
			break
		}
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.w.Write(hdr[:n])
	p.w.WriteByte(byte(len(topic) >> 8))
	p.w.WriteByte(byte(len(topic)))
	p.w.WriteString(topic)
	if p.qos > 0 {
		p.w.WriteByte(byte(id >> 8))
		p.w.WriteByte(byte(id))
	}
	_, err := p.w.Write(payload)
	return err
}

// Flush sends what is buffered.
func (p *Publisher) Flush() error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.w.Flush()
}

func (p *Publisher) failure() error {
	if p.err != nil {
		return fmt.Errorf("publisher: connection lost: %w", p.err)
	}
	return errors.New("publisher: connection lost")
}

// Wait flushes and waits until the broker has acknowledged every QoS 1/2
// message published so far.
func (p *Publisher) Wait(timeout time.Duration) error {
	if err := p.Flush(); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for len(p.sem) > 0 {
		select {
		case <-p.done:
			return p.failure()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("publisher: %d messages not acknowledged after %v", len(p.sem), timeout)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// Close sends DISCONNECT and closes the connection.
func (p *Publisher) Close() error {
	p.wmu.Lock()
	packets.NewControlPacket(packets.Disconnect).Write(p.w)
	p.w.Flush()
	p.wmu.Unlock()
	err := p.conn.Close()
	<-p.done
	return err
}
