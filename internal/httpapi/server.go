// Package httpapi is the daemon's observability endpoint ([http] in the
// config): /healthz, /metrics in the Prometheus text format, and /status as
// JSON.
//
// # Concurrency
//
// Handlers run on net/http's goroutines and never touch the pipeline: the
// engine and the runner belong to the runner's goroutine. They read only
//   - the runner's published Snapshot (runner.Observer: an atomic pointer
//     the runner replaces about once a second from its loop), which may be
//     nil (the runner does not publish yet) and is then left out;
//   - atomics and mutex-guarded stats: the store's log offsets and outbox
//     seq, Runner.LastCommit, the sources' and outputs' Stats, the
//     appender's Stats, and this package's per-source counters;
//   - one short bbolt read transaction per request for the counters kept
//     in the data file (FORMAT.md: meta counters, outbox head, cursors,
//     the newest checkpoint's head). store.Stats is never called: it walks
//     every page of the file, which on a gateway's SD card takes seconds.
//
// # Security
//
// The default address is loopback. When a token is configured every
// request needs "Authorization: Bearer <token>" (compared in constant
// time); the token is never logged or shown.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/ingest"
	"github.com/edged/edged/runner"
	"github.com/edged/edged/store"
	"github.com/edged/edged/uplink"
)

// RunnerView is what the endpoint reads of the runner, from any goroutine
// (a *runner.Observer).
type RunnerView interface {
	Snapshot() *runner.Snapshot // nil until the runner publishes one
	Ready() bool
	LastCommit() time.Duration
}

// Source is a configured source: its name and type.
type Source struct{ Name, Type string }

// Options configure a Server. Every field but Listen is optional.
type Options struct {
	Listen  string // host:port
	Token   string // when set, required as a bearer token
	Device  string
	Version string
	Logger  *slog.Logger

	Store    *store.Store
	Appender *store.Appender
	Runner   RunnerView
	// RecoverFrom is the log offset the runner restarted from and
	// RecoverTo the log end when the daemon started: the pipeline has
	// recovered once it has processed every entry before RecoverTo.
	// /healthz says ready when the runner says so, or (while the runner
	// does not publish) once the newest committed checkpoint covers
	// RecoverTo.
	RecoverFrom, RecoverTo uint64
	Sources                []Source
	Outputs                []uplink.Output

	Now func() time.Time // default time.Now
	// Retry is the pause between attempts to listen when the address is
	// not available (in use, or an interface not up yet). Default 10 s.
	Retry time.Duration
}

// Server serves the endpoints. The methods of a nil *Server do nothing, so
// the daemon can call them whether [http] is enabled or not.
type Server struct {
	opts    Options
	log     *slog.Logger
	started time.Time
	tokenH  [32]byte

	mu      sync.Mutex
	srcs    map[string]*sourceState
	order   []string // source names, configured first
	ready   atomic.Bool
	stop    atomic.Bool
	addr    atomic.Pointer[string]
	srv     *http.Server
	done    chan struct{}
	closing chan struct{}
	once    sync.Once
}

// sourceState is what the endpoint knows of one source.
type sourceState struct {
	typ      string
	readings atomic.Int64
	bad      atomic.Int64
	obj      any // the ingest source, for its Stats
}

// New returns a server; Start makes it listen.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Retry <= 0 {
		opts.Retry = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, started: opts.Now(), srcs: map[string]*sourceState{},
		done: make(chan struct{}), closing: make(chan struct{})}
	if opts.Token != "" {
		s.tokenH = sha256.Sum256([]byte(opts.Token))
	}
	for _, src := range opts.Sources {
		s.source(src.Name).typ = src.Type
	}
	return s
}

// source returns the state of the named source, adding it if new.
func (s *Server) source(name string) *sourceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.srcs[name]
	if st == nil {
		st = &sourceState{}
		s.srcs[name] = st
		s.order = append(s.order, name)
	}
	return st
}

// AddSource registers a running source (an *ingest.MQTT, *ingest.Serial,
// ...) for its own counters: reconnects, drops, connection state.
func (s *Server) AddSource(name string, src any) {
	if s == nil {
		return
	}
	st := s.source(name)
	s.mu.Lock()
	st.obj = src
	s.mu.Unlock()
}

// Appender wraps the appender the sources write to, to count per source
// the readings appended to the log and the payloads quarantined. With a
// nil Server it returns app.
func (s *Server) Appender(app ingest.Appender) ingest.Appender {
	if s == nil {
		return app
	}
	return &counting{next: app, s: s}
}

// Handler returns the endpoints, behind the token check.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.healthz)
	mux.HandleFunc("/metrics", s.metrics)
	mux.HandleFunc("/status", s.status)
	return s.auth(mux)
}

// Start listens on Options.Listen and serves until Close, in the
// background. When the address is not available it logs a warning and
// tries again every Options.Retry. ctx is the daemon's: once it ends,
// /healthz answers 503 (stopping) until Close.
func (s *Server) Start(ctx context.Context) {
	if s == nil {
		return
	}
	context.AfterFunc(ctx, func() { s.stop.Store(true) })
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go s.serve()
}

func (s *Server) serve() {
	defer close(s.done)
	warned := false
	for {
		ln, err := net.Listen("tcp", s.opts.Listen)
		if err == nil {
			a := ln.Addr().String()
			s.addr.Store(&a)
			s.log.Info("http endpoint listening", "addr", a, "token", s.opts.Token != "",
				"endpoints", "/healthz /metrics /status")
			if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http endpoint stopped", "err", err)
			}
			return
		}
		if !warned {
			s.log.Warn("http endpoint cannot listen; retrying (set [http] listen to another address, or enabled = false)",
				"addr", s.opts.Listen, "err", err, "retry_every", s.opts.Retry)
			warned = true
		}
		select {
		case <-s.closing:
			return
		case <-time.After(s.opts.Retry):
		}
	}
}

// Addr returns the address the server listens on, or "" before it does.
func (s *Server) Addr() string {
	if s == nil {
		return ""
	}
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Close stops the server: requests in flight get a second to finish.
func (s *Server) Close() error {
	if s == nil || s.srv == nil {
		return nil
	}
	var err error
	s.once.Do(func() {
		s.stop.Store(true)
		close(s.closing)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err = s.srv.Shutdown(ctx); err != nil {
			err = s.srv.Close()
		}
		<-s.done
	})
	return err
}

// auth requires the bearer token, when one is configured.
func (s *Server) auth(next http.Handler) http.Handler {
	if s.opts.Token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		const scheme = "bearer "
		h := r.Header.Get("Authorization")
		ok := len(h) > len(scheme) && strings.EqualFold(h[:len(scheme)], scheme)
		if ok {
			// Hashes, so that the comparison takes the same time whatever
			// the length of the guess.
			got := sha256.Sum256([]byte(strings.TrimSpace(h[len(scheme):])))
			ok = subtle.ConstantTimeCompare(got[:], s.tokenH[:]) == 1
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edged"`)
			http.Error(w, "unauthorized: send the [http] token as \"Authorization: Bearer <token>\"", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// getOnly answers 405 to methods other than GET and HEAD.
func getOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}
