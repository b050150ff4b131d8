package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/store"
)

// BenchmarkAppenderGroupCommit appends readings from 4 sources, 64 readings
// per request (a file or serial source's batch), through the group
// committer with fsync on, to a file on this machine's disk. One op is one
// reading. It reports readings/s, commits (= fsyncs) per second and the
// bytes the data file grew per reading.
func BenchmarkAppenderGroupCommit(b *testing.B) {
	dir := b.TempDir()
	s, err := store.Open(dir, &store.Options{LogMaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	a := s.NewAppender(store.AppenderOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	const per = 64
	sources := 4
	batches := make([][]store.Entry, sources)
	for g := range batches {
		batches[g] = make([]store.Entry, per)
		for i := range batches[g] {
			batches[g][i] = store.Entry{Source: fmt.Sprint("src", g), Sensor: fmt.Sprintf("sensor-%03d", i), Metric: "temp", Value: 21.5 + float64(i), TS: 1_700_000_000_000 + int64(i), Ingest: 1_700_000_000_000}
		}
	}
	size0 := fileSize(b, dir)
	w0 := writeBytes(b)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	n := (b.N + per - 1) / per
	for g := 0; g < sources; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < n; i += sources {
				if err := a.Append(ctx, store.AppendRequest{Entries: batches[g]}); err != nil {
					b.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	st := a.Stats()
	b.ReportMetric(float64(st.Entries)/el.Seconds(), "readings/s")
	b.ReportMetric(float64(st.Commits)/el.Seconds(), "fsyncs/s")
	b.ReportMetric(float64(fileSize(b, dir)-size0)/float64(st.Entries), "file-bytes/reading")
	b.ReportMetric(float64(writeBytes(b)-w0)/float64(st.Entries), "disk-bytes/reading")
	var e store.Entry = batches[0][0]
	b.ReportMetric(float64(e.Msgsize()), "encoded-bytes/reading")
}

func fileSize(b *testing.B, dir string) int64 {
	fi, err := os.Stat(filepath.Join(dir, store.FileName))
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// writeBytes is what this process has sent to the storage layer so far
// (/proc/self/io write_bytes): the SD-card wear.
func writeBytes(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skip("no /proc/self/io")
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Skip("no write_bytes in /proc/self/io")
	return 0
}

// BenchmarkAppenderTrickle appends at a steady gateway rate (one source,
// 10 readings every 10 ms = 1,000 readings/s, or 100 every 10 ms) for 3 s
// with the default 20 ms group commit, and reports the bytes written to
// disk per reading: at low rates bbolt's copy-on-write pages, not the
// readings, set the SD-card wear.
func BenchmarkAppenderTrickle(b *testing.B) {
	for _, c := range []struct {
		per      int
		interval time.Duration
	}{{10, 20 * time.Millisecond}, {10, 100 * time.Millisecond}, {10, 250 * time.Millisecond}, {10, time.Second}, {100, 20 * time.Millisecond}, {100, 100 * time.Millisecond}} {
		per := c.per
		b.Run(fmt.Sprintf("rate=%d/s,commit=%v", per*100, c.interval), func(b *testing.B) {
			for it := 0; it < b.N; it++ {
				dir := b.TempDir()
				s, err := store.Open(dir, nil)
				if err != nil {
					b.Fatal(err)
				}
				a := s.NewAppender(store.AppenderOptions{Interval: c.interval})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error)
				go func() { done <- a.Run(ctx) }()
				es := make([]store.Entry, per)
				for i := range es {
					es[i] = store.Entry{Source: "serial0", Sensor: fmt.Sprintf("sensor-%03d", i), Metric: "temp", Value: 21.5, TS: 1_700_000_000_000, Ingest: 1_700_000_000_000}
				}
				// Warm up: the first commits create the tree's pages.
				for i := 0; i < 50; i++ {
					a.Append(ctx, store.AppendRequest{Entries: es})
					time.Sleep(10 * time.Millisecond)
				}
				w0 := writeBytes(b)
				c0 := a.Stats().Entries
				tick := time.NewTicker(10 * time.Millisecond)
				for i := 0; i < 300; i++ {
					<-tick.C
					a.Append(ctx, store.AppendRequest{Entries: es})
				}
				tick.Stop()
				cancel()
				<-done
				n := a.Stats().Entries - c0
				b.ReportMetric(float64(writeBytes(b)-w0)/float64(n), "disk-bytes/reading")
				b.ReportMetric(float64(es[0].Msgsize()), "encoded-bytes/reading")
				s.Close()
			}
		})
	}
}
