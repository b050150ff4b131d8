package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edged/edged/ingest"
	"github.com/edged/edged/internal/broker"
	"github.com/edged/edged/internal/config"
	"github.com/edged/edged/internal/httpapi"
	"github.com/edged/edged/internal/sdnotify"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/runner"
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
	specs, err := runnable(cfg)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	// A gateway has little memory and the daemon's garbage is short-lived
	// (checkpoint buffers, records on their way to the outbox): collect at
	// 50% heap growth instead of Go's 100%. About a third less heap for a
	// few more collections (each a few ms of CPU at 1,000 sensors); GOGC
	// and GOMEMLIMIT in the environment still decide when set.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	sd := sdnotify.FromEnv()  // systemd, in a Type=notify unit; else nil
	var feed *ingest.LineFeed // stdin, read across reloads
	for _, s := range cfg.Sources {
		if s.Type == "stdin" {
			feed = ingest.NewLineFeed(stdin)
			break
		}
	}
	for {
		ctx, cancel := context.WithCancel(context.Background())
		var reload atomic.Bool
		go func() {
			select {
			case sig := <-sigs:
				reload.Store(sig == syscall.SIGHUP)
				if sig == syscall.SIGHUP {
					log.Info("SIGHUP: reloading the config", "file", cfg.File)
					_ = sd.Send("RELOADING=1") // runDaemon says READY=1 again
				} else {
					_ = sd.Send("STOPPING=1")
				}
				cancel()
			case <-ctx.Done():
			}
		}()
		err := runDaemon(ctx, cfg, specs, feed, log)
		cancel()
		if err != nil || !reload.Load() {
			return err
		}
		cfg, specs, log = reloadConfig(*path, cfg, specs, log, stderr)
		if feed == nil {
			for _, s := range cfg.Sources {
				if s.Type == "stdin" {
					feed = ingest.NewLineFeed(stdin)
					break
				}
			}
		}
	}
}

// runnable checks what edged run needs beyond the config's own validation
// and returns the window specs.
func runnable(cfg *config.Config) ([]pipeline.WindowSpec, error) {
	specs, err := windowSpecs(cfg)
	if err != nil {
		return nil, usageError{err}
	}
	if _, err := detectorSpecs(cfg); err != nil {
		return nil, err
	}
	for _, s := range cfg.Sources {
		switch s.Type {
		case "file", "stdin":
		case "simulate":
			if _, err := simulateConfig(&s); err != nil {
				return nil, usagef("%s: source %q: %v", cfg.File, s.Name, err)
			}
		case "serial":
			if _, err := ingest.UnescapePoll(s.PollCommand); err != nil {
				return nil, usagef("%s: source %q: %v", cfg.File, s.Name, err)
			}
		case "mqtt":
			if err := ingest.CheckTopicTemplate(s.TopicTemplate); err != nil {
				return nil, usagef("%s: source %q: %v", cfg.File, s.Name, err)
			}
		case "modbus":
			if err := modbusSource(&s, nil, nil).Check(); err != nil {
				return nil, usagef("%s: source %q: %v", cfg.File, s.Name, err)
			}
		default:
			return nil, usagef("%s: source %q: unknown type %q", cfg.File, s.Name, s.Type)
		}
	}
	return specs, nil
}

// reloadConfig reads the config again after SIGHUP. The daemon has
// stopped cleanly (final checkpoint) and starts again with the new config:
// sources reconnect, windows whose shape did not change keep their state,
// changed or new ones start empty (logged), outputs go on from their
// cursors. A config that is invalid is refused and the previous one runs
// on; data_dir cannot change without a restart.
func reloadConfig(path string, cfg *config.Config, specs []pipeline.WindowSpec, log *slog.Logger, stderr io.Writer) (*config.Config, []pipeline.WindowSpec, *slog.Logger) {
	next, err := config.Load(path)
	var nspecs []pipeline.WindowSpec
	if err == nil {
		nspecs, err = runnable(next)
	}
	if err != nil {
		log.Error("SIGHUP: the new config is invalid; running on with the previous one", "err", err)
		return cfg, specs, log
	}
	if next.Device.DataDir != cfg.Device.DataDir {
		log.Warn("SIGHUP: data_dir cannot change without a restart; keeping the running one", "running", cfg.Device.DataDir, "new", next.Device.DataDir)
		next.Device.DataDir = cfg.Device.DataDir
	}
	nlog := newLogger(next, stderr)
	nlog.Info("config reloaded", "file", path)
	return next, nspecs, nlog
}

// clockFor is the clock rule of [device] clock_check: ingestion time
// cannot stamp readings while the clock reads before this build's date
// (or, with "kernel", while the kernel says it is not synchronised).
func clockFor(cfg *config.Config) *ingest.Clock {
	if cfg.Device.ClockCheck == "off" {
		return nil
	}
	floor, err := time.Parse(time.RFC3339, date)
	if err != nil {
		floor = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // unstamped builds
	}
	return ingest.SystemClock(floor, cfg.Device.ClockCheck == "kernel")
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
func runDaemon(ctx context.Context, cfg *config.Config, specs []pipeline.WindowSpec, feed *ingest.LineFeed, log *slog.Logger) error {
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
	tightenDataPerms(cfg.Device.DataDir, st.Path(), log)
	if st.Opened.PrevDeviceID != "" {
		log.Warn("device id changed for this data dir", "was", st.Opened.PrevDeviceID, "now", cfg.Device.ID)
	}
	app := st.NewAppender(store.AppenderOptions{Logger: log, Interval: cfg.Store.CommitInterval.D()})

	dets, err := detectorSpecs(cfg) // checked by runnable
	if err != nil {
		return err
	}
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
			Detectors:             dets,
		},
		CheckpointInterval: cfg.Pipeline.CheckpointInterval.D(),
		StateInterval:      cfg.Pipeline.StateInterval.D(),
		// A state checkpoint is the daemon's largest burst of memory (the
		// changed keys encoded, bbolt's dirty pages); without this the
		// runtime keeps the pages for minutes and RSS stays at the peak.
		// One forced collection per state_interval: a few ms of CPU.
		AfterState:  debug.FreeOSMemory,
		IdleTimeout: cfg.Pipeline.IdleTimeout.D(),
		Logger:      log,
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
	// after the outputs stop.
	var brk *broker.Broker
	if cfg.Broker.Enabled {
		if brk, err = broker.Start(ctx, cfg.Broker, log); err != nil {
			return err
		}
		defer brk.Close()
	}

	clk := clockFor(cfg)
	if clk != nil && !clk.Synced(time.Now()) {
		log.Warn("the gateway's clock is not synchronised: payloads without their own timestamp are quarantined until it is", "clock_check", cfg.Device.ClockCheck)
	}

	// Outputs deliver the outbox from their cursors, on their own.
	outs, err := outputs(cfg, st, log)
	if err != nil {
		return err
	}
	outCtx, outStop := context.WithCancel(context.Background())
	defer outStop()
	var outWG sync.WaitGroup
	for _, o := range outs {
		outWG.Add(1)
		go func() {
			defer outWG.Done()
			if err := o.Run(outCtx); err != nil {
				log.Error("output stopped", "output", o.Name(), "err", err)
			}
		}()
	}

	// HTTP endpoint ([http]): /healthz, /metrics, /status, until runDaemon
	// returns. It never touches the runner's goroutine: it reads the
	// snapshots the runner publishes (Observe), the sources' and outputs'
	// Stats, and counts readings per source on their way to the appender
	// (srcApp). /healthz is 200 once the log as it is now has been replayed.
	// Every second, the data file's pages leave edged's memory map (they
	// stay in the page cache): see store.ReleaseMapped. It costs a walk of
	// the map's page tables and minor faults for the pages read again.
	relCtx, relStop := context.WithCancel(ctx)
	relDone := make(chan struct{})
	go func() {
		defer close(relDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-relCtx.Done():
				return
			case <-tick.C:
				if err := st.ReleaseMapped(); err != nil {
					log.Warn("could not release mapped pages", "err", err)
					return
				}
			}
		}
	}()
	defer func() { relStop(); <-relDone }()

	obs := run.Observe() // for the HTTP endpoint and the systemd watchdog
	defer obs.Close()
	var api *httpapi.Server // nil when disabled: its methods do nothing
	var srcApp ingest.Appender = app
	if cfg.HTTP.Enabled {
		var hs []httpapi.Source
		for _, s := range cfg.Sources {
			hs = append(hs, httpapi.Source{Name: s.Name, Type: s.Type})
		}
		api = httpapi.New(httpapi.Options{Listen: cfg.HTTP.Listen, Token: cfg.HTTP.Token, Device: cfg.Device.ID, Version: version,
			Logger: log, Store: st, Appender: app, Runner: obs, RecoverFrom: run.Offset(), RecoverTo: st.LogEnd(),
			Sources: hs, Outputs: outs})
		srcApp = api.Appender(app)
		api.Start(ctx)
		defer api.Close()
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
			src = &ingest.File{Name: s.Name, Path: s.Path, Format: s.Format, Opts: decoderOptions(s), Start: positions[s.Name], Logger: log, Clock: clk}
		case "stdin":
			src = &ingest.Reader{Name: s.Name, Feed: feed, Format: s.Format, Opts: decoderOptions(s), Logger: log, Clock: clk}
		case "simulate":
			sc, _ := simulateConfig(s) // checked by cmdRun
			src = &ingest.Simulate{Name: s.Name, Config: sc, Logger: log, Clock: clk}
		case "serial":
			poll, _ := ingest.UnescapePoll(s.PollCommand) // checked by cmdRun
			lineEnd := byte('\n')
			if s.LineEnd != "" {
				lineEnd = s.LineEnd[0]
			}
			src = &ingest.Serial{Name: s.Name, Port: s.Port, USBVID: s.USBVID, USBPID: s.USBPID, USBSerial: s.USBSerial,
				Baud: s.Baud, DataBits: s.DataBits, Parity: s.Parity, StopBits: s.StopBits,
				LineEnd: lineEnd, MaxLine: int(s.MaxLine), PollCommand: poll, PollEvery: s.PollEvery.D(),
				Format: s.Format, Opts: decoderOptions(s), Logger: log, Clock: clk}
		case "mqtt":
			src = &ingest.MQTT{Name: s.Name, Broker: s.Broker, Topics: s.Topics, QoS: s.QoS,
				ClientID: s.ClientID, Device: cfg.Device.ID, Username: s.Username, Password: s.Password,
				TLSCA: s.TLSCA, TLSCert: s.TLSCert, TLSKey: s.TLSKey, TLSInsecure: s.TLSInsecure,
				CleanSession: s.CleanSession != nil && *s.CleanSession, Keepalive: s.Keepalive.D(),
				TopicTemplate: s.TopicTemplate, Overflow: s.Overflow, Format: s.Format, Opts: decoderOptions(s), Logger: log, Clock: clk,
				Relay: func(rs []store.Record) error { _, err := st.AppendOutbox(rs); return err }}
		case "modbus":
			src = modbusSource(s, log, clk)
		}
		api.AddSource(s.Name, src)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := src.Run(srcCtx, srcApp); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("source stopped", "source", s.Name, "err", err)
				srcErr <- err
			}
		}()
	}
	log.Info("edged running", "device", cfg.Device.ID, "data", st.Path(), "sources", len(cfg.Sources), "windows", len(specs),
		"log_offset", run.Offset(), "log_end", st.LogEnd())

	sdStop := notifySystemd(obs.Snapshot, log)
	runErr := run.Run(ctx)
	sdStop()
	// Shutdown, in order.
	srcStop()
	wg.Wait()
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
	// Give the outputs a moment to deliver what the final checkpoint
	// committed; what they do not, they deliver after the next start.
	deadline := time.Now().Add(2 * time.Second)
	for _, o := range cfg.Outputs {
		for time.Now().Before(deadline) {
			if c, err := st.Cursor(o.Name); err != nil || c >= st.OutboxLastSeq() {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	outStop()
	outWG.Wait()
	// The embedded broker last: the outputs deliver the final records to it
	// (the demo's dashboard output does).
	if brk != nil {
		brk.Close()
	}
	log.Info("edged stopped cleanly", "log_offset", run.Offset(), "checkpoints", run.Checkpoints, "max_pause", run.MaxPause)
	select {
	case err := <-srcErr:
		_ = err // reported above; a failed source does not fail a clean stop
	default:
	}
	return nil
}

// tightenDataPerms keeps the data file to the daemon's user: a file that
// others may read (copied in, or made by an older build) is set to 0600.
// A data dir that others may enter is only warned about, with the fix: it
// may be a directory the operator chose and shares (store.Open creates a
// missing one 0700).
func tightenDataPerms(dir, file string, log *slog.Logger) {
	if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(file, 0o600); err != nil {
			log.Warn("the data file is readable by other users and could not be set to 0600", "path", file, "mode", fi.Mode().Perm().String(), "err", err)
		} else {
			log.Warn("the data file was readable by other users: set to 0600", "path", file, "was", fi.Mode().Perm().String())
		}
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the data dir is open to other users; the data file is not, but to keep it to edged's user run: chmod 700 "+dir, "path", dir, "mode", fi.Mode().Perm().String())
	}
}

// notifySystemd tells systemd (a Type=notify unit) that edged runs:
// READY=1 now, as the pipeline starts (recovery of a long log may take a
// while, and counts as running: /healthz says when it is done), then, with
// WatchdogSec= set, WATCHDOG=1 every quarter of it while the runner's loop
// is alive, judged by the snapshots it publishes about once a second: a
// loop stuck for half the watchdog time (at least 3 s) stops the pings,
// and systemd restarts edged once the whole of it has passed. The returned function
// stops the pings (cmdRun says STOPPING=1 or RELOADING=1 when a signal
// comes). Without $NOTIFY_SOCKET it does nothing.
func notifySystemd(snapshot func() *runner.Snapshot, log *slog.Logger) (stop func()) {
	sd := sdnotify.FromEnv()
	if sd == nil {
		return func() {}
	}
	if err := sd.Send("READY=1"); err != nil {
		log.Warn("could not tell systemd edged is running", "err", err)
	}
	wd := sdnotify.WatchdogInterval()
	done := make(chan struct{})
	var wg sync.WaitGroup
	if wd > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(wd / 4)
			defer tick.Stop()
			stalled := false
			stale := max(wd/2, 3*time.Second) // snapshots come about once a second
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				snap := snapshot()
				if snap == nil || time.Since(snap.Taken) > stale {
					if !stalled {
						log.Error("the pipeline loop is stuck: no more watchdog pings, systemd will restart edged", "watchdog", wd)
					}
					stalled = true
					continue
				}
				stalled = false
				if err := sd.Send("WATCHDOG=1"); err != nil {
					log.Warn("watchdog ping failed", "err", err)
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}
