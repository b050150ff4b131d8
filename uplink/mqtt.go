package uplink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/internal/mqttconn"
	"github.com/edged/edged/record"
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
	// LatestAlertTopic gets the latest alert of each detector and key,
	// retained ({device}, {detector}, {key}); "" disables it.
	LatestAlertTopic string
	HAPrefix         string // "" disables Home Assistant discovery
	// HAClassOf, when set, says what a window's key measures, for its
	// discovery configs.
	HAClassOf func(window, key string) HAClass
	// Version is edged's, for the discovery configs' device and origin.
	Version     string
	Inflight    int
	Batch       int
	BacklogRate float64 // messages/s of the backlog, 0: no limit
	Keepalive   time.Duration
	// RetryMin is the first reconnect delay, doubled up to 60 s. Default 1 s.
	RetryMin time.Duration
	Store    *store.Store
	Logger   *slog.Logger

	stats  outStats
	ha     haState
	haOnce sync.Once
	// ids maps a message's first position to its packet id once sent.
	idMu sync.Mutex
	ids  map[uint64]uint16
}

// outStats are an output's counters, read with Stats.
type outStats struct {
	sent, acked, reconnects atomic.Int64
	duplicates              atomic.Int64 // acknowledged as already stored (JetStream)
	cursor, boundary        atomic.Uint64
	mu                      sync.Mutex
	lastErr                 string
	lastErrAt               time.Time
}

// Stats are an output's figures for inspect and /metrics.
type Stats struct {
	Sent, Acked, Reconnects int64
	// Duplicates are records the server acknowledged as already stored
	// (a JetStream PubAck with duplicate set): delivered, counted in Acked.
	Duplicates int64
	Cursor     uint64
	// Boundary is the outbox position at the last (re)connect: records
	// after it went out live, those up to it as the backlog.
	Boundary  uint64
	LastErr   string
	LastErrAt time.Time
}

// Stats returns the output's counters.
func (m *MQTT) Stats() Stats { return m.stats.snapshot() }

func (m *MQTT) setErr(err error) { m.stats.setErr(err) }

func (s *outStats) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Sent: s.sent.Load(), Acked: s.acked.Load(), Reconnects: s.reconnects.Load(), Duplicates: s.duplicates.Load(),
		Cursor: s.cursor.Load(), Boundary: s.boundary.Load(), LastErr: s.lastErr, LastErrAt: s.lastErrAt}
}

func (s *outStats) setErr(err error) {
	s.mu.Lock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
	s.mu.Unlock()
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
		c, err := m.connect(ctx, tlsCfg)
		if err != nil {
			m.setErr(err)
			m.saveStatus(false, 0)
			log.Warn("upstream broker unreachable; records wait in the outbox", "broker", redact(m.Broker), "err", err, "retry_in", backoff)
			continue
		}
		log.Info("connected upstream", "broker", redact(m.Broker))
		backoff = m.RetryMin
		err = m.session(ctx, c, acks, log)
		m.goodbye(c, ctx.Err() != nil)
		if err != nil && ctx.Err() == nil {
			m.setErr(err)
			log.Warn("upstream connection lost; records wait in the outbox", "err", err)
		}
	}
	return nil
}

// fill expands a topic template for r: {device}, {window} and {detector}
// (the record's window or detector), {key}, {type}, {state}.
func (m *MQTT) fill(tmpl string, r *store.Record) string {
	return fill(tmpl, m.Device, r, func(field, v string) string {
		if field == "key" {
			return topicSafe(v)
		}
		return v
	})
}

// fill expands a template for r: {device} (device), {window} and
// {detector} (the record's window or detector), {key}, {type}, {state};
// safe(field, value) makes a value fit where it goes.
func fill(tmpl, device string, r *store.Record, safe func(field, v string) string) string {
	if strings.IndexByte(tmpl, '{') < 0 {
		return tmpl
	}
	var b strings.Builder
	b.Grow(len(tmpl) + len(device) + len(r.Name) + len(r.Key))
	for {
		i := strings.IndexByte(tmpl, '{')
		j := strings.IndexByte(tmpl[max(i, 0):], '}')
		if i < 0 || j < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		b.WriteString(tmpl[:i])
		switch name := tmpl[i+1 : i+j]; name {
		case "device":
			b.WriteString(safe(name, device))
		case "window", "detector":
			b.WriteString(safe(name, r.Name))
		case "key":
			b.WriteString(safe(name, r.Key))
		case "type":
			b.WriteString(safe(name, record.Kind(r.Kind).String()))
		case "state":
			b.WriteString(safe(name, stateOf(r)))
		default:
			b.WriteString(tmpl[i : i+j+1])
		}
		tmpl = tmpl[i+j+1:]
	}
}

func (m *MQTT) statusTopic() string { return strings.ReplaceAll(m.StatusTopic, "{device}", m.Device) }

// connect opens one connection, with the last will "offline" (retained) on
// the status topic, and publishes "online" (retained).
func (m *MQTT) connect(ctx context.Context, tlsCfg *tls.Config) (*mqttconn.Publisher, error) {
	id := m.ClientID
	if id == "" {
		id = "edged-" + m.Device + "-" + m.OutName
	}
	o := mqttconn.PublisherOptions{ClientID: id, Username: m.Username, Password: m.Password,
		Keepalive: m.Keepalive, TLS: tlsCfg, AckBuffer: 4 * m.Inflight}
	if m.StatusTopic != "" {
		o.WillTopic, o.WillBody, o.WillRetain = m.statusTopic(), []byte("offline"), true
	}
	if m.HAPrefix != "" {
		m.haInit()
		o.OnMessage = m.haBirth
	}
	p, err := mqttconn.DialPublisher(ctx, m.Broker, o)
	if err != nil {
		return nil, err
	}
	if m.StatusTopic != "" {
		p.Publish(m.statusTopic(), 0, true, []byte("online"))
	}
	if m.HAPrefix != "" {
		// Home Assistant's birth message asks for the discovery configs.
		if err := p.Subscribe([]string{m.HAPrefix + "/status"}, 0); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// goodbye says "offline" on a graceful stop and disconnects.
func (m *MQTT) goodbye(p *mqttconn.Publisher, graceful bool) {
	if graceful && m.StatusTopic != "" {
		p.Publish(m.statusTopic(), 0, true, []byte("offline"))
	}
	p.Close()
}

// sent is a message in flight: the positions it carries, and whether it
// is live (not backlog).
type sent struct {
	first, last uint64
	live        bool
}

// session delivers over one connection until it drops or ctx ends.
func (m *MQTT) session(ctx context.Context, c *mqttconn.Publisher, acks *ackSet, log *slog.Logger) error {
	cur, err := m.Store.Cursor(m.OutName)
	if err != nil {
		return err
	}
	acks.setFloor(cur)
	m.stats.cursor.Store(cur)
	m.idMu.Lock()
	m.ids = map[uint64]uint16{}
	m.idMu.Unlock()
	boundary := m.Store.OutboxLastSeq() // records after it are live
	m.stats.boundary.Store(boundary)
	if boundary > cur {
		log.Info("replaying the backlog behind live records", "records", boundary-cur, "rate", m.BacklogRate)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inflight := make(chan sent, m.Inflight)
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	// The collector: waits for acknowledgements in send order and moves
	// the durable cursor over the contiguous acknowledged prefix.
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- m.collect(sctx, c, inflight, acks)
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
	// Home Assistant discovery: every known entity again on this
	// connection, and whenever Home Assistant comes online.
	if m.HAPrefix != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.haAnnounce(c)
			for {
				select {
				case <-sctx.Done():
					return
				case <-m.ha.birth:
					log.Info("Home Assistant came online: discovery configs published again")
					m.haAnnounce(c)
				}
			}
		}()
	}
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
func (m *MQTT) publish(ctx context.Context, c *mqttconn.Publisher, recs []store.Record, live bool, inflight chan<- sent) error {
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
			if record.Kind(r.Kind) == record.KindAlert {
				tmpl = m.AlertTopic
			}
			topic, payload = m.fill(tmpl, r), r.Body
		}
		// The slot in flight is taken before the message goes out, so that
		// at most Inflight messages wait for their acknowledgement.
		s := sent{first: recs[0].Pos, last: recs[n-1].Pos, live: live}
		select {
		case inflight <- s:
		case <-ctx.Done():
			return nil
		}
		id, err := c.Publish(topic, m.QoS, false, payload)
		if err != nil {
			return err
		}
		m.stats.sent.Add(int64(n))
		m.idMu.Lock()
		m.ids[s.first] = id
		m.idMu.Unlock()
		if live {
			m.dashboards(c, recs[:n])
		}
		recs = recs[n:]
	}
	return nil
}

// collect matches the broker's acknowledgements to the messages in flight,
// in send order, and moves the durable cursor over the contiguous
// acknowledged prefix. When the connection ends, what was not acknowledged
// goes again on the next one.
func (m *MQTT) collect(ctx context.Context, c *mqttconn.Publisher, inflight <-chan sent, acks *ackSet) error {
	save := time.NewTicker(200 * time.Millisecond)
	defer save.Stop()
	saved := acks.floor()
	lastStatus, lastAcked := time.Now(), m.stats.acked.Load()
	flush := func() error {
		if f := acks.floor(); f > saved {
			if err := m.Store.SetCursor(m.OutName, f); err != nil {
				return err
			}
			saved = f
			m.stats.cursor.Store(f)
		}
		if el := time.Since(lastStatus); el >= 5*time.Second {
			a := m.stats.acked.Load()
			m.saveStatus(true, float64(a-lastAcked)/el.Seconds())
			lastStatus, lastAcked = time.Now(), a
		}
		return nil
	}
	defer flush()
	defer m.saveStatus(false, 0)
	var fifo []sent
	acked := map[uint16]bool{}
	settle := func() {
		for len(fifo) > 0 {
			s := fifo[0]
			m.idMu.Lock()
			id, ok := m.ids[s.first]
			m.idMu.Unlock()
			if !ok || (id != 0 && !acked[id]) {
				return // not sent yet, or not acknowledged yet
			}
			delete(acked, id)
			m.idMu.Lock()
			delete(m.ids, s.first)
			m.idMu.Unlock()
			acks.add(s.first, s.last)
			m.stats.acked.Add(int64(s.last - s.first + 1))
			fifo = fifo[1:]
		}
	}
	var stall *time.Timer
	for {
		var stallC <-chan time.Time
		if len(fifo) > 0 {
			if stall == nil {
				stall = time.NewTimer(30 * time.Second)
			}
			stallC = stall.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
			return c.Err()
		case <-save.C:
			settle()
			if err := flush(); err != nil {
				return err
			}
		case s := <-inflight:
			fifo = append(fifo, s)
			settle()
		case id, ok := <-c.Acks():
			if !ok {
				return c.Err()
			}
			acked[id] = true
			settle()
			if stall != nil {
				stall.Stop()
				stall = nil
			}
		case <-stallC:
			return errors.New("no acknowledgement from the broker within 30 s")
		}
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
	cfg, err := mqttconn.TLSConfig(m.Broker, m.TLSCA, m.TLSCert, m.TLSKey, m.Insecure)
	if err != nil || cfg != nil || (m.TLSCA == "" && m.TLSCert == "") {
		return cfg, err
	}
	return nil, fmt.Errorf("tls_ca or tls_cert is set but the broker URL %s is not a TLS one: use ssl://", redact(m.Broker))
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

// stateOf reads an alert's state from its body.
func stateOf(r *store.Record) string {
	if record.Kind(r.Kind) != record.KindAlert {
		return ""
	}
	e, _ := record.Parse(r.Body)
	return e.State
}

// saveStatus records the output's figures in the store for edged inspect.
func (m *MQTT) saveStatus(connected bool, rate float64) {
	saveStatus(m.Store, m.OutName, m.Stats(), connected, rate)
}

// saveStatus records an output's figures in the store for edged inspect.
func saveStatus(s *store.Store, name string, st Stats, connected bool, rate float64) {
	fields := map[string]any{
		"updated": time.Now().UnixMilli(), "connected": connected, "records_per_s": math.Round(rate*10) / 10,
		"sent": st.Sent, "acked": st.Acked, "reconnects": st.Reconnects,
		"last_error": st.LastErr, "last_error_at": st.LastErrAt.UnixMilli(),
	}
	if st.Duplicates > 0 {
		fields["duplicates"] = st.Duplicates
	}
	b, _ := json.Marshal(fields)
	s.SetOutputStatus(name, b)
}
