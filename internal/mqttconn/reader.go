package mqttconn

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// truncatedHead is how much of an oversized payload Next returns: enough
// to show in a quarantine what the message was.
const truncatedHead = 4096

// maxControl bounds the packets other than PUBLISH that a broker may send
// (acknowledgements, SUBACK): anything larger breaks the protocol.
const maxControl = 64 << 10

// reader reads packets through one buffer. The bytes not yet consumed are
// buf[r:w]; a packet returned by next is a slice of buf, valid until the
// following call.
type reader struct {
	nc   net.Conn
	buf  []byte
	r, w int
	// skip is what remains of an oversized PUBLISH to discard before the
	// next packet.
	skip int
	// maxPayload bounds the payload of a PUBLISH held whole.
	maxPayload int
	// timeout, when set, is the read deadline of each read from the socket
	// (keepalive * 1.5: a broker that answers no PINGREQ is gone).
	timeout time.Duration
	// beforeRead runs before each read from the socket (which may block).
	beforeRead func()
	// interrupted makes every read fail at once (Conn.Interrupt).
	interrupted atomic.Bool
}

const readBufSize = 32 << 10

// buffered reports whether a whole packet (or the header of an oversized
// one) is already in the buffer: whether next returns without reading the
// socket.
func (rd *reader) buffered() bool {
	if rd.skip > 0 {
		return false
	}
	b := rd.buf[rd.r:rd.w]
	n, hl, ok := remainingLength(b)
	if !ok {
		return false
	}
	if len(b) >= hl+n {
		return true
	}
	// An oversized PUBLISH returns once its head is in.
	if b[0]>>4 == PUBLISH && len(b) >= hl+2 {
		tl := int(binary.BigEndian.Uint16(b[hl:]))
		return n-2-tl > rd.maxPayload && len(b) >= hl+min(n, 2+tl+2+truncatedHead)
	}
	return false
}

// remainingLength decodes a fixed header at the start of b: the remaining
// length and the header's size; ok false when b does not hold it all yet.
func remainingLength(b []byte) (n, hl int, ok bool) {
	mult := 1
	for i := 1; i < len(b) && i <= 4; i++ {
		n += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return n, i + 1, true
		}
		mult *= 128
	}
	return 0, 0, false
}

// fill makes buf[r:w] hold at least need bytes, reading from the socket.
func (rd *reader) fill(need int) error {
	if rd.w-rd.r >= need {
		return nil
	}
	if len(rd.buf)-rd.r < need {
		if need > len(rd.buf) {
			nb := make([]byte, max(need, 2*len(rd.buf)))
			rd.w = copy(nb, rd.buf[rd.r:rd.w])
			rd.buf = nb
		} else {
			rd.w = copy(rd.buf, rd.buf[rd.r:rd.w])
		}
		rd.r = 0
	}
	for rd.w-rd.r < need {
		if err := rd.read(); err != nil {
			return err
		}
	}
	return nil
}

// read reads once from the socket into the free end of buf.
func (rd *reader) read() error {
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	}
	if rd.beforeRead != nil {
		rd.beforeRead()
	}
	if rd.timeout > 0 {
		rd.nc.SetReadDeadline(time.Now().Add(rd.timeout))
	}
	// After the deadline is set: an Interrupt that this check misses sets
	// its own deadline after ours.
	if rd.interrupted.Load() {
		return os.ErrDeadlineExceeded
	}
	n, err := rd.nc.Read(rd.buf[rd.w:])
	rd.w += n
	if n > 0 {
		return nil
	}
	return err
}

// discard drops the rest of an oversized packet.
func (rd *reader) discard() error {
	for rd.skip > 0 {
		if rd.r == rd.w {
			if err := rd.read(); err != nil {
				return err
			}
		}
		n := min(rd.skip, rd.w-rd.r)
		rd.r += n
		rd.skip -= n
	}
	return nil
}

// next reads one packet into p.
func (rd *reader) next(p *Packet) error {
	if err := rd.discard(); err != nil {
		return err
	}
	var n, hl int
	for need := 2; ; need++ {
		if err := rd.fill(need); err != nil {
			return err
		}
		var ok bool
		if n, hl, ok = remainingLength(rd.buf[rd.r:rd.w]); ok {
			break
		}
		if need == 5 {
			return fmt.Errorf("%w: malformed remaining length", ErrProtocol)
		}
	}
	h := rd.buf[rd.r]
	*p = Packet{Type: h >> 4, Size: n}
	if p.Type != PUBLISH {
		if n > maxControl {
			return fmt.Errorf("%w: packet of type %d with %d bytes", ErrProtocol, p.Type, n)
		}
		if err := rd.fill(hl + n); err != nil {
			return err
		}
		body := rd.buf[rd.r+hl : rd.r+hl+n]
		rd.r += hl + n
		p.Body = body
		if len(body) >= 2 {
			p.ID = binary.BigEndian.Uint16(body)
		}
		return nil
	}
	p.QoS, p.Retain, p.Dup = (h>>1)&3, h&1 == 1, h&8 != 0
	if p.QoS == 3 {
		return fmt.Errorf("%w: PUBLISH with QoS 3", ErrProtocol)
	}
	idLen := 0
	if p.QoS > 0 {
		idLen = 2
	}
	if err := rd.fill(hl + 2); err != nil {
		return err
	}
	tl := int(binary.BigEndian.Uint16(rd.buf[rd.r+hl:]))
	pl := n - 2 - tl - idLen
	if pl < 0 {
		return fmt.Errorf("%w: PUBLISH shorter than its topic", ErrProtocol)
	}
	p.Size = pl
	take := n
	if pl > rd.maxPayload {
		p.Truncated = true
		take = n - pl + min(pl, truncatedHead)
	}
	if err := rd.fill(hl + take); err != nil {
		return err
	}
	b := rd.buf[rd.r+hl : rd.r+hl+take]
	rd.r += hl + take
	rd.skip = n - take
	p.Topic = b[2 : 2+tl]
	if idLen > 0 {
		p.ID = binary.BigEndian.Uint16(b[2+tl:])
	}
	p.Payload = b[2+tl+idLen:]
	return nil
}
