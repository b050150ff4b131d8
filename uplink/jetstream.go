package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edged/edged/store"
)

// JetStream sends the outbox to a NATS JetStream stream, for a fleet whose
// records a central engine reads (docs/fleet.md). Every record is one
// message, its body as it is in the outbox, on the subject Subject with
// the headers Nats-Msg-Id (the record's id: the server drops a second copy
// within the stream's duplicate window), Edged-Device and Edged-Seq (the
// record's device and seq, for the consumer's own check), and
// Nats-Expected-Stream. The cursor moves only over records whose PubAck
// arrived; a PubAck that says duplicate counts as delivered. At most
// Inflight records wait for their PubAck. After an outage, live records go
// first and the backlog follows at BacklogRate (LiveFirst), as for MQTT.
type JetStream struct {
	OutName string
	Device  string
	// URL is the server, or several separated by commas: nats://, tls://,
	// ws://, wss://. User and password may be in it.
	URL string
	// Subject is the subject template: {device}, {type}, {window},
	// {detector}, {key}, {state}. A value goes in as one token: '.', '*',
	// '>' and white space become '_', an empty one is "_".
	Subject string
	Stream  string
	// CreateStream creates Stream, with the subjects of Subject, file
	// storage and DuplicateWindow, when it does not exist.
	CreateStream    bool
	DuplicateWindow time.Duration
	ClientName      string // default "edged-<device>-<output>"
	Username        string
	Password        string
	Credentials     string // a .creds file (JWT and seed)
	NKey            string // an nkey seed file
	TLSCA           string
	TLSCert         string
	TLSKey          string
	Insecure        bool
	Inflight        int // default 256
	BacklogRate     float64
	LiveFirst       bool
	RetryMin        time.Duration // default 1 s
	// AckTimeout is how long a record may wait for its PubAck before the
	// session ends and it is sent again. Default 30 s.
	AckTimeout time.Duration
	Store      *store.Store
	Logger     *slog.Logger

	stats  outStats
	warned atomic.Bool
}

// Name returns the output's name.
func (j *JetStream) Name() string { return j.OutName }

// Stats returns the output's counters.
func (j *JetStream) Stats() Stats { return j.stats.snapshot() }

func (j *JetStream) log() *slog.Logger {
	if j.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return j.Logger
}

// Run connects and delivers until ctx ends, reconnecting with exponential
// backoff (1 s to 60 s, ±25% jitter). It returns an error only for a
// setting it cannot use at all (TLS files).
func (j *JetStream) Run(ctx context.Context) error {
	if j.Inflight <= 0 {
		j.Inflight = 256
	}
	if j.AckTimeout <= 0 {
		j.AckTimeout = 30 * time.Second
	}
	tlsCfg, err := tlsFiles(j.TLSCA, j.TLSCert, j.TLSKey, j.Insecure)
	if err != nil {
		return fmt.Errorf("output %q: %w", j.OutName, err)
	}
	f := &forwarder{name: j.OutName, store: j.Store, log: j.log(), inflight: j.Inflight, backlogRate: j.BacklogRate,
		liveFirst: j.LiveFirst, retryMin: j.RetryMin, stall: j.AckTimeout, where: redactURLs(j.URL), stats: &j.stats,
		dial: func(ctx context.Context) (link, error) { return j.dial(ctx, tlsCfg) }}
	return f.run(ctx)
}

// natsToken makes a value one subject token.
func natsToken(_, v string) string {
	if v == "" {
		return "_"
	}
	if !strings.ContainsAny(v, ".*> \t\r\n") {
		return v
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, v)
}

// subjectFilter is the stream subject that takes every subject of the
// template: each token with a placeholder becomes '*'.
func subjectFilter(tmpl string) string {
	toks := strings.Split(tmpl, ".")
	for i, t := range toks {
		if strings.ContainsRune(t, '{') {
			toks[i] = "*"
		}
	}
	return strings.Join(toks, ".")
}

// subjectWithin reports whether every subject that filter matches is also
// matched by pattern (NATS wildcards: '*' one token, '>' the rest).
func subjectWithin(filter, pattern string) bool {
	f, p := strings.Split(filter, "."), strings.Split(pattern, ".")
	for i, pt := range p {
		if pt == ">" {
			return len(f) > i
		}
		if i >= len(f) {
			return false
		}
		if pt != "*" && (pt != f[i] || f[i] == "*" || f[i] == ">") {
			return false
		}
		if pt == "*" && f[i] == ">" {
			return false
		}
	}
	return len(f) == len(p)
}

// dial connects, makes sure the stream is there, and returns the session's
// link.
func (j *JetStream) dial(ctx context.Context, tlsCfg *tls.Config) (link, error) {
	l := &jsLink{stream: j.Stream, subject: j.Subject, device: j.Device, stats: &j.stats,
		ackc: make(chan linkAck, j.Inflight), lostc: make(chan struct{}), pending: map[*nats.Msg]uint64{}}
	name := j.ClientName
	if name == "" {
		name = "edged-" + j.Device + "-" + j.OutName
	}
	opts := []nats.Option{nats.Name(name), nats.NoReconnect(), nats.Timeout(10 * time.Second),
		nats.ClosedHandler(func(*nats.Conn) { l.lose(errors.New("connection closed")) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				err = errors.New("disconnected")
			}
			l.lose(err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// A permissions violation on publish drops the message
			// without a PubAck: end the session with the reason.
			l.lose(fmt.Errorf("server: %w", err))
		}),
	}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg))
	}
	switch {
	case j.Credentials != "":
		opts = append(opts, nats.UserCredentials(j.Credentials))
	case j.NKey != "":
		o, err := nats.NkeyOptionFromSeed(j.NKey)
		if err != nil {
			return nil, fmt.Errorf("nkey %s: %w", j.NKey, err)
		}
		opts = append(opts, o)
	case j.Username != "":
		opts = append(opts, nats.UserInfo(j.Username, j.Password))
	}
	nc, err := nats.Connect(j.URL, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization") {
			return nil, fmt.Errorf("the server refused the credentials (check username and password, credentials or nkey): %w", err)
		}
		return nil, err
	}
	l.nc = nc
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2*j.Inflight), jetstream.WithPublishAsyncTimeout(j.AckTimeout),
		jetstream.WithPublishAsyncAckHandler(l.onAck), jetstream.WithPublishAsyncErrHandler(l.onErr))
	if err != nil {
		nc.Close()
		return nil, err
	}
	l.js = js
	if j.CreateStream {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = j.ensureStream(cctx, js)
		cancel()
		if err != nil {
			nc.Close()
			return nil, err
		}
	}
	return l, nil
}

// ensureStream creates the stream when it is missing, and checks that an
// existing one takes the output's subjects.
func (j *JetStream) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	filter := subjectFilter(j.Subject)
	s, err := js.Stream(ctx, j.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: j.Stream, Subjects: []string{filter},
			Storage: jetstream.FileStorage, Duplicates: j.DuplicateWindow})
		switch {
		case err == nil:
			j.log().Info("created the stream", "output", j.OutName, "stream", j.Stream, "subjects", filter, "duplicate_window", j.DuplicateWindow)
			return nil
		case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
			s, err = js.Stream(ctx, j.Stream) // created meanwhile (another gateway)
		default:
			return fmt.Errorf("create stream %q with subjects %q: %w", j.Stream, filter, err)
		}
	}
	if err != nil {
		return fmt.Errorf("stream %q: %w", j.Stream, err)
	}
	cfg := s.CachedInfo().Config
	ok := false
	for _, p := range cfg.Subjects {
		ok = ok || subjectWithin(filter, p)
	}
	if !ok {
		return fmt.Errorf("stream %q does not take the subjects %q (its subjects: %q): add them to the stream, or change subject", j.Stream, filter, cfg.Subjects)
	}
	if cfg.Duplicates < j.DuplicateWindow && !j.warned.Swap(true) {
		j.log().Warn("the stream forgets message ids sooner than duplicate_window: a record sent again after a longer outage is stored twice (the consumer's (device, seq) check must drop it); raise the stream's duplicate window",
			"output", j.OutName, "stream", j.Stream, "stream_duplicate_window", cfg.Duplicates, "duplicate_window", j.DuplicateWindow)
	}
	return nil
}

// jsLink is one connection to the server.
type jsLink struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  string
	subject string
	device  string
	stats   *outStats
	ackc    chan linkAck
	mu      sync.Mutex
	pending map[*nats.Msg]uint64 // message -> outbox position, until its outcome
	lostc   chan struct{}
	lostErr error
	once    sync.Once
}

func (l *jsLink) lose(err error) {
	l.once.Do(func() {
		l.lostErr = err
		close(l.lostc)
	})
}

func (l *jsLink) acks() <-chan linkAck  { return l.ackc }
func (l *jsLink) lost() <-chan struct{} { return l.lostc }
func (l *jsLink) err() error            { return l.lostErr }
func (l *jsLink) close()                { l.nc.Close() }

func (l *jsLink) send(r *store.Record) error {
	device, seq := identity(r, l.device)
	m := &nats.Msg{Subject: fill(l.subject, device, r, natsToken), Data: r.Body, Header: nats.Header{
		jetstream.MsgIDHeader:          {r.ID},
		jetstream.ExpectedStreamHeader: {l.stream},
		"Edged-Device":                 {device},
		"Edged-Seq":                    {strconv.FormatUint(seq, 10)},
	}}
	l.mu.Lock()
	l.pending[m] = r.Pos
	l.mu.Unlock()
	if _, err := l.js.PublishMsgAsync(m); err != nil {
		l.take(m)
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// take returns the position of m and forgets it; false when its outcome
// was already reported.
func (l *jsLink) take(m *nats.Msg) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pos, ok := l.pending[m]
	delete(l.pending, m)
	return pos, ok
}

func (l *jsLink) onAck(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	pos, ok := l.take(m)
	if !ok {
		return
	}
	if ack.Duplicate {
		l.stats.duplicates.Add(1)
	}
	l.ackc <- linkAck{pos: pos}
}

func (l *jsLink) onErr(_ jetstream.JetStream, m *nats.Msg, err error) {
	pos, ok := l.take(m)
	if !ok {
		return
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		err = fmt.Errorf("no stream takes subject %q (is stream %q there, with that subject?): %w", m.Subject, l.stream, err)
	}
	l.ackc <- linkAck{pos: pos, err: fmt.Errorf("record at outbox position %d: %w", pos, err)}
}

// redactURLs removes the passwords of a comma-separated list of URLs.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redact(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}
