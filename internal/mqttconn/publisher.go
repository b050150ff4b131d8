package mqttconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Publisher is a Conn that only publishes, for the uplink: it pipelines
// (Publish queues the packet and returns; the connection's writer sends
// what has queued in one write) and reports the broker's acknowledgements
// on Acks from a reader goroutine of its own. A Publisher serves one
// connection: after an error, dial a new one.
type Publisher struct {
	c     *Conn
	acks  chan uint16
	onMsg func(topic, payload []byte, retained bool)
	wg    sync.WaitGroup
}

// PublisherOptions configures DialPublisher.
type PublisherOptions struct {
	ClientID   string
	Username   string
	Password   string
	Keepalive  time.Duration // default 30 s
	WillTopic  string
	WillBody   []byte
	WillRetain bool
	TLS        *tls.Config
	Timeout    time.Duration // for dialing and CONNACK; default 10 s
	// AckBuffer sizes Acks; a reader that cannot hand an ack over stops
	// reading (backpressure). Default 4096.
	AckBuffer int
	// OnMessage, when set, is called on the reader goroutine with each
	// PUBLISH the broker sends for a Subscribe: topic and payload are valid
	// only during the call, and it must not block (acknowledgements wait
	// behind it). A message above QoS 0 is acknowledged after it returns.
	OnMessage func(topic, payload []byte, retained bool)
}

// DialPublisher connects to broker (tcp, ssl, ws or wss URL) with a clean
// session and a last will at QoS 1, and returns a Publisher once the
// broker accepted the CONNECT.
func DialPublisher(ctx context.Context, broker string, o PublisherOptions) (*Publisher, error) {
	if o.AckBuffer <= 0 {
		o.AckBuffer = 4096
	}
	c, err := Dial(ctx, broker, Options{ClientID: o.ClientID, Username: o.Username, Password: o.Password,
		CleanSession: true, Keepalive: o.Keepalive, WillTopic: o.WillTopic, WillBody: o.WillBody, WillQoS: 1,
		WillRetain: o.WillRetain, TLS: o.TLS, Timeout: o.Timeout})
	if err != nil {
		return nil, err
	}
	p := &Publisher{c: c, acks: make(chan uint16, o.AckBuffer), onMsg: o.OnMessage}
	p.wg.Add(1)
	go p.reader()
	return p, nil
}

// Publish queues a PUBLISH and returns its packet id (0 for QoS 0). The
// broker's acknowledgement of a QoS 1 or 2 message comes on Acks.
func (p *Publisher) Publish(topic string, qos byte, retain bool, payload []byte) (uint16, error) {
	return p.c.Publish(topic, qos, retain, payload)
}

// Subscribe queues a SUBSCRIBE of filters at qos; what the broker sends
// for it goes to PublisherOptions.OnMessage (ignored without one).
func (p *Publisher) Subscribe(filters []string, qos byte) error {
	_, err := p.c.Subscribe(filters, qos)
	return err
}

// Acks reports the packet ids the broker acknowledged (PUBACK for QoS 1,
// PUBCOMP for QoS 2), in the order they arrive. It is closed when the
// connection ends.
func (p *Publisher) Acks() <-chan uint16 { return p.acks }

// Done is closed when the connection ends; Err then says why.
func (p *Publisher) Done() <-chan struct{} { return p.c.Done() }

// Err returns the error that ended the connection, or nil.
func (p *Publisher) Err() error { return p.c.Err() }

// reader hands the broker's acknowledgements over to Acks.
func (p *Publisher) reader() {
	defer p.wg.Done()
	defer close(p.acks)
	var pk Packet
	for {
		if err := p.c.Next(&pk); err != nil {
			if errors.Is(err, net.ErrClosed) {
				err = ErrClosed
			}
			p.c.fail(fmt.Errorf("read: %w", err))
			return
		}
		switch pk.Type {
		case PUBLISH:
			if p.onMsg != nil {
				p.onMsg(pk.Topic, pk.Payload, pk.Retain)
			}
			if pk.QoS > 0 {
				p.c.Ack([]Ack{{ID: pk.ID, QoS: pk.QoS}})
			}
		case PUBACK, PUBCOMP:
			select {
			case p.acks <- pk.ID:
			case <-p.c.Done():
				return
			}
		}
	}
}

// Close sends DISCONNECT (so the broker does not publish the last will)
// and closes the connection.
func (p *Publisher) Close() error {
	p.c.Close()
	p.wg.Wait()
	return nil
}
