package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The outputs' cursors: each output (uplink to a broker, a file) has a
// durable cursor, the outbox position up to which it has delivered every
// record. A record leaves the outbox once every registered output's cursor
// passed it (or the quota drops it).

// OutboxChanged returns a channel that is closed when records are next
// committed to the outbox. Call it again after each wake-up.
func (s *Store) OutboxChanged() <-chan struct{} {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	if s.outNotify == nil {
		s.outNotify = make(chan struct{})
	}
	return s.outNotify
}

func (s *Store) notifyOutbox() {
	s.notifyMu.Lock()
	if s.outNotify != nil {
		close(s.outNotify)
		s.outNotify = nil
	}
	s.notifyMu.Unlock()
}

// RegisterOutputs declares the configured outputs. Cursors of outputs no
// longer configured are deleted (they no longer hold records back); a new
// output starts at the oldest record still in the outbox.
func (s *Store) RegisterOutputs(names []string) error {
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
	}
	s.notifyMu.Lock()
	s.outputs = keep
	s.notifyMu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		cb := tx.Bucket(bucketCursors)
		var drop [][]byte
		cb.ForEach(func(k, _ []byte) error {
			if !keep[string(k)] {
				drop = append(drop, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range drop {
			if err := cb.Delete(k); err != nil {
				return err
			}
		}
		// A new output starts at position 0: it holds every record that is
		// in the outbox, and inspect lists it at once.
		for _, n := range names {
			if cb.Get([]byte(n)) == nil {
				if err := cb.Put([]byte(n), u64key(0)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Cursor returns an output's cursor: every record at or before it was
// delivered. 0 means none yet.
func (s *Store) Cursor(output string) (uint64, error) {
	var pos uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketCursors).Get([]byte(output)); len(v) == 8 {
			pos = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return pos, err
}

// SetCursor records that output delivered every record up to pos, and
// deletes from the outbox what every registered output has delivered, in
// one transaction.
func (s *Store) SetCursor(output string, pos uint64) error {
	var freed int64
	err := s.db.Update(func(tx *bolt.Tx) error {
		freed = 0
		cb := tx.Bucket(bucketCursors)
		if err := cb.Put([]byte(output), u64key(pos)); err != nil {
			return fmt.Errorf("save cursor of %q: %w", output, err)
		}
		s.notifyMu.Lock()
		outputs := s.outputs
		s.notifyMu.Unlock()
		low := pos
		for name := range outputs {
			v := cb.Get([]byte(name))
			if len(v) != 8 {
				return nil // an output has delivered nothing yet
			}
			low = min(low, binary.BigEndian.Uint64(v))
		}
		var err error
		freed, err = deleteUpTo(tx.Bucket(bucketOutbox), low)
		return err
	})
	if err == nil {
		s.outBytes.Add(-freed)
	}
	return err
}

// deleteUpTo deletes the keys <= upTo of a bucket keyed by big-endian
// positions and returns the value bytes freed. The keys are gathered first:
// deleting under a cursor and going back to First each time is quadratic in
// bbolt.
func deleteUpTo(b *bolt.Bucket, upTo uint64) (int64, error) {
	var keys [][]byte
	var freed int64
	c := b.Cursor()
	for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, v = c.Next() {
		keys = append(keys, k)
		freed += int64(len(v))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return freed, nil
}

// SetOutputStatus saves an output's run-time figures (opaque JSON) for
// edged inspect, which reads the file of a stopped daemon.
func (s *Store) SetOutputStatus(output string, status []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("output_status/"+output), status)
	})
}
