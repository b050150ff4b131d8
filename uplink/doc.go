// Package uplink delivers the outbox: it reads the records the pipeline
// committed, in outbox order, and sends them to upstream MQTT brokers, to a
// NATS JetStream stream or Kafka (the fleet outputs, docs/fleet.md; Kafka
// in the kafka build only), to a file or to stdout. Each output keeps a
// durable cursor in the store (the outbox position up to which it has
// delivered everything) and advances it only once the records are safe on
// the other side: a PUBACK for MQTT QoS 1 and 2, a PubAck for JetStream, a
// produce acknowledged by all in-sync replicas for Kafka, an fsync for a
// file. A record leaves the outbox once every output has delivered it, or
// when the outbox quota drops it (counted).
//
// # When the link goes down
//
// Nothing is lost while the outbox has room: records wait in the store, in
// order, across restarts and crashes. When an MQTT output reconnects, the
// records committed from then on (live) go out first, and the backlog
// (what waited) follows behind them at backlog_rate messages per second,
// oldest first. Within the live stream and within the backlog, records keep
// their outbox order, so per-key order holds within each; across the
// boundary a consumer can see a newer live record before an older backlog
// one, and restores the order with seq. Delivery is at least once: after a
// reconnect or a crash, records whose acknowledgement was not recorded are
// sent again, with the same device, seq and id.
//
// Every output runs in Run(ctx) until ctx ends and returns only when its
// goroutines have stopped. The fleet outputs share one store-and-forward
// loop (forward.go) over a link per connection; any failure ends the
// connection's session, and the next starts after a backoff of 1 s
// doubling to 60 s.
package uplink

import (
	"context"

	"github.com/edged/edged/store"
)

// Output is one destination of the outbox.
type Output interface {
	Name() string
	Run(ctx context.Context) error
}

// next returns up to max records after position pos, blocking until there
// is one or ctx ends (then it returns nil, ctx.Err()).
func next(ctx context.Context, st *store.Store, pos uint64, max int) ([]store.Record, error) {
	for {
		changed := st.OutboxChanged()
		out, err := st.ReadOutboxAfter(pos, max)
		if err != nil || len(out) > 0 {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}
