package ingest

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/internal/modbustest"
)

// TestModbusUSBIdentity: an RTU line found by its adapter's USB identity
// (the port list is faked: there is no USB here), not there at first and
// found when it appears, as for the serial source.
func TestModbusUSBIdentity(t *testing.T) {
	sl := modbustest.StartRTU(t, modbustest.Config{Units: map[int]modbustest.Unit{5: {HR: []uint16{42}}}}, 9600)
	var present atomic.Bool
	list := func() ([]PortInfo, error) {
		ports := []PortInfo{{Name: "/dev/ttyS0"}, {Name: "/dev/ttyUSB9", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "OTHER"}}
		if present.Load() {
			ports = append(ports, PortInfo{Name: sl.Dev, IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "MB01"})
		}
		return ports, nil
	}
	m := &Modbus{USBVID: "0403", USBSerial: "mb01", Baud: 9600, ListPorts: list,
		Slaves: []ModbusSlave{{ID: 5, Sensor: "m", Registers: []ModbusRegister{{Name: "v", Kind: "holding", Scale: 1}}}}}
	app, lb := runModbus(t, m)
	waitFor(t, "the missing adapter logged", 5*time.Second, func() bool { return lb.count("modbus controller unavailable") == 1 })
	if !strings.Contains(lb.String(), "no serial port with usb_vid=0403 usb_serial=mb01") {
		t.Errorf("the log does not say which adapter is missing:\n%s", lb)
	}
	present.Store(true)
	waitFor(t, "a reading", 10*time.Second, func() bool { return len(app.values("m")) > 0 })
	if v := app.values("m"); v[0] != 42 {
		t.Errorf("values %v", v)
	}
	if !strings.Contains(lb.String(), `msg="modbus controller opened" source=mb controller=`+sl.Dev) {
		t.Errorf("the port found is not logged:\n%s", lb)
	}
}
