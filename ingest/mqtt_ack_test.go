package ingest

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/store"
)

// heldApp keeps every append's commit callback until release.
type heldApp struct {
	mu      sync.Mutex
	entries int
	dones   []func(uint64, error)
}

func (a *heldApp) Append(_ context.Context, r store.AppendRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries += len(r.Entries)
	if r.Done != nil {
		a.dones = append(a.dones, r.Done)
	}
	return nil
}

func (a *heldApp) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.entries
}

func (a *heldApp) release() {
	a.mu.Lock()
	ds := a.dones
	a.dones = nil
	a.mu.Unlock()
	for _, d := range ds {
		d(0, nil)
	}
}

// TestMQTTAcksAfterCommitInOrder: a scripted broker sends QoS 1 and QoS 2
// messages; nothing is acknowledged while the log holds their commit;
// once it commits, every PUBACK and PUBREC comes, in the order the
// messages were sent, and a PUBREL is answered with PUBCOMP.
func TestMQTTAcksAfterCommitInOrder(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 3000
	type ack struct {
		typ byte
		id  uint16
	}
	acks := make(chan ack, 2*n)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		read := func() (byte, []byte) {
			h, err := r.ReadByte()
			if err != nil {
				return 0, nil
			}
			size, mult := 0, 1
			for {
				d, _ := r.ReadByte()
				size += int(d&0x7f) * mult
				if d&0x80 == 0 {
					break
				}
				mult *= 128
			}
			body := make([]byte, size)
			io.ReadFull(r, body)
			return h >> 4, body
		}
		read() // CONNECT
		c.Write([]byte{0x20, 2, 0, 0})
		_, sub := read()
		c.Write([]byte{0x90, 3, sub[0], sub[1], 2})
		var out []byte
		for i := 1; i <= n; i++ {
			qos := byte(1 + i%2)
			payload := []byte(`{"sensor":"s","value":1,"ts":1700000000000}`)
			out = append(out, 0x30|qos<<1, byte(2+1+2+len(payload)), 0, 1, 'a')
			out = binary.BigEndian.AppendUint16(out, uint16(i))
			out = append(out, payload...)
		}
		c.Write(out)
		for {
			typ, body := read()
			if body == nil {
				close(acks)
				return
			}
			if typ == 5 { // PUBREC: release it
				acks <- ack{typ, binary.BigEndian.Uint16(body)}
				c.Write([]byte{0x62, 2, body[0], body[1]})
				continue
			}
			if typ == 4 || typ == 7 {
				acks <- ack{typ, binary.BigEndian.Uint16(body)}
			}
		}
	}()
	app := &heldApp{}
	s := &MQTT{Name: "acks", Broker: "tcp://" + l.Addr().String(), Topics: []string{"#"}, QoS: 2, Format: "json", CleanSession: true}
	mqttStart(t, s, app)
	mqttWaitUntil(t, "every message in a batch", 10*time.Second, func() bool { return app.count() == n })
	select {
	case a := <-acks:
		t.Fatalf("acknowledged before the commit: %+v", a)
	case <-time.After(300 * time.Millisecond):
	}
	app.release()
	var pubacks []ack
	comps := 0
	deadline := time.After(10 * time.Second)
	for len(pubacks) < n || comps < n/2 {
		select {
		case a, ok := <-acks:
			if !ok {
				t.Fatal("connection closed")
			}
			if a.typ == 7 {
				comps++
				continue
			}
			pubacks = append(pubacks, a)
		case <-deadline:
			t.Fatalf("%d acknowledgements, %d PUBCOMPs of %d", len(pubacks), comps, n)
		}
	}
	for i, a := range pubacks {
		want := ack{typ: 4, id: uint16(i + 1)} // QoS 1: PUBACK
		if (i+1)%2 == 1 {
			want.typ = 5 // QoS 2: PUBREC
		}
		if a != want {
			t.Fatalf("acknowledgement %d is %+v, want %+v (arrival order)", i, a, want)
		}
	}
	if st := s.Stats(); st.Acked != n {
		t.Fatalf("stats %+v", st)
	}
}
