package ingest

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/internal/modbustest"
)

// The Modbus benchmarks poll a real slave (pymodbus, a separate process:
// its CPU is not counted) and report the CPU edged spends per poll cycle
// (user + system of this process, per poll) next to the wall time. On
// RTU the slave waits the time the bytes take on a real line at the baud
// rate (modbustest.Config.WireBaud): a pty moves them at once.
//
//	go test ./ingest -run '^$' -bench Modbus -benchtime 20x -benchmem

// cpuTime is this process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPolls runs b.N polls of m and reports CPU and wall time per poll
// and the poll rate; every poll must give want readings.
func benchPolls(b *testing.B, m *Modbus, want int) {
	m.Name = "bench"
	c, err := m.conf()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	conn, _, err := m.open(ctx, c, new(string))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.close()
	for range 2 { // connect, first answers
		m.pollOnce(ctx, c, conn)
	}
	b.ReportAllocs()
	cpu0, wall0 := cpuTime(), time.Now()
	b.ResetTimer()
	for b.Loop() {
		r, err := m.pollOnce(ctx, c, conn)
		if err != nil || len(r.Entries) != want {
			b.Fatalf("poll: %d readings, want %d: %v", len(r.Entries), want, err)
		}
	}
	b.StopTimer()
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/poll")
	b.ReportMetric(float64(b.N)/wall.Seconds(), "polls/s")
	for _, s := range m.ModbusStats().Slaves {
		for r, n := range s.Errors {
			if n > 0 {
				b.Errorf("slave %d: %d %s errors", s.Slave, n, ModbusErrorReasons[r])
			}
		}
	}
}

// hundred is a slave with 100 adjacent holding registers (one request).
func hundred(id uint8) (modbustest.Unit, ModbusSlave) {
	u := modbustest.Unit{HR: make([]uint16, 100)}
	s := ModbusSlave{ID: id, Sensor: fmt.Sprint("s", id)}
	for i := range 100 {
		u.HR[i] = uint16(i)
		s.Registers = append(s.Registers, ModbusRegister{Name: fmt.Sprint("r", i), Kind: "holding", Address: uint16(i), Scale: 1})
	}
	return u, s
}

// BenchmarkModbusPoll100: one poll cycle of 100 registers over TCP, and
// over RTU at 9600 and 115200 baud.
func BenchmarkModbusPoll100(b *testing.B) {
	u, s := hundred(1)
	b.Run("tcp", func(b *testing.B) {
		sl := modbustest.StartTCP(b, modbustest.Config{Units: map[int]modbustest.Unit{1: u}})
		benchPolls(b, &Modbus{TCP: sl.Addr, Slaves: []ModbusSlave{s}}, 100)
	})
	for _, baud := range []int{9600, 115200} {
		b.Run(fmt.Sprint("rtu-", baud), func(b *testing.B) {
			sl := modbustest.StartRTU(b, modbustest.Config{Units: map[int]modbustest.Unit{1: u}, WireBaud: baud}, baud)
			benchPolls(b, &Modbus{Port: sl.Dev, Baud: baud, Slaves: []ModbusSlave{s}}, 100)
		})
	}
}

// BenchmarkModbusLine10Slaves: the poll rate one 115200-baud line
// sustains for 10 slaves of 10 registers each (one request a slave): its
// polls/s is the largest poll_every the line keeps up with (1 / rate).
func BenchmarkModbusLine10Slaves(b *testing.B) {
	cfg := modbustest.Config{Units: map[int]modbustest.Unit{}, WireBaud: 115200}
	var slaves []ModbusSlave
	for id := 1; id <= 10; id++ {
		u, s := hundred(uint8(id))
		u.HR = u.HR[:10]
		s.Registers = s.Registers[:10]
		cfg.Units[id] = u
		slaves = append(slaves, s)
	}
	sl := modbustest.StartRTU(b, cfg, 115200)
	benchPolls(b, &Modbus{Port: sl.Dev, Baud: 115200, Slaves: slaves}, 100)
}
