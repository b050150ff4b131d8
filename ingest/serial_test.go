package ingest

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/store"
)

// --- helpers -------------------------------------------------------------

// fakeApp is an Appender that keeps what it is given. While block is set,
// Append waits (a log that cannot keep up).
type fakeApp struct {
	mu    sync.Mutex
	reqs  []store.AppendRequest
	block atomic.Pointer[chan struct{}]
}

func (a *fakeApp) Append(ctx context.Context, r store.AppendRequest) error {
	if b := a.block.Load(); b != nil {
		select {
		case <-*b:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a.mu.Lock()
	a.reqs = append(a.reqs, r)
	a.mu.Unlock()
	return nil
}

func (a *fakeApp) entries() []store.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	var es []store.Entry
	for _, r := range a.reqs {
		es = append(es, r.Entries...)
	}
	return es
}

func (a *fakeApp) quarantine() []store.QEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	var qs []store.QEntry
	for _, r := range a.reqs {
		qs = append(qs, r.Quarantine...)
	}
	return qs
}

// values returns the values of the entries of sensor, in order.
func (a *fakeApp) values(sensor string) []float64 {
	var vs []float64
	for _, e := range a.entries() {
		if e.Sensor == sensor {
			vs = append(vs, e.Value)
		}
	}
	return vs
}

// waitFor polls cond until it holds or fails the test.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logBuf collects a logger's output for the tests to look at.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) count(s string) int { return strings.Count(l.String(), s) }

func newLog() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// ptyPair is a socat process joining two pseudo-terminals: the source
// opens dev, the test plays the device on peer.
type ptyPair struct {
	cmd  *exec.Cmd
	dev  string
	peer *os.File
}

// needSocat skips the test when socat is not installed.
func needSocat(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("socat is not installed (apt-get install socat): the serial tests need a real pseudo-terminal pair")
	}
}

// startPty starts socat with links dev and peer and opens peer.
func startPty(t *testing.T, dev, peer string) *ptyPair {
	t.Helper()
	cmd := exec.Command("socat", "-d", "-d",
		"pty,raw,echo=0,link="+dev,
		"pty,raw,echo=0,link="+peer)
	var stderr logBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &ptyPair{cmd: cmd, dev: dev}
	t.Cleanup(func() { p.unplug(t) })
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err1 := os.Stat(dev)
		_, err2 := os.Stat(peer)
		if err1 == nil && err2 == nil && strings.Contains(stderr.String(), "starting data transfer loop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socat did not create %s and %s: %s", dev, peer, stderr.String())
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

// unplug ends socat: dev disappears, as a USB adapter pulled out.
func (p *ptyPair) unplug(t *testing.T) {
	if p.cmd.Process == nil || p.cmd.ProcessState != nil {
		return
	}
	if p.peer != nil {
		p.peer.Close()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

func (p *ptyPair) write(t *testing.T, s string) {
	t.Helper()
	if _, err := p.peer.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// runSerial runs s against a fake appender until the test ends.
func runSerial(t *testing.T, s *Serial) (*fakeApp, *logBuf) {
	t.Helper()
	log, lb := newLog()
	s.Logger = log
	if s.Format == "" {
		s.Format = "json"
	}
	if s.Name == "" {
		s.Name = "tty"
	}
	app := &fakeApp{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, app) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5 s of the end of its context")
		}
	})
	return app, lb
}

func waitOpened(t *testing.T, lb *logBuf, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d opens in the log", n), 10*time.Second, func() bool {
		return lb.count("serial port opened")+lb.count("serial port reconnected") >= n
	})
}

// --- framing, without a port ----------------------------------------------

func TestSerialFramer(t *testing.T) {
	type frame struct {
		long bool
		s    string
	}
	cases := []struct {
		name  string
		max   int
		feeds []string
		want  []frame
	}{
		{"lines", 16, []string{"a\nbb\n"}, []frame{{false, "a"}, {false, "bb"}}},
		{"partial across feeds", 16, []string{"ab", "c", "d\ne", "f\n"}, []frame{{false, "abcd"}, {false, "ef"}}},
		{"empty reads", 16, []string{"", "ab", "", "\n"}, []frame{{false, "ab"}}},
		{"exactly max", 4, []string{"abcd\n"}, []frame{{false, "abcd"}}},
		{"too long in one feed", 4, []string{"abcdef\nok\n"}, []frame{{true, "abcd"}, {false, "ok"}}},
		{"too long across feeds", 4, []string{"ab", "cd", "ef", "gh\nok\n"}, []frame{{true, "abcd"}, {false, "ok"}}},
		{"too long with partial", 4, []string{"ab", "cdef\nok\n"}, []frame{{true, "abcd"}, {false, "ok"}}},
		{"skip spans feeds", 4, []string{"abcde", "xxxxxxxx", "xx\n", "ok\n"}, []frame{{true, "abcd"}, {false, "ok"}}},
		{"partial plus rest at max", 4, []string{"ab", "cd\n"}, []frame{{false, "abcd"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFramer('\n', c.max)
			var got []frame
			for _, p := range c.feeds {
				f.feed([]byte(p), func(k frameKind, b []byte) { got = append(got, frame{k == frameTooLong, string(b)}) })
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
	f := newFramer(';', 8)
	var got []string
	f.feed([]byte("a;b\r\n;c"), func(_ frameKind, b []byte) { got = append(got, string(trimFrame(b))) })
	if want := []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("delimiter ';': got %q, want %q", got, want)
	}
	if rest := string(f.reset()); rest != "c" {
		t.Errorf("reset returned %q, want the partial line c", rest)
	}
}

func TestSerialUnescapePoll(t *testing.T) {
	for in, want := range map[string]string{
		`READ\r\n`:    "READ\r\n",
		"READ\r\n":    "READ\r\n",
		`\x02M\x03`:   "\x02M\x03",
		`a\\b\t\0`:    "a\\b\t\x00",
		`\x0D\x0a`:    "\r\n",
		`plain`:       "plain",
		`\x41\x42end`: "ABend",
	} {
		got, err := UnescapePoll(in)
		if err != nil || string(got) != want {
			t.Errorf("UnescapePoll(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`a\`, `\x4`, `\xZZ`, `\q`} {
		if _, err := UnescapePoll(bad); err == nil {
			t.Errorf("UnescapePoll(%q): no error", bad)
		}
	}
}

func TestSerialFindUSB(t *testing.T) {
	ports := []PortInfo{
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB1", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A6008isP"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "FT9XYZ"},
		{Name: "/dev/ttyACM0", IsUSB: true, VID: "2341", PID: "0043", SerialNumber: "75830333238351806212"},
		{Name: "/dev/ttyACM1", IsUSB: true, VID: "10C4", PID: "EA60"},
	}
	cases := []struct {
		id      USBIdentity
		want    string
		matches int
	}{
		{USBIdentity{VID: "0403", PID: "6001", Serial: "a6008isp"}, "/dev/ttyUSB1", 1},
		{USBIdentity{VID: "0403", PID: "6001"}, "/dev/ttyUSB0", 2}, // first by name
		{USBIdentity{Serial: "FT9XYZ"}, "/dev/ttyUSB0", 1},
		{USBIdentity{VID: "10c4", PID: "ea60"}, "/dev/ttyACM1", 1}, // case-insensitive hex
		{USBIdentity{VID: "0x10C4"}, "/dev/ttyACM1", 1},
		{USBIdentity{VID: "2341"}, "/dev/ttyACM0", 1},
		{USBIdentity{VID: "0403", PID: "6015"}, "", 0},
		{USBIdentity{VID: "0403", Serial: "nope"}, "", 0},
	}
	for _, c := range cases {
		got, n, err := FindUSB(ports, c.id)
		if got != c.want || n != c.matches || (err != nil) != (c.want == "") {
			t.Errorf("FindUSB(%v) = %q, %d, %v; want %q, %d", c.id, got, n, err, c.want, c.matches)
		}
	}
	if (USBIdentity{}).Match(ports[1]) {
		t.Error("an empty identity matches a port")
	}
}

// --- against a real pseudo-terminal pair ----------------------------------

func TestSerialLines(t *testing.T) {
	needSocat(t)
	dir := t.TempDir()
	p := startPty(t, filepath.Join(dir, "dev"), filepath.Join(dir, "peer"))
	s := &Serial{Port: p.dev, Baud: 115200}
	app, lb := runSerial(t, s)
	waitOpened(t, lb, 1)

	p.write(t, "{\"sensor\":\"a\",\"ts\":1000,\"value\":1}\n{\"sensor\":\"a\",\"ts\":2000,\"value\":2}\r\n")
	// A line split across writes (and so across reads).
	p.write(t, `{"sensor":"a","ts":3000,"val`)
	time.Sleep(150 * time.Millisecond)
	p.write(t, "ue\":3}\n")
	// Blank lines are skipped.
	p.write(t, "\n\r\n{\"sensor\":\"a\",\"value\":4}\n")
	waitFor(t, "4 readings", 5*time.Second, func() bool { return len(app.values("a")) == 4 })
	if got := app.values("a"); !slices.Equal(got, []float64{1, 2, 3, 4}) {
		t.Errorf("values %v, want 1 2 3 4", got)
	}
	es := app.entries()
	if es[0].TS != 1000 || es[2].TS != 3000 || es[3].TS == 0 || es[3].Ingest != es[3].TS {
		t.Errorf("timestamps: %+v", es)
	}
	for _, e := range es {
		if e.Source != "tty" {
			t.Errorf("entry source %q, want tty", e.Source)
		}
	}
	app.mu.Lock()
	for _, r := range app.reqs {
		if r.Source != "" || r.Pos != nil {
			t.Errorf("a serial append saves a position: %q %q", r.Source, r.Pos)
		}
	}
	app.mu.Unlock()
	if q := app.quarantine(); len(q) != 0 {
		t.Errorf("quarantined: %+v", q)
	}
}

func TestSerialGarbageAndLongLines(t *testing.T) {
	needSocat(t)
	dir := t.TempDir()
	p := startPty(t, filepath.Join(dir, "dev"), filepath.Join(dir, "peer"))
	s := &Serial{Port: p.dev, Baud: 9600, MaxLine: 64}
	app, lb := runSerial(t, s)
	waitOpened(t, lb, 1)

	p.write(t, "{\"sensor\":\"g\",\"value\":1}\n")
	p.write(t, "\x00\xff\xfe\x13\x37\x80garbage\x01\n") // line noise
	p.write(t, "{\"sensor\":\"g\",\"value\":2}\n")
	p.write(t, strings.Repeat("x", 100)) // longer than 64, end not yet sent
	time.Sleep(100 * time.Millisecond)
	p.write(t, strings.Repeat("y", 100)+"\n")
	p.write(t, "{\"sensor\":\"g\",\"value\":3}\n")
	p.write(t, strings.Repeat("\xfe\xff", 50)+"\n") // junk longer than max_line
	p.write(t, "{\"sensor\":\"g\",\"value\":4}\n")

	waitFor(t, "4 good readings", 5*time.Second, func() bool { return len(app.values("g")) == 4 })
	waitFor(t, "3 quarantined", 5*time.Second, func() bool { return len(app.quarantine()) == 3 })
	if got := app.values("g"); !slices.Equal(got, []float64{1, 2, 3, 4}) {
		t.Errorf("values %v, want 1 2 3 4", got)
	}
	q := app.quarantine()
	if q[0].Reason == "" || !bytes.Contains(q[0].Payload, []byte("garbage")) || q[0].Source != "tty" {
		t.Errorf("garbage quarantined as %+v", q[0])
	}
	for _, i := range []int{1, 2} {
		if q[i].Reason != "line too long: longer than 64 bytes" || len(q[i].Payload) != 64 {
			t.Errorf("over-long line %d quarantined as %q, %d bytes", i, q[i].Reason, len(q[i].Payload))
		}
	}
	if string(q[1].Payload) != strings.Repeat("x", 64) {
		t.Errorf("over-long line kept as %q, want its first 64 bytes", q[1].Payload)
	}
	if !strings.Contains(lb.String(), "payload quarantined") {
		t.Errorf("quarantine not logged:\n%s", lb)
	}
}

func TestSerialPolling(t *testing.T) {
	needSocat(t)
	dir := t.TempDir()
	p := startPty(t, filepath.Join(dir, "dev"), filepath.Join(dir, "peer"))
	cmd, err := UnescapePoll(`R?\r\n`)
	if err != nil {
		t.Fatal(err)
	}
	s := &Serial{Port: p.dev, Baud: 9600, PollCommand: cmd, PollEvery: 200 * time.Millisecond, Format: "kv", Opts: sensors.Options{Sensor: "meter"}}
	app, _ := runSerial(t, s)

	// The device: answer each command with a reading.
	var asked atomic.Int64
	go func() {
		buf := make([]byte, 256)
		var got []byte
		for {
			n, err := p.peer.Read(buf)
			if err != nil {
				return
			}
			got = append(got, buf[:n]...)
			for {
				i := bytes.Index(got, []byte("R?\r\n"))
				if i < 0 {
					break
				}
				if i != 0 {
					t.Errorf("unexpected bytes before the command: %q", got[:i])
				}
				got = got[i+4:]
				k := asked.Add(1)
				fmt.Fprintf(p.peer, "power=%d\r\n", k)
			}
		}
	}()
	start := time.Now()
	waitFor(t, "3 answers", 5*time.Second, func() bool { return len(app.values("meter")) >= 3 })
	took := time.Since(start)
	if got := app.values("meter"); !slices.Equal(got[:3], []float64{1, 2, 3}) {
		t.Errorf("answers %v, want 1 2 3", got)
	}
	// Asked at once, then every 200 ms: the third answer after ~400 ms.
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Errorf("3 answers took %v, want about 400 ms (poll_every 200ms)", took)
	}
}

func TestSerialUnplug(t *testing.T) {
	needSocat(t)
	dir := t.TempDir()
	dev, peer := filepath.Join(dir, "dev"), filepath.Join(dir, "peer")
	p := startPty(t, dev, peer)
	s := &Serial{Port: dev, Baud: 115200, Format: "csv", MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond}
	app, lb := runSerial(t, s)
	waitOpened(t, lb, 1)
	p.write(t, "sensor,ts,value\nu,1000,1\nu,2000,2\n")
	p.write(t, "u,3000,") // cut by the unplug
	waitFor(t, "2 readings", 5*time.Second, func() bool { return len(app.values("u")) == 2 })
	time.Sleep(300 * time.Millisecond) // the cut line read too (reads pause 100 ms)

	p.unplug(t)
	waitFor(t, "the loss logged", 5*time.Second, func() bool { return lb.count("serial port lost") == 1 })
	time.Sleep(700 * time.Millisecond) // a few failed attempts while it is away

	p = startPty(t, dev, peer)
	waitOpened(t, lb, 2)
	p.write(t, "sensor,ts,value\nu,4000,4\n") // the device sends its header again
	waitFor(t, "the reading after the reconnect", 5*time.Second, func() bool { return len(app.values("u")) == 3 })
	if got := app.values("u"); !slices.Equal(got, []float64{1, 2, 4}) {
		t.Errorf("values %v, want 1 2 4", got)
	}
	q := app.quarantine()
	if len(q) != 1 || !strings.Contains(q[0].Reason, "port closed") || string(q[0].Payload) != "u,3000," {
		t.Errorf("quarantine %+v: want only the line cut by the unplug", q)
	}
	if s.Reconnects() != 1 {
		t.Errorf("%d reconnects, want 1", s.Reconnects())
	}
	log := lb.String()
	if n := strings.Count(log, "level=WARN msg=\"serial port"); n != 1 {
		t.Errorf("%d warnings about the port, want 1 for the whole outage:\n%s", n, log)
	}
	if !strings.Contains(log, "serial port reconnected") || !strings.Contains(log, "port="+dev) {
		t.Errorf("reconnect not logged with the path:\n%s", log)
	}
}

// TestSerialUSBIdentity: the device comes back under another name and is
// found by its USB identity (the port list is faked: there is no USB here).
func TestSerialUSBIdentity(t *testing.T) {
	needSocat(t)
	dir := t.TempDir()
	dev1, dev2, peer := filepath.Join(dir, "ttyUSB0"), filepath.Join(dir, "ttyUSB1"), filepath.Join(dir, "peer")
	var lists atomic.Int64
	list := func() ([]PortInfo, error) {
		lists.Add(1)
		ports := []PortInfo{
			{Name: "/dev/ttyS0"},
			{Name: filepath.Join(dir, "other"), IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "OTHER"},
		}
		for _, d := range []string{dev1, dev2} {
			if _, err := os.Stat(d); err == nil {
				ports = append(ports, PortInfo{Name: d, IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A6008isP", Product: "FT232R USB UART"})
			}
		}
		return ports, nil
	}
	p := startPty(t, dev1, peer)
	s := &Serial{Port: "/dev/does-not-exist", USBVID: "0403", USBPID: "6001", USBSerial: "a6008isp", Baud: 9600,
		ListPorts: list, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	app, lb := runSerial(t, s)
	waitOpened(t, lb, 1)
	p.write(t, "{\"sensor\":\"u\",\"value\":1}\n")
	waitFor(t, "a reading", 5*time.Second, func() bool { return len(app.values("u")) == 1 })

	p.unplug(t)
	waitFor(t, "the loss logged", 5*time.Second, func() bool { return lb.count("serial port lost") == 1 })
	before := lists.Load()
	time.Sleep(400 * time.Millisecond)
	if lists.Load() == before {
		t.Error("the port list is not looked at again while the device is away")
	}
	p = startPty(t, dev2, peer)
	waitOpened(t, lb, 2)
	p.write(t, "{\"sensor\":\"u\",\"value\":2}\n")
	waitFor(t, "a reading on the new port", 5*time.Second, func() bool { return len(app.values("u")) == 2 })
	if log := lb.String(); !strings.Contains(log, "port="+dev2+" was="+dev1) {
		t.Errorf("the reconnect does not name the new and old paths:\n%s", log)
	}
}

// TestSerialBackpressure: while appends block, the source keeps reading,
// keeps the newest lines up to its bound, and counts and logs the rest.
func TestSerialBackpressure(t *testing.T) {
	needSocat(t)
	dir := t.TempDir()
	p := startPty(t, filepath.Join(dir, "dev"), filepath.Join(dir, "peer"))
	s := &Serial{Port: p.dev, Baud: 115200, MaxPendingLines: 50, BatchLines: 10}
	app, lb := runSerial(t, s)
	waitOpened(t, lb, 1)
	release := make(chan struct{})
	app.block.Store(&release)

	var b strings.Builder
	for i := 1; i <= 500; i++ {
		fmt.Fprintf(&b, "{\"sensor\":\"b\",\"value\":%d}\n", i)
	}
	p.write(t, b.String())
	waitFor(t, "drops", 5*time.Second, func() bool { return s.Dropped() >= 400 })
	time.Sleep(100 * time.Millisecond)
	app.block.Store(nil)
	close(release)
	waitFor(t, "the last line", 5*time.Second, func() bool {
		vs := app.values("b")
		return len(vs) > 0 && vs[len(vs)-1] == 500
	})
	vs := app.values("b")
	if int64(len(vs))+s.Dropped() != 500 {
		t.Errorf("%d appended + %d dropped != 500 read", len(vs), s.Dropped())
	}
	if len(vs) > 50+10 {
		t.Errorf("%d lines appended, want at most the bound (50) and one batch taken before the block", len(vs))
	}
	if !slices.IsSorted(vs) {
		t.Errorf("out of order: %v", vs)
	}
	// Logged once, when the log caught up again, with the episode's count.
	waitFor(t, "the drops logged", 2*time.Second, func() bool { return lb.count("serial: log cannot keep up") > 0 })
	if n := lb.count("serial: log cannot keep up"); n != 1 ||
		!strings.Contains(lb.String(), fmt.Sprintf("serial: log cannot keep up, %d lines dropped", s.Dropped())) {
		t.Errorf("drops logged %d times, want once with the count %d:\n%s", n, s.Dropped(), lb)
	}
}

// TestSerialMissingDevice: a port that does not exist is waited for, and
// the source still stops at once with its context.
func TestSerialMissingDevice(t *testing.T) {
	dir := t.TempDir()
	log, lb := newLog()
	s := &Serial{Name: "tty", Port: filepath.Join(dir, "nothing"), Format: "json", Logger: log,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, &fakeApp{}) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if n := lb.count("serial port unavailable"); n != 1 {
		t.Errorf("%d warnings, want one for the whole outage:\n%s", n, lb)
	}
	if !strings.Contains(lb.String(), "still unavailable") {
		t.Errorf("no retries:\n%s", lb)
	}

	bad := &Serial{Name: "tty", Port: "/dev/x", StopBits: 1.5, Format: "json"}
	if err := bad.Run(context.Background(), &fakeApp{}); err == nil || !strings.Contains(err.Error(), "stop_bits") {
		t.Errorf("stop_bits 1.5: %v", err)
	}
}

var serialCPU = flag.Duration("serial.cpu", 0, "run TestSerialCPU: feed a pty at 115200 baud for this long and report the source's CPU use (e.g. 10s)")

// countApp counts what it is given and keeps nothing.
type countApp struct{ entries atomic.Int64 }

func (a *countApp) Append(_ context.Context, r store.AppendRequest) error {
	a.entries.Add(int64(len(r.Entries)))
	return nil
}

// TestSerialCPU measures the CPU the serial source alone (framing,
// decoding, batching; the appender discards) spends on lines arriving at
// the full rate of 115200 baud, 11,520 bytes a second, one line at a time
// as a sensor sends them. The lines are written by another process (this
// test binary again) so that only the source is measured:
//
//	go test ./ingest -run TestSerialCPU -serial.cpu=10s -v
func TestSerialCPU(t *testing.T) {
	if *serialCPU <= 0 {
		t.Skip("a measurement: go test ./ingest -run TestSerialCPU -serial.cpu=10s -v")
	}
	needSocat(t)
	dir := t.TempDir()
	dev, peer := filepath.Join(dir, "dev"), filepath.Join(dir, "peer")
	p := startPty(t, dev, peer)
	p.peer.Close() // the writer process opens it
	p.peer = nil
	log, lb := newLog()
	s := &Serial{Name: "tty", Port: dev, Baud: 115200, Format: "json", Logger: log}
	app := &countApp{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, app) }()
	defer func() { cancel(); <-done }()
	waitOpened(t, lb, 1)

	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	measure := func(run func()) (float64, time.Duration) {
		t0, c0 := time.Now(), cpu()
		run()
		wall := time.Since(t0)
		return float64(cpu()-c0) / float64(wall) * 100, wall
	}
	idle, _ := measure(func() { time.Sleep(*serialCPU / 2) })
	var out []byte
	busy, wall := measure(func() {
		w := exec.Command(os.Args[0], "-test.run=^TestSerialWriterHelper$")
		w.Env = append(os.Environ(), "EDGED_SERIAL_WRITER="+peer, "EDGED_SERIAL_WRITER_FOR="+serialCPU.String())
		var err error
		if out, err = w.CombinedOutput(); err != nil {
			t.Fatalf("writer: %v: %s", err, out)
		}
	})
	i := bytes.Index(out, []byte("lines="))
	if i < 0 {
		t.Fatalf("writer: %s", out)
	}
	var lines int64
	fmt.Sscanf(string(out[i:]), "lines=%d", &lines)
	waitFor(t, "every line written", 5*time.Second, func() bool { return app.entries.Load()+s.Dropped() >= lines })
	t.Logf("writer: %s", bytes.TrimSpace(out))
	t.Logf("115200 baud for %.1f s: %d readings appended, %d dropped; serial source CPU %.2f%% of one core (idle %.2f%%; target < 1%%: %s)",
		wall.Seconds(), app.entries.Load(), s.Dropped(), busy, idle, map[bool]string{true: "met", false: "MISSED"}[busy < 1])
}

// TestSerialWriterHelper is TestSerialCPU's device: run as a separate
// process, it writes JSON lines to the pty at 115200 baud.
func TestSerialWriterHelper(t *testing.T) {
	peer := os.Getenv("EDGED_SERIAL_WRITER")
	if peer == "" {
		t.Skip("the writer process of TestSerialCPU")
	}
	d, err := time.ParseDuration(os.Getenv("EDGED_SERIAL_WRITER_FOR"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(peer, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	const rate = 115200 / 10 // bytes a second, 8N1
	start := time.Now()
	ts := start.UnixMilli()
	var sent, lines int64
	for time.Since(start) < d {
		line := fmt.Sprintf(`{"sensor":"s%d","ts":%d,"value":%.3f}`+"\n", lines%8, ts+lines*4, float64(lines%1000)/10)
		due := start.Add(time.Duration(float64(sent+int64(len(line))) / rate * float64(time.Second)))
		time.Sleep(time.Until(due))
		if _, err := f.WriteString(line); err != nil {
			t.Fatal(err)
		}
		sent += int64(len(line))
		lines++
	}
	time.Sleep(200 * time.Millisecond) // let socat pass the last ones on
	fmt.Printf("lines=%d bytes=%d bytes/s=%.0f\n", lines, sent, float64(sent)/time.Since(start).Seconds())
}
