package ingest

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/store"
)

// benchBroker is a broker that answers CONNECT and SUBSCRIBE and then
// sends the same QoS 1 PUBLISH packets over and over, reading (and
// discarding) whatever the client sends: the source's read, decode, batch
// and acknowledgement path with nothing else in the way.
func benchBroker(b *testing.B, msgs [][]byte, qos byte) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	var chunk []byte
	for i, m := range msgs {
		h := byte(0x30) | qos<<1
		n := 2 + len("bench/x") + len(m)
		if qos > 0 {
			n += 2
		}
		chunk = append(chunk, h)
		for {
			d := byte(n % 128)
			n /= 128
			if n > 0 {
				d |= 0x80
			}
			chunk = append(chunk, d)
			if n == 0 {
				break
			}
		}
		chunk = binary.BigEndian.AppendUint16(chunk, uint16(len("bench/x")))
		chunk = append(chunk, "bench/x"...)
		if qos > 0 {
			chunk = binary.BigEndian.AppendUint16(chunk, uint16(i%60000+1))
		}
		chunk = append(chunk, m...)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				readPacket := func() (byte, []byte, error) {
					h, err := r.ReadByte()
					if err != nil {
						return 0, nil, err
					}
					n, mult := 0, 1
					for {
						d, err := r.ReadByte()
						if err != nil {
							return 0, nil, err
						}
						n += int(d&0x7f) * mult
						if d&0x80 == 0 {
							break
						}
						mult *= 128
					}
					body := make([]byte, n)
					_, err = io.ReadFull(r, body)
					return h >> 4, body, err
				}
				if typ, _, err := readPacket(); err != nil || typ != 1 {
					return
				}
				c.Write([]byte{0x20, 2, 0, 0})
				typ, body, err := readPacket()
				if err != nil || typ != 8 {
					return
				}
				c.Write([]byte{0x90, 3, body[0], body[1], qos})
				go io.Copy(io.Discard, r) // the acknowledgements
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "tcp://" + l.Addr().String()
}

// benchApp counts entries and confirms each append at once.
type benchApp struct{ n atomic.Int64 }

func (a *benchApp) Append(_ context.Context, r store.AppendRequest) error {
	a.n.Add(int64(len(r.Entries)))
	if r.Done != nil {
		r.Done(0, nil)
	}
	return nil
}

// BenchmarkMQTTSource: one op is one JSON reading received over TCP,
// decoded, batched, appended and (QoS 1) acknowledged: the CPU and the
// allocations of the source per message (the broker's goroutine is in the
// figure too; the log's commit is not).
func BenchmarkMQTTSource(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprint("qos", qos), func(b *testing.B) {
			var msgs [][]byte
			for i := 0; i < 1000; i++ {
				msgs = append(msgs, fmt.Appendf(nil, `{"sensor":"s%d","value":%d.5,"ts":%d}`, i, i, 1_700_000_000_000+int64(i)))
			}
			app := &benchApp{}
			s := &MQTT{Name: "bench", Broker: benchBroker(b, msgs, qos), Topics: []string{"bench/#"}, QoS: int(qos), Format: "json", CleanSession: true}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx, app) }()
			deadline := time.Now().Add(10 * time.Second)
			for app.n.Load() < 100_000 { // warm up: buffers and interned names
				if time.Now().After(deadline) {
					b.Fatalf("no readings: %+v", s.Stats())
				}
				time.Sleep(time.Millisecond)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := app.n.Load()
			for app.n.Load()-start < int64(b.N) {
				time.Sleep(100 * time.Microsecond)
			}
			b.StopTimer()
			cancel()
			<-done
		})
	}
}
