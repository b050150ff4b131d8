package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tinylib/msgp/msgp"
	bolt "go.etcd.io/bbolt"
)

// Chunk limits: a group commit is stored as chunks of at most this size.
// Small chunks keep bbolt's pages full and its copy-on-write cheap: bbolt
// never splits a leaf of four keys or fewer, so with big values every
// commit would rewrite the previous commits' chunks in the last leaf. With
// chunks under a quarter page, a commit rewrites one partly filled leaf and
// writes the rest into new pages (see BENCHMARKS.md, disk bytes per reading).
const (
	maxChunkEntries = 4096
	maxChunkBytes   = 900
)

// MaxQuarantinePayload bounds the bytes kept of one quarantined payload.
const MaxQuarantinePayload = 4096

// Batch is what one group commit writes: log entries, quarantined
// payloads and the sources' new positions, in one transaction.
type Batch struct {
	Entries    []Entry
	Quarantine []QEntry
	// Positions maps a source name to its opaque position (a file offset):
	// where that source resumes after a restart. It is durable exactly when
	// the entries before it are.
	Positions map[string][]byte
}

// Append writes b in one transaction and returns the offset of its first
// entry. It also applies log retention and the quarantine bound. Most
// callers use an Appender, which groups many sources' appends into one
// Append.
func (s *Store) Append(b *Batch) (first uint64, err error) {
	var chunkBuf []byte
	var added, newBytes int64
	var newEnd, newFirst uint64
	err = s.db.Update(func(tx *bolt.Tx) error {
		lb := tx.Bucket(bucketLog)
		// Keys only grow: pack pages full instead of bbolt's half-full
		// split, which would leave every log page half empty.
		lb.FillPercent = 1
		off := s.logEnd.Load()
		first = off
		added = 0
		for es := b.Entries; len(es) > 0; {
			n := min(len(es), maxChunkEntries)
			ch := Chunk{Entries: es[:n], MinTS: es[0].TS, MaxTS: es[0].TS, Ingest: es[0].Ingest}
			size := 0
			for i := range ch.Entries {
				e := &ch.Entries[i]
				ch.MinTS = min(ch.MinTS, e.TS)
				ch.MaxTS = max(ch.MaxTS, e.TS)
				size += e.Msgsize()
				if size > maxChunkBytes {
					ch.Entries = ch.Entries[:i+1]
					break
				}
			}
			n = len(ch.Entries)
			var err error
			chunkBuf, err = ch.MarshalMsg(chunkBuf[:0])
			if err != nil {
				return fmt.Errorf("encode log chunk: %w", err)
			}
			// bbolt keeps a reference to the value until the commit.
			v := append([]byte(nil), chunkBuf...)
			if err := lb.Put(u64key(off), v); err != nil {
				return fmt.Errorf("append log: %w", err)
			}
			added += int64(len(v))
			off += uint64(n)
			es = es[n:]
		}
		newEnd = off
		if len(b.Positions) > 0 {
			pb := tx.Bucket(bucketPositions)
			for name, pos := range b.Positions {
				if err := pb.Put([]byte(name), pos); err != nil {
					return fmt.Errorf("save position of %q: %w", name, err)
				}
			}
		}
		if len(b.Quarantine) > 0 {
			if err := s.quarantine(tx, b.Quarantine); err != nil {
				return err
			}
		}
		var rerr error
		newFirst, newBytes, rerr = s.retain(tx, s.logBytes.Load()+added, newEnd)
		return rerr
	})
	if err != nil {
		return 0, err
	}
	s.logEnd.Store(newEnd)
	s.logFirst.Store(newFirst)
	s.logBytes.Store(newBytes)
	return first, nil
}

// retain drops the oldest log chunks that a checkpoint covers while the log
// is over LogMaxBytes or older than LogRetain. It runs inside Append and
// returns the log's new first offset and size.
func (s *Store) retain(tx *bolt.Tx, bytes int64, end uint64) (first uint64, _ int64, _ error) {
	limitTS := int64(-1 << 63)
	if s.opts.LogRetain > 0 {
		limitTS = s.opts.Now().Add(-s.opts.LogRetain).UnixMilli()
	}
	cp := s.cpOffset.Load()
	c := tx.Bucket(bucketLog).Cursor()
	var dropped uint64
	first = end
	for k, v := c.First(); k != nil; k, v = c.First() {
		off := binary.BigEndian.Uint64(k)
		n, err := chunkLen(v)
		if err != nil {
			return 0, 0, &CorruptError{Path: s.path, Err: fmt.Errorf("log chunk at %d: %w", off, err)}
		}
		if off+uint64(n) > cp || (bytes <= s.opts.LogMaxBytes && chunkIngest(v) >= limitTS) {
			// Kept: needed for recovery, or within the limits.
			first = off
			break
		}
		bytes -= int64(len(v))
		dropped += uint64(n)
		if err := c.Delete(); err != nil {
			return 0, 0, fmt.Errorf("log retention: %w", err)
		}
	}
	if dropped > 0 {
		if err := addUint(tx.Bucket(bucketMeta), metaLogDropped, dropped); err != nil {
			return 0, 0, err
		}
	}
	return first, bytes, nil
}

// chunkLen reads the number of entries of an encoded chunk without decoding
// it.
func chunkLen(v []byte) (int, error) {
	_, rest, err := msgp.ReadArrayHeaderBytes(v)
	for i := 0; i < 3 && err == nil; i++ {
		rest, err = msgp.Skip(rest)
	}
	if err != nil {
		return 0, err
	}
	n, _, err := msgp.ReadArrayHeaderBytes(rest)
	return int(n), err
}

// chunkIngest reads the ingest time of an encoded chunk.
func chunkIngest(v []byte) int64 {
	_, rest, err := msgp.ReadArrayHeaderBytes(v)
	for i := 0; i < 2 && err == nil; i++ {
		rest, err = msgp.Skip(rest)
	}
	if err != nil {
		return 0
	}
	t, _, _ := msgp.ReadInt64Bytes(rest)
	return t
}

// LogEnd returns the offset the next appended entry gets.
func (s *Store) LogEnd() uint64 { return s.logEnd.Load() }

// LogFirst returns the offset of the oldest entry still in the log.
func (s *Store) LogFirst() uint64 { return s.logFirst.Load() }

// ErrTruncated is returned by ReadLog when the requested offset was already
// dropped by retention.
var ErrTruncated = errors.New("log offset already dropped by retention")

// ReadLog calls fn for each entry from offset from on, in offset order,
// until the end of the log, max entries (if max > 0) or fn returns an
// error. It returns the offset after the last entry passed to fn. The entry
// is only valid during the call. Reading starts inside the chunk that holds
// from.
func (s *Store) ReadLog(from uint64, max int, fn func(off uint64, e *Entry) error) (next uint64, err error) {
	// A damaged page gives a CorruptError, not a crash; a panic in fn is
	// fn's own and goes on.
	inFn := false
	defer ReadGuard(s.path, &err, &inFn)()
	next = from
	var ch Chunk
	err = s.db.View(func(tx *bolt.Tx) error {
		if from < s.logFirst.Load() {
			return fmt.Errorf("read log at %d (oldest is %d): %w", from, s.logFirst.Load(), ErrTruncated)
		}
		c := tx.Bucket(bucketLog).Cursor()
		k, v := c.Seek(u64key(from))
		if k == nil || binary.BigEndian.Uint64(k) != from {
			// The chunk holding from, if any, starts before it.
			var pk, pv []byte
			if k == nil {
				pk, pv = c.Last()
			} else {
				pk, pv = c.Prev()
			}
			if pk != nil {
				k, v = pk, pv
			}
		}
		n := 0
		for ; k != nil; k, v = c.Next() {
			base := binary.BigEndian.Uint64(k)
			if err := DecodeChunk(v, &ch); err != nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("log chunk at %d: %w", base, err)}
			}
			if base+uint64(len(ch.Entries)) <= from {
				continue
			}
			for i := range ch.Entries {
				off := base + uint64(i)
				if off < from {
					continue
				}
				inFn = true
				err := fn(off, &ch.Entries[i])
				inFn = false
				if err != nil {
					return err
				}
				next = off + 1
				n++
				if max > 0 && n >= max {
					return nil
				}
			}
		}
		return nil
	})
	return next, err
}

// ReadPositions returns every source's saved position.
func (s *Store) ReadPositions() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPositions).ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}
