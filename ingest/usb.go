package ingest

import (
	"fmt"
	"sort"
	"strings"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"
)

// PortInfo describes one serial port of the system, with its USB identity
// when it is a USB adapter.
type PortInfo struct {
	Name         string `json:"name"`
	IsUSB        bool   `json:"usb"`
	VID          string `json:"vid,omitempty"`
	PID          string `json:"pid,omitempty"`
	SerialNumber string `json:"serial_number,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
}

// ListPorts returns the system's serial ports (go.bug.st/serial's
// enumerator), sorted by name.
func ListPorts() ([]PortInfo, error) {
	ds, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return nil, err
	}
	// The Linux enumerator leaves Name empty for a port without a sysfs
	// device; its list is in the order of serial.GetPortsList, so take the
	// names from there when the two agree in length.
	var names []string
	for _, d := range ds {
		if d != nil && d.Name == "" {
			names, _ = serial.GetPortsList()
			if len(names) != len(ds) {
				names = nil
			}
			break
		}
	}
	out := make([]PortInfo, 0, len(ds))
	for i, d := range ds {
		if d == nil {
			continue
		}
		p := PortInfo{Name: d.Name, IsUSB: d.IsUSB, VID: strings.ToUpper(d.VID), PID: strings.ToUpper(d.PID),
			SerialNumber: d.SerialNumber, Manufacturer: d.Manufacturer, Product: d.Product}
		if p.Name == "" && names != nil {
			p.Name = names[i]
		}
		if p.Name == "" {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// USBIdentity finds a port by its USB adapter rather than its path. Empty
// fields match anything; at least one must be set.
type USBIdentity struct {
	VID, PID, Serial string
}

func (u USBIdentity) set() bool { return u.VID != "" || u.PID != "" || u.Serial != "" }

func (u USBIdentity) String() string {
	var parts []string
	if u.VID != "" {
		parts = append(parts, "usb_vid="+u.VID)
	}
	if u.PID != "" {
		parts = append(parts, "usb_pid="+u.PID)
	}
	if u.Serial != "" {
		parts = append(parts, "usb_serial="+u.Serial)
	}
	return strings.Join(parts, " ")
}

// normHex makes "0x0403", "403" and "0403" the same id.
func normHex(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		s = s[2:]
	}
	s = strings.ToUpper(s)
	for len(s) < 4 {
		s = "0" + s
	}
	return s
}

// Match reports whether p is a USB port with this identity. VID and PID
// compare as hex, the serial number without regard to case.
func (u USBIdentity) Match(p PortInfo) bool {
	if !p.IsUSB || !u.set() {
		return false
	}
	if u.VID != "" && normHex(u.VID) != normHex(p.VID) {
		return false
	}
	if u.PID != "" && normHex(u.PID) != normHex(p.PID) {
		return false
	}
	if u.Serial != "" && !strings.EqualFold(strings.TrimSpace(u.Serial), strings.TrimSpace(p.SerialNumber)) {
		return false
	}
	return true
}

// FindUSB returns the name of the port with identity u in ports, and how
// many ports matched: several adapters of one model without serial numbers
// are told apart only by their names, and the first by name is taken.
func FindUSB(ports []PortInfo, u USBIdentity) (name string, matches int, err error) {
	var found []string
	for _, p := range ports {
		if u.Match(p) {
			found = append(found, p.Name)
		}
	}
	if len(found) == 0 {
		return "", 0, fmt.Errorf("no serial port with %s (edged ports lists them)", u)
	}
	sort.Strings(found)
	return found[0], len(found), nil
}
