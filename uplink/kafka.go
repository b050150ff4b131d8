//go:build kafka

package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/edged/edged/store"
)

// Kafka sends the outbox to Kafka, for a fleet whose records a central
// engine reads (docs/fleet.md); it is in the kafka build only (make build
// TAGS=kafka), as franz-go adds about 4 MiB to the binary. Every record is
// one Kafka record: the key is the record's device (one device's records
// go to one partition, in order), the value its body as it is in the
// outbox, the headers id and seq. The producer is idempotent with acks =
// all; the cursor moves only over the contiguous prefix of records the
// brokers acknowledged. At most Inflight records are unacknowledged. After
// an outage, live records go first and the backlog follows at BacklogRate
// (LiveFirst), as for MQTT.
//
// A session is one client (one producer id): a record that fails (after
// franz-go's own retries, within AckTimeout) ends it, and the next session
// sends again what was not acknowledged. Kafka's idempotence does not reach
// across sessions: those records can be in the topic twice, and the
// consumer's (device, seq) check removes them.
type Kafka struct {
	OutName string
	Device  string
	Brokers []string // seed brokers, host:port
	// Topic is the topic template: {device}, {type}, {window},
	// {detector}, {key}, {state}; a value keeps letters, digits, '.', '_'
	// and '-', the rest becomes '_'.
	Topic         string
	ClientID      string // default "edged-<device>-<output>"
	TLS           bool   // also on with TLSCA or TLSCert
	TLSCA         string
	TLSCert       string
	TLSKey        string
	Insecure      bool
	SASLMechanism string // "plain", "scram-sha-256", "scram-sha-512"
	Username      string
	Password      string
	Inflight      int // default 256
	BacklogRate   float64
	LiveFirst     bool
	RetryMin      time.Duration // default 1 s
	// AckTimeout is how long a record may wait for its acknowledgement
	// (Kafka's delivery.timeout.ms) before the session ends. Default 30 s.
	AckTimeout time.Duration
	Store      *store.Store
	Logger     *slog.Logger

	stats outStats
}

// Name returns the output's name.
func (k *Kafka) Name() string { return k.OutName }

// Stats returns the output's counters.
func (k *Kafka) Stats() Stats { return k.stats.snapshot() }

// Run connects and delivers until ctx ends, starting a new session with
// exponential backoff (1 s to 60 s, ±25% jitter) after any failure. It
// returns an error only for a setting it cannot use at all (TLS files).
func (k *Kafka) Run(ctx context.Context) error {
	if k.Inflight <= 0 {
		k.Inflight = 256
	}
	if k.AckTimeout <= 0 {
		k.AckTimeout = 30 * time.Second
	}
	tlsCfg, err := tlsFiles(k.TLSCA, k.TLSCert, k.TLSKey, k.Insecure)
	if err != nil {
		return fmt.Errorf("output %q: %w", k.OutName, err)
	}
	if tlsCfg == nil && k.TLS {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	log := k.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &forwarder{name: k.OutName, store: k.Store, log: log, inflight: k.Inflight, backlogRate: k.BacklogRate,
		liveFirst: k.LiveFirst, retryMin: k.RetryMin, stall: k.AckTimeout + 5*time.Second, where: strings.Join(k.Brokers, ","),
		stats: &k.stats, dial: func(ctx context.Context) (link, error) { return k.dial(ctx, tlsCfg) }}
	return f.run(ctx)
}

// kafkaTopic makes a value fit in a topic name.
func kafkaTopic(_, v string) string {
	if v == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, v)
}

func (k *Kafka) mechanism() (sasl.Mechanism, error) {
	switch k.SASLMechanism {
	case "":
		if k.Username == "" {
			return nil, nil
		}
		fallthrough
	case "plain":
		return plain.Auth{User: k.Username, Pass: k.Password}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: k.Username, Pass: k.Password}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: k.Username, Pass: k.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("unknown sasl_mechanism %q", k.SASLMechanism)
}

// dial makes the session's client and checks that a broker answers.
func (k *Kafka) dial(ctx context.Context, tlsCfg *tls.Config) (link, error) {
	id := k.ClientID
	if id == "" {
		id = "edged-" + k.Device + "-" + k.OutName
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.Brokers...), kgo.ClientID(id), kgo.DialTimeout(10 * time.Second),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(k.AckTimeout),
		kgo.MaxBufferedRecords(2 * k.Inflight), kgo.ProducerLinger(5 * time.Millisecond),
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	m, err := k.mechanism()
	if err != nil {
		return nil, err
	}
	if m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		switch {
		case strings.Contains(strings.ToUpper(err.Error()), "SASL"):
			return nil, fmt.Errorf("the brokers refused the credentials (check username, password and sasl_mechanism): %w", err)
		case m != nil && errors.Is(err, io.EOF):
			// A broker that refuses a SCRAM proof may just close the
			// connection.
			return nil, fmt.Errorf("the broker closed the connection while authenticating: check username, password and sasl_mechanism: %w", err)
		}
		return nil, fmt.Errorf("no broker answers: %w", err)
	}
	return &kafkaLink{cl: cl, topic: k.Topic, device: k.Device, ackc: make(chan linkAck, k.Inflight), lostc: make(chan struct{})}, nil
}

// kafkaLink is one client.
type kafkaLink struct {
	cl     *kgo.Client
	topic  string
	device string
	ackc   chan linkAck
	lostc  chan struct{}
	once   sync.Once
}

func (l *kafkaLink) acks() <-chan linkAck  { return l.ackc }
func (l *kafkaLink) lost() <-chan struct{} { return l.lostc }
func (l *kafkaLink) err() error            { return nil }

// close fails what the client still holds (their outcomes are dropped:
// sent again by the next session) and ends it.
func (l *kafkaLink) close() {
	l.once.Do(func() { close(l.lostc) })
	l.cl.Close()
}

func (l *kafkaLink) send(r *store.Record) error {
	device, seq := identity(r, l.device)
	pos := r.Pos
	rec := &kgo.Record{Topic: fill(l.topic, device, r, kafkaTopic), Key: []byte(device), Value: r.Body,
		Headers: []kgo.RecordHeader{{Key: "id", Value: []byte(r.ID)}, {Key: "seq", Value: strconv.AppendUint(nil, seq, 10)}}}
	l.cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
		if err != nil {
			err = fmt.Errorf("record at outbox position %d to topic %s: %w", pos, rec.Topic, err)
		}
		select {
		case l.ackc <- linkAck{pos: pos, err: err}:
		case <-l.lostc: // the session is over
		}
	})
	return nil
}
