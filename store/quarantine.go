package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// quarantine stores bad payloads inside an Append transaction, keeping at
// most QuarantineMax of them (the oldest go first, counted).
func (s *Store) quarantine(tx *bolt.Tx, qs []QEntry) error {
	qb := tx.Bucket(bucketQuarantine)
	qb.FillPercent = 1 // ids only grow
	var buf []byte
	for i := range qs {
		q := qs[i]
		if len(q.Payload) > MaxQuarantinePayload {
			q.Payload = q.Payload[:MaxQuarantinePayload]
		}
		id, err := qb.NextSequence()
		if err != nil {
			return err
		}
		if buf, err = q.MarshalMsg(buf[:0]); err != nil {
			return err
		}
		if err := qb.Put(u64key(id), append([]byte(nil), buf...)); err != nil {
			return fmt.Errorf("quarantine: %w", err)
		}
	}
	m := tx.Bucket(bucketMeta)
	if err := addUint(m, metaQuarantineTotal, uint64(len(qs))); err != nil {
		return err
	}
	n := getUint(m, metaQuarantineCount) + uint64(len(qs))
	var dropped uint64
	c := qb.Cursor()
	for k, _ := c.First(); k != nil && n > uint64(s.opts.QuarantineMax); k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
		n--
		dropped++
	}
	if err := putUint(m, metaQuarantineCount, n); err != nil {
		return err
	}
	return addUint(m, metaQuarantineDropped, dropped)
}

// ReadQuarantine calls fn for each quarantined payload, oldest first. The
// entry's slices are only valid during the call.
func (s *Store) ReadQuarantine(fn func(id uint64, q *QEntry) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		var q QEntry
		return tx.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
			if _, err := q.UnmarshalMsg(v); err != nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("quarantine entry: %w", err)}
			}
			return fn(binary.BigEndian.Uint64(k), &q)
		})
	})
}
