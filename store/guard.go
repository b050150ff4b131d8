package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/tinylib/msgp/msgp"
	bolt "go.etcd.io/bbolt"
)

// Damage: bbolt reads the file through a memory map and trusts its page
// pointers. On a damaged page (a torn write after a power cut, a bad SD
// card, a copy cut short) it panics or touches memory outside the map.
// These helpers turn that into a *CorruptError with the way out, instead of
// a crash.

// ReadGuard turns a panic or a memory fault while bbolt reads the data
// file at path into a *CorruptError, so that a damaged page gives the
// usual message and exit status 1 instead of a crash. bbolt reads the file
// through a memory map and trusts its page pointers: on a damaged page it
// panics or touches memory outside the map (a fault, which
// debug.SetPanicOnFault makes recoverable on this goroutine). A panic while
// *inEngine is set (inEngine may be nil) is a bug elsewhere, not damage: it
// goes on. Use it as
//
//	defer store.ReadGuard(path, &err, nil)()
func ReadGuard(path string, err *error, inEngine *bool) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if inEngine != nil && *inEngine {
				panic(r)
			}
			*err = &CorruptError{Path: path, Err: fmt.Errorf("reading it failed on a damaged page (%v)", r)}
		}
	}
}

// touchAll reads every page of every bucket: every branch and leaf page,
// the first and last byte of each key and value.
func touchAll(db *bolt.DB) error {
	var sink byte // what was read, kept so the reads are not optimised away
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
			touchBucket(b, &sink)
			return nil
		})
	})
	runtime.KeepAlive(sink)
	return err
}

func touchBucket(b *bolt.Bucket, sink *byte) {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		*sink ^= k[0] ^ k[len(k)-1]
		if v == nil {
			if sub := b.Bucket(k); sub != nil {
				touchBucket(sub, sink)
			}
			continue
		}
		if len(v) > 0 {
			*sink ^= v[0] ^ v[len(v)-1]
		}
	}
}

// CheckExtent compares the data file's size with the pages its newest
// valid bbolt meta page says it has: a file cut short (disk full, a copy
// that did not finish) would make bbolt read past its end.
func CheckExtent(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // Open says what is wrong
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	if need, ok := MetaExtent(f); ok && fi.Size() < need {
		return &CorruptError{Path: path, Err: fmt.Errorf("the file is %d bytes but its pages reach %d bytes: it was cut short", fi.Size(), need)}
	}
	return nil
}

// bbolt's meta page: a 16-byte page header, then magic, version, page size,
// flags (uint32 each), the root bucket (16 bytes), the freelist page, the
// high-water mark pgid, txid and an FNV-64a checksum of what precedes it,
// in the machine's byte order.
const (
	boltMagic   = 0xED0CDAED
	boltVersion = 2
)

// BoltMeta is what edged reads of a bbolt meta page.
type BoltMeta struct {
	PageSize   uint32
	Pgid, Txid uint64
}

// ReadBoltMeta reads and verifies the bbolt meta page at off.
func ReadBoltMeta(r io.ReaderAt, off int64) (BoltMeta, bool) {
	var b [80]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return BoltMeta{}, false
	}
	m := b[16:]
	e := binary.NativeEndian
	h := fnv.New64a()
	h.Write(m[:56])
	if e.Uint32(m[0:]) != boltMagic || e.Uint32(m[4:]) != boltVersion || e.Uint64(m[56:]) != h.Sum64() {
		return BoltMeta{}, false
	}
	return BoltMeta{PageSize: e.Uint32(m[8:]), Pgid: e.Uint64(m[40:]), Txid: e.Uint64(m[48:])}, true
}

// MetaExtent returns the bytes the file's pages reach according to its
// newest valid meta page (the one bbolt uses), or false when neither is
// valid.
func MetaExtent(r io.ReaderAt) (int64, bool) {
	m0, ok0 := ReadBoltMeta(r, 0)
	ps := int64(os.Getpagesize())
	if ok0 {
		ps = int64(m0.PageSize)
	}
	m1, ok1 := ReadBoltMeta(r, ps)
	switch {
	case ok0 && (!ok1 || m0.Txid >= m1.Txid):
		return int64(m0.Pgid) * int64(m0.PageSize), true
	case ok1:
		return int64(m1.Pgid) * int64(m1.PageSize), true
	}
	return 0, false
}

// DecodeChunk decodes a log chunk, refusing what a damaged value could make
// of it: an entry count the value cannot hold (msgp would allocate it),
// unknown entry kinds, event times outside the chunk's bounds.
func DecodeChunk(v []byte, ch *Chunk) error {
	_, rest, err := msgp.ReadArrayHeaderBytes(v)
	for i := 0; i < 3 && err == nil; i++ {
		rest, err = msgp.Skip(rest)
	}
	var n uint32
	if err == nil {
		n, rest, err = msgp.ReadArrayHeaderBytes(rest)
	}
	if err != nil {
		return err
	}
	if int64(n)*8 > int64(len(rest)) {
		return fmt.Errorf("%d entries cannot fit in %d bytes", n, len(rest))
	}
	if _, err := ch.UnmarshalMsg(v); err != nil {
		return err
	}
	if len(ch.Entries) == 0 {
		return errors.New("no entries")
	}
	if ch.Entries[0].Ingest != ch.Ingest {
		return fmt.Errorf("first entry's ingest time %d differs from the chunk's %d", ch.Entries[0].Ingest, ch.Ingest)
	}
	for i := range ch.Entries {
		e := &ch.Entries[i]
		if e.Kind != EntryReading && e.Kind != EntryIdle && e.Kind != EntryTick {
			return fmt.Errorf("entry %d: unknown kind %d", i, e.Kind)
		}
		if e.TS < ch.MinTS || e.TS > ch.MaxTS {
			return fmt.Errorf("entry %d: event time %d outside the chunk's %d..%d", i, e.TS, ch.MinTS, ch.MaxTS)
		}
	}
	return nil
}

// TouchAll reads every page of the file (every branch and leaf page, the
// ends of every key and value), so that damage shows on the caller's
// goroutine, where ReadGuard can catch it, rather than in bbolt's own
// consistency check or free-page scan, which run on goroutines of their own.
func (s *Store) TouchAll() error { return touchAll(s.db) }
