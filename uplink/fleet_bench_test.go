package uplink

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/internal/natstest"
	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

// fillBacklog commits n window records of device gw to the outbox, 10,000
// per transaction: a backlog as an outage leaves it.
func fillBacklog(b *testing.B, st *store.Store, n int) {
	recs := make([]store.Record, 0, 10000)
	for i := 1; i <= n; i++ {
		key := fmt.Sprintf("s%d", i%100)
		id := fmt.Sprintf("%032x", i)
		body := fmt.Sprintf(`{"type":"window","window":"temp_10s","key":%q,"start":%d,"end":%d,"rev":0,"final":true,"count":10,"mean":21.4,"min":20.9,"max":22.0,"device":"gw","seq":%d,"id":%q}`,
			key, int64(i)*10000, int64(i)*10000+10000, i, id)
		recs = append(recs, store.Record{ID: id, Kind: uint8(record.KindWindow), Name: "temp_10s", Key: key, Body: []byte(body)})
		if len(recs) == cap(recs) || i == n {
			if _, err := st.AppendOutbox(recs); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchBacklog replays a backlog of b.N records through out and reports,
// as BenchmarkBacklogReplay does for MQTT, records/s, this process's CPU
// seconds per million records (the output, the store's reads and cursor
// writes, and whatever else runs in the process) and its peak RSS.
func benchBacklog(b *testing.B, st *store.Store, out Output, name string) {
	fillBacklog(b, st, b.N)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	go func() { done <- out.Run(ctx) }()
	for {
		if c, _ := st.Cursor(name); c >= uint64(b.N) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	el, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
	b.ReportMetric(cpu.Seconds()/float64(b.N)*1e6, "cpu-s/1M-records")
	b.ReportMetric(float64(maxRSS())/1024, "peak-rss-MiB")
}

// BenchmarkJetStreamBacklog: a backlog of b.N records to a real
// nats-server -js on loopback (file storage), no backlog_rate limit, 256
// in flight. The server's own CPU is not counted.
//
//	go test ./uplink -run '^$' -bench JetStreamBacklog -benchtime 1000000x
func BenchmarkJetStreamBacklog(b *testing.B) {
	srv := natstest.Start(b, natstest.Options{})
	st, _ := storetest.MustOpen(b, &store.Options{NoSync: true, OutboxMaxBytes: 1 << 30})
	st.RegisterOutputs([]string{"fleet"})
	out := &JetStream{OutName: "fleet", Device: "gw", URL: srv.URL(), Subject: "edged.{device}.{type}", Stream: "EDGED",
		CreateStream: true, DuplicateWindow: 2 * time.Minute, Inflight: 256, LiveFirst: true, Store: st}
	benchBacklog(b, st, out, "fleet")
}
