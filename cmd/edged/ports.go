package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/edged/edged/ingest"
)

const portsHelp = `
Lists the serial ports of this machine, with the USB vendor and product ids,
serial number and product name of USB adapters. A serial source can find its
port by these (usb_vid, usb_pid, usb_serial) rather than by its path, which
may change when the adapter is plugged in again.
`

// listPorts is the system's port list (tests replace it).
var listPorts = ingest.ListPorts

func cmdPorts(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ports", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print a JSON array")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, flagUsage(fs, "edged ports [--json]")+portsHelp)
		return err
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	ports, err := listPorts()
	if err != nil {
		return fmt.Errorf("list serial ports: %w", err)
	}
	if ports == nil {
		ports = []ingest.PortInfo{}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ports)
	}
	if len(ports) == 0 {
		fmt.Fprintln(stdout, "no serial ports found")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tUSB\tVID\tPID\tSERIAL\tPRODUCT")
	for _, p := range ports {
		usb := "no"
		if p.IsUSB {
			usb = "yes"
		}
		product := p.Product
		if p.Manufacturer != "" && product != "" {
			product = p.Manufacturer + " " + product
		} else if product == "" {
			product = p.Manufacturer
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, usb, dash(p.VID), dash(p.PID), dash(p.SerialNumber), dash(product))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
