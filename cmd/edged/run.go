package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/edged/edged/ingest"
	"github.com/edged/edged/internal/broker"
	"github.com/edged/edged/internal/config"
	"github.com/edged/edged/internal/runner"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/store"
)

func cmdRun(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("c", "", "config `file`")
	fs.StringVar(path, "config", "", "config `file` (same as -c)")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, flagUsage(fs, "edged run -c FILE"))
		return err
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	specs, err := windowSpecs(cfg)
	if err != nil {
		return usageError{err}
	}
	for _, s := range cfg.Sources {
		switch s.Type {
		case "file", "stdin":
		case "simulate":
			if _, err := simulateConfig(&s); err != nil {
				return usagef("%s: source %q: %v", cfg.File, s.Name, err)
			}
		case "serial":
			if _, err := ingest.UnescapePoll(s.PollCommand); err != nil {
				return usagef("%s: source %q: %v", cfg.File, s.Name, err)
			}
		case "mqtt":
			if err := ingest.CheckTopicTemplate(s.TopicTemplate); err != nil {
				return usagef("%s: source %q: %v", cfg.File, s.Name, err)
			}
		default:
			return usagef("%s: source %q: type %q is not supported by edged run yet (file and stdin are)", cfg.File, s.Name, s.Type)
		}
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return runDaemon(ctx, cfg, specs, stdin, log)
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runDaemon runs until ctx ends, then shuts down in order: sources stop,
// the appender commits what they handed over, the pipeline processes the
// rest of the log and takes a final checkpoint, the store closes.
func runDaemon(ctx context.Context, cfg *config.Config, specs []pipeline.WindowSpec, stdin io.Reader, log *slog.Logger) error {
	st, err := store.Open(cfg.Device.DataDir, &store.Options{
		DeviceID:       cfg.Device.ID,
		LogMaxBytes:    int64(cfg.Store.MaxBytes),
		LogRetain:      cfg.Store.Retain.D(),
		OutboxMaxBytes: int64(cfg.Store.OutboxMaxBytes),
		QuarantineMax:  cfg.Store.QuarantineMax,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if st.Opened.Unclean {
		log.Warn("the previous run did not stop cleanly; the data file was checked and is consistent", "path", st.Path())
	}
	if st.Opened.PrevDeviceID != "" {
		log.Warn("device id changed for this data dir", "was", st.Opened.PrevDeviceID, "now", cfg.Device.ID)
	}
	app := st.NewAppender(store.AppenderOptions{Logger: log, Interval: cfg.Store.CommitInterval.D()})

	var srcSpecs []pipeline.SourceSpec
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		srcSpecs = append(srcSpecs, pipeline.SourceSpec{Name: s.Name, MaxOutOfOrderness: sourceOOO(cfg, s).D()})
	}
	run, err := runner.New(st, app, runner.Config{
		Device: cfg.Device.ID,
		Engine: pipeline.Config{
			Sources:               srcSpecs,
			DefaultOutOfOrderness: cfg.Pipeline.MaxOutOfOrderness.D(),
			Windows:               specs,
		},
		CheckpointInterval: cfg.Pipeline.CheckpointInterval.D(),
		IdleTimeout:        cfg.Pipeline.IdleTimeout.D(),
		Logger:             log,
	})
	if err != nil {
		return err
	}
	defer run.Close()
	positions, err := st.ReadPositions()
	if err != nil {
		return err
	}

	// Embedded MQTT broker ([broker] enabled): up before the sources, down
	// after they stop.
	var brk *broker.Broker
	if cfg.Broker.Enabled {
		if brk, err = broker.Start(ctx, cfg.Broker, log); err != nil {
			return err
		}
		defer brk.Close()
	}

	appCtx, appStop := context.WithCancel(context.Background())
	appDone := make(chan error, 1)
	go func() { appDone <- app.Run(appCtx) }()

	srcCtx, srcStop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	srcErr := make(chan error, len(cfg.Sources))
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		var src interface {
			Run(context.Context, ingest.Appender) error
		}
		switch s.Type {
		case "file":
			src = &ingest.File{Name: s.Name, Path: s.Path, Format: s.Format, Opts: decoderOptions(s), Start: positions[s.Name], Logger: log}
		case "stdin":
			src = &ingest.Reader{Name: s.Name, R: stdin, Format: s.Format, Opts: decoderOptions(s), Logger: log}
		case "simulate":
			sc, _ := simulateConfig(s) // checked by cmdRun
			src = &ingest.Simulate{Name: s.Name, Config: sc, Logger: log}
		case "serial":
			poll, _ := ingest.UnescapePoll(s.PollCommand) // checked by cmdRun
			lineEnd := byte('\n')
			if s.LineEnd != "" {
				lineEnd = s.LineEnd[0]
			}
			src = &ingest.Serial{Name: s.Name, Port: s.Port, USBVID: s.USBVID, USBPID: s.USBPID, USBSerial: s.USBSerial,
				Baud: s.Baud, DataBits: s.DataBits, Parity: s.Parity, StopBits: s.StopBits,
				LineEnd: lineEnd, MaxLine: int(s.MaxLine), PollCommand: poll, PollEvery: s.PollEvery.D(),
				Format: s.Format, Opts: decoderOptions(s), Logger: log}
		case "mqtt":
			src = &ingest.MQTT{Name: s.Name, Broker: s.Broker, Topics: s.Topics, QoS: s.QoS,
				ClientID: s.ClientID, Device: cfg.Device.ID, Username: s.Username, Password: s.Password,
				TLSCA: s.TLSCA, TLSCert: s.TLSCert, TLSKey: s.TLSKey, TLSInsecure: s.TLSInsecure,
				CleanSession: s.CleanSession != nil && *s.CleanSession, Keepalive: s.Keepalive.D(),
				TopicTemplate: s.TopicTemplate, Format: s.Format, Opts: decoderOptions(s), Logger: log}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := src.Run(srcCtx, app); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("source stopped", "source", s.Name, "err", err)
				srcErr <- err
			}
		}()
	}
	log.Info("edged running", "device", cfg.Device.ID, "data", st.Path(), "sources", len(cfg.Sources), "windows", len(specs),
		"log_offset", run.Offset(), "log_end", st.LogEnd())

	runErr := run.Run(ctx)
	// Shutdown, in order.
	srcStop()
	wg.Wait()
	if brk != nil {
		brk.Close()
	}
	appStop()
	if err := <-appDone; err != nil {
		log.Error("final log commit failed", "err", err)
	}
	if runErr == nil {
		drainCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		runErr = run.Drain(drainCtx)
		cancel()
	}
	if runErr != nil {
		return runErr
	}
	if err := run.Close(); err != nil {
		return err
	}
	log.Info("edged stopped cleanly", "log_offset", run.Offset(), "checkpoints", run.Checkpoints, "max_pause", run.MaxPause)
	select {
	case err := <-srcErr:
		_ = err // reported above; a failed source does not fail a clean stop
	default:
	}
	return nil
}
