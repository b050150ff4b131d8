package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

func entries(from, n int) []store.Entry {
	es := make([]store.Entry, n)
	for i := range es {
		es[i] = store.Entry{Source: "src", Sensor: fmt.Sprintf("s%d", (from+i)%7), Value: float64(from + i), TS: int64(1000 * (from + i)), Ingest: int64(from + i)}
	}
	return es
}

func readAll(t *testing.T, s *store.Store, from uint64) []store.Entry {
	t.Helper()
	var out []store.Entry
	_, err := s.ReadLog(from, 0, func(off uint64, e *store.Entry) error {
		if want := from + uint64(len(out)); off != want {
			t.Fatalf("offset %d, want %d", off, want)
		}
		out = append(out, *e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAppendAndRead(t *testing.T) {
	s, _ := storetest.MustOpen(t, nil)
	for i := 0; i < 5; i++ {
		first, err := s.Append(&store.Batch{Entries: entries(i*1000, 1000)})
		if err != nil {
			t.Fatal(err)
		}
		if first != uint64(i*1000) {
			t.Fatalf("first %d", first)
		}
	}
	// A batch larger than a chunk is split, offsets stay contiguous.
	if _, err := s.Append(&store.Batch{Entries: entries(5000, 9000)}); err != nil {
		t.Fatal(err)
	}
	if s.LogEnd() != 14000 {
		t.Fatalf("end %d", s.LogEnd())
	}
	for _, from := range []uint64{0, 1, 999, 1000, 4095, 4096, 5000, 13999, 14000} {
		got := readAll(t, s, from)
		if len(got) != int(14000-from) {
			t.Fatalf("from %d: %d entries", from, len(got))
		}
		if len(got) > 0 && got[0].Value != float64(from) {
			t.Fatalf("from %d: first value %v", from, got[0].Value)
		}
	}
	// max bounds a read.
	next, err := s.ReadLog(10, 5, func(uint64, *store.Entry) error { return nil })
	if err != nil || next != 15 {
		t.Fatalf("next %d err %v", next, err)
	}
}

func TestReopenKeepsOffsetsAndPositions(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Opened.Created {
		t.Fatal("new file not reported as created")
	}
	s.Append(&store.Batch{Entries: entries(0, 10), Positions: map[string][]byte{"f": []byte("123")}})
	s.Close()
	s, err = store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Opened.Created || s.Opened.Unclean {
		t.Fatalf("opened %+v", s.Opened)
	}
	if s.LogEnd() != 10 {
		t.Fatalf("end %d", s.LogEnd())
	}
	pos, _ := s.ReadPositions()
	if string(pos["f"]) != "123" {
		t.Fatalf("positions %q", pos)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	s, dir := storetest.MustOpen(t, nil)
	_ = s
	_, err := store.Open(dir, &store.Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("err %v, want ErrLocked", err)
	}
	t.Log(err)
}

func TestUncleanStopIsDetectedAndChecked(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Append(&store.Batch{Entries: entries(0, 10)})
	// Close the bbolt handle without the clean-shutdown mark, as a crash
	// would leave it.
	s.DB().Close()
	s, err = store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Opened.Unclean || !s.Opened.Checked {
		t.Fatalf("opened %+v", s.Opened)
	}
}

func TestRetention(t *testing.T) {
	now := time.UnixMilli(1_000_000_000)
	s, _ := storetest.MustOpen(t, &store.Options{LogMaxBytes: 20000, LogRetain: -1, Now: func() time.Time { return now }})
	for i := 0; i < 20; i++ {
		if _, err := s.Append(&store.Batch{Entries: entries(i*100, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if s.LogFirst() != 0 {
		t.Fatal("retention dropped entries no checkpoint covers")
	}
	// A checkpoint at 1500 lets retention drop up to there, not beyond.
	if err := s.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{Offset: 1500}}); err != nil {
		t.Fatal(err)
	}
	s.Append(&store.Batch{Entries: entries(2000, 100)})
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.LogFirst() == 0 || s.LogFirst() > 1500 {
		t.Fatalf("first %d after retention", s.LogFirst())
	}
	if st.LogDropped != s.LogFirst() {
		t.Fatalf("dropped %d, first %d", st.LogDropped, s.LogFirst())
	}
	if _, err := s.ReadLog(0, 0, func(uint64, *store.Entry) error { return nil }); !errors.Is(err, store.ErrTruncated) {
		t.Fatalf("read before first: %v", err)
	}
	got := readAll(t, s, s.LogFirst())
	if len(got) != int(2100-s.LogFirst()) {
		t.Fatalf("%d entries left", len(got))
	}
}

func TestRetentionByAge(t *testing.T) {
	now := time.UnixMilli(10_000)
	s, _ := storetest.MustOpen(t, &store.Options{LogRetain: 5 * time.Second, Now: func() time.Time { return now }})
	for i := 0; i < 10; i++ {
		es := entries(i*10, 10)
		for j := range es {
			es[j].Ingest = int64(i * 1000)
		}
		s.Append(&store.Batch{Entries: es})
	}
	s.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{Offset: 100}})
	s.Append(&store.Batch{Entries: entries(100, 1)})
	// Chunks ingested before 10000-5000 are gone.
	if s.LogFirst() != 50 {
		t.Fatalf("first %d, want 50", s.LogFirst())
	}
}

func TestCheckpointStateAndOutbox(t *testing.T) {
	s, dir := storetest.MustOpen(t, &store.Options{OutboxMaxBytes: 1 << 20})
	rec := func(seq uint64) store.Record {
		return store.Record{ID: fmt.Sprint("id", seq), Name: "w", Key: "k", Body: []byte(fmt.Sprintf(`{"seq":%d}`, seq))}
	}
	err := s.Commit(&store.Checkpoint{
		Meta:    store.CheckpointMeta{Offset: 7, NextSeq: 3, Engine: []byte("hdr")},
		State:   []store.StateOp{{Op: "w", Key: []byte("a"), Value: []byte("1")}, {Op: "w", Key: []byte("b"), Value: []byte("2")}, {Op: "x", Key: []byte("c"), Value: []byte("3")}},
		Records: []store.Record{rec(1), rec(2)},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Commit(&store.Checkpoint{
		Meta:    store.CheckpointMeta{Offset: 9, NextSeq: 4},
		DropOps: []string{"x"},
		State:   []store.StateOp{{Op: "w", Key: []byte("a")}, {Op: "w", Key: []byte("b"), Value: []byte("22")}},
		Records: []store.Record{rec(3)},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got := map[string]string{}
	meta, err := s2.CheckpointMeta()
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.LoadState(func(op string, k, v []byte) error {
		got[op+"/"+string(k)] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if meta.Offset != 9 || meta.NextSeq != 4 || len(got) != 1 || got["w/b"] != "22" {
		t.Fatalf("meta %+v state %v", meta, got)
	}
	var seqs []uint64
	s2.ReadOutbox(0, 0, func(r *store.Record) error { seqs = append(seqs, r.Pos); return nil })
	if fmt.Sprint(seqs) != "[1 2 3]" || s2.OutboxLastSeq() != 3 {
		t.Fatalf("outbox %v last %d", seqs, s2.OutboxLastSeq())
	}
	if err := s2.DeleteOutbox(2); err != nil {
		t.Fatal(err)
	}
	seqs = nil
	s2.ReadOutbox(0, 0, func(r *store.Record) error { seqs = append(seqs, r.Pos); return nil })
	if fmt.Sprint(seqs) != "[3]" {
		t.Fatalf("after delete %v", seqs)
	}
	// seq continues after deletes.
	if err := s2.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{Offset: 9, NextSeq: 5}, Records: []store.Record{rec(4)}}); err != nil {
		t.Fatal(err)
	}
}

func TestOutboxQuotaDropsOldest(t *testing.T) {
	s, _ := storetest.MustOpen(t, &store.Options{OutboxMaxBytes: 2000})
	var seq uint64
	for i := 0; i < 50; i++ {
		seq++
		s.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{NextSeq: seq + 1}, Records: []store.Record{{Body: make([]byte, 100)}}})
	}
	st, _ := s.Stats()
	if st.OutboxBytes > 2000 || st.OutboxDropped == 0 || st.OutboxDropped+uint64(st.OutboxCount) != 50 {
		t.Fatalf("stats %+v", st)
	}
	if st.OutboxLastSeq != 50 {
		t.Fatalf("last seq %d", st.OutboxLastSeq)
	}
}

func TestQuarantineBounded(t *testing.T) {
	s, _ := storetest.MustOpen(t, &store.Options{QuarantineMax: 5})
	for i := 0; i < 8; i++ {
		s.Append(&store.Batch{Quarantine: []store.QEntry{{Source: "f", Reason: "no value", Payload: []byte(fmt.Sprint("p", i))}}})
	}
	var got []string
	s.ReadQuarantine(func(id uint64, q *store.QEntry) error { got = append(got, string(q.Payload)); return nil })
	if fmt.Sprint(got) != "[p3 p4 p5 p6 p7]" {
		t.Fatalf("quarantine %v", got)
	}
	st, _ := s.Stats()
	if st.QuarantineCount != 5 || st.QuarantineDropped != 3 || st.QuarantineTotal != 8 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAppenderGroupCommit(t *testing.T) {
	s, _ := storetest.MustOpen(t, nil)
	a := s.NewAppender(store.AppenderOptions{Interval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]int{}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				src := fmt.Sprint("src", g)
				err := a.Append(ctx, store.AppendRequest{
					Entries: entries(i, 4), Source: src, Pos: []byte(fmt.Sprint(i)),
					Done: func(first uint64, err error) {
						if err == nil {
							mu.Lock()
							acked[src]++
							mu.Unlock()
						}
					},
				})
				if err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.LogEnd() != 4000 {
		t.Fatalf("log end %d", s.LogEnd())
	}
	for g := 0; g < 4; g++ {
		if acked[fmt.Sprint("src", g)] != 250 {
			t.Fatalf("acks %v", acked)
		}
	}
	st := a.Stats()
	if st.Commits >= 1000 {
		t.Fatalf("%d commits for 1000 appends: no grouping", st.Commits)
	}
	pos, _ := s.ReadPositions()
	if string(pos["src0"]) != "249" {
		t.Fatalf("position %q", pos["src0"])
	}
	if err := a.Append(context.Background(), store.AppendRequest{Entries: entries(0, 1)}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("append after stop: %v", err)
	}
}

func TestNewerFormatRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetFormatVersionForTest(store.FormatVersion + 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = store.Open(dir, nil)
	if !errors.Is(err, store.ErrNewerFormat) {
		t.Fatalf("err %v", err)
	}
	t.Log(err)
}

func TestCorruptFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, store.FileName), []byte("this is not a bbolt file, it is garbage of some length......"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := store.Open(dir, nil)
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("err %v", err)
	}
	t.Log(err)
}

func TestOlderFormatRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetFormatVersionForTest(store.FormatVersion - 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = store.Open(dir, nil)
	if !errors.Is(err, store.ErrOlderFormat) || strings.Count(err.Error(), dir) != 1 {
		t.Fatalf("err %v", err)
	}
	t.Log(err)
}

func TestCursorsReleaseOutbox(t *testing.T) {
	s, _ := storetest.MustOpen(t, nil)
	var recs []store.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, store.Record{ID: fmt.Sprint(i), Body: []byte("{}")})
	}
	changed := s.OutboxChanged()
	if err := s.Commit(&store.Checkpoint{Records: recs}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("no outbox notification")
	}
	if err := s.RegisterOutputs([]string{"cloud", "file"}); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		s.ReadOutbox(0, 0, func(*store.Record) error { n++; return nil })
		return n
	}
	s.SetCursor("cloud", 7)
	if count() != 10 {
		t.Fatal("records deleted before every output delivered them")
	}
	s.SetCursor("file", 4)
	if count() != 6 {
		t.Fatalf("%d records left, want 6 (positions 5..10)", count())
	}
	if c, _ := s.Cursor("cloud"); c != 7 {
		t.Fatalf("cursor %d", c)
	}
	// An output removed from the config no longer holds records back.
	s.RegisterOutputs([]string{"cloud"})
	s.SetCursor("cloud", 8)
	if count() != 2 {
		t.Fatalf("%d records left, want 2", count())
	}
	// Relayed records go straight to the outbox at the next positions.
	last, err := s.AppendOutbox([]store.Record{{ID: "relayed", Body: []byte(`{"device":"car-7","seq":99}`)}})
	if err != nil || last != 11 {
		t.Fatalf("relayed at %d, %v", last, err)
	}
}

// TestReadOnlyOpenOfNothing: a read-only open (edged inspect, replay) of a
// data_dir edged never ran with says so and creates nothing.
func TestReadOnlyOpenOfNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never")
	_, err := store.Open(dir, &store.Options{ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "edged has not run with this data_dir") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the read-only open created %s (%v)", dir, err)
	}
}
