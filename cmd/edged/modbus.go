package main

import (
	"log/slog"

	"github.com/edged/edged/ingest"
	"github.com/edged/edged/internal/config"
)

// modbusSource builds a modbus source from its config (checked by the
// config package: the controller parses).
func modbusSource(s *config.Source, log *slog.Logger, clk *ingest.Clock) *ingest.Modbus {
	ctl, _ := config.ParseModbusController(s.Controller)
	m := &ingest.Modbus{Name: s.Name, TCP: ctl.TCP, Port: ctl.Path, USBVID: s.USBVID, USBPID: s.USBPID, USBSerial: s.USBSerial,
		Baud: s.Baud, DataBits: s.DataBits, Parity: s.Parity, StopBits: s.StopBits,
		PollEvery: s.PollEvery.D(), Timeout: s.Timeout.D(), Logger: log, Clock: clk}
	for _, sl := range s.ModbusSlaves() {
		ms := ingest.ModbusSlave{ID: uint8(sl.SlaveID), Sensor: sl.Sensor}
		for _, r := range sl.Registers {
			ms.Registers = append(ms.Registers, ingest.ModbusRegister{Name: r.Name, Kind: r.Kind, Address: uint16(r.Address),
				Type: r.Type, ByteOrder: r.ByteOrder, Scale: r.Scale, Offset: r.Offset})
		}
		m.Slaves = append(m.Slaves, ms)
	}
	return m
}
