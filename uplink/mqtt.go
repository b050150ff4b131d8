package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edged/edged/store"
)

// MQTT sends the outbox to an upstream broker. It publishes records in
// outbox order with a bounded number in flight, and moves its durable
// cursor only past records the broker acknowledged (PUBACK for QoS 1,
// PUBCOMP for QoS 2). After a reconnect, live records go first and the
// backlog follows at BacklogRate (see the package doc).
type MQTT struct {
	OutName  string
	Device   string
	Broker   string
	ClientID string // default "edged-<device>-<output>"
	Username string
	Password string
	TLSCA    string
	TLSCert  string
	TLSKey   string
	Insecure bool
	QoS      byte
	// Topic templates: {device}, {window}, {key}, {type} for window and late
	// records; {device}, {detector}, {key}, {state} for alerts.
	Topic       string
	AlertTopic  string
	BatchTopic  string
	StatusTopic string
	LatestTopic string // "" disables the retained latest values
	HAPrefix    string // "" disables Home Assistant discovery
	Inflight    int
	Batch       int
	BacklogRate float64 // messages/s of the backlog, 0: no limit
	Keepalive   time.Duration
	// RetryMin is the first reconnect delay, doubled up to 60 s. Default 1 s.
	RetryMin time.Duration
	Store    *store.Store
	Logger   *slog.Logger

	stats  outStats
	haMu   sync.Mutex
	haSeen map[string]bool
}

// outStats are an output's counters, read with Stats.
type outStats struct {
	sent, acked, resent, reconnects atomic.Int64
	cursor, boundary                atomic.Uint64
	mu                              sync.Mutex
	lastErr                         string
	lastErrAt                       time.Time
}

// Stats are an MQTT output's figures for inspect and /metrics.
type Stats struct {
	Sent, Acked, Reconnects int64
	Cursor                  uint64
	// Boundary is the outbox position at the last (re)connect: records
	// after it went out live, those up to it as the backlog.
	Boundary  uint64
	LastErr   string
	LastErrAt time.Time
}

// Stats returns the output's counters.
func (m *MQTT) Stats() Stats {
	m.stats.mu.Lock()
	defer m.stats.mu.Unlock()
	return Stats{Sent: m.stats.sent.Load(), Acked: m.stats.acked.Load(), Reconnects: m.stats.reconnects.Load(),
		Cursor: m.stats.cursor.Load(), Boundary: m.stats.boundary.Load(), LastErr: m.stats.lastErr, LastErrAt: m.stats.lastErrAt}
}

func (m *MQTT) setErr(err error) {
	m.stats.mu.Lock()
	m.stats.lastErr, m.stats.lastErrAt = err.Error(), time.Now()
	m.stats.mu.Unlock()
}

// Name returns the output's name.
func (m *MQTT) Name() string { return m.OutName }

func (m *MQTT) log() *slog.Logger {
	if m.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Logger
}

// Run connects and delivers until ctx ends, reconnecting with exponential
// backoff (1 s to 60 s, ±25% jitter).
func (m *MQTT) Run(ctx context.Context) error {
	if m.Inflight <= 0 {
		m.Inflight = 64
	}
	if m.Keepalive <= 0 {
		m.Keepalive = 30 * time.Second
	}
	tlsCfg, err := m.tlsConfig()
	if err != nil {
		return fmt.Errorf("output %q: %w", m.OutName, err)
	}
	log := m.log().With("output", m.OutName)
	// Acknowledged positions beyond the durable cursor survive reconnects,
	// so live records acknowledged during a backlog are not sent again.
	acks := &ackSet{}
	if m.RetryMin <= 0 {
		m.RetryMin = time.Second
	}
	backoff := m.RetryMin
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			m.stats.reconnects.Add(1)
			d := time.Duration(float64(backoff) * (0.75 + 0.5*rand.Float64()))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
			backoff = min(2*backoff, 60*time.Second)
		}
		c, lost, err := m.connect(ctx, tlsCfg)
		if err != nil {
			m.setErr(err)
			log.Warn("upstream broker unreachable; records wait in the outbox", "broker", redact(m.Broker), "err", err, "retry_in", backoff)
			continue
		}
		log.Info("connected upstream", "broker", redact(m.Broker))
		backoff = m.RetryMin
		err = m.session(ctx, c, lost, acks, log)
		m.goodbye(c, ctx.Err() != nil)
		if err != nil && ctx.Err() == nil {
			m.setErr(err)
			log.Warn("upstream connection lost; records wait in the outbox", "err", err)
		}
	}
	return nil
}

func (m *MQTT) fill(tmpl string, r *store.Record) string {
	repl := strings.NewReplacer("{device}", m.Device, "{window}", r.Name, "{detector}", r.Name, "{key}", topicSafe(r.Key),
		"{type}", kindName(r.Kind), "{state}", stateOf(r))
	return repl.Replace(tmpl)
}

func (m *MQTT) statusTopic() string { return strings.ReplaceAll(m.StatusTopic, "{device}", m.Device) }

// connect opens one connection, with the last will "offline" (retained) on
// the status topic, and publishes "online" (retained).
func (m *MQTT) connect(ctx context.Context, tlsCfg *tls.Config) (mqtt.Client, <-chan error, error) {
	lost := make(chan error, 1)
	id := m.ClientID
	if id == "" {
		id = "edged-" + m.Device + "-" + m.OutName
	}
	o := mqtt.NewClientOptions().AddBroker(m.Broker).SetClientID(id).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(m.Keepalive).SetConnectTimeout(10 * time.Second).SetWriteTimeout(10 * time.Second).
		SetMaxResumePubInFlight(m.Inflight).SetOrderMatters(false).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if m.Username != "" {
		o.SetUsername(m.Username).SetPassword(m.Password)
	}
	if tlsCfg != nil {
		o.SetTLSConfig(tlsCfg)
	}
	if m.StatusTopic != "" {
		o.SetBinaryWill(m.statusTopic(), []byte("offline"), 1, true)
	}
	c := mqtt.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(15 * time.Second) {
		c.Disconnect(0)
		return nil, nil, errors.New("connect timed out")
	}
	if err := t.Error(); err != nil {
		return nil, nil, err
	}
	if m.StatusTopic != "" {
		st := c.Publish(m.statusTopic(), 1, true, "online")
		st.WaitTimeout(5 * time.Second)
	}
	return c, lost, nil
}

// goodbye says "offline" on a graceful stop and disconnects.
func (m *MQTT) goodbye(c mqtt.Client, graceful bool) {
	if graceful && m.StatusTopic != "" && c.IsConnected() {
		c.Publish(m.statusTopic(), 1, true, "offline").WaitTimeout(2 * time.Second)
	}
	c.Disconnect(250)
}

// sent is a message in flight: the positions it carries and its token.
type sent struct {
	first, last uint64
	live        bool
	tok         mqtt.Token
}

// session delivers over one connection until it drops or ctx ends.
func (m *MQTT) session(ctx context.Context, c mqtt.Client, lost <-chan error, acks *ackSet, log *slog.Logger) error {
	cur, err := m.Store.Cursor(m.OutName)
	if err != nil {
		return err
	}
	acks.setFloor(cur)
	m.stats.cursor.Store(cur)
	boundary := m.Store.OutboxLastSeq() // records after it are live
	m.stats.boundary.Store(boundary)
	if boundary > cur {
		log.Info("replaying the backlog behind live records", "records", boundary-cur, "rate", m.BacklogRate)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inflight := make(chan sent, m.Inflight)
	var dropped atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	// The collector: waits for acknowledgements in send order and moves
	// the durable cursor over the contiguous acknowledged prefix.
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- m.collect(sctx, inflight, lost, acks, &dropped)
	}()
	var sendMu sync.Mutex // one publisher at a time keeps in-flight order
	send := func(recs []store.Record, live bool) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return m.publish(sctx, c, recs, live, inflight)
	}
	// Live: everything after the boundary, as it is committed.
	wg.Add(1)
	go func() {
		defer wg.Done()
		pos := boundary
		for {
			recs, err := next(sctx, m.Store, pos, max(1, m.Batch)*16)
			if err != nil {
				errc <- nil
				return
			}
			acks.gaps(pos, recs)
			pos = recs[len(recs)-1].Pos
			recs = acks.unacked(recs)
			if len(recs) == 0 {
				continue
			}
			if err := send(recs, true); err != nil {
				errc <- err
				return
			}
		}
	}()
	// Backlog: (cur, boundary], oldest first, rate limited.
	wg.Add(1)
	go func() {
		defer wg.Done()
		pos := cur
		var tick <-chan time.Time
		if m.BacklogRate > 0 {
			t := time.NewTicker(time.Duration(float64(time.Second) / m.BacklogRate))
			defer t.Stop()
			tick = t.C
		}
		per := max(1, m.Batch)
		for pos < boundary {
			recs, err := m.Store.ReadOutboxAfter(pos, 1024)
			if err != nil {
				errc <- err
				return
			}
			if len(recs) == 0 {
				// The rest was dropped by the quota meanwhile.
				acks.add(pos+1, boundary)
				break
			}
			if recs[len(recs)-1].Pos > boundary {
				recs = trimTo(recs, boundary)
			}
			acks.gaps(pos, recs)
			pos = recs[len(recs)-1].Pos
			recs = acks.unacked(recs)
			for len(recs) > 0 {
				n := min(per, len(recs))
				if tick != nil {
					select {
					case <-sctx.Done():
						return
					case <-tick:
					}
				}
				if err := send(recs[:n], false); err != nil {
					errc <- err
					return
				}
				if sctx.Err() != nil {
					return
				}
				recs = recs[n:]
			}
		}
		if boundary > cur {
			log.Info("backlog replayed", "up_to", boundary)
		}
	}()
	err = <-errc
	cancel()
	wg.Wait()
	if err == nil && ctx.Err() == nil {
		err = errors.New("connection lost")
	}
	return err
}

func trimTo(recs []store.Record, upTo uint64) []store.Record {
	for i := range recs {
		if recs[i].Pos > upTo {
			return recs[:i]
		}
	}
	return recs
}

// publish sends recs, one message each or in batches, and queues their
// tokens for the collector.
func (m *MQTT) publish(ctx context.Context, c mqtt.Client, recs []store.Record, live bool, inflight chan<- sent) error {
	for len(recs) > 0 {
		n := 1
		var topic string
		var payload []byte
		if m.Batch > 1 {
			n = min(m.Batch, len(recs))
			topic = strings.ReplaceAll(m.BatchTopic, "{device}", m.Device)
			payload = append(payload, '[')
			for i := 0; i < n; i++ {
				if i > 0 {
					payload = append(payload, ',')
				}
				payload = append(payload, recs[i].Body...)
			}
			payload = append(payload, ']')
		} else {
			r := &recs[0]
			tmpl := m.Topic
			if r.Kind == kindAlert {
				tmpl = m.AlertTopic
			}
			topic, payload = m.fill(tmpl, r), r.Body
		}
		tok := c.Publish(topic, m.QoS, false, payload)
		m.stats.sent.Add(int64(n))
		select {
		case inflight <- sent{first: recs[0].Pos, last: recs[n-1].Pos, live: live, tok: tok}:
		case <-ctx.Done():
			return nil
		}
		if live {
			m.dashboards(c, recs[:n])
		}
		recs = recs[n:]
	}
	return nil
}

// collect waits for the tokens in send order. A token that completes
// without error while the connection is up is an acknowledgement; one that
// completes after the connection was lost is not trusted (paho may complete
// tokens of messages that never reached the broker when a connection
// drops), and its records go again on the next connection.
func (m *MQTT) collect(ctx context.Context, inflight <-chan sent, lost <-chan error, acks *ackSet, dropped *atomic.Bool) error {
	save := time.NewTicker(200 * time.Millisecond)
	defer save.Stop()
	saved := acks.floor()
	flush := func() error {
		if f := acks.floor(); f > saved {
			if err := m.Store.SetCursor(m.OutName, f); err != nil {
				return err
			}
			saved = f
			m.stats.cursor.Store(f)
		}
		return nil
	}
	defer flush()
	for {
		var s sent
		select {
		case <-ctx.Done():
			return nil
		case err := <-lost:
			dropped.Store(true)
			return fmt.Errorf("connection lost: %w", err)
		case <-save.C:
			if err := flush(); err != nil {
				return err
			}
			continue
		case s = <-inflight:
		}
		timeout := time.NewTimer(30 * time.Second)
		select {
		case <-ctx.Done():
			timeout.Stop()
			return nil
		case err := <-lost:
			timeout.Stop()
			dropped.Store(true)
			return fmt.Errorf("connection lost: %w", err)
		case <-timeout.C:
			return errors.New("no acknowledgement from the broker within 30 s")
		case <-s.tok.Done():
			timeout.Stop()
		}
		if err := s.tok.Error(); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		select {
		case err := <-lost:
			// Lost while we looked: do not trust this completion.
			dropped.Store(true)
			return fmt.Errorf("connection lost: %w", err)
		default:
		}
		acks.add(s.first, s.last)
		m.stats.acked.Add(int64(s.last - s.first + 1))
	}
}

// ackSet holds the acknowledged positions beyond the durable floor, as
// sorted disjoint ranges; the floor moves over the contiguous prefix.
type ackSet struct {
	mu     sync.Mutex
	low    uint64      // every position <= low is acknowledged
	ranges [][2]uint64 // acknowledged ranges above low, sorted
}

func (a *ackSet) setFloor(f uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f > a.low {
		a.low = f
	}
	a.merge()
}

func (a *ackSet) floor() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.low
}

// add records that positions first..last were acknowledged. Positions of
// records the quota dropped in between count as delivered: the outbox no
// longer has them.
func (a *ackSet) add(first, last uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := 0
	for i < len(a.ranges) && a.ranges[i][0] < first {
		i++
	}
	a.ranges = append(a.ranges, [2]uint64{})
	copy(a.ranges[i+1:], a.ranges[i:])
	a.ranges[i] = [2]uint64{first, last}
	a.merge()
}

func (a *ackSet) merge() {
	out := a.ranges[:0]
	for _, r := range a.ranges {
		if r[1] <= a.low {
			continue
		}
		if r[0] <= a.low+1 {
			a.low = r[1]
			continue
		}
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	a.ranges = out
	// A range may now touch the floor.
	for len(a.ranges) > 0 && a.ranges[0][0] <= a.low+1 {
		a.low = max(a.low, a.ranges[0][1])
		a.ranges = a.ranges[1:]
	}
}

// gaps marks as delivered the positions between pos and the records read
// after it that are missing: records the outbox quota dropped.
func (a *ackSet) gaps(pos uint64, recs []store.Record) {
	for _, r := range recs {
		if r.Pos > pos+1 {
			a.add(pos+1, r.Pos-1)
		}
		pos = r.Pos
	}
}

// unacked drops from recs those already acknowledged.
func (a *ackSet) unacked(recs []store.Record) []store.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := recs[:0]
	for _, r := range recs {
		if r.Pos <= a.low {
			continue
		}
		done := false
		for _, rg := range a.ranges {
			if r.Pos >= rg[0] && r.Pos <= rg[1] {
				done = true
				break
			}
		}
		if !done {
			out = append(out, r)
		}
	}
	return out
}

func (m *MQTT) tlsConfig() (*tls.Config, error) {
	u, err := url.Parse(m.Broker)
	if err != nil {
		return nil, fmt.Errorf("broker URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "ssl", "tls", "mqtts", "wss", "tcps":
	default:
		if m.TLSCA == "" && m.TLSCert == "" {
			return nil, nil
		}
	}
	cfg := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12, InsecureSkipVerify: m.Insecure}
	if m.TLSCA != "" {
		pem, err := os.ReadFile(m.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("tls_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_ca %s: no PEM certificate in it", m.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if m.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(m.TLSCert, m.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls_cert/tls_key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable broker URL>"
	}
	return u.Redacted()
}

// topicSafe replaces the characters MQTT topics cannot carry in a level.
func topicSafe(s string) string {
	if !strings.ContainsAny(s, "+#\x00") {
		return s
	}
	return strings.NewReplacer("+", "_", "#", "_", "\x00", "_").Replace(s)
}

// Record kinds as the pipeline numbers them.
const (
	kindWindow = 1
	kindLate   = 2
	kindAlert  = 3
)

func kindName(k uint8) string {
	switch k {
	case kindWindow:
		return "window"
	case kindLate:
		return "late"
	case kindAlert:
		return "alert"
	}
	return "record"
}

// stateOf reads an alert's state from its body.
func stateOf(r *store.Record) string {
	if r.Kind != kindAlert {
		return ""
	}
	b := r.Body
	i := strings.Index(string(b), `"state":"`)
	if i < 0 {
		return ""
	}
	rest := string(b[i+9:])
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return ""
}
