package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/edged/edged/internal/mqttconn"
	"github.com/edged/edged/record"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/store"
)

// MQTT subscribes to topic filters on a broker and appends the readings of
// every message to the log.
//
// A QoS 1 or 2 message is acknowledged to the broker (PUBACK, PUBREC) only
// once its readings (or its quarantine record) are durable in the log:
// paho's automatic acknowledgement is off, and the acknowledgement goes out
// from the log's commit callback, in the order the messages arrived. A
// crash therefore never loses an acknowledged message; the broker sends
// again what was not acknowledged (at least once: a message may be logged
// twice). With a persistent session (CleanSession false, the default for
// QoS >= 1 in the config) this includes what was published while edged was
// away, within the broker's queue limits.
//
// The message handler never blocks paho's reader for long: it hands each
// message to a bounded queue (QueueSize) that one worker drains, decoding
// and appending in batches. When the log cannot keep up, the queue fills:
// QoS 0 messages are then dropped (counted in Stats, logged without
// flooding); QoS 1/2 messages are normally bounded by the broker's
// in-flight window (mosquitto's max_inflight_messages), and if a broker
// sends more than the queue holds, the handler waits, which stops reading
// from the connection: the broker keeps the rest (counted in Paused).
//
// Retained messages are acknowledged and skipped: the broker sends them
// because edged subscribed (on every connection), not because they were
// just published; they are a topic's last value, perhaps old, and would be
// logged again at each reconnect. A message published with the retain flag
// while edged is subscribed arrives without it and is logged.
//
// Connections are made by Run itself (paho's auto-reconnect is off): after
// a failed attempt or a lost connection it waits BackoffMin, doubling up to
// BackoffMax, with +-25% jitter; the pause returns to BackoffMin once a
// connection has stayed up for 30 s (a broker that drops us right after
// each connect sees the pause grow, not a reconnect storm). Each connection is a new
// paho client with an in-memory store (the log is the durable store) and
// subscribes to every topic filter again.
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

	// QueueSize bounds the messages received and not yet handed to the
	// log. Default 1024.
	QueueSize int
	// BackoffMin and BackoffMax bound the pause between connection
	// attempts. Defaults 1 s and 60 s.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// ConnectTimeout bounds one connection attempt (TCP, TLS, CONNECT) and
	// the wait for the SUBACK. Default 10 s.
	ConnectTimeout time.Duration
	// DrainTimeout bounds how long Run, once ctx ends, waits for the queued
	// messages to be committed and acknowledged before it disconnects.
	// Default 5 s.
	DrainTimeout time.Duration

	stats mqttCounters
	gen   atomic.Uint64 // the current connection; acks of older ones are not sent
}

const (
	mqttMaxBatch    = 1024    // messages per append
	mqttMaxPayload  = 1 << 20 // a bigger payload is quarantined undecoded
	mqttMaxDecoders = 256     // decoders kept for topic-derived sensors
	mqttStableAfter = 30 * time.Second
)

// MQTTStats are an MQTT source's counters.
type MQTTStats struct {
	Received   int64 // messages from the broker, redeliveries included
	Acked      int64 // QoS 1/2 messages acknowledged after their commit
	Dropped    int64 // QoS 0 messages dropped because the queue was full (or at shutdown)
	Paused     int64 // times the handler had to wait for room in the queue (QoS 1/2)
	Retained   int64 // retained messages skipped (see Run)
	Own        int64 // this gateway's own records seen on a subscribed topic, skipped (loop safety)
	Relayed    int64 // other gateways' records relayed upstream as they are
	Reconnects int64 // connections made after the first
	Queued     int   // messages waiting for the worker now
	Connected  bool
	LastError  string // the last connection, subscription or append error
	LastErrAt  time.Time
}

type mqttCounters struct {
	received, acked, dropped, paused, reconnects, retained atomic.Int64
	own, relayed                                           atomic.Int64
	connected                                              atomic.Bool
	queue                                                  atomic.Pointer[chan mqttItem]

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
		Own: c.own.Load(), Relayed: c.relayed.Load()}
	if q := c.queue.Load(); q != nil {
		st.Queued = len(*q)
	}
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

// mqttItem is a received message and the connection it came on.
type mqttItem struct {
	m   mqtt.Message
	gen uint64
}

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
	u, err := url.Parse(s.Broker)
	if err != nil || u.Host == "" {
		return fmt.Errorf("mqtt source %q: invalid broker URL %q", s.Name, redactURL(s.Broker))
	}
	// The worker logs bad payloads itself (with their topic, rate limited
	// across all its decoders).
	base, err := newDecoder(s.Name, s.Format, s.Opts, s.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("mqtt source %q: %w", s.Name, err)
	}
	base.clock = s.Clock
	if !mqttconn.TLSScheme(u.Scheme) && (s.TLSCA != "" || s.TLSCert != "" || s.TLSInsecure) {
		log.Warn(fmt.Sprintf("mqtt source %q: tls_* settings are ignored: the broker URL %s is not ssl:// or wss://", s.Name, redactURL(s.Broker)), "source", s.Name)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := make(chan mqttItem, mqttOr(s.QueueSize, 1024))
	s.stats.queue.Store(&q)
	ack := &mqttAcker{wake: make(chan struct{}, 1), idle: make(chan struct{}, 1), gen: &s.gen, acked: &s.stats.acked}
	w := &mqttWorker{s: s, log: log, tmpl: tmpl, base: base, decs: map[string]*decoder{}}
	workerErr := make(chan error, 1)
	go func() { workerErr <- w.run(runCtx, app, q, ack) }()
	ackDone := make(chan struct{})
	go func() { ack.run(); close(ackDone) }()

	bmin, bmax := mqttOr(s.BackoffMin, time.Second), mqttOr(s.BackoffMax, time.Minute)
	backoff := bmin
	var delay time.Duration
	var client mqtt.Client
	var werr error
	workerStopped := false
	connects := 0
loop:
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				break loop
			case werr = <-workerErr:
				workerStopped = true
				t.Stop()
				break loop
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		gen := s.gen.Add(1)
		lost := make(chan error, 1)
		c, present, err := s.connect(runCtx, log, s.handler(runCtx, q, gen, log), lost)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.setErr(err)
			delay = mqttJitter(backoff)
			backoff = min(2*backoff, bmax)
			log.Warn(fmt.Sprintf("mqtt source %q: %s; retrying in %s", s.Name, s.describe(err), delay.Round(100*time.Millisecond)),
				"source", s.Name, "broker", redactURL(s.Broker), "retry_in", delay)
			continue
		}
		client = c
		connects++
		if connects > 1 {
			s.stats.reconnects.Add(1)
		}
		s.stats.connected.Store(true)
		log.Info("mqtt source connected", "source", s.Name, "broker", redactURL(s.Broker), "client_id", s.EffectiveClientID(),
			"topics", s.Topics, "qos", s.QoS, "clean_session", s.CleanSession, "session_present", present)
		if !s.CleanSession && !present && connects > 1 {
			log.Warn(fmt.Sprintf("mqtt source %q: the broker kept no session for client id %q: messages published while edged was disconnected are lost", s.Name, s.EffectiveClientID()), "source", s.Name)
		}
		up := time.Now()
		select {
		case <-ctx.Done():
			break loop
		case werr = <-workerErr:
			workerStopped = true
			break loop
		case err := <-lost:
			s.stats.connected.Store(false)
			client = nil // paho has closed it
			if err == nil {
				err = errors.New("connection closed")
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

	// Shut down: the handler takes no more messages; the worker appends
	// what is queued; the acknowledgements of what gets committed go out;
	// then DISCONNECT (not before, or they would be lost and the broker
	// would send those messages again).
	cancel()
	if !workerStopped {
		werr = <-workerErr
	}
	ack.waitIdle(mqttOr(s.DrainTimeout, 5*time.Second))
	ack.stop()
	<-ackDone
	if client != nil {
		client.Disconnect(250)
	}
	s.stats.connected.Store(false)
	if werr != nil {
		return fmt.Errorf("mqtt source %q: %w", s.Name, werr)
	}
	return nil
}

// handler returns the message handler of connection gen. It runs on
// paho's reader and must not block: it queues the message for the worker.
func (s *MQTT) handler(ctx context.Context, q chan<- mqttItem, gen uint64, log *slog.Logger) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		s.stats.received.Add(1)
		if ctx.Err() != nil {
			// Stopping. Unacknowledged QoS 1/2 messages come again.
			if m.Qos() == 0 {
				s.stats.dropped.Add(1)
			}
			return
		}
		it := mqttItem{m: m, gen: gen}
		select {
		case q <- it:
			return
		default:
		}
		if m.Qos() == 0 {
			n := s.stats.dropped.Add(1)
			s.stats.mu.Lock()
			ok, quiet := s.stats.drops.allow(time.Now())
			s.stats.mu.Unlock()
			if ok {
				log.Warn(fmt.Sprintf("mqtt source %q: the log cannot keep up: QoS 0 message dropped", s.Name),
					"source", s.Name, "topic", m.Topic(), "dropped_total", n, "not_shown_since_last", quiet)
			}
			return
		}
		// QoS 1/2: the broker's in-flight window should keep the queue from
		// filling; if it does not, stop reading until there is room.
		n := s.stats.paused.Add(1)
		s.stats.mu.Lock()
		ok, quiet := s.stats.pauses.allow(time.Now())
		s.stats.mu.Unlock()
		if ok {
			log.Info(fmt.Sprintf("mqtt source %q: the log cannot keep up: not reading from the broker until it does (the broker keeps the messages)", s.Name),
				"source", s.Name, "queue", cap(q), "pauses_total", n, "not_shown_since_last", quiet)
		}
		select {
		case q <- it:
		case <-ctx.Done():
		}
	}
}

// connect makes one connection and subscribes.
func (s *MQTT) connect(ctx context.Context, log *slog.Logger, handler mqtt.MessageHandler, lost chan<- error) (mqtt.Client, bool, error) {
	ct := mqttOr(s.ConnectTimeout, 10*time.Second)
	o := mqtt.NewClientOptions()
	o.AddBroker(s.Broker)
	o.SetClientID(s.EffectiveClientID())
	o.SetUsername(s.Username)
	o.SetPassword(s.Password)
	o.SetCleanSession(s.CleanSession)
	o.SetProtocolVersion(4) // no silent retry with 3.1 after a refusal
	o.SetAutoAckDisabled(true)
	o.SetOrderMatters(true)
	o.SetStore(mqtt.NewMemoryStore())
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetResumeSubs(false)
	o.SetKeepAlive(mqttOr(s.Keepalive, 30*time.Second))
	o.SetConnectTimeout(ct)
	o.SetDefaultPublishHandler(handler)
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		select {
		case lost <- err:
		default:
		}
	})
	tlsCfg, err := mqttconn.TLSConfig(s.Broker, s.TLSCA, s.TLSCert, s.TLSKey, s.TLSInsecure)
	if err != nil {
		return nil, false, err
	}
	if tlsCfg != nil {
		o.SetTLSConfig(tlsCfg)
	}
	dialer := &net.Dialer{Timeout: ct}
	dialCtx, stopDial := context.WithCancel(ctx)
	defer stopDial()
	//lint:ignore SA1019 the dial must end when edged stops, and paho's custom dial function takes no context
	dialer.Cancel = dialCtx.Done()
	o.SetCustomOpenConnectionFn(mqttconn.Dial(dialer, tlsCfg, ct))
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(ct + 5*time.Second) {
		go func() { // paho did not answer in time: disconnect if it ever does
			if tok.WaitTimeout(time.Minute) && tok.Error() == nil {
				c.Disconnect(0)
			}
		}()
		return nil, false, fmt.Errorf("no CONNACK within %s", ct)
	}
	if err := tok.Error(); err != nil {
		return nil, false, err
	}
	present := tok.(*mqtt.ConnectToken).SessionPresent()
	if ctx.Err() != nil {
		c.Disconnect(0)
		return nil, false, ctx.Err()
	}
	filters := make(map[string]byte, len(s.Topics))
	for _, t := range s.Topics {
		filters[t] = byte(s.QoS)
	}
	st := c.SubscribeMultiple(filters, nil) // nil: the default handler gets every message
	if !st.WaitTimeout(ct) {
		c.Disconnect(0)
		return nil, false, fmt.Errorf("subscribe: no SUBACK within %s", ct)
	}
	if err := st.Error(); err != nil {
		c.Disconnect(0)
		return nil, false, fmt.Errorf("subscribe: %w", err)
	}
	granted := st.(*mqtt.SubscribeToken).Result()
	var refused []string
	for _, t := range s.Topics {
		switch code, ok := granted[t]; {
		case !ok || code == 0x80:
			refused = append(refused, t)
		case int(code) < s.QoS:
			log.Warn(fmt.Sprintf("mqtt source %q: the broker granted QoS %d instead of %d for %q", s.Name, code, s.QoS, t), "source", s.Name)
		}
	}
	if len(refused) == len(s.Topics) {
		c.Disconnect(0)
		return nil, false, fmt.Errorf("broker refused the subscription to %q (not authorised by its ACL?)", refused)
	}
	if len(refused) > 0 {
		log.Error(fmt.Sprintf("mqtt source %q: broker refused the subscription to %q (not authorised by its ACL?); the other topics are read", s.Name, refused), "source", s.Name)
	}
	return c, present, nil
}

// describe turns a connection error into the words for the log.
func (s *MQTT) describe(err error) string {
	refused := "broker refused the connection: "
	switch {
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		return refused + "bad user name or password"
	case errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return refused + "not authorised (wrong user name or password, or this client may not connect)"
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return refused + fmt.Sprintf("client id %q rejected", s.EffectiveClientID())
	case errors.Is(err, packets.ErrorRefusedServerUnavailable):
		return refused + "server unavailable"
	case errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return refused + "it does not accept MQTT 3.1.1"
	case errors.Is(err, packets.ErrorNetworkError):
		// paho wraps the cause: "network Error : <cause>".
		if m, ok := err.(interface{ Unwrap() []error }); ok {
			if es := m.Unwrap(); len(es) == 2 && es[1] != nil {
				err = es[1]
			}
		}
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

// mqttWorker decodes queued messages and appends them to the log.
type mqttWorker struct {
	s    *MQTT
	log  *slog.Logger
	tmpl *mqttTemplate
	base *decoder
	decs map[string]*decoder // by topic-derived sensor
	bad  mqttRateLog
}

func (w *mqttWorker) run(ctx context.Context, app Appender, q <-chan mqttItem, ack *mqttAcker) error {
	batch := make([]mqttItem, 0, mqttMaxBatch)
	for {
		select {
		case it := <-q:
			batch = append(batch[:0], it)
		case <-ctx.Done():
			return w.drain(app, q, ack)
		}
		batch = mqttGather(batch, q)
		if err := w.commit(ctx, app, batch, ack); err != nil {
			if ctx.Err() != nil {
				return w.drain(app, q, ack)
			}
			w.s.setErr(err)
			w.log.Error(fmt.Sprintf("mqtt source %q: cannot append to the log: %v", w.s.Name, err), "source", w.s.Name)
			return err
		}
	}
}

// mqttGather adds what is queued, without waiting, up to mqttMaxBatch.
func mqttGather(batch []mqttItem, q <-chan mqttItem) []mqttItem {
	for len(batch) < mqttMaxBatch {
		select {
		case it := <-q:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// drain appends what is still queued when the source stops.
func (w *mqttWorker) drain(app Appender, q <-chan mqttItem, ack *mqttAcker) error {
	ctx, cancel := context.WithTimeout(context.Background(), mqttOr(w.s.DrainTimeout, 5*time.Second))
	defer cancel()
	batch := make([]mqttItem, 0, mqttMaxBatch)
	for {
		batch = mqttGather(batch[:0], q)
		if len(batch) == 0 {
			return nil
		}
		if err := w.commit(ctx, app, batch, ack); err != nil {
			// Stopping anyway: QoS 1/2 messages come again.
			w.log.Warn(fmt.Sprintf("mqtt source %q: queued messages not appended at shutdown: %v", w.s.Name, err), "source", w.s.Name)
			return nil
		}
	}
}

// commit decodes batch and appends its entries, with the acknowledgement
// of its QoS 1/2 messages as the commit's callback.
func (w *mqttWorker) commit(ctx context.Context, app Appender, batch []mqttItem, ack *mqttAcker) error {
	es := make([]store.Entry, 0, len(batch))
	var qs []store.QEntry
	var acks []mqttItem
	var relays []store.Record
	for i := range batch {
		if rec, ok := record.Parse(batch[i].m.Payload()); ok {
			switch {
			case rec.Device == w.s.Device:
				if n := w.s.stats.own.Add(1); n == 1 {
					w.log.Warn(fmt.Sprintf("mqtt source %q: this gateway's own records arrive on a subscribed topic; they are skipped (loop safety)", w.s.Name), "topic", batch[i].m.Topic())
				}
			case w.s.Relay != nil:
				relays = append(relays, relayRecord(rec, batch[i].m.Payload()))
			default:
				w.s.stats.own.Add(1)
			}
		} else if m := batch[i].m; m.Retained() {
			// Sent because we subscribed, not because it was just
			// published: the topic's last value, maybe long ago, and sent
			// again on every subscribe. Acknowledged, not logged.
			if n := w.s.stats.retained.Add(1); n == 1 {
				w.log.Info(fmt.Sprintf("mqtt source %q: retained messages (sent on subscribe, maybe long ago) are skipped", w.s.Name), "source", w.s.Name, "topic", m.Topic())
			}
		} else {
			es, qs = w.decode(m, es, qs)
		}
		if batch[i].m.Qos() > 0 {
			acks = append(acks, batch[i])
		}
	}
	if len(es) == 0 && len(qs) == 0 && len(acks) == 0 && len(relays) == 0 {
		return nil
	}
	if len(relays) > 0 {
		// Durable before the batch's acknowledgements, which follow the
		// log commit below, in arrival order.
		if err := w.s.Relay(relays); err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		w.s.stats.relayed.Add(int64(len(relays)))
	}
	req := store.AppendRequest{Entries: es, Quarantine: qs}
	if len(acks) > 0 {
		req.Done = ack.done(acks)
	}
	if err := app.Append(ctx, req); err != nil {
		if req.Done != nil {
			ack.forget()
		}
		w.s.stats.dropped.Add(int64(len(batch) - len(acks)))
		return err
	}
	return nil
}

// decode appends the entries (or the quarantine record) of message m.
func (w *mqttWorker) decode(m mqtt.Message, es []store.Entry, qs []store.QEntry) ([]store.Entry, []store.QEntry) {
	payload, topic := m.Payload(), m.Topic()
	if len(payload) > mqttMaxPayload {
		reason := fmt.Sprintf("payload too large: %d bytes (at most %d) (topic %s)", len(payload), mqttMaxPayload, topic)
		qs = append(qs, store.QEntry{Time: w.base.now().UnixMilli(), Source: w.s.Name, Reason: reason,
			Payload: append([]byte(nil), payload[:store.MaxQuarantinePayload]...)})
		w.logBad(topic, reason, payload)
		return es, qs
	}
	d, metric := w.base, ""
	if w.tmpl != nil {
		if sensor, met, ok := w.tmpl.match(topic); ok {
			metric = met
			if sensor != "" {
				d = w.decoderFor(sensor)
			}
		}
	}
	n0, q0 := len(es), len(qs)
	es, qs = d.decode(payload, es, qs)
	if metric != "" {
		for i := n0; i < len(es); i++ {
			if es[i].Metric == "" {
				es[i].Metric = metric
			}
		}
	}
	for i := q0; i < len(qs); i++ {
		qs[i].Reason += " (topic " + topic + ")"
		w.logBad(topic, qs[i].Reason, payload)
	}
	return es, qs
}

// decoderFor returns the decoder of payloads whose topic names sensor: the
// source's options with that sensor as the default. Decoders are cheap; a
// bounded number is kept (CSV decoders keep their header per sensor).
func (w *mqttWorker) decoderFor(sensor string) *decoder {
	if d, ok := w.decs[sensor]; ok {
		return d
	}
	if len(w.decs) >= mqttMaxDecoders {
		for k := range w.decs {
			delete(w.decs, k)
			break
		}
	}
	opts := w.s.Opts
	opts.Sensor = sensor
	d, err := newDecoder(w.s.Name, w.s.Format, opts, w.s.Now, slog.New(slog.DiscardHandler))
	if err != nil { // the base decoder was made with the same format
		return w.base
	}
	d.clock = w.s.Clock
	w.decs[sensor] = d
	return d
}

func (w *mqttWorker) logBad(topic, reason string, payload []byte) {
	ok, quiet := w.bad.allow(w.base.now())
	if !ok {
		return
	}
	ex := payload
	if len(ex) > 80 {
		ex = ex[:80]
	}
	w.log.Warn("payload quarantined", "source", w.s.Name, "topic", topic, "reason", reason, "payload", string(ex), "not_shown_since_last", quiet)
}

// mqttAcker sends the acknowledgements of committed messages, in commit
// order, on its own goroutine: the commit callback only queues them (it
// runs on the log's committer and must not block; paho's Ack may wait for
// the connection's writer).
type mqttAcker struct {
	mu     sync.Mutex
	list   []mqttItem
	closed bool
	wake   chan struct{} // 1-buffered
	idle   chan struct{} // 1-buffered: pending went down

	pending atomic.Int64 // appended requests whose Done has not run
	gen     *atomic.Uint64
	acked   *atomic.Int64
}

func mqttSignal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// done returns the commit callback that acknowledges items.
func (a *mqttAcker) done(items []mqttItem) func(uint64, error) {
	a.pending.Add(1)
	return func(_ uint64, err error) {
		if err == nil { // not durable (shutdown): no ack, the broker sends them again
			a.mu.Lock()
			a.list = append(a.list, items...)
			a.mu.Unlock()
			mqttSignal(a.wake)
		}
		a.pending.Add(-1)
		mqttSignal(a.idle)
	}
}

// forget undoes done for a request that was not appended.
func (a *mqttAcker) forget() {
	a.pending.Add(-1)
	mqttSignal(a.idle)
}

// waitIdle waits until every appended request's callback ran, or timeout.
func (a *mqttAcker) waitIdle(timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for a.pending.Load() > 0 {
		select {
		case <-a.idle:
		case <-t.C:
			return
		}
	}
}

func (a *mqttAcker) stop() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	mqttSignal(a.wake)
}

func (a *mqttAcker) run() {
	for {
		<-a.wake
		a.mu.Lock()
		items, closed := a.list, a.closed
		a.list = nil
		a.mu.Unlock()
		cur := a.gen.Load()
		for _, it := range items {
			// A message of an earlier connection cannot be acknowledged on
			// this one (paho would drop it anyway): the broker sends it
			// again, and it is logged twice.
			if it.gen == cur {
				it.m.Ack()
				a.acked.Add(1)
			}
		}
		if closed {
			return
		}
	}
}

// relayRecord makes the outbox record of a relayed payload, kept byte for
// byte.
func relayRecord(e record.Envelope, payload []byte) store.Record {
	return store.Record{ID: e.ID, Kind: uint8(e.Kind), Name: e.Name, Key: e.Key, Created: time.Now().UnixMilli(), Body: append([]byte(nil), payload...)}
}
