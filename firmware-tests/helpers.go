//go:build firmware

package firmwaretests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/internal/mqtttest"
)

// SerialPty is a socat process joining two pseudo-terminals: edged opens
// Dev as its serial port, the test plays the device on the other end.
// (A copy of cmd/edged/serial_test.go's, which this package cannot import.)
type SerialPty struct {
	Dev  string
	cmd  *exec.Cmd
	peer *os.File
	log  bytes.Buffer
}

// StartSerialPty starts socat with the two ends linked at dev and peer; it
// stops when the test ends.
func StartSerialPty(t testing.TB, dev, peer string) *SerialPty {
	t.Helper()
	if _, err := exec.LookPath("socat"); err != nil {
		t.Fatalf("socat is not installed (apt-get install socat): %v", err)
	}
	p := &SerialPty{Dev: dev}
	p.cmd = exec.Command("socat", "-d", "-d", "pty,raw,echo=0,link="+dev, "pty,raw,echo=0,link="+peer)
	p.cmd.Stderr = &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err1 := os.Stat(dev)
		_, err2 := os.Stat(peer)
		if err1 == nil && err2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socat did not create %s and %s: %s", dev, peer, p.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	f, err := os.OpenFile(peer, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.peer = f
	return p
}

// Write sends s to edged's end, as the device would.
func (p *SerialPty) Write(s string) error {
	_, err := p.peer.WriteString(s)
	return err
}

// Alive reports whether socat still runs.
func (p *SerialPty) Alive() bool {
	return p.cmd.ProcessState == nil && p.cmd.Process.Signal(syscall.Signal(0)) == nil
}

// Close stops socat: the port disappears as an unplugged USB adapter.
func (p *SerialPty) Close() {
	if p.cmd.ProcessState != nil {
		return
	}
	if p.peer != nil {
		p.peer.Close()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.AfterFunc(10*time.Second, func() { p.cmd.Process.Kill() })
	p.cmd.Wait()
	t.Stop()
}

// Record is the part of an uplinked record the tests look at.
type Record struct {
	Type   string  `json:"type"`
	Window string  `json:"window"`
	Key    string  `json:"key"`
	Start  int64   `json:"start"`
	End    int64   `json:"end"`
	Rev    int     `json:"rev"`
	Final  bool    `json:"final"`
	Count  int     `json:"count"`
	Sum    float64 `json:"sum"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Device string  `json:"device"`
	Seq    int     `json:"seq"`
	ID     string  `json:"id"`
}

// Subscriber is an upstream consumer: a persistent MQTT session that
// keeps, per seq, the first payload it received, and counts duplicates
// (the uplink delivers at least once) and duplicates that differ (a bug:
// a seq names one record).
type Subscriber struct {
	mu       sync.Mutex
	bySeq    map[int]string
	recs     map[int]Record
	dups     int
	conflict []string
	notJSON  []string
}

// Subscribe connects to url as clientID with a persistent session and
// subscribes to filter at QoS 1 (mqtttest.Subscribe); it disconnects when
// the test ends.
func Subscribe(t testing.TB, url, clientID, filter string) *Subscriber {
	t.Helper()
	s := &Subscriber{bySeq: map[int]string{}, recs: map[int]Record{}}
	mqtttest.Subscribe(t, url, clientID, filter, s.add)
	return s
}

func (s *Subscriber) add(topic string, payload []byte) {
	var r Record
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := json.Unmarshal(payload, &r); err != nil || r.Seq == 0 {
		s.notJSON = append(s.notJSON, fmt.Sprintf("%s: %.200s", topic, payload))
		return
	}
	if prev, ok := s.bySeq[r.Seq]; ok {
		s.dups++
		if prev != string(payload) {
			s.conflict = append(s.conflict, fmt.Sprintf("seq %d: %s then %s", r.Seq, prev, payload))
		}
		return
	}
	s.bySeq[r.Seq] = string(payload)
	s.recs[r.Seq] = r
}

// Count is the number of distinct seqs received.
func (s *Subscriber) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bySeq)
}

// Has reports whether a record of window and key starting at start has
// arrived.
func (s *Subscriber) Has(window, key string, start int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.recs {
		if r.Window == window && r.Key == key && r.Start == start {
			return true
		}
	}
	return false
}

// Records returns the records received, one per seq, in seq order.
func (s *Subscriber) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Check verifies that seqs 1..n all arrived and that no seq came with two
// different payloads; it returns the number of duplicates.
func (s *Subscriber) Check(n int) (dups int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var missing []string
	for seq := 1; seq <= n; seq++ {
		if _, ok := s.bySeq[seq]; !ok {
			missing = append(missing, fmt.Sprint(seq))
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d of seq 1..%d never arrived: %s", len(missing), n, strings.Join(missing, " ")))
	}
	for seq := range s.bySeq {
		if seq > n {
			problems = append(problems, fmt.Sprintf("seq %d arrived, beyond the last committed %d", seq, n))
		}
	}
	if len(s.conflict) > 0 {
		problems = append(problems, fmt.Sprintf("%d seqs arrived with two payloads, first: %s", len(s.conflict), s.conflict[0]))
	}
	if len(s.notJSON) > 0 {
		problems = append(problems, fmt.Sprintf("%d messages that are not records, first: %s", len(s.notJSON), s.notJSON[0]))
	}
	if len(problems) > 0 {
		return s.dups, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return s.dups, nil
}

// FileHas reports whether the JSON-lines file of a file output holds a
// record of window and key starting at start.
func FileHas(path, window, key string, start int64) bool {
	data, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(data), "\n") {
		var r Record
		if json.Unmarshal([]byte(l), &r) == nil && r.Window == window && r.Key == key && r.Start == start {
			return true
		}
	}
	return false
}

// FileCheck verifies that a file output holds seqs 1..n, each with one
// payload, and nothing else.
func FileCheck(path string, n int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := &Subscriber{bySeq: map[int]string{}, recs: map[int]Record{}}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		s.add(path, []byte(l))
	}
	_, err = s.Check(n)
	return err
}

// FreePort is a free TCP port on 127.0.0.1 (free when it returns: a race
// with other processes is possible but unlikely).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond every 50 ms until it holds or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// HTTPStatus is the status code of a GET of url, or 0 when the request
// fails; it gives up after 5 s.
func HTTPStatus(url string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
