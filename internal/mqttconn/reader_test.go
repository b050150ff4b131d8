package mqttconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// streamConn is a net.Conn that reads from r in reads of at most chunk
// bytes (to cut packets anywhere) and discards writes.
type streamConn struct {
	r     io.Reader
	chunk int
	reads int
}

func (c *streamConn) Read(p []byte) (int, error) {
	c.reads++
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.r.Read(p)
}
func (c *streamConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

func publish(topic string, qos byte, retain bool, id uint16, payload []byte) []byte {
	return append(appendPublishHeader(nil, topic, qos, retain, id, len(payload)), payload...)
}

// TestReaderPackets: packets cut at every possible place come out whole,
// an oversized PUBLISH comes out truncated with its real size while the
// packets around it are intact, and the buffer never grows to its size.
func TestReaderPackets(t *testing.T) {
	big := bytes.Repeat([]byte("B"), 3<<20)
	var stream []byte
	stream = append(stream, publish("a/b", 1, false, 7, []byte(`{"v":1}`))...)
	stream = append(stream, publish("big/one", 2, true, 8, big)...)
	stream = appendAck(stream, PUBREL, 8)
	stream = append(stream, publish("", 0, false, 0, nil)...)
	stream = append(stream, PINGRESP<<4, 0)
	stream = append(stream, SUBACK<<4, 4, 0, 9, 1, 0x80)
	stream = append(stream, publish(strings.Repeat("t", 300), 0, false, 0, []byte("x"))...)
	for _, chunk := range []int{1, 2, 3, 7, 100, 5000, 0} {
		rd := reader{nc: &streamConn{r: bytes.NewReader(stream), chunk: chunk}, buf: make([]byte, 64), maxPayload: 1 << 10}
		var p Packet
		next := func() {
			t.Helper()
			if err := rd.next(&p); err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
		}
		next()
		if p.Type != PUBLISH || string(p.Topic) != "a/b" || p.QoS != 1 || p.ID != 7 || string(p.Payload) != `{"v":1}` || p.Truncated {
			t.Fatalf("chunk %d: first %+v", chunk, p)
		}
		next()
		if p.Type != PUBLISH || string(p.Topic) != "big/one" || !p.Truncated || p.Size != len(big) || len(p.Payload) != truncatedHead ||
			p.ID != 8 || p.QoS != 2 || !p.Retain {
			t.Fatalf("chunk %d: oversized: type %d topic %q truncated %v size %d head %d", chunk, p.Type, p.Topic, p.Truncated, p.Size, len(p.Payload))
		}
		next()
		if p.Type != PUBREL || p.ID != 8 {
			t.Fatalf("chunk %d: after the oversized one: %+v", chunk, p)
		}
		next()
		if p.Type != PUBLISH || len(p.Topic) != 0 || len(p.Payload) != 0 {
			t.Fatalf("chunk %d: empty publish %+v", chunk, p)
		}
		next()
		if p.Type != PINGRESP {
			t.Fatalf("chunk %d: %+v", chunk, p)
		}
		next()
		if p.Type != SUBACK || p.ID != 9 || !bytes.Equal(p.Body[2:], []byte{1, 0x80}) {
			t.Fatalf("chunk %d: suback %+v", chunk, p)
		}
		next()
		if len(p.Topic) != 300 || string(p.Payload) != "x" {
			t.Fatalf("chunk %d: long topic %+v", chunk, p)
		}
		if err := rd.next(&p); !errors.Is(err, io.EOF) {
			t.Fatalf("chunk %d: at the end: %v", chunk, err)
		}
		if len(rd.buf) > 64<<10 {
			t.Fatalf("chunk %d: the buffer grew to %d bytes for a skipped payload", chunk, len(rd.buf))
		}
	}
}

func TestReaderMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"length over 4 bytes":     {PUBLISH << 4, 0xff, 0xff, 0xff, 0xff, 0x01},
		"topic longer than body":  {PUBLISH << 4, 3, 0, 9, 'a'},
		"qos 3":                   {PUBLISH<<4 | 6, 3, 0, 1, 'a'},
		"huge control packet":     {SUBACK << 4, 0xff, 0xff, 0x7f},
		"truncated in the middle": {PUBLISH << 4, 10, 0, 1},
	} {
		rd := reader{nc: &streamConn{r: bytes.NewReader(b)}, buf: make([]byte, 64), maxPayload: 1 << 10}
		var p Packet
		err := rd.next(&p)
		if err == nil {
			t.Errorf("%s: no error: %+v", name, p)
		}
	}
}

// BenchmarkReaderPublish: reading QoS 1 PUBLISH packets of ~60 bytes
// through the buffer: no allocation per packet.
func BenchmarkReaderPublish(b *testing.B) {
	one := publish("sensors/s1", 1, false, 1, []byte(`{"sensor":"s17","value":21.5,"ts":1700000000000}`))
	stream := bytes.Repeat(one, 10000)
	r := bytes.NewReader(stream)
	rd := reader{nc: &streamConn{r: r}, buf: make([]byte, readBufSize), maxPayload: 1 << 20}
	var p Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(one)))
	for b.Loop() {
		if err := rd.next(&p); err != nil {
			r.Reset(stream)
			rd.r, rd.w = 0, 0
			if err := rd.next(&p); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// FuzzReader: whatever a broker sends, the reader returns packets or an
// error, never panics, and never holds a payload over the maximum.
func FuzzReader(f *testing.F) {
	f.Add(publish("a/b", 1, false, 7, []byte(`{"v":1}`)))
	f.Add(append(publish("big", 0, false, 0, bytes.Repeat([]byte("x"), 300)), PINGRESP<<4, 0))
	f.Add([]byte{SUBACK << 4, 3, 0, 1, 0x80})
	f.Add([]byte{PUBLISH << 4, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := reader{nc: &streamConn{r: bytes.NewReader(data), chunk: 3}, buf: make([]byte, 16), maxPayload: 100}
		var p Packet
		for i := 0; i < 1000; i++ {
			if err := rd.next(&p); err != nil {
				return
			}
			if len(p.Payload) > max(100, truncatedHead) || p.Truncated && p.Size <= 100 {
				t.Fatalf("payload %d bytes, size %d, truncated %v", len(p.Payload), p.Size, p.Truncated)
			}
		}
	})
}
