package store_test

import (
	"fmt"
	"testing"

	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

// TestFlushAheadOfState: records committed without state leave the state
// checkpoint as it was and a flush head beside it; a state checkpoint
// before the head keeps it, one at or past it deletes it. After a restart
// with every record delivered and deleted, positions continue after the
// flushed records, never below an output's cursor.
func TestFlushAheadOfState(t *testing.T) {
	s, dir := storetest.MustOpen(t, nil)
	s.RegisterOutputs([]string{"up"})
	recs := func(from, n int) []store.Record {
		var out []store.Record
		for i := from; i < from+n; i++ {
			out = append(out, store.Record{ID: fmt.Sprint("id", i), Name: "w", Key: "k", Body: []byte(fmt.Sprintf(`{"seq":%d}`, i))})
		}
		return out
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{Offset: 10, NextSeq: 3}, State: []store.StateOp{{Op: "w", Key: []byte("k"), Value: []byte("v1")}}, Records: recs(1, 2)}))
	must(s.Commit(&store.Checkpoint{Records: recs(3, 4), Flush: &store.FlushMeta{Offset: 20, Within: 2, NextSeq: 7}}))
	m, err := s.CheckpointMeta()
	must(err)
	f, err := s.Flushed()
	must(err)
	if m.Offset != 10 || m.NextSeq != 3 || f == nil || f.Offset != 20 || f.Within != 2 || f.NextSeq != 7 || f.Bytes == 0 {
		t.Fatalf("after a flush: state %+v, flush %+v", m, f)
	}
	if s.OutboxLastSeq() != 6 {
		t.Fatalf("outbox last position %d, want 6", s.OutboxLastSeq())
	}
	// A state checkpoint at the flush's entry, whose records are not all
	// processed yet (Within 2): the head stays.
	must(s.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{Offset: 20, NextSeq: 5}}))
	if f, _ := s.Flushed(); f == nil {
		t.Fatal("a state checkpoint below the flush deleted its head")
	}
	st, err := s.Stats()
	must(err)
	if st.Flushed == nil || st.Flushed.Offset != 20 {
		t.Fatalf("stats: flushed %+v", st.Flushed)
	}
	must(s.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{Offset: 21, NextSeq: 7}}))
	if f, _ := s.Flushed(); f != nil {
		t.Fatalf("state past the flush: head %+v still there", f)
	}
	// Flushed again, everything delivered and deleted, restart.
	must(s.Commit(&store.Checkpoint{Records: recs(7, 3), Flush: &store.FlushMeta{Offset: 30, NextSeq: 10}}))
	must(s.SetCursor("up", 9))
	must(s.DeleteOutbox(9))
	s.Close()
	s2, err := store.Open(dir, nil)
	must(err)
	defer s2.Close()
	if s2.OutboxLastSeq() != 9 {
		t.Fatalf("after the restart the outbox continues after position %d, want 9", s2.OutboxLastSeq())
	}
	must(s2.SetCursor("up", 12)) // e.g. relayed records were delivered too
	s2.Close()
	s3, err := store.Open(dir, nil)
	must(err)
	defer s3.Close()
	if s3.OutboxLastSeq() != 12 {
		t.Fatalf("outbox continues after position %d, below the cursor 12", s3.OutboxLastSeq())
	}
}
