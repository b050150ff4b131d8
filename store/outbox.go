package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ReadOutbox calls fn for each outbox record with seq >= from, in seq order,
// at most max of them (all when max <= 0). The record's byte slices are only
// valid during the call.
func (s *Store) ReadOutbox(from uint64, max int, fn func(r *Record) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		var r Record
		n := 0
		for k, v := c.Seek(u64key(from)); k != nil; k, v = c.Next() {
			if _, err := r.UnmarshalMsg(v); err != nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("outbox record %d: %w", binary.BigEndian.Uint64(k), err)}
			}
			if err := fn(&r); err != nil {
				return err
			}
			if n++; max > 0 && n >= max {
				return nil
			}
		}
		return nil
	})
}

// DeleteOutbox removes the outbox records with seq <= upTo (delivered to
// every output that needs them).
func (s *Store) DeleteOutbox(upTo uint64) error {
	var freed int64
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		freed, err = deleteUpTo(tx.Bucket(bucketOutbox), upTo)
		return err
	})
	if err == nil {
		s.outBytes.Add(-freed)
	}
	return err
}

// OutboxLastSeq returns the seq of the newest record ever committed to the
// outbox (0 before the first).
func (s *Store) OutboxLastSeq() uint64 { return s.outLastSeq.Load() }

// ReadOutboxAfter returns copies of up to max records after position pos.
func (s *Store) ReadOutboxAfter(pos uint64, max int) ([]Record, error) {
	var out []Record
	err := s.ReadOutbox(pos+1, max, func(r *Record) error {
		c := *r
		c.ID = string(append([]byte(nil), r.ID...))
		c.Name = string(append([]byte(nil), r.Name...))
		c.Key = string(append([]byte(nil), r.Key...))
		c.Body = append([]byte(nil), r.Body...)
		out = append(out, c)
		return nil
	})
	return out, err
}
