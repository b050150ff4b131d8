package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/edged/edged/pipeline"
)

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("c", "", "config `file`")
	fs.StringVar(path, "config", "", "config `file` (same as -c)")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, flagUsage(fs, "edged check -c FILE"))
		return err
	}
	if err != nil {
		return err
	}
	if *path == "" && len(pos) == 1 {
		*path = pos[0]
	} else if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	dets, err := detectorSpecs(cfg)
	if err != nil {
		return err
	}
	specs, err := windowSpecs(cfg)
	if err == nil {
		_, err = pipeline.New(pipeline.Config{Windows: specs, Detectors: dets}, pipeline.SinkFunc(func(*pipeline.Record) {}), 0)
	}
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", *path, err)}
	}
	// Valid but unsafe: said on stderr, the exit status stays 0.
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	_, err = stdout.Write(cfg.Effective())
	return err
}
