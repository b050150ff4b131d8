package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/grid-x/modbus"
	"go.bug.st/serial"

	"github.com/edged/edged/store"
)

// Modbus polls the registers of Modbus slaves: devices behind a Modbus
// TCP address, or slaves on an RS-485 line (RTU) through a serial port.
// The protocol is github.com/grid-x/modbus's; an RTU line's port is
// go.bug.st/serial's, found by path or USB identity and reopened after an
// unplug as a serial source's is.
//
// Every PollEvery the source reads each slave in turn, one request at a
// time (the slaves of a line share it), with adjacent registers of a kind
// in as few requests as the protocol allows. A poll's readings share one
// event time: the gateway's clock when the poll began; while that clock is
// not synchronised (Clock), the poll's values are quarantined instead.
// A poll that would start while the previous one still runs is skipped
// and counted.
//
// Faults are counted per slave, never fatal: a timeout, an exception
// (illegal address, slave busy, ...), a CRC or framing error fails one
// request; a slave that timed out is not asked again in that poll (its
// other requests would time out too and hold up the line). A register
// whose float value is NaN or infinite is quarantined. The port or the
// TCP connection failing closes it, and it is opened again with
// exponential backoff. Logs are rate-limited per request and name its
// registers.
//
// A Modbus device cannot replay: a poll's readings are durable once they
// are in the log.
type Modbus struct {
	Name string
	// TCP is the device's "host:port" for Modbus TCP. When it is empty
	// the source is an RTU line on Port, or on the port with the USB
	// identity when one is set (as for Serial).
	TCP                       string
	Port                      string
	USBVID, USBPID, USBSerial string
	Baud                      int     // default 9600
	DataBits                  int     // default 8
	Parity                    string  // default none
	StopBits                  float64 // default 1

	Slaves []ModbusSlave

	PollEvery time.Duration // default 1 s
	// Timeout is the longest a slave may take to answer (on RTU, on top
	// of the time the bytes take on the wire). Default 1 s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the pause between attempts to open
	// the port or connection. Defaults 100 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration

	Logger *slog.Logger
	Now    func() time.Time
	// Clock decides when the gateway's clock may stamp readings (nil:
	// always).
	Clock *Clock
	// ListPorts and Open as for Serial (tests replace them).
	ListPorts func() ([]PortInfo, error)
	Open      func(path string, mode *serial.Mode) (serial.Port, error)

	once       sync.Once
	slaveStats []mbSlaveStats
	connected  atomic.Bool
	reconnects atomic.Int64
	polls      atomic.Int64
	skipped    atomic.Int64
	pollNanos  atomic.Int64
}

// ModbusSlave is one slave: its address (the unit id on TCP), the sensor
// of its readings, and the registers to read.
type ModbusSlave struct {
	ID        uint8
	Sensor    string
	Registers []ModbusRegister
}

// ModbusRegister is one value of a slave; its reading has the register's
// name as metric and raw * Scale + Offset as value.
type ModbusRegister struct {
	Name      string
	Kind      string // coil | discrete | holding | input
	Address   uint16 // protocol address, from 0
	Type      string // bool, int16, uint16, int32, uint32, int64, uint64, float32, float64; default bool or uint16
	ByteOrder string // AB, BA; ABCD, DCBA, BADC, CDAB; ABCDEFGH, ...; default big-endian
	Scale     float64
	Offset    float64
}

// The reasons a request fails, as /metrics names them.
const (
	mbTimeout = iota
	mbCRC
	mbFrame
	mbIO
	mbExcIllegalFunction
	mbExcIllegalAddress
	mbExcIllegalValue
	mbExcDeviceFailure
	mbExcAcknowledge
	mbExcBusy
	mbExcParity
	mbExcGatewayPath
	mbExcGatewayTarget
	mbExcOther
	mbReasons
)

// ModbusErrorReasons are the reasons a request fails, in the order
// ModbusSlaveStats.Errors counts them: "timeout" (no answer in time),
// "crc" (an RTU answer with a bad checksum), "frame" (an answer that does
// not fit the request), "io" (the port or connection failed), and the
// exception codes a slave answers with.
var ModbusErrorReasons = [mbReasons]string{"timeout", "crc", "frame", "io",
	"illegal_function", "illegal_data_address", "illegal_data_value", "server_device_failure", "acknowledge",
	"server_device_busy", "memory_parity_error", "gateway_path_unavailable", "gateway_target_failed", "other_exception"}

// mbSlaveStats are one slave's counters, written by the poll loop and
// read by Stats.
type mbSlaveStats struct {
	id       uint8
	up       atomic.Bool
	requests atomic.Int64
	errors   [mbReasons]atomic.Int64
}

// ModbusStats are a modbus source's figures for /metrics and /status.
type ModbusStats struct {
	Connected    bool               `json:"connected"`
	Reconnects   int64              `json:"reconnects"`
	Polls        int64              `json:"polls"`
	PollsSkipped int64              `json:"polls_skipped"`
	PollSeconds  float64            `json:"poll_seconds"` // how long the last poll took
	Slaves       []ModbusSlaveStats `json:"slaves"`
}

// ModbusSlaveStats are one slave's figures.
type ModbusSlaveStats struct {
	Slave    int   `json:"slave"`
	Up       bool  `json:"up"` // it answered a request of the last poll (an exception counts)
	Requests int64 `json:"requests"`
	// Errors counts failed requests by reason, in the order of
	// ModbusErrorReasons.
	Errors [mbReasons]int64 `json:"errors"`
}

func (m *Modbus) init() {
	m.once.Do(func() {
		m.slaveStats = make([]mbSlaveStats, len(m.Slaves))
		for i := range m.Slaves {
			m.slaveStats[i].id = m.Slaves[i].ID
		}
	})
}

// ModbusStats returns the source's figures. Safe to call at any time.
func (m *Modbus) ModbusStats() ModbusStats {
	m.init()
	st := ModbusStats{Connected: m.connected.Load(), Reconnects: m.reconnects.Load(), Polls: m.polls.Load(),
		PollsSkipped: m.skipped.Load(), PollSeconds: time.Duration(m.pollNanos.Load()).Seconds()}
	for i := range m.slaveStats {
		s := &m.slaveStats[i]
		ss := ModbusSlaveStats{Slave: int(s.id), Up: s.up.Load(), Requests: s.requests.Load()}
		for r := range ss.Errors {
			ss.Errors[r] = s.errors[r].Load()
		}
		st.Slaves = append(st.Slaves, ss)
	}
	return st
}

// Reconnects returns how many times the port or connection was opened
// again after a loss.
func (m *Modbus) Reconnects() int64 { return m.reconnects.Load() }

// mbSlave is a slave of the plan.
type mbSlave struct {
	id     uint8
	sensor string
	blocks []mbBlock
	stats  *mbSlaveStats
}

// modbusConf is a Modbus with its defaults applied and its plan made.
type modbusConf struct {
	slaves      []mbSlave
	every       time.Duration
	timeout     time.Duration
	minBackoff  time.Duration
	maxBackoff  time.Duration
	serial      *serialConf // RTU
	now         func() time.Time
	log         *slog.Logger
	where       string
	unsyncedLog failLog
	nregs       int // registers of all slaves: the readings of a poll
}

func (m *Modbus) conf() (*modbusConf, error) {
	m.init()
	c := &modbusConf{
		every:      orDefault(m.PollEvery, time.Second),
		timeout:    orDefault(m.Timeout, time.Second),
		minBackoff: orDefault(m.MinBackoff, 100*time.Millisecond),
		maxBackoff: orDefault(m.MaxBackoff, 30*time.Second),
		now:        m.Now,
		log:        m.Logger,
		where:      m.TCP,
	}
	c.maxBackoff = max(c.maxBackoff, c.minBackoff)
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if m.TCP == "" {
		// The line settings follow the serial source's rules.
		s := &Serial{Port: m.Port, USBVID: m.USBVID, USBPID: m.USBPID, USBSerial: m.USBSerial, Baud: m.Baud,
			DataBits: m.DataBits, Parity: m.Parity, StopBits: m.StopBits, ListPorts: m.ListPorts, Open: m.Open,
			MinBackoff: c.minBackoff, MaxBackoff: c.maxBackoff, Logger: c.log}
		sc, err := s.conf()
		if err != nil {
			return nil, err
		}
		c.serial = sc
		c.where = m.Port
		if sc.usb.set() {
			c.where = sc.usb.String()
		}
	}
	if len(m.Slaves) == 0 {
		return nil, errors.New("no slaves to poll")
	}
	ids := map[uint8]bool{}
	for i, s := range m.Slaves {
		if ids[s.ID] {
			return nil, fmt.Errorf("slave %d is listed twice", s.ID)
		}
		ids[s.ID] = true
		if len(s.Registers) == 0 {
			return nil, fmt.Errorf("slave %d has no registers", s.ID)
		}
		regs := make([]mbReg, len(s.Registers))
		names := map[string]bool{}
		for j, r := range s.Registers {
			reg, err := compileRegister(r)
			if err != nil {
				return nil, fmt.Errorf("slave %d: %w", s.ID, err)
			}
			if names[r.Name] {
				return nil, fmt.Errorf("slave %d: register %q is listed twice", s.ID, r.Name)
			}
			names[r.Name] = true
			regs[j] = reg
		}
		c.slaves = append(c.slaves, mbSlave{id: s.ID, sensor: s.Sensor, blocks: planBlocks(regs), stats: &m.slaveStats[i]})
		c.nregs += len(regs)
	}
	return c, nil
}

// Check reports what Run would refuse in the configuration.
func (m *Modbus) Check() error {
	_, err := m.conf()
	return err
}

// Run polls until ctx ends, reopening the port or connection as often as
// needed. It returns an error only for a configuration it cannot use, or
// when the log refuses appends (the appender stopped).
func (m *Modbus) Run(ctx context.Context, app Appender) error {
	c, err := m.conf()
	if err != nil {
		return fmt.Errorf("source %q: %w", m.Name, err)
	}
	backoff := c.minBackoff
	down := false // a failure was logged and no open has succeeded since
	opened := false
	multiWarned := ""
	for ctx.Err() == nil {
		conn, where, err := m.open(ctx, c, &multiWarned)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if !down {
				c.log.Warn("modbus controller unavailable; retrying", "source", m.Name, "controller", c.where, "err", err, "retry_max", c.maxBackoff)
				down = true
			} else {
				c.log.Debug("modbus controller still unavailable", "source", m.Name, "controller", c.where, "err", err, "retry_in", backoff)
			}
			if !Sleep(ctx, jitter(backoff)) {
				break
			}
			backoff = min(2*backoff, c.maxBackoff)
			continue
		}
		if !opened {
			c.log.Info("modbus controller opened", "source", m.Name, "controller", where, "slaves", len(c.slaves))
		} else {
			m.reconnects.Add(1)
			c.log.Info("modbus controller reconnected", "source", m.Name, "controller", where)
		}
		opened, down = true, false
		m.connected.Store(true)
		since := time.Now()
		err = m.poll(ctx, c, conn, app)
		conn.close()
		m.connected.Store(false)
		for i := range c.slaves {
			c.slaves[i].stats.up.Store(false)
		}
		var appErr *appendError
		if errors.As(err, &appErr) {
			return fmt.Errorf("source %q: %w", m.Name, appErr.err)
		}
		if ctx.Err() != nil {
			break
		}
		c.log.Warn("modbus controller lost; reconnecting", "source", m.Name, "controller", where, "err", err)
		down = true
		if time.Since(since) >= 5*time.Second {
			backoff = c.minBackoff // it worked for a while: not a flapping link
		}
		if !Sleep(ctx, jitter(backoff)) {
			break
		}
		backoff = min(2*backoff, c.maxBackoff)
	}
	return nil
}

// appendError is the log refusing an append: the source stops.
type appendError struct{ err error }

func (e *appendError) Error() string { return e.err.Error() }

// mbConn is an open port or connection with its client.
type mbConn struct {
	client   modbus.Client
	setSlave func(uint8)
	close    func()
}

// open opens the RTU line's port, or connects to the TCP device.
func (m *Modbus) open(ctx context.Context, c *modbusConf, multiWarned *string) (*mbConn, string, error) {
	if sc := c.serial; sc != nil {
		path := m.Port
		if sc.usb.set() {
			var err error
			if path, err = (&Serial{Name: m.Name}).resolve(sc, multiWarned); err != nil {
				return nil, "", err
			}
		}
		p, err := sc.open(path, &sc.mode)
		if err != nil {
			return nil, "", err
		}
		line := newRTULine(p, sc.mode.BaudRate, c.timeout)
		// A read in progress returns at once when the port closes.
		stop := context.AfterFunc(ctx, func() { p.Close() })
		// The library's RTU handler is used only to build and check
		// frames; its own port is never opened.
		pk := modbus.NewRTUClientHandler(path)
		return &mbConn{client: modbus.NewClient2(pk, line), setSlave: func(id uint8) { pk.SetSlave(id) }, close: func() { stop(); p.Close() }}, path, nil
	}
	// The library's Send holds its lock while it reads, up to the
	// timeout; closing the connection itself ends a read at once when
	// the source stops.
	var conn atomic.Pointer[net.Conn]
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{Timeout: c.timeout}).DialContext(ctx, network, addr)
		if err == nil {
			conn.Store(&nc)
		}
		return nc, err
	}
	stop := context.AfterFunc(ctx, func() {
		if nc := conn.Load(); nc != nil {
			(*nc).Close()
		}
	})
	h := modbus.NewTCPClientHandler(m.TCP, modbus.WithDialer(dial))
	h.Timeout = c.timeout
	h.IdleTimeout = -1 // the source polls on: keep the connection
	// An answer that comes after its request timed out is skipped by its
	// transaction id rather than taken for the next one.
	h.ProtocolRecoveryTimeout = c.timeout
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := h.Connect(dctx); err != nil {
		stop()
		return nil, "", err
	}
	return &mbConn{client: modbus.NewClient(h), setSlave: func(id uint8) { h.SetSlave(id) }, close: func() { stop(); h.Close() }}, m.TCP, nil
}

// poll polls every c.every until ctx ends (nil) or the port or connection
// fails (its error).
func (m *Modbus) poll(ctx context.Context, c *modbusConf, conn *mbConn, app Appender) error {
	next := time.Now()
	for {
		if !Sleep(ctx, time.Until(next)) {
			return nil
		}
		start := time.Now()
		r, lost := m.pollOnce(ctx, c, conn)
		m.polls.Add(1)
		if len(r.Entries) > 0 || len(r.Quarantine) > 0 {
			if err := app.Append(ctx, r); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return &appendError{err}
			}
		}
		m.pollNanos.Store(int64(time.Since(start)))
		if lost != nil || ctx.Err() != nil {
			return lost
		}
		next = next.Add(c.every)
		if behind := time.Since(next); behind >= 0 {
			n := int64(behind/c.every) + 1
			m.skipped.Add(n)
			next = next.Add(time.Duration(n) * c.every)
		}
	}
}

// pollOnce reads every slave once. It returns the readings and
// quarantined values to append, and the error that lost the port or
// connection, if one did.
func (m *Modbus) pollOnce(ctx context.Context, c *modbusConf, conn *mbConn) (store.AppendRequest, error) {
	var r store.AppendRequest
	now := c.now()
	ts := now.UnixMilli()
	for si := range c.slaves {
		sl := &c.slaves[si]
		conn.setSlave(sl.id)
		answered := false
		for bi := range sl.blocks {
			b := &sl.blocks[bi]
			data, err := read(ctx, conn.client, b)
			if ctx.Err() != nil {
				return r, nil
			}
			sl.stats.requests.Add(1)
			if err == nil && len(data) < b.need() {
				err = fmt.Errorf("modbus: %d bytes in the answer, %d asked for: %w", len(data), b.need(), errRTUFrame)
			}
			if err != nil {
				why := mbReason(err)
				sl.stats.errors[why].Add(1)
				if why == mbIO {
					// Run logs the loss of the port or connection.
					sl.stats.up.Store(false)
					return r, err
				}
				b.log.fail(c.log, m.Name, sl.id, b, ModbusErrorReasons[why], err)
				if why != mbTimeout && why != mbCRC && why != mbFrame {
					answered = true // an exception is an answer
				}
				if why == mbTimeout {
					break
				}
				continue
			}
			answered = true
			b.log.ok(c.log, m.Name, sl.id, b)
			for i := range b.regs {
				reg := &b.regs[i]
				raw := reg.raw(data, b.start)
				v := reg.value(raw)
				if math.IsNaN(v) || math.IsInf(v, 0) {
					r.Quarantine = append(r.Quarantine, store.QEntry{Time: ts, Source: m.Name,
						Reason:  fmt.Sprintf("register %q (slave %d, %s %d, %s): %v is not a number", reg.name, sl.id, reg.kind, reg.addr, reg.typ, v),
						Payload: fmt.Appendf(nil, `{"slave":%d,"register":%q,"raw":"%0*x"}`, sl.id, reg.name, 4*reg.typ.words(), raw)})
					continue
				}
				if r.Entries == nil {
					r.Entries = make([]store.Entry, 0, c.nregs) // handed to the log: one a poll
				}
				r.Entries = append(r.Entries, store.Entry{Kind: store.EntryReading, Source: m.Name, Sensor: sl.sensor, Metric: reg.name, Value: v, TS: ts, Ingest: ts})
			}
		}
		sl.stats.up.Store(answered)
	}
	if len(r.Entries) > 0 && !m.Clock.Synced(now) {
		// The gateway's clock cannot stamp the poll: its values wait in
		// the quarantine, one payload per slave, rather than land in wrong
		// windows.
		r.Quarantine = append(r.Quarantine, unsyncedPayloads(m.Name, r.Entries, ts)...)
		r.Entries = nil
		c.unsyncedLog.fail(c.log, m.Name, 0, nil, "clock", errModbusUnsynced)
	}
	return r, nil
}

var errModbusUnsynced = errors.New("clock not synchronised: the gateway's clock cannot stamp the poll yet")

// unsyncedPayloads renders a poll's entries as one JSON payload per
// sensor, for the quarantine.
func unsyncedPayloads(source string, es []store.Entry, ts int64) []store.QEntry {
	var out []store.QEntry
	for i := 0; i < len(es); {
		j := i
		b := fmt.Appendf(nil, `{"sensor":%q,"ts":%d`, es[i].Sensor, ts)
		for ; j < len(es) && es[j].Sensor == es[i].Sensor; j++ {
			b = fmt.Appendf(b, `,%q:%s`, es[j].Metric, strconv.FormatFloat(es[j].Value, 'g', -1, 64))
		}
		b = append(b, '}')
		out = append(out, store.QEntry{Time: ts, Source: source, Reason: errModbusUnsynced.Error(), Payload: b})
		i = j
	}
	return out
}

// read sends b's request.
func read(ctx context.Context, cl modbus.Client, b *mbBlock) ([]byte, error) {
	switch b.kind {
	case mbCoil:
		return cl.ReadCoils(ctx, b.start, b.count)
	case mbDiscrete:
		return cl.ReadDiscreteInputs(ctx, b.start, b.count)
	case mbHolding:
		return cl.ReadHoldingRegisters(ctx, b.start, b.count)
	default:
		return cl.ReadInputRegisters(ctx, b.start, b.count)
	}
}

// mbReason classifies a failed request.
func mbReason(err error) int {
	var me *modbus.Error
	if errors.As(err, &me) {
		switch me.ExceptionCode {
		case modbus.ExceptionCodeIllegalFunction:
			return mbExcIllegalFunction
		case modbus.ExceptionCodeIllegalDataAddress:
			return mbExcIllegalAddress
		case modbus.ExceptionCodeIllegalDataValue:
			return mbExcIllegalValue
		case modbus.ExceptionCodeServerDeviceFailure:
			return mbExcDeviceFailure
		case modbus.ExceptionCodeAcknowledge:
			return mbExcAcknowledge
		case modbus.ExceptionCodeServerDeviceBusy:
			return mbExcBusy
		case modbus.ExceptionCodeMemoryParityError:
			return mbExcParity
		case modbus.ExceptionCodeGatewayPathUnavailable:
			return mbExcGatewayPath
		case modbus.ExceptionCodeGatewayTargetDeviceFailedToRespond:
			return mbExcGatewayTarget
		}
		return mbExcOther
	}
	var lost *lineLost
	var ne net.Error
	switch {
	case errors.As(err, &lost):
		return mbIO
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, errRTUTimeout), errors.Is(err, context.DeadlineExceeded):
		return mbTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return mbIO
	case errors.As(err, new(*net.OpError)), strings.HasPrefix(err.Error(), "modbus: connect:"):
		return mbIO
	case strings.Contains(err.Error(), "crc"):
		// The library's CRC error has no type of its own.
		return mbCRC
	}
	return mbFrame
}

// failLog logs a failing request without flooding: its first failure,
// then at most one a minute with the count of those not shown, and once
// when it works again.
type failLog struct {
	failing bool
	since   time.Time
	last    time.Time
	quiet   int
	fails   int
}

const failLogEvery = time.Minute

func (f *failLog) fail(log *slog.Logger, source string, slave uint8, b *mbBlock, reason string, err error) {
	now := time.Now()
	f.fails++
	if f.failing && now.Sub(f.last) < failLogEvery {
		f.quiet++
		return
	}
	attrs := []any{"source", source, "reason", reason, "err", err.Error()}
	if b != nil {
		attrs = append(attrs, "slave", slave, "registers", b.names, "kind", b.kind.String(), "address", b.start, "count", b.count)
	}
	if f.failing {
		attrs = append(attrs, "failing_for", now.Sub(f.since).Round(time.Second), "not_shown_since_last", f.quiet)
	} else {
		f.failing, f.since = true, now
	}
	msg := "modbus read failed"
	if b == nil {
		msg = "modbus poll quarantined"
	}
	log.Warn(msg, attrs...)
	f.last, f.quiet = now, 0
}

func (f *failLog) ok(log *slog.Logger, source string, slave uint8, b *mbBlock) {
	if !f.failing {
		return
	}
	log.Info("modbus read works again", "source", source, "slave", slave, "registers", b.names, "failed_requests", f.fails,
		"failing_for", time.Since(f.since).Round(time.Millisecond))
	*f = failLog{}
}
