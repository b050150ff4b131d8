package uplink

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/internal/mqtttest"
	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
)

// BenchmarkBacklogReplay replays b.N outbox records to a local mosquitto
// at QoS 1, as after an outage (the whole outbox is backlog, no rate
// limit), with batching off and on. It reports records/s, the CPU seconds
// and peak RSS of this process (store, output and paho; the broker is a
// separate process), and the MQTT bytes per record on the wire (PUBLISH
// packets and their PUBACKs).
//
//	go test ./uplink -run '^$' -bench BacklogReplay -benchtime 1000000x
func BenchmarkBacklogReplay(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			br := mqtttest.StartMosquitto(b, mqtttest.Options{})
			st, err := store.Open(b.TempDir(), &store.Options{OutboxMaxBytes: 1 << 40, NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			st.RegisterOutputs([]string{"cloud"})
			var recs []store.Record
			var bodyBytes int64
			for i := 0; i < b.N; i++ {
				body := fmt.Sprintf(`{"type":"window","window":"temp_10s","key":"sensor-%04d","start":%d,"end":%d,"rev":0,"final":true,"count":100,"mean":21.43,"min":20.9,"max":22.01,"device":"gw-01","seq":%d,"id":"%032x"}`,
					i%1000, 1700000000000+int64(i/1000)*10000, 1700000010000+int64(i/1000)*10000, i+1, i+1)
				bodyBytes += int64(len(body))
				recs = append(recs, store.Record{ID: fmt.Sprintf("%032x", i+1), Kind: uint8(record.KindWindow), Name: "temp_10s", Key: fmt.Sprintf("sensor-%04d", i%1000), Body: []byte(body)})
				if len(recs) == 10000 || i == b.N-1 {
					if err := st.Commit(&store.Checkpoint{Records: recs}); err != nil {
						b.Fatal(err)
					}
					recs = recs[:0]
				}
			}
			out := &MQTT{OutName: "cloud", Device: "gw-01", Broker: br.URL(), QoS: 1, Topic: "edged/{device}/{window}/{key}",
				BatchTopic: "edged/{device}/batch", Batch: batch, Inflight: 256, BacklogRate: 0, Store: st}
			topicBytes := int64(len("edged/gw-01/temp_10s/sensor-0000"))
			var ru0 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			b.ResetTimer()
			start := time.Now()
			go func() { done <- out.Run(ctx) }()
			for {
				if c, _ := st.Cursor("cloud"); c >= uint64(b.N) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			cancel()
			<-done
			var ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
			msgs := int64((b.N + batch - 1) / batch)
			// PUBLISH: fixed header 1 + remaining length (2-3) + topic
			// length 2 + topic + packet id 2 + payload; PUBACK: 4.
			var wire int64
			if batch == 1 {
				wire = msgs*(1+3+2+topicBytes+2+4) + bodyBytes
			} else {
				wire = msgs*(1+3+2+int64(len("edged/gw-01/batch"))+2+4) + bodyBytes + int64(b.N) + msgs // commas and brackets
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
			b.ReportMetric(cpu.Seconds()/float64(b.N)*1e6, "cpu-s/1M-records")
			b.ReportMetric(float64(wire)/float64(b.N), "wire-bytes/record")
			b.ReportMetric(float64(bodyBytes)/float64(b.N), "json-bytes/record")
			b.ReportMetric(float64(maxRSS())/1024, "peak-rss-MiB")
		})
	}
}

// maxRSS is this process's peak resident set size in KiB.
func maxRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
