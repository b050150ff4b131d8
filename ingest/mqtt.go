package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edged/edged/internal/mqttconn"
	"github.com/edged/edged/record"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/store"
)

// MQTT subscribes to topic filters on a broker and appends the readings of
// every message to the log.
//
// # One goroutine, no queue
//
// Run reads the connection itself (internal/mqttconn: one buffered reader,
// payloads decoded in place, no allocation and no goroutine hand-off per
// message): it decodes each message into the current batch and hands the
// batch to the log's group committer when it is full or when no further
// message is already buffered.
//
// # Nothing dropped: backpressure
//
// When the log cannot keep up (the committer's queue is full), Run waits
// for it and reads nothing from the socket meanwhile: TCP flow control
// stops the broker, which keeps the messages (counted in Paused, logged
// without flooding). The connection's own goroutine keeps sending
// keepalive pings, so the pause may last any time. This holds at every
// QoS. Overflow "drop" opts out: Run then keeps reading while the log is
// full, holds up to QueueSize messages, and drops the oldest beyond
// (counted in Dropped, logged): the freshest readings win.
//
// # Acknowledged after the commit, in bulk
//
// A QoS 1 or 2 message is acknowledged (PUBACK, PUBREC) only once its
// readings (or its quarantine record) are durable in the log: the batch's
// commit callback queues the acknowledgements of all its messages at once,
// in the order they arrived, and they go out in one write. A crash
// therefore never loses an acknowledged message; the broker sends again
// what was not acknowledged (at least once: a message may be logged
// twice). With a persistent session (CleanSession false, the default for
// QoS >= 1 in the config) this includes what was published while edged was
// away, within the broker's queue limits. Acknowledgements are sent only on
// the connection their messages came on.
//
// # Oversized payloads
//
// A payload larger than MaxPayload is never held whole: its size is known
// from the packet's fixed header, its first bytes are kept and the rest is
// skipped while it is read. It is quarantined with its size and topic, and
// acknowledged like any message; the connection goes on.
//
// # Retained messages
//
// Retained messages are acknowledged and skipped: the broker sends them
// because edged subscribed (on every connection), not because they were
// just published; they are a topic's last value, perhaps old, and would be
// logged again at each reconnect. A message published with the retain flag
// while edged is subscribed arrives without it and is logged.
//
// # Reconnects
//
// After a failed attempt or a lost connection Run waits BackoffMin,
// doubling up to BackoffMax, with +-25% jitter; the pause returns to
// BackoffMin once a connection has stayed up for 30 s (a broker that drops
// us right after each connect sees the pause grow, not a reconnect storm).
// Each connection subscribes to every topic filter again.
type MQTT struct {
	Name string
	// Broker is the URL: tcp:// (or mqtt://), ssl:// (tls://, mqtts://),
	// ws:// or wss://.
	Broker string
	Topics []string
	QoS    int
	// ClientID names the session at the broker; it must stay the same
	// across restarts for a persistent session. Default
	// "edged-<Device>-<Name>" ("edged-<Name>" without a Device).
	ClientID string
	Device   string
	Username string
	Password string
	// TLS: a PEM CA bundle to verify the broker (default: the system's),
	// a client certificate and key when the broker asks for one, and
	// TLSInsecure to skip the broker's verification. The files are read at
	// every connection attempt, so renewed certificates are picked up on
	// the next reconnect.
	TLSCA       string
	TLSCert     string
	TLSKey      string
	TLSInsecure bool
	// CleanSession false asks the broker to keep the subscription and the
	// unacknowledged messages while edged is away.
	CleanSession bool
	// Keepalive is the MQTT keepalive. Default 30 s.
	Keepalive time.Duration
	// TopicTemplate lets the topic feed the reading, e.g.
	// "sensors/{sensor}/{metric}": a payload that names no sensor takes
	// the one of its topic, and a reading without a metric the metric of
	// its topic. "+" matches a level that is ignored, "#" (last) the rest
	// of the topic. A topic that does not match is decoded without it.
	TopicTemplate string
	Format        string
	Opts          sensors.Options
	// Clock decides when ingestion time may stamp readings (nil: always).
	Clock *Clock
	// Relay, when set, takes the records of other gateways (edged's JSON
	// records with another device) arriving on a subscribed topic, and
	// stores them durably as they are, for the uplink (train car -> train
	// -> cloud). Without it they are skipped and counted. This gateway's own
	// records are always skipped and counted: an edged that subscribes to
	// the broker it publishes to does not ingest its own output.
	Relay  func([]store.Record) error
	Logger *slog.Logger
	Now    func() time.Time

	// MaxPayload bounds a message's payload; a larger one is skipped while
	// it is read and quarantined with its size and topic. Default 256 KiB.
	MaxPayload int
	// Overflow is what happens when the log cannot keep up: "block" (the
	// default: stop reading, the broker keeps the messages) or "drop"
	// (keep reading, drop the oldest messages beyond QueueSize).
	Overflow string
	// QueueSize bounds the messages held while the log is full with
	// Overflow "drop". Default 1024.
	QueueSize int
	// BackoffMin and BackoffMax bound the pause between connection
	// attempts. Defaults 1 s and 60 s.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// ConnectTimeout bounds one connection attempt (TCP, TLS, CONNECT) and
	// the wait for the SUBACK. Default 10 s.
	ConnectTimeout time.Duration
	// DrainTimeout bounds how long Run, once ctx ends, waits for the
	// messages read to be committed and acknowledged before it
	// disconnects. Default 5 s.
	DrainTimeout time.Duration

	stats mqttCounters
}

// Overflow policies.
const (
	OverflowBlock = "block"
	OverflowDrop  = "drop"
)

const (
	mqttMaxBatch          = 1024      // messages per append
	mqttMaxBatchBytes     = 512 << 10 // payload bytes per append
	mqttDefaultMaxPayload = 256 << 10 // as [limits] max_payload_bytes
	mqttMaxDecoders       = 256       // decoders kept for topic-derived sensors
	mqttMaxTopics         = 4096      // topics kept with what they give the reading
	mqttStableAfter       = 30 * time.Second
	mqttDropRetry         = 20 * time.Millisecond // overflow drop: how often a held batch is offered again
)

// MQTTStats are an MQTT source's counters.
type MQTTStats struct {
	Received   int64 // messages from the broker, redeliveries included
	Acked      int64 // QoS 1/2 messages acknowledged after their commit
	Dropped    int64 // messages dropped (overflow "drop"), or read but not appended (an append failed)
	Paused     int64 // times reading stopped because the log was full (backpressure)
	Retained   int64 // retained messages skipped (see MQTT)
	Oversize   int64 // payloads over MaxPayload, skipped and quarantined
	Own        int64 // this gateway's own records seen on a subscribed topic, skipped (loop safety)
	Relayed    int64 // other gateways' records relayed upstream as they are
	Reconnects int64 // connections made after the first
	Queued     int64 // messages read and not yet handed to the log, or handed and waiting for their commit
	Connected  bool
	LastError  string // the last connection, subscription or append error
	LastErrAt  time.Time
}

type mqttCounters struct {
	received, acked, dropped, paused, reconnects, retained atomic.Int64
	oversize, own, relayed, queued                         atomic.Int64
	connected                                              atomic.Bool

	mu        sync.Mutex
	lastErr   string
	lastErrAt time.Time
	drops     mqttRateLog // rate limits the drop and pause logs
	pauses    mqttRateLog
}

// Stats returns the counters; safe to call at any time from any goroutine.
func (s *MQTT) Stats() MQTTStats {
	c := &s.stats
	st := MQTTStats{Received: c.received.Load(), Acked: c.acked.Load(), Dropped: c.dropped.Load(), Paused: c.paused.Load(),
		Reconnects: c.reconnects.Load(), Retained: c.retained.Load(), Connected: c.connected.Load(),
		Oversize: c.oversize.Load(), Own: c.own.Load(), Relayed: c.relayed.Load(), Queued: c.queued.Load()}
	c.mu.Lock()
	st.LastError, st.LastErrAt = c.lastErr, c.lastErrAt
	c.mu.Unlock()
	return st
}

func (s *MQTT) setErr(err error) {
	s.stats.mu.Lock()
	s.stats.lastErr, s.stats.lastErrAt = err.Error(), time.Now()
	s.stats.mu.Unlock()
}

// EffectiveClientID is the client id the source connects with.
func (s *MQTT) EffectiveClientID() string {
	switch {
	case s.ClientID != "":
		return s.ClientID
	case s.Device != "":
		return "edged-" + s.Device + "-" + s.Name
	}
	return "edged-" + s.Name
}

func mqttOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// errAppend wraps an append the log refused for good: Run stops.
type errAppend struct{ err error }

func (e errAppend) Error() string { return "cannot append to the log: " + e.err.Error() }
func (e errAppend) Unwrap() error { return e.err }

// Run connects, subscribes and ingests until ctx ends, reconnecting as
// needed. Connection failures are logged and retried, never returned; Run
// returns an error only for a configuration it cannot use or when the log
// refuses appends for good.
func (s *MQTT) Run(ctx context.Context, app Appender) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tmpl, err := parseMQTTTemplate(s.TopicTemplate)
	if err != nil {
		return fmt.Errorf("mqtt source %q: %w", s.Name, err)
	}
	if len(s.Topics) == 0 {
		return fmt.Errorf("mqtt source %q: no topic filters", s.Name)
	}
	if s.QoS < 0 || s.QoS > 2 {
		return fmt.Errorf("mqtt source %q: invalid qos %d", s.Name, s.QoS)
	}
	switch s.Overflow {
	case "", OverflowBlock, OverflowDrop:
	default:
		return fmt.Errorf("mqtt source %q: invalid overflow %q: use %q or %q", s.Name, s.Overflow, OverflowBlock, OverflowDrop)
	}
	u, err := url.Parse(s.Broker)
	if err != nil || u.Host == "" {
		return fmt.Errorf("mqtt source %q: invalid broker URL %q", s.Name, redactURL(s.Broker))
	}
	// The reader logs bad payloads itself (with their topic, rate limited
	// across all its decoders).
	base, err := newDecoder(s.Name, s.Format, s.Opts, s.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("mqtt source %q: %w", s.Name, err)
	}
	base.clock = s.Clock
	if !mqttconn.TLSScheme(u.Scheme) && (s.TLSCA != "" || s.TLSCert != "" || s.TLSInsecure) {
		log.Warn(fmt.Sprintf("mqtt source %q: tls_* settings are ignored: the broker URL %s is not ssl:// or wss://", s.Name, redactURL(s.Broker)), "source", s.Name)
	}

	r := &mqttReader{s: s, log: log, app: app, tmpl: tmpl, base: base, decs: map[string]*decoder{}, topics: map[string]*mqttTopic{},
		drop: s.Overflow == OverflowDrop, idle: make(chan struct{}, 1)}
	bmin, bmax := mqttOr(s.BackoffMin, time.Second), mqttOr(s.BackoffMax, time.Minute)
	backoff := bmin
	var delay time.Duration
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		c, err := s.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.setErr(err)
			delay = mqttJitter(backoff)
			backoff = min(2*backoff, bmax)
			log.Warn(fmt.Sprintf("mqtt source %q: %s; retrying in %s", s.Name, s.describe(err), delay.Round(100*time.Millisecond)),
				"source", s.Name, "broker", redactURL(s.Broker), "retry_in", delay)
			continue
		}
		up := time.Now()
		subscribed, err := r.serve(ctx, c)
		s.stats.connected.Store(false)
		var fatal errAppend
		switch {
		case errors.As(err, &fatal):
			s.setErr(err)
			log.Error(fmt.Sprintf("mqtt source %q: %v", s.Name, err), "source", s.Name)
			return fmt.Errorf("mqtt source %q: %w", s.Name, err)
		case ctx.Err() != nil:
			return nil
		case !subscribed:
			s.setErr(err)
			delay = mqttJitter(backoff)
			backoff = min(2*backoff, bmax)
			log.Warn(fmt.Sprintf("mqtt source %q: %s; retrying in %s", s.Name, s.describe(err), delay.Round(100*time.Millisecond)),
				"source", s.Name, "broker", redactURL(s.Broker), "retry_in", delay)
			continue
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("connection closed by the broker")
		}
		s.setErr(err)
		if time.Since(up) >= mqttStableAfter {
			backoff = bmin
		}
		delay = mqttJitter(backoff)
		backoff = min(2*backoff, bmax)
		log.Warn(fmt.Sprintf("mqtt source %q: connection to %s lost: %v; reconnecting in %s", s.Name, redactURL(s.Broker), err, delay.Round(100*time.Millisecond)),
			"source", s.Name, "retry_in", delay)
	}
}

// connect makes one connection (the SUBSCRIBE follows in serve).
func (s *MQTT) connect(ctx context.Context) (*mqttconn.Conn, error) {
	tlsCfg, err := mqttconn.TLSConfig(s.Broker, s.TLSCA, s.TLSCert, s.TLSKey, s.TLSInsecure)
	if err != nil {
		return nil, err
	}
	return mqttconn.Dial(ctx, s.Broker, mqttconn.Options{ClientID: s.EffectiveClientID(), Username: s.Username, Password: s.Password,
		CleanSession: s.CleanSession, Keepalive: mqttOr(s.Keepalive, 30*time.Second), TLS: tlsCfg,
		Timeout: mqttOr(s.ConnectTimeout, 10*time.Second), MaxPayload: mqttOr(s.MaxPayload, mqttDefaultMaxPayload)})
}

// describe turns a connection error into the words for the log.
func (s *MQTT) describe(err error) string {
	var ce *mqttconn.ConnectError
	if errors.As(err, &ce) {
		if ce.Code == mqttconn.RefusedClientID {
			return fmt.Sprintf("broker refused the connection: client id %q rejected", s.EffectiveClientID())
		}
		return err.Error()
	}
	if strings.HasPrefix(err.Error(), "broker refused the subscription") || strings.HasPrefix(err.Error(), "subscribe:") {
		return err.Error()
	}
	hint := ""
	if u, _ := url.Parse(s.Broker); u != nil && mqttconn.TLSScheme(u.Scheme) && s.TLSCert == "" &&
		(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "certificate required")) {
		hint = " (does the broker require a client certificate? set tls_cert and tls_key)"
	}
	return fmt.Sprintf("cannot connect to %s: %v%s", redactURL(s.Broker), err, hint)
}

// redactURL drops the user info (a password) from a broker URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.LastIndexByte(raw, '@'); i >= 0 {
			return raw[i+1:]
		}
		return raw
	}
	u.User = nil
	return u.String()
}

// mqttJitter returns d +-25%.
func mqttJitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

// mqttRateLog lets the first ten events be logged, then one a minute.
type mqttRateLog struct {
	n     int64
	last  time.Time
	quiet int64
}

// allow reports whether to log this event, and how many were not logged
// since the last one that was.
func (r *mqttRateLog) allow(now time.Time) (bool, int64) {
	r.n++
	if r.n > 10 && now.Sub(r.last) < time.Minute {
		r.quiet++
		return false, 0
	}
	q := r.quiet
	r.last, r.quiet = now, 0
	return true, q
}

// mqttReader reads the connections of one source, one after the other,
// on Run's goroutine, and owns what it decodes with.
type mqttReader struct {
	s    *MQTT
	log  *slog.Logger
	app  Appender
	tmpl *mqttTemplate
	base *decoder
	decs map[string]*decoder // by topic-derived sensor
	// topics caches what each topic gives its messages (a decoder, a
	// metric), so that a message's topic is looked up without allocating.
	topics   map[string]*mqttTopic
	bad      mqttRateLog
	drop     bool
	connects int

	// Batches waiting for their commit, and batches to reuse. The commit
	// callbacks run on the committer's goroutine.
	mu      sync.Mutex
	free    []*mqttBatch
	pending int
	idle    chan struct{} // 1-buffered: pending went down
}

// mqttTopic is what a topic gives the messages on it.
type mqttTopic struct {
	name   string
	dec    *decoder
	metric string
}

// mqttBatch is the messages read since the last append: their entries,
// quarantine records and acknowledgements. Once appended with a commit
// callback it belongs to the committer until the callback returns it.
type mqttBatch struct {
	r      *mqttReader
	conn   *mqttconn.Conn
	es     []store.Entry
	qs     []store.QEntry
	acks   []mqttconn.Ack
	relays []store.Record
	marks  []mqttMark // where each message's entries and quarantine end
	bytes  int        // payload bytes
	done   func(uint64, error)
}

type mqttMark struct{ es, qs int32 }

func (b *mqttBatch) msgs() int { return len(b.marks) }

func (b *mqttBatch) reset() {
	b.es, b.qs, b.acks, b.relays, b.marks = b.es[:0], b.qs[:0], b.acks[:0], b.relays[:0], b.marks[:0]
	b.bytes, b.conn = 0, nil
}

// committed is the commit callback of a batch appended with
// acknowledgements: it queues them on the connection they are owed on and
// recycles the batch.
func (b *mqttBatch) committed(_ uint64, err error) {
	r := b.r
	n := int64(b.msgs())
	if err == nil && len(b.acks) > 0 && b.conn.Ack(b.acks) {
		// Not durable (err set at shutdown): no acknowledgement, the
		// broker sends them again.
		r.s.stats.acked.Add(int64(len(b.acks)))
	}
	r.s.stats.queued.Add(-n)
	b.reset()
	r.mu.Lock()
	r.free = append(r.free, b)
	r.pending--
	r.mu.Unlock()
	select {
	case r.idle <- struct{}{}:
	default:
	}
}

func (r *mqttReader) newBatch(c *mqttconn.Conn) *mqttBatch {
	r.mu.Lock()
	var b *mqttBatch
	if n := len(r.free); n > 0 {
		b = r.free[n-1]
		r.free = r.free[:n-1]
	}
	r.mu.Unlock()
	if b == nil {
		b = &mqttBatch{r: r}
		b.done = b.committed
	}
	b.conn = c
	return b
}

// waitIdle waits until every appended batch's callback ran, or timeout.
func (r *mqttReader) waitIdle(timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		r.mu.Lock()
		n := r.pending
		r.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-r.idle:
		case <-t.C:
			return
		}
	}
}

var mqttEnded = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// serve subscribes and reads c until it fails or ctx ends, then hands
// what it read to the log, waits (at shutdown) for the acknowledgements
// to be queued, and closes c. subscribed reports whether the broker
// acknowledged the subscription.
func (r *mqttReader) serve(ctx context.Context, c *mqttconn.Conn) (subscribed bool, err error) {
	s := r.s
	ct := mqttOr(s.ConnectTimeout, 10*time.Second)
	subID, err := c.Subscribe(s.Topics, byte(s.QoS))
	if err != nil {
		c.Close()
		return false, fmt.Errorf("subscribe: %w", err)
	}
	var subacked atomic.Bool
	subTimer := time.AfterFunc(ct, func() {
		if !subacked.Load() {
			c.Abort(fmt.Errorf("subscribe: no SUBACK within %s", ct))
		}
	})
	defer subTimer.Stop()
	stop := context.AfterFunc(ctx, c.Interrupt)
	defer stop()

	b := r.newBatch(c)
	held := false // overflow drop: the log refused b, which is kept
	var p mqttconn.Packet
read:
	for {
		if err = c.Next(&p); err != nil {
			if held && ctx.Err() == nil && mqttconn.IsTimeout(err) {
				err = nil
				if held = !r.offer(b); !held {
					b = r.newBatch(c)
					c.SetReadTimeout(0)
				}
				continue
			}
			break
		}
		switch p.Type {
		case mqttconn.SUBACK:
			if p.ID == subID && !subacked.Load() {
				if err = r.subacked(c, p.Body[2:]); err != nil {
					c.Abort(err)
					break read
				}
				subacked.Store(true)
				subscribed = true
			}
		case mqttconn.PUBLISH:
			r.add(b, &p)
		}
		// The batch goes to the log when full, or when the next read may
		// block (whatever packet came last).
		if b.msgs() == 0 || b.msgs() < mqttMaxBatch && b.bytes < mqttMaxBatchBytes && c.Buffered() {
			continue
		}
		if r.drop && c.RecoverableDeadline() {
			if held = !r.offer(b); held {
				r.dropOldest(b)
				c.SetReadTimeout(mqttDropRetry)
			} else {
				b = r.newBatch(c)
				c.SetReadTimeout(0)
			}
			continue
		}
		if aerr := r.append(ctx, b); aerr != nil && ctx.Err() == nil {
			err = errAppend{aerr}
			break
		}
		b = r.newBatch(c)
	}
	// What was read goes to the log: at shutdown within DrainTimeout; after
	// a lost connection (QoS 0 messages would be lost otherwise) as usual.
	var fatal errAppend
	if !errors.As(err, &fatal) && b.msgs() > 0 {
		actx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeout(context.Background(), mqttOr(s.DrainTimeout, 5*time.Second))
			defer cancel()
		}
		if aerr := r.append(actx, b); aerr != nil {
			if ctx.Err() != nil {
				r.log.Warn(fmt.Sprintf("mqtt source %q: messages not appended at shutdown: %v", s.Name, aerr), "source", s.Name)
			} else {
				err = errAppend{aerr}
			}
		}
	}
	if ctx.Err() != nil {
		// The acknowledgements of what gets committed go out before the
		// DISCONNECT (or the broker would send those messages again).
		r.waitIdle(mqttOr(s.DrainTimeout, 5*time.Second))
	}
	c.Close()
	return subscribed, err
}

// subacked checks the SUBACK's return codes, one per topic filter.
func (r *mqttReader) subacked(c *mqttconn.Conn, codes []byte) error {
	s := r.s
	var refused []string
	for i, t := range s.Topics {
		switch {
		case i >= len(codes) || codes[i] == 0x80:
			refused = append(refused, t)
		case int(codes[i]) < s.QoS:
			r.log.Warn(fmt.Sprintf("mqtt source %q: the broker granted QoS %d instead of %d for %q", s.Name, codes[i], s.QoS, t), "source", s.Name)
		}
	}
	if len(refused) == len(s.Topics) {
		return fmt.Errorf("broker refused the subscription to %q (not authorised by its ACL?)", refused)
	}
	if len(refused) > 0 {
		r.log.Error(fmt.Sprintf("mqtt source %q: broker refused the subscription to %q (not authorised by its ACL?); the other topics are read", s.Name, refused), "source", s.Name)
	}
	r.connects++
	if r.connects > 1 {
		s.stats.reconnects.Add(1)
	}
	s.stats.connected.Store(true)
	present := c.SessionPresent()
	r.log.Info("mqtt source connected", "source", s.Name, "broker", redactURL(s.Broker), "client_id", s.EffectiveClientID(),
		"topics", s.Topics, "qos", s.QoS, "clean_session", s.CleanSession, "session_present", present)
	if !s.CleanSession && !present && r.connects > 1 {
		r.log.Warn(fmt.Sprintf("mqtt source %q: the broker kept no session for client id %q: messages published while edged was disconnected are lost", s.Name, s.EffectiveClientID()), "source", s.Name)
	}
	if r.drop && !c.RecoverableDeadline() && r.connects == 1 {
		r.log.Warn(fmt.Sprintf("mqtt source %q: overflow = \"drop\" is not available over a websocket: the source waits for the log instead", s.Name), "source", s.Name)
	}
	return nil
}

// request is the append request of b. A batch with acknowledgements gets
// the commit callback and lends its slices to the log until then (it
// comes back for reuse). One without gets no callback (the committer
// would otherwise hurry its commit for one nobody waits for) and gives
// the log copies of exactly their length: the log's queue is bounded by
// what its entries weigh, which a reused slice's spare capacity would
// escape.
func (r *mqttReader) request(b *mqttBatch) (store.AppendRequest, bool) {
	if len(b.acks) > 0 {
		return store.AppendRequest{Entries: b.es, Quarantine: b.qs, Done: b.done}, true
	}
	return store.AppendRequest{Entries: slices.Clone(b.es), Quarantine: slices.Clone(b.qs)}, false
}

// relay stores b's relayed records, durably before b is appended (and its
// acknowledgements sent).
func (r *mqttReader) relay(b *mqttBatch) error {
	if len(b.relays) == 0 {
		return nil
	}
	if err := r.s.Relay(b.relays); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r.s.stats.relayed.Add(int64(len(b.relays)))
	b.relays = nil // Relay may keep them
	return nil
}

// append hands b to the log, waiting while the log is full (backpressure:
// nothing is read from the socket meanwhile).
func (r *mqttReader) append(ctx context.Context, b *mqttBatch) error {
	if b.msgs() == 0 {
		r.recycle(b)
		return nil
	}
	if err := r.relay(b); err != nil {
		return err
	}
	req, cb := r.request(b)
	if cb {
		r.mu.Lock()
		r.pending++
		r.mu.Unlock()
	}
	// First without waiting (Append with an ended context queues only
	// when there is room), to see whether the log is keeping up.
	err := r.app.Append(mqttEnded, req)
	if err != nil && errors.Is(err, context.Canceled) && ctx.Err() == nil {
		s := r.s
		n := s.stats.paused.Add(1)
		s.stats.mu.Lock()
		ok, quiet := s.stats.pauses.allow(time.Now())
		s.stats.mu.Unlock()
		if ok {
			r.log.Info(fmt.Sprintf("mqtt source %q: the log cannot keep up: not reading from the broker until it does (the broker keeps the messages)", s.Name),
				"source", s.Name, "pauses_total", n, "not_shown_since_last", quiet)
		}
		err = r.app.Append(ctx, req)
	}
	if err != nil {
		if cb {
			r.mu.Lock()
			r.pending--
			r.mu.Unlock()
		}
		r.s.stats.dropped.Add(int64(b.msgs() - len(b.acks)))
		r.s.stats.queued.Add(-int64(b.msgs()))
		b.reset()
		return err
	}
	if !cb {
		r.appended(b)
	}
	return nil
}

// appended recycles b once its copies were appended without a callback.
func (r *mqttReader) appended(b *mqttBatch) {
	r.s.stats.queued.Add(-int64(b.msgs()))
	r.recycle(b)
}

// offer hands b to the log if it has room, without waiting (overflow
// "drop"); false leaves b with the caller.
func (r *mqttReader) offer(b *mqttBatch) bool {
	if b.msgs() == 0 {
		r.recycle(b)
		return true
	}
	if err := r.relay(b); err != nil {
		return false
	}
	req, cb := r.request(b)
	if cb {
		r.mu.Lock()
		r.pending++
		r.mu.Unlock()
	}
	if err := r.app.Append(mqttEnded, req); err != nil {
		if cb {
			r.mu.Lock()
			r.pending--
			r.mu.Unlock()
		}
		return false
	}
	if !cb {
		r.appended(b)
	}
	return true
}

func (r *mqttReader) recycle(b *mqttBatch) {
	b.reset()
	r.mu.Lock()
	r.free = append(r.free, b)
	r.mu.Unlock()
}

// dropOldest drops the oldest messages of a held batch beyond QueueSize
// (overflow "drop"). Their acknowledgements stay: they go out, in order,
// after the commit of the batch.
func (r *mqttReader) dropOldest(b *mqttBatch) {
	s := r.s
	k := b.msgs() - mqttOr(s.QueueSize, 1024)
	if k <= 0 {
		return
	}
	m := b.marks[k-1]
	b.es = b.es[:copy(b.es, b.es[m.es:])]
	b.qs = b.qs[:copy(b.qs, b.qs[m.qs:])]
	b.marks = b.marks[:copy(b.marks, b.marks[k:])]
	for i := range b.marks {
		b.marks[i].es -= m.es
		b.marks[i].qs -= m.qs
	}
	s.stats.queued.Add(-int64(k))
	n := s.stats.dropped.Add(int64(k))
	s.stats.mu.Lock()
	ok, quiet := s.stats.drops.allow(time.Now())
	s.stats.mu.Unlock()
	if ok {
		r.log.Warn(fmt.Sprintf("mqtt source %q: the log cannot keep up: oldest messages dropped (overflow = \"drop\")", s.Name),
			"source", s.Name, "dropped", k, "dropped_total", n, "not_shown_since_last", quiet)
	}
}

// add decodes one PUBLISH into b.
func (r *mqttReader) add(b *mqttBatch, p *mqttconn.Packet) {
	s := r.s
	s.stats.received.Add(1)
	s.stats.queued.Add(1)
	payload := p.Payload
	t := r.topic(p.Topic)
	switch {
	case p.Retain:
		// Sent because we subscribed, not because it was just
		// published: the topic's last value, maybe long ago, and sent
		// again on every subscribe. Acknowledged, not logged.
		if n := s.stats.retained.Add(1); n == 1 {
			r.log.Info(fmt.Sprintf("mqtt source %q: retained messages (sent on subscribe, maybe long ago) are skipped", s.Name), "source", s.Name, "topic", t.name)
		}
	case p.Truncated:
		s.stats.oversize.Add(1)
		max := mqttOr(s.MaxPayload, mqttDefaultMaxPayload)
		reason := fmt.Sprintf("payload too large: %d bytes (at most %d) (topic %s)", p.Size, max, t.name)
		b.qs = append(b.qs, store.QEntry{Time: r.base.now().UnixMilli(), Source: s.Name, Reason: reason,
			Payload: append([]byte(nil), payload[:min(len(payload), store.MaxQuarantinePayload)]...)})
		r.logBad(t.name, reason, payload)
	default:
		if rec, ok := record.Parse(payload); ok {
			switch {
			case rec.Device == s.Device:
				if n := s.stats.own.Add(1); n == 1 {
					r.log.Warn(fmt.Sprintf("mqtt source %q: this gateway's own records arrive on a subscribed topic; they are skipped (loop safety)", s.Name), "topic", t.name)
				}
			case s.Relay != nil:
				b.relays = append(b.relays, relayRecord(rec, payload))
			default:
				s.stats.own.Add(1)
			}
			break
		}
		r.decode(b, t, payload)
	}
	if p.QoS > 0 {
		b.acks = append(b.acks, mqttconn.Ack{ID: p.ID, QoS: p.QoS})
	}
	b.bytes += len(payload)
	b.marks = append(b.marks, mqttMark{es: int32(len(b.es)), qs: int32(len(b.qs))})
}

// topic returns what topic gives its messages, from the cache.
func (r *mqttReader) topic(topic []byte) *mqttTopic {
	if t, ok := r.topics[string(topic)]; ok {
		return t
	}
	if len(r.topics) >= mqttMaxTopics {
		clear(r.topics)
	}
	t := &mqttTopic{name: string(topic), dec: r.base}
	if r.tmpl != nil {
		if sensor, met, ok := r.tmpl.match(t.name); ok {
			t.metric = met
			if sensor != "" {
				t.dec = r.decoderFor(sensor)
			}
		}
	}
	r.topics[t.name] = t
	return t
}

// decode appends the entries (or the quarantine record) of a payload.
func (r *mqttReader) decode(b *mqttBatch, t *mqttTopic, payload []byte) {
	n0, q0 := len(b.es), len(b.qs)
	b.es, b.qs = t.dec.decode(payload, b.es, b.qs)
	if t.metric != "" {
		for i := n0; i < len(b.es); i++ {
			if b.es[i].Metric == "" {
				b.es[i].Metric = t.metric
			}
		}
	}
	for i := q0; i < len(b.qs); i++ {
		b.qs[i].Reason += " (topic " + t.name + ")"
		r.logBad(t.name, b.qs[i].Reason, payload)
	}
}

// decoderFor returns the decoder of payloads whose topic names sensor: the
// source's options with that sensor as the default. Decoders are cheap; a
// bounded number is kept (CSV decoders keep their header per sensor).
func (r *mqttReader) decoderFor(sensor string) *decoder {
	if d, ok := r.decs[sensor]; ok {
		return d
	}
	if len(r.decs) >= mqttMaxDecoders {
		for k := range r.decs {
			delete(r.decs, k)
			break
		}
	}
	opts := r.s.Opts
	opts.Sensor = sensor
	d, err := newDecoder(r.s.Name, r.s.Format, opts, r.s.Now, slog.New(slog.DiscardHandler))
	if err != nil { // the base decoder was made with the same format
		return r.base
	}
	d.clock = r.s.Clock
	r.decs[sensor] = d
	return d
}

func (r *mqttReader) logBad(topic, reason string, payload []byte) {
	ok, quiet := r.bad.allow(r.base.now())
	if !ok {
		return
	}
	ex := payload
	if len(ex) > 80 {
		ex = ex[:80]
	}
	r.log.Warn("payload quarantined", "source", r.s.Name, "topic", topic, "reason", reason, "payload", string(ex), "not_shown_since_last", quiet)
}

// relayRecord makes the outbox record of a relayed payload, kept byte for
// byte.
func relayRecord(e record.Envelope, payload []byte) store.Record {
	return store.Record{ID: e.ID, Kind: uint8(e.Kind), Name: e.Name, Key: e.Key, Created: time.Now().UnixMilli(), Body: append([]byte(nil), payload...)}
}
