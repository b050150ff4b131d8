package store

import (
	"encoding/binary"
	"encoding/json"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Stats are the figures `edged inspect` shows.
type Stats struct {
	Path          string
	FormatVersion int
	DeviceID      string
	CleanShutdown bool
	Created       int64 // Unix ms

	FileBytes int64 // size of the data file
	PageSize  int
	FreePages int // pages free for reuse (the file never shrinks by itself)
	FreeBytes int64

	LogFirst, LogEnd uint64 // offsets: entries [LogFirst, LogEnd) are in the log
	LogBytes         int64
	LogChunks        int
	LogOldestIngest  int64 // Unix ms, 0 when empty
	LogNewestIngest  int64
	LogDropped       uint64 // entries dropped by retention, ever
	LogMaxBytes      int64
	LogRetainMs      int64

	Checkpoint *CheckpointMeta // nil before the first
	// Flushed is the head of the records committed ahead of the state
	// checkpoint (nil when the state has caught up).
	Flushed  *FlushMeta
	StateOps int

	OutboxCount    int
	OutboxBytes    int64
	OutboxFirstSeq uint64
	OutboxLastSeq  uint64
	OutboxOldest   int64  // Created of the oldest record, Unix ms
	OutboxDropped  uint64 // records dropped by the quota, ever
	OutboxMaxBytes int64
	Cursors        map[string]uint64
	Outputs        map[string]OutputStats

	QuarantineCount   int
	QuarantineTotal   uint64
	QuarantineDropped uint64
	Positions         map[string][]byte
}

// OutputStats are one output's figures: what waits for it, and the status
// it saved while running.
type OutputStats struct {
	Cursor         uint64
	Backlog        uint64 // records after the cursor
	OldestWaiting  int64  // Created of the oldest record it has not delivered, Unix ms; 0 if none
	Status         []byte `json:",omitempty"` // JSON the output saved (rate, last error, ...)
	StatusReadable map[string]any
}

// Stats reads the store's figures in one read transaction.
func (s *Store) Stats() (*Stats, error) {
	st := &Stats{
		Path: s.path, LogFirst: s.LogFirst(), LogEnd: s.LogEnd(), LogBytes: s.logBytes.Load(),
		OutboxBytes: s.outBytes.Load(), OutboxLastSeq: s.outLastSeq.Load(),
		LogMaxBytes: s.opts.LogMaxBytes, LogRetainMs: s.opts.LogRetain.Milliseconds(), OutboxMaxBytes: s.opts.OutboxMaxBytes,
		Cursors: map[string]uint64{}, Positions: map[string][]byte{}, Outputs: map[string]OutputStats{},
	}
	if fi, err := os.Stat(s.path); err == nil {
		st.FileBytes = fi.Size()
	}
	dbs := s.db.Stats()
	st.PageSize = s.db.Info().PageSize
	st.FreePages = dbs.FreePageN
	st.FreeBytes = int64(dbs.FreePageN) * int64(st.PageSize)
	err := s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		st.FormatVersion = int(getUint(m, metaVersion))
		st.DeviceID = string(m.Get(metaDevice))
		st.CleanShutdown = string(m.Get(metaClean)) == "1"
		st.Created = int64(getUint(m, metaCreated))
		st.LogDropped = getUint(m, metaLogDropped)
		st.OutboxDropped = getUint(m, metaOutboxDropped)
		st.QuarantineTotal = getUint(m, metaQuarantineTotal)
		st.QuarantineDropped = getUint(m, metaQuarantineDropped)
		st.QuarantineCount = int(getUint(m, metaQuarantineCount))

		lc := tx.Bucket(bucketLog).Cursor()
		if _, v := lc.First(); v != nil {
			st.LogOldestIngest = chunkIngest(v)
		}
		if _, v := lc.Last(); v != nil {
			var ch Chunk
			if err := DecodeChunk(v, &ch); err == nil && len(ch.Entries) > 0 {
				st.LogNewestIngest = ch.Entries[len(ch.Entries)-1].Ingest
			}
		}
		st.LogChunks = tx.Bucket(bucketLog).Stats().KeyN

		cp, err := readCheckpoint(tx)
		if err != nil {
			return err
		}
		st.Checkpoint = cp
		if st.Flushed, err = readFlush(tx); err != nil {
			return err
		}
		tx.Bucket(bucketState).ForEachBucket(func([]byte) error { st.StateOps++; return nil })

		ob := tx.Bucket(bucketOutbox)
		st.OutboxCount = ob.Stats().KeyN
		if k, v := ob.Cursor().First(); k != nil {
			st.OutboxFirstSeq = binary.BigEndian.Uint64(k)
			var r Record
			if _, err := r.UnmarshalMsg(v); err == nil {
				st.OutboxOldest = r.Created
			}
		}
		tx.Bucket(bucketCursors).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return nil
			}
			c := binary.BigEndian.Uint64(v)
			st.Cursors[string(k)] = c
			o := OutputStats{Cursor: c}
			if st.OutboxLastSeq > c {
				o.Backlog = st.OutboxLastSeq - c
			}
			if k2, v2 := ob.Cursor().Seek(u64key(c + 1)); k2 != nil {
				var r Record
				if _, err := r.UnmarshalMsg(v2); err == nil {
					o.OldestWaiting = r.Created
				}
			}
			if raw := m.Get([]byte("output_status/" + string(k))); raw != nil {
				o.Status = append([]byte(nil), raw...)
				json.Unmarshal(raw, &o.StatusReadable)
			}
			st.Outputs[string(k)] = o
			return nil
		})
		return tx.Bucket(bucketPositions).ForEach(func(k, v []byte) error {
			st.Positions[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return st, err
}
