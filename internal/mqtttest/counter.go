package mqtttest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// CountResult is what Count saw.
type CountResult struct {
	Messages    int
	First, Last time.Time // arrival of the first and the last message
}

// Count is a plain counting subscriber for benchmarks, independent of
// edged's client: it connects to addr with a clean session, subscribes to
// filter at qos, calls ready once the broker acknowledged the
// subscription, and counts PUBLISH packets, acknowledging each QoS 1
// message at once (the acknowledgements of what one read brought go out
// in one write). It returns after n messages, or when none came for idle
// after the first.
func Count(addr, clientID, filter string, qos byte, n int, idle time.Duration, ready func()) (CountResult, error) {
	var res CountResult
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return res, err
	}
	defer c.Close()
	var pk []byte
	pk = append(pk, 0x10)
	body := binary.BigEndian.AppendUint16(nil, 4)
	body = append(body, "MQTT"...)
	body = append(body, 4, 0x02, 0, 60)
	body = binary.BigEndian.AppendUint16(body, uint16(len(clientID)))
	body = append(body, clientID...)
	pk = append(pk, byte(len(body)))
	pk = append(pk, body...)
	sub := binary.BigEndian.AppendUint16(nil, 1)
	sub = binary.BigEndian.AppendUint16(sub, uint16(len(filter)))
	sub = append(sub, filter...)
	sub = append(sub, qos)
	pk = append(pk, 0x82, byte(len(sub)))
	pk = append(pk, sub...)
	if _, err := c.Write(pk); err != nil {
		return res, err
	}
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 16<<10)
	var hdr [5]byte
	buf := make([]byte, 64<<10)
	for res.Messages < n {
		if res.Messages > 0 {
			c.SetReadDeadline(time.Now().Add(idle))
		}
		h, err := r.ReadByte()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return res, nil
			}
			return res, err
		}
		size, mult := 0, 1
		for i := 0; ; i++ {
			d, err := r.ReadByte()
			if err != nil {
				return res, err
			}
			size += int(d&0x7f) * mult
			if d&0x80 == 0 {
				break
			}
			if i == 3 {
				return res, errors.New("malformed length")
			}
			mult *= 128
		}
		if size > len(buf) {
			buf = make([]byte, size)
		}
		if _, err := io.ReadFull(r, buf[:size]); err != nil {
			return res, err
		}
		switch h >> 4 {
		case 2:
			if buf[1] != 0 {
				return res, fmt.Errorf("connection refused: code %d", buf[1])
			}
		case 9:
			if ready != nil {
				ready()
			}
		case 3:
			now := time.Now()
			if res.Messages == 0 {
				res.First = now
			}
			res.Last = now
			res.Messages++
			if q := (h >> 1) & 3; q > 0 {
				tl := int(binary.BigEndian.Uint16(buf))
				hdr[0], hdr[1], hdr[2], hdr[3] = 0x40, 2, buf[2+tl], buf[3+tl]
				if q == 2 {
					hdr[0] = 0x50
				}
				w.Write(hdr[:4])
			}
			if r.Buffered() == 0 {
				if err := w.Flush(); err != nil {
					return res, err
				}
			}
		}
	}
	w.Flush()
	return res, nil
}
