package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/store"
)

// Serial reads lines from a serial port: a sensor on a UART or a USB serial
// adapter. A serial port cannot replay, so a line is durable once it is in
// the log and the source saves no position.
//
// Lines end in LineEnd; the line-end bytes '\r' and '\n' around a line are
// dropped ("\r\n" endings), and empty lines are skipped. A line longer than
// MaxLine is quarantined (its first bytes) and skipped to its end, so a
// device that never sends a delimiter costs at most MaxLine bytes.
//
// The port is read all the time, whatever the log does: when appending
// blocks (a slow or full disk), read lines wait in a bounded queue, and
// beyond its bound the oldest are dropped, counted and logged, rather than
// left to overflow the driver's buffer unseen.
//
// A port that fails (unplugged, EIO) is closed and reopened with
// exponential backoff until it is back, by its path, or by its USB identity
// when one is set (it may come back under another name). The source never
// ends because of its device; it ends when ctx ends. One decoder serves
// every connection, so a CSV header sent again after a reconnect is
// recognised as the header.
type Serial struct {
	Name string
	// Port is the device path, e.g. /dev/ttyUSB0. It is not used when a
	// USB identity is set.
	Port string
	// USBVID, USBPID (hex, e.g. "0403", "6001") and USBSerial find the port
	// by its USB adapter: any one set enables it; empty ones match anything.
	USBVID, USBPID, USBSerial string

	Baud     int     // default 9600
	DataBits int     // 5..8, default 8
	Parity   string  // none | odd | even | mark | space; default none
	StopBits float64 // 1, 1.5 or 2; default 1

	// LineEnd frames lines. Default '\n'.
	LineEnd byte
	// MaxLine bounds a line. Default 4 KiB.
	MaxLine int

	// PollCommand, when set, is written to the port as soon as it opens and
	// then every PollEvery, for sensors that answer only when asked (see
	// UnescapePoll for the config's escapes). The answers are read as lines
	// like any other.
	PollCommand []byte
	PollEvery   time.Duration

	Format string
	Opts   sensors.Options

	// ReadTimeout is the longest one read waits for bytes. Default 250 ms.
	ReadTimeout time.Duration
	// Coalesce is a pause after a read that returned less than half its
	// buffer, so that a device sending one line at a time is read several
	// lines at a time: far fewer system calls and wake-ups for that much
	// latency (a blocking read costs the Go runtime more than the bytes).
	// The driver buffers what arrives meanwhile (4 KiB is 350 ms at
	// 115200 baud; a read that returns half the buffer or more is followed
	// by the next at once). Default 100 ms; negative disables it.
	Coalesce time.Duration
	// FlushEvery bounds how long read lines wait before they are appended,
	// and BatchLines how many go in one append. Defaults 50 ms and 256.
	FlushEvery time.Duration
	BatchLines int
	// MaxPendingLines and MaxPendingBytes bound what waits while appending
	// blocks; beyond either the oldest lines are dropped. Defaults 4096
	// lines and 1 MiB.
	MaxPendingLines int
	MaxPendingBytes int
	// MinBackoff and MaxBackoff bound the pause between attempts to open
	// the port (doubling, with ±20% jitter). Defaults 100 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration

	Logger *slog.Logger
	Now    func() time.Time
	// Clock decides when ingestion time may stamp readings (nil: always).
	Clock *Clock

	// ListPorts lists the system's ports when a USB identity is set.
	// Default ListPorts (tests replace it).
	ListPorts func() ([]PortInfo, error)
	// Open opens a port. Default serial.Open.
	Open func(path string, mode *serial.Mode) (serial.Port, error)

	dropped    atomic.Int64
	reconnects atomic.Int64
}

// Dropped returns how many lines were dropped because the log could not
// keep up.
func (s *Serial) Dropped() int64 { return s.dropped.Load() }

// Reconnects returns how many times the port was opened again after a
// loss.
func (s *Serial) Reconnects() int64 { return s.reconnects.Load() }

// serialConf is a Serial with its defaults applied.
type serialConf struct {
	mode        serial.Mode
	usb         USBIdentity
	lineEnd     byte
	maxLine     int
	readTimeout time.Duration
	coalesce    time.Duration
	flushEvery  time.Duration
	batch       int
	maxLines    int
	maxBytes    int
	minBackoff  time.Duration
	maxBackoff  time.Duration
	list        func() ([]PortInfo, error)
	open        func(string, *serial.Mode) (serial.Port, error)
	log         *slog.Logger
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (s *Serial) conf() (*serialConf, error) {
	c := &serialConf{
		usb:         USBIdentity{VID: s.USBVID, PID: s.USBPID, Serial: s.USBSerial},
		lineEnd:     s.LineEnd,
		maxLine:     orDefault(s.MaxLine, 4<<10),
		readTimeout: orDefault(s.ReadTimeout, 250*time.Millisecond),
		coalesce:    s.Coalesce,
		flushEvery:  orDefault(s.FlushEvery, 50*time.Millisecond),
		batch:       orDefault(s.BatchLines, 256),
		maxLines:    orDefault(s.MaxPendingLines, 4096),
		maxBytes:    orDefault(s.MaxPendingBytes, 1<<20),
		minBackoff:  orDefault(s.MinBackoff, 100*time.Millisecond),
		maxBackoff:  orDefault(s.MaxBackoff, 30*time.Second),
		list:        s.ListPorts,
		open:        s.Open,
		log:         s.Logger,
	}
	if c.coalesce == 0 {
		c.coalesce = 100 * time.Millisecond
	}
	if c.lineEnd == 0 {
		c.lineEnd = '\n'
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = c.minBackoff
	}
	if c.list == nil {
		c.list = ListPorts
	}
	if c.open == nil {
		c.open = serial.Open
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if s.Port == "" && !c.usb.set() {
		return nil, errors.New("no port: set port or a USB identity (usb_vid, usb_pid, usb_serial)")
	}
	c.mode = serial.Mode{BaudRate: orDefault(s.Baud, 9600), DataBits: orDefault(s.DataBits, 8)}
	switch s.Parity {
	case "", "none":
		c.mode.Parity = serial.NoParity
	case "odd":
		c.mode.Parity = serial.OddParity
	case "even":
		c.mode.Parity = serial.EvenParity
	case "mark":
		c.mode.Parity = serial.MarkParity
	case "space":
		c.mode.Parity = serial.SpaceParity
	default:
		return nil, fmt.Errorf("invalid parity %q: use none, odd, even, mark or space", s.Parity)
	}
	switch s.StopBits {
	case 0, 1:
		c.mode.StopBits = serial.OneStopBit
	case 1.5:
		if runtime.GOOS != "windows" {
			return nil, errors.New("stop_bits 1.5 is not supported by this system's serial driver: use 1 or 2")
		}
		c.mode.StopBits = serial.OnePointFiveStopBits
	case 2:
		c.mode.StopBits = serial.TwoStopBits
	default:
		return nil, fmt.Errorf("invalid stop_bits %v: use 1, 1.5 or 2", s.StopBits)
	}
	if len(s.PollCommand) > 0 && s.PollEvery <= 0 {
		return nil, errors.New("poll_command needs poll_every")
	}
	return c, nil
}

// Run reads the port until ctx ends, reconnecting as often as needed. It
// returns an error only for a configuration it cannot use, or when the log
// refuses appends (the appender stopped).
func (s *Serial) Run(ctx context.Context, app Appender) error {
	c, err := s.conf()
	if err != nil {
		return fmt.Errorf("source %q: %w", s.Name, err)
	}
	dec, err := newDecoder(s.Name, s.Format, s.Opts, s.Now, c.log)
	if err != nil {
		return fmt.Errorf("source %q: %w", s.Name, err)
	}
	dec.clock = s.Clock
	q := &serialQueue{maxLines: c.maxLines, maxBytes: c.maxBytes, batch: c.batch, ready: make(chan struct{}, 1)}
	drops := &dropLog{log: c.log, source: s.Name, total: &s.dropped}
	rctx, rstop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.connect(rctx, c, q, dec, drops)
	}()
	err = s.deliver(ctx, app, c, q, drops, done)
	rstop()
	<-done
	drops.flush()
	return err
}

// serialItem is one line's contribution to the log.
type serialItem struct {
	es   []store.Entry
	qs   []store.QEntry
	size int
}

// serialQueue holds the lines read and not yet appended, oldest first, up
// to its bounds.
type serialQueue struct {
	mu       sync.Mutex
	items    []serialItem
	bytes    int
	maxLines int
	maxBytes int
	batch    int
	ready    chan struct{} // 1-buffered: the first line is waiting, or a batch
}

// push adds it and drops the oldest beyond the bounds; it returns how many
// it dropped.
func (q *serialQueue) push(it serialItem) int {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.bytes += it.size
	dropped := 0
	for len(q.items) > 1 && (len(q.items) > q.maxLines || q.bytes > q.maxBytes) {
		q.bytes -= q.items[0].size
		q.items[0] = serialItem{}
		q.items = q.items[1:]
		dropped++
	}
	n := len(q.items)
	q.mu.Unlock()
	if n == 1 || n >= q.batch {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return dropped
}

// take removes up to n of the oldest items.
func (q *serialQueue) take(n int) []serialItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.items))
	if n == 0 {
		return nil
	}
	out := make([]serialItem, n)
	copy(out, q.items)
	clear(q.items[:n])
	q.items = q.items[n:]
	if len(q.items) == 0 {
		q.items = nil
	}
	for i := range out {
		q.bytes -= out[i].size
	}
	return out
}

func (q *serialQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// deliver appends what the reader queues, in batches of up to c.batch
// lines, each line waiting at most about c.flushEvery. When ctx ends it
// waits for the reader to stop and appends what is left.
func (s *Serial) deliver(ctx context.Context, app Appender, c *serialConf, q *serialQueue, drops *dropLog, readerDone <-chan struct{}) error {
	appendItems := func(ctx context.Context, items []serialItem) error {
		var r store.AppendRequest
		for i := range items {
			r.Entries = append(r.Entries, items[i].es...)
			r.Quarantine = append(r.Quarantine, items[i].qs...)
		}
		return app.Append(ctx, r)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	var last time.Time // of the last append
	lost := 0          // lines taken but refused because ctx ended
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			<-readerDone
			for {
				items := q.take(c.batch)
				if len(items) == 0 {
					break
				}
				if lost > 0 || appendItems(ctx, items) != nil {
					lost += len(items)
				}
			}
			if lost > 0 {
				drops.note(lost)
			}
			return nil
		case <-q.ready:
		case <-timer.C:
			armed = false
		}
		// Append a full batch at once, the rest when the last append is
		// flushEvery old: lines read now after a quiet spell go at once,
		// and there is one wake-up per read, not two.
		for {
			n := q.len()
			if n == 0 || (n < c.batch && time.Since(last) < c.flushEvery) {
				break
			}
			items := q.take(c.batch)
			if err := appendItems(ctx, items); err != nil {
				if ctx.Err() != nil {
					lost += len(items) // reported with the rest at shutdown
					break
				}
				return fmt.Errorf("source %q: %w", s.Name, err)
			}
			last = time.Now()
			drops.settle()
		}
		if !armed && q.len() > 0 {
			timer.Reset(max(c.flushEvery-time.Since(last), time.Millisecond))
			armed = true
		}
	}
}

// dropLog counts the lines dropped because the log could not keep up and
// logs them without flooding: at the end of an episode of drops (an append
// went through), or every 10 s while one lasts, at most once per 10 s.
type dropLog struct {
	mu       sync.Mutex
	log      *slog.Logger
	source   string
	total    *atomic.Int64
	unlogged int
	start    time.Time // the first unlogged drop of the episode
	last     time.Time // the last log
}

const dropLogEvery = 10 * time.Second

// note counts n dropped lines.
func (l *dropLog) note(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total.Add(int64(n))
	l.unlogged += n
	now := time.Now()
	if l.start.IsZero() {
		l.start = now
	}
	if now.Sub(l.start) >= dropLogEvery && now.Sub(l.last) >= dropLogEvery {
		l.emit(now)
	}
}

// settle is called when an append went through.
func (l *dropLog) settle() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unlogged == 0 {
		return
	}
	if now := time.Now(); now.Sub(l.last) >= dropLogEvery {
		l.emit(now)
	}
}

// flush logs what is not logged yet (at the end).
func (l *dropLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unlogged > 0 {
		l.emit(time.Now())
	}
}

func (l *dropLog) emit(now time.Time) {
	l.log.Warn(fmt.Sprintf("serial: log cannot keep up, %d lines dropped", l.unlogged), "source", l.source,
		"since", now.Sub(l.start).Round(time.Millisecond), "dropped_total", l.total.Load())
	l.unlogged, l.start, l.last = 0, time.Time{}, now
}

// jitter returns d ± 20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// connect opens the port, reads it until it fails, and opens it again,
// until ctx ends.
func (s *Serial) connect(ctx context.Context, c *serialConf, q *serialQueue, dec *decoder, drops *dropLog) {
	log := c.log
	where := s.Port
	if c.usb.set() {
		where = c.usb.String()
	}
	fr := newFramer(c.lineEnd, c.maxLine)
	tooLong := fmt.Sprintf("line too long: longer than %d bytes", c.maxLine)
	push := func(it serialItem) {
		if d := q.push(it); d > 0 {
			drops.note(d)
		}
	}
	quarantine := func(reason string, b []byte) {
		p := append([]byte(nil), b[:min(len(b), store.MaxQuarantinePayload)]...)
		dec.bad++
		dec.logBad(errors.New(reason), p)
		push(serialItem{qs: []store.QEntry{{Time: dec.now().UnixMilli(), Source: s.Name, Reason: reason, Payload: p}}, size: 128 + len(p)})
	}
	emit := func(kind frameKind, b []byte) {
		if kind == frameTooLong {
			quarantine(tooLong, b)
			return
		}
		b = trimFrame(b)
		if len(b) == 0 {
			return
		}
		es, qs := dec.decode(b, nil, nil)
		if len(es) == 0 && len(qs) == 0 {
			return // a CSV header
		}
		size := 64 + len(b) + 64*len(es)
		for i := range qs {
			size += len(qs[i].Payload)
		}
		push(serialItem{es: es, qs: qs, size: size})
	}

	backoff := c.minBackoff
	down := false // a failure was logged and no open has succeeded since
	lastPath := ""
	multiWarned := ""
	for ctx.Err() == nil {
		path, err := s.resolve(c, &multiWarned)
		var p serial.Port
		if err == nil {
			p, err = c.open(path, &c.mode)
		}
		if err != nil {
			if !down {
				log.Warn("serial port unavailable; retrying", "source", s.Name, "port", where, "err", err, "retry_max", c.maxBackoff)
				down = true
			} else {
				log.Debug("serial port still unavailable", "source", s.Name, "port", where, "err", err, "retry_in", backoff)
			}
			if !Sleep(ctx, jitter(backoff)) {
				return
			}
			backoff = min(2*backoff, c.maxBackoff)
			continue
		}
		if lastPath == "" {
			log.Info("serial port opened", "source", s.Name, "port", path, "baud", c.mode.BaudRate)
		} else {
			s.reconnects.Add(1)
			log.Info("serial port reconnected", "source", s.Name, "port", path, "was", lastPath)
		}
		lastPath, down = path, false
		opened := time.Now()
		err = s.read(ctx, c, p, fr, emit)
		p.Close()
		if rest := fr.reset(); len(trimFrame(rest)) > 0 {
			quarantine("incomplete line: the port closed before its end", rest)
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("serial port lost; reconnecting", "source", s.Name, "port", path, "err", err)
		down = true
		if time.Since(opened) >= 5*time.Second {
			backoff = c.minBackoff // it worked for a while: not a flapping device
		}
		if !Sleep(ctx, jitter(backoff)) {
			return
		}
		backoff = min(2*backoff, c.maxBackoff)
	}
}

// resolve returns the path to open: the configured one, or the one of the
// port with the USB identity.
func (s *Serial) resolve(c *serialConf, multiWarned *string) (string, error) {
	if !c.usb.set() {
		return s.Port, nil
	}
	ports, err := c.list()
	if err != nil {
		return "", fmt.Errorf("list serial ports: %w", err)
	}
	name, n, err := FindUSB(ports, c.usb)
	if err != nil {
		return "", err
	}
	if n > 1 && *multiWarned != name {
		c.log.Warn("several serial ports match the USB identity; using the first by name (set usb_serial to choose)", "source", s.Name, "usb", c.usb.String(), "port", name, "matches", n)
		*multiWarned = name
	}
	return name, nil
}

// read reads p until it fails or ctx ends, and writes the poll command
// when one is due.
func (s *Serial) read(ctx context.Context, c *serialConf, p serial.Port, fr *framer, emit func(frameKind, []byte)) error {
	// A read in progress returns at once when the port closes.
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()
	poll := len(s.PollCommand) > 0
	var nextPoll time.Time
	if poll {
		nextPoll = time.Now()
	}
	cur := time.Duration(-2)
	buf := make([]byte, 4096)
	for {
		timeout := c.readTimeout
		if poll {
			now := time.Now()
			if !now.Before(nextPoll) {
				if _, err := p.Write(s.PollCommand); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("write poll command: %w", err)
				}
				nextPoll = nextPoll.Add(s.PollEvery)
				if !nextPoll.After(now) {
					nextPoll = now.Add(s.PollEvery)
				}
			}
			timeout = min(timeout, max(time.Until(nextPoll), time.Millisecond))
		}
		if timeout != cur {
			if err := p.SetReadTimeout(timeout); err != nil {
				return err
			}
			cur = timeout
		}
		n, err := p.Read(buf)
		if n > 0 {
			fr.feed(buf[:n], emit)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var pe *serial.PortError
			if errors.As(err, &pe) && pe.Code() == serial.PortClosed {
				// Linux: a read of zero bytes, the tty hung up.
				return errors.New("the device hung up (unplugged?)")
			}
			return err
		}
		if n > 0 && n < len(buf)/2 && c.coalesce > 0 {
			pause := c.coalesce
			if poll {
				pause = min(pause, max(time.Until(nextPoll), 0))
			}
			if !Sleep(ctx, pause) {
				return nil
			}
		}
	}
}
