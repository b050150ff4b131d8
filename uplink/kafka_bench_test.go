//go:build kafka

package uplink

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

// BenchmarkKafkaBacklog: a backlog of b.N records to franz-go's in-process
// Kafka (kfake, one broker, 4 partitions, in memory), no backlog_rate
// limit, 256 in flight. kfake runs in this process: its CPU is counted.
//
//	go test -tags kafka ./uplink -run '^$' -bench KafkaBacklog -benchtime 1000000x
func BenchmarkKafkaBacklog(b *testing.B) {
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "edged"))
	defer c.Close()
	st, _ := storetest.MustOpen(b, &store.Options{NoSync: true, OutboxMaxBytes: 1 << 30})
	st.RegisterOutputs([]string{"fleet"})
	out := &Kafka{OutName: "fleet", Device: "gw", Brokers: c.ListenAddrs(), Topic: "edged", Inflight: 256, LiveFirst: true,
		AckTimeout: 30 * time.Second, Store: st}
	benchBacklog(b, st, out, "fleet")
}
