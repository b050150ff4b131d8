// Command edged is a small event-time stream processor for IoT gateways.
//
// See README.md for the subcommands and ../../configs for example configs.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// Set by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

// Exit statuses of SEMANTICS section 7.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error as bad usage or an invalid config (exit 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

const usage = `edged: event-time stream processing for IoT gateways

Usage:
  edged run      -c FILE         the daemon: sources -> durable log -> windows -> outbox
  edged batch    -c FILE [--format F] [--source NAME] [FILE|-]...
                                 run the configured windows over bounded input; records on stdout
  edged check    -c FILE         validate a config and print it with defaults filled in
  edged inspect  -c FILE [--outbox|--quarantine|--check] [--json]
                                 log, checkpoint, outbox and quarantine figures of a stopped daemon
  edged replay   -c FILE [--from T] [--to T] [--by event|ingest] [--config-override OTHER.toml]
                                 re-run the pipeline over the local log; records on stdout, live state untouched
  edged simulate sine [flags]    synthetic sine sensor (see edged simulate -h)
  edged ports    [--json]        list serial ports with their USB vendor, product and serial number
  edged version                  print the version

Exit status: 0 success, 1 runtime failure, 2 bad usage or invalid config.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "batch":
		err = cmdBatch(rest, stdin, stdout, stderr)
	case "run":
		err = cmdRun(rest, stdin, stdout, stderr)
	case "check":
		err = cmdCheck(rest, stdout, stderr)
	case "inspect":
		err = cmdInspect(rest, stdout, stderr)
	case "replay":
		err = cmdReplay(rest, stdout, stderr)
	case "simulate":
		err = cmdSimulate(rest, stdout, stderr)
	case "ports":
		err = cmdPorts(rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "edged %s (commit %s, built %s, %s, %s/%s)\n", version, commit, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
	default:
		err = usagef("unknown command %q\n\n%s", cmd, usage)
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "edged %s: %v\n", args[0], err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

// parseFlags parses flags that may appear before, between or after
// positional arguments, and returns the positional ones. A lone "-" is
// positional (stdin).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// flagUsage renders a flag set's defaults for -h.
func flagUsage(fs *flag.FlagSet, synopsis string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\nFlags:\n", synopsis)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	return b.String()
}
