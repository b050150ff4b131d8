package mqttconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Packet types (MQTT 3.1.1 section 2.2.1).
const (
	CONNECT     = 1
	CONNACK     = 2
	PUBLISH     = 3
	PUBACK      = 4
	PUBREC      = 5
	PUBREL      = 6
	PUBCOMP     = 7
	SUBSCRIBE   = 8
	SUBACK      = 9
	UNSUBSCRIBE = 10
	UNSUBACK    = 11
	PINGREQ     = 12
	PINGRESP    = 13
	DISCONNECT  = 14
)

// ConnectError is the broker's refusal of a CONNECT (a CONNACK return code
// other than 0).
type ConnectError struct{ Code byte }

func (e *ConnectError) Error() string {
	return "broker refused the connection: " + connackReason(e.Code)
}

// Refusal codes of a CONNACK.
const (
	RefusedProtocol    = 1
	RefusedClientID    = 2
	RefusedUnavailable = 3
	RefusedBadLogin    = 4
	RefusedNotAllowed  = 5
)

func connackReason(code byte) string {
	switch code {
	case RefusedProtocol:
		return "it does not accept MQTT 3.1.1"
	case RefusedClientID:
		return "client id rejected"
	case RefusedUnavailable:
		return "server unavailable"
	case RefusedBadLogin:
		return "bad user name or password"
	case RefusedNotAllowed:
		return "not authorised (wrong user name or password, or this client may not connect)"
	}
	return fmt.Sprintf("return code %d", code)
}

// ErrClosed is returned after the connection failed or was closed.
var ErrClosed = errors.New("mqtt connection closed")

// ErrProtocol wraps a packet from the broker that breaks the protocol.
var ErrProtocol = errors.New("mqtt protocol error")

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendLength(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// connectPacket encodes a CONNECT (protocol level 4, MQTT 3.1.1).
func connectPacket(o *Options) []byte {
	var v []byte
	v = appendString(v, "MQTT")
	v = append(v, 4) // protocol level 3.1.1
	var flags byte
	if o.CleanSession {
		flags |= 0x02
	}
	if o.WillTopic != "" {
		flags |= 0x04 | (o.WillQoS&3)<<3
		if o.WillRetain {
			flags |= 0x20
		}
	}
	if o.Username != "" {
		flags |= 0x80
		if o.Password != "" {
			flags |= 0x40
		}
	}
	v = append(v, flags)
	v = binary.BigEndian.AppendUint16(v, uint16(o.Keepalive/time.Second))
	v = appendString(v, o.ClientID)
	if o.WillTopic != "" {
		v = appendString(v, o.WillTopic)
		v = appendString(v, string(o.WillBody))
	}
	if o.Username != "" {
		v = appendString(v, o.Username)
		if o.Password != "" {
			v = appendString(v, o.Password)
		}
	}
	out := append([]byte{CONNECT << 4}, appendLength(nil, len(v))...)
	return append(out, v...)
}

// appendPublishHeader appends a PUBLISH's fixed header, topic and packet
// id (for QoS > 0); the payload follows.
func appendPublishHeader(b []byte, topic string, qos byte, retain bool, id uint16, payloadLen int) []byte {
	h := byte(PUBLISH<<4) | qos<<1
	if retain {
		h |= 1
	}
	n := 2 + len(topic) + payloadLen
	if qos > 0 {
		n += 2
	}
	b = append(b, h)
	b = appendLength(b, n)
	b = appendString(b, topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	return b
}

// appendAck appends a 4-byte acknowledgement packet (PUBACK, PUBREC,
// PUBREL, PUBCOMP).
func appendAck(b []byte, typ byte, id uint16) []byte {
	h := typ << 4
	if typ == PUBREL {
		h |= 0x02
	}
	return append(b, h, 2, byte(id>>8), byte(id))
}
