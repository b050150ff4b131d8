package store_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/edged/edged/store"
)

// Helpers of enospc_test.go and arm_test.go, on every platform.

// enospcEntry is the entry with global index i: its value says where it
// belongs, so a lost or misplaced entry shows.
func enospcEntry(i int) store.Entry {
	return store.Entry{Source: "f", Sensor: fmt.Sprintf("sensor-%d", i%13), Metric: "temperature",
		Value: float64(i), TS: 1_700_000_000_000 + int64(i), Ingest: 1_700_000_000_000 + int64(i)}
}

// enospcAck is what one request's Done reported.
type enospcAck struct {
	done  bool
	first uint64
	err   error
}

// checkLogHolds fails unless the log holds exactly entries [0, n), each in
// its place.
func checkLogHolds(t *testing.T, s *store.Store, n int) {
	t.Helper()
	if got := s.LogEnd(); got != uint64(n) {
		t.Errorf("log end %d, want %d", got, n)
	}
	i := 0
	_, err := s.ReadLog(0, 0, func(off uint64, e *store.Entry) error {
		if off != uint64(i) {
			return fmt.Errorf("offset %d where %d was expected: the log is not contiguous", off, i)
		}
		if want := enospcEntry(i); *e != want {
			return fmt.Errorf("entry at %d is %+v, want %+v", off, *e, want)
		}
		i++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("log holds %d entries, want %d: acknowledged entries lost", i, n)
	}
}

// bigCheckpoint returns a checkpoint at offset off with about stateBytes
// of state and records seq from..to.
func bigCheckpoint(off uint64, stateBytes int, from, to uint64) *store.Checkpoint {
	cp := &store.Checkpoint{Meta: store.CheckpointMeta{Offset: off, NextSeq: to + 1, Time: 1, Engine: []byte("engine")}}
	val := bytes.Repeat([]byte{'v'}, 1024)
	for i := 0; i*len(val) < stateBytes; i++ {
		cp.State = append(cp.State, store.StateOp{Op: "w", Key: fmt.Appendf(nil, "key-%06d-%d", i, off), Value: val})
	}
	for seq := from; seq <= to; seq++ {
		cp.Records = append(cp.Records, store.Record{ID: fmt.Sprint("id-", seq), Name: "w", Body: []byte(`{"x":1}`)})
	}
	return cp
}
