package runner

import (
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/store/storetest"
)

func TestObserver(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	fill(t, st, 10, 30)
	r := newRunner(t, st, time.Hour)
	defer r.Close()

	// Not observed: publish does nothing.
	r.publish(time.Now(), false)

	o := r.Observe()
	defer o.Close()
	if o.Snapshot() != nil || o.Ready() {
		t.Fatal("a snapshot before the first publish")
	}

	// A reader on another goroutine, as the HTTP endpoint is (for -race).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if s := o.Snapshot(); s != nil {
				_ = s.Offset + uint64(len(s.Sources)) + uint64(s.Engine.Keys)
			}
			o.Ready()
			o.LastCommit()
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	t0 := time.Unix(1_800_000_000, 0)
	r.publish(t0, false)
	s := o.Snapshot()
	if s == nil || s.Ready || s.Offset != 0 || !s.Taken.Equal(t0) {
		t.Fatalf("first snapshot: %+v", s)
	}
	if _, err := r.step(100); err != nil {
		t.Fatal(err)
	}
	r.publish(t0.Add(500*time.Millisecond), false)
	if o.Snapshot() != s {
		t.Fatal("published again within a second")
	}
	r.publish(t0.Add(time.Second), false)
	s = o.Snapshot()
	if s.Offset != 100 || s.Processed != 100 || s.Engine.Readings != 100 || s.Engine.Keys == 0 {
		t.Fatalf("after 100 entries: %+v", s)
	}
	if len(s.Sources) != 1 || s.Sources[0].Name != "src" || !s.Sources[0].Seen || s.Sources[0].Watermark != s.Sources[0].MaxTS-2000-1 {
		t.Fatalf("sources: %+v", s.Sources)
	}

	// Ready is published at once, whatever the last snapshot's age.
	for {
		n, err := r.step(4096)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	r.publish(t0.Add(1100*time.Millisecond), true)
	s = o.Snapshot()
	if !o.Ready() || !s.Ready || s.Offset != 300 {
		t.Fatalf("ready snapshot: ready=%v %+v", o.Ready(), s)
	}

	o.Close()
	r.publish(t0.Add(time.Hour), true)
	if o.Snapshot() != s {
		t.Fatal("published after Close")
	}
}
