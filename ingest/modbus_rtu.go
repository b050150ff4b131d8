package ingest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.bug.st/serial"
)

// rtuLine carries Modbus RTU frames over a serial port opened with
// go.bug.st/serial, the port library of the serial source, so that an RTU
// line is found (by path or USB identity) and reopened after an unplug as
// a serial source's port is. It is the library's Transporter: the
// library (github.com/grid-x/modbus) builds the requests and checks the
// answers (CRC, slave, function, exception); rtuLine only moves the bytes,
// one request at a time, keeping the silent interval between frames.
//
// Not safe for concurrent use: the source's poll loop owns it.
type rtuLine struct {
	port    serial.Port
	timeout time.Duration // the slave's think time
	char    time.Duration // one character on the wire: 11 bits
	gap     time.Duration // the silent interval between frames
	quiet   time.Time     // when the line last fell silent
	buf     [260]byte
}

// errRTUTimeout: the slave did not answer in time (wraps
// os.ErrDeadlineExceeded, like a network timeout).
var errRTUTimeout = fmt.Errorf("no answer in time: %w", os.ErrDeadlineExceeded)

// errRTUFrame: bytes came back that are not an answer to the request.
var errRTUFrame = errors.New("modbus: the answer is not a frame for this request")

// lineLost is a failure of the port itself (unplugged, hung up): the
// source reopens it.
type lineLost struct{ err error }

func (e *lineLost) Error() string { return "serial port: " + e.err.Error() }
func (e *lineLost) Unwrap() error { return e.err }

// newRTULine sets the frame timing for the baud rate: 3.5 characters of
// silence between frames, 1.75 ms above 19200 baud (the Modbus serial line
// specification).
func newRTULine(p serial.Port, baud int, timeout time.Duration) *rtuLine {
	l := &rtuLine{port: p, timeout: timeout}
	l.char = time.Duration(11 * int64(time.Second) / int64(max(baud, 1)))
	if baud > 19200 {
		l.gap = 1750 * time.Microsecond
	} else {
		l.gap = l.char * 7 / 2
	}
	return l
}

// answerLen is the length of the answer to a read request (function 1 to
// 4), or 0 for another request.
func answerLen(req []byte) int {
	if len(req) < 6 {
		return 0
	}
	n := int(req[4])<<8 | int(req[5])
	switch req[1] {
	case 1, 2:
		return 5 + (n+7)/8
	case 3, 4:
		return 5 + 2*n
	}
	return 0
}

// Send writes the request after the silent interval and reads the answer:
// bytes before the slave's address are skipped (line noise), the length
// comes from the header (5 bytes for an exception). It waits the slave's
// timeout plus the time the request and the answer take on the wire. The
// returned slice is valid until the next Send.
func (l *rtuLine) Send(ctx context.Context, req []byte) ([]byte, error) {
	if wait := time.Until(l.quiet.Add(l.gap)); wait > 0 && !Sleep(ctx, wait) {
		return nil, ctx.Err()
	}
	// An answer that came after its request timed out, or noise, must
	// not be read as the answer to this one.
	if err := l.port.ResetInputBuffer(); err != nil {
		return nil, &lineLost{err}
	}
	if _, err := l.port.Write(req); err != nil {
		return nil, &lineLost{err}
	}
	deadline := time.Now().Add(l.timeout + time.Duration(len(req)+answerLen(req))*l.char)
	n, want := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rem := time.Until(deadline)
		if rem <= 0 {
			l.quiet = time.Now()
			return nil, errRTUTimeout
		}
		// One wait for the whole answer: the source closes the port when
		// it stops, which ends a read at once.
		if err := l.port.SetReadTimeout(rem); err != nil {
			return nil, &lineLost{err}
		}
		lim := len(l.buf)
		if want > 0 {
			lim = want
		}
		k, err := l.port.Read(l.buf[n:lim])
		if err != nil {
			var pe *serial.PortError
			if errors.As(err, &pe) && pe.Code() == serial.PortClosed {
				err = errors.New("the device hung up (unplugged?)")
			}
			return nil, &lineLost{err}
		}
		n += k
		// Skip what comes before the slave's address.
		skip := 0
		for skip < n && l.buf[skip] != req[0] {
			skip++
		}
		if skip > 0 {
			copy(l.buf[:], l.buf[skip:n])
			n -= skip
		}
		if want == 0 && n >= 3 {
			switch fc := l.buf[1]; {
			case fc == req[1]|0x80:
				want = 5
			case fc == req[1] && fc >= 1 && fc <= 4 && 5+int(l.buf[2]) <= len(l.buf):
				want = 5 + int(l.buf[2])
			default:
				l.drain(deadline)
				return nil, errRTUFrame
			}
		}
		if want > 0 && n >= want {
			l.quiet = time.Now()
			return l.buf[:want], nil
		}
	}
}

// drain reads until the line has been silent for a frame gap (or the
// deadline), so that the rest of a bad frame is not taken for the next
// answer.
func (l *rtuLine) drain(deadline time.Time) {
	var junk [64]byte
	for time.Now().Before(deadline) {
		if l.port.SetReadTimeout(max(l.gap, 2*time.Millisecond)) != nil {
			break
		}
		if n, err := l.port.Read(junk[:]); n == 0 || err != nil {
			break
		}
	}
	l.quiet = time.Now()
}
