package store_test

import (
	"testing"

	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

// The log holds idle markers and processing-time ticks beside readings and
// reads them back; an unknown kind is refused as damage.
func TestLogEntryKinds(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	in := []store.Entry{
		{Kind: store.EntryReading, Source: "s", Sensor: "a", Value: 1, TS: 5, Ingest: 7},
		{Kind: store.EntryIdle, Source: "s", Ingest: 8},
		{Kind: store.EntryTick, Ingest: 9},
	}
	if _, err := st.Append(&store.Batch{Entries: in}); err != nil {
		t.Fatal(err)
	}
	var got []store.Entry
	if _, err := st.ReadLog(0, 0, func(off uint64, e *store.Entry) error { got = append(got, *e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("read %d entries, want %d", len(got), len(in))
	}
	for i := range in {
		if got[i] != in[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, got[i], in[i])
		}
	}
	ch := store.Chunk{Entries: []store.Entry{{Kind: 3}}}
	b, err := ch.MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.DecodeChunk(b, &ch); err == nil {
		t.Fatal("entry kind 3 accepted")
	}
}
