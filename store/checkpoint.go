package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// StateOp changes one key of one operator's state.
type StateOp struct {
	Op    string // the operator (window) name: a bucket under state/
	Key   []byte
	Value []byte // nil deletes the key
}

// Checkpoint is what one checkpoint writes, in one transaction: where the
// pipeline is in the log, the state that changed since the previous
// checkpoint, and the outbox records produced since then.
type Checkpoint struct {
	Meta CheckpointMeta
	// DropOps deletes whole operators' state first (a window removed from
	// the config, or whose shape changed).
	DropOps []string
	State   []StateOp
	// Records must continue the outbox's seq without a gap.
	Records []Record
	// Flush, when set, makes this a records-only checkpoint: Records and
	// this head are committed, Meta, DropOps and State are ignored and the
	// newest state checkpoint stays as it is (see FlushMeta).
	Flush *FlushMeta
}

// Commit writes cp atomically. After a crash either all of it is there or
// none of it, so state, log offset and outbox never disagree.
func (s *Store) Commit(cp *Checkpoint) error {
	if cp.Flush != nil {
		return s.commitFlush(cp)
	}
	var written int64
	var outAdded int64
	var lastSeq uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		written, outAdded = 0, 0
		sb := tx.Bucket(bucketState)
		for _, op := range cp.DropOps {
			if sb.Bucket([]byte(op)) != nil {
				if err := sb.DeleteBucket([]byte(op)); err != nil {
					return fmt.Errorf("drop state of %q: %w", op, err)
				}
			}
		}
		var cur *bolt.Bucket
		var curName string
		for i := range cp.State {
			op := &cp.State[i]
			if cur == nil || op.Op != curName {
				var err error
				if cur, err = sb.CreateBucketIfNotExists([]byte(op.Op)); err != nil {
					return fmt.Errorf("state of %q: %w", op.Op, err)
				}
				curName = op.Op
			}
			if op.Value == nil {
				if err := cur.Delete(op.Key); err != nil {
					return err
				}
				continue
			}
			if err := cur.Put(op.Key, op.Value); err != nil {
				return fmt.Errorf("state of %q: %w", op.Op, err)
			}
			written += int64(len(op.Key) + len(op.Value))
		}
		var err error
		if lastSeq, err = s.putOutbox(tx, cp.Records, &outAdded); err != nil {
			return err
		}
		m := cp.Meta
		m.Bytes = written + outAdded
		v, err := m.MarshalMsg(nil)
		if err != nil {
			return err
		}
		cb := tx.Bucket(bucketCheckpoint)
		if f, err := readFlush(tx); err != nil {
			return err
		} else if f != nil && f.Offset <= m.Offset && (f.Offset < m.Offset || f.Within == 0) {
			// The state has caught up with the records flushed ahead of it.
			if err := cb.Delete(keyFlushed); err != nil {
				return err
			}
		}
		return cb.Put(keyCurrent, v)
	})
	if err != nil {
		return fmt.Errorf("commit checkpoint at offset %d: %w", cp.Meta.Offset, err)
	}
	s.cpOffset.Store(cp.Meta.Offset)
	s.outLastSeq.Store(lastSeq)
	s.outBytes.Add(outAdded)
	if len(cp.Records) > 0 {
		s.notifyOutbox()
	}
	return nil
}

// commitFlush writes a records-only checkpoint: the records and the flush
// head, in one transaction.
func (s *Store) commitFlush(cp *Checkpoint) error {
	var outAdded int64
	var lastSeq uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		outAdded = 0
		var err error
		if lastSeq, err = s.putOutbox(tx, cp.Records, &outAdded); err != nil {
			return err
		}
		f := *cp.Flush
		f.Bytes = outAdded
		v, err := f.MarshalMsg(nil)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketCheckpoint).Put(keyFlushed, v)
	})
	if err != nil {
		return fmt.Errorf("commit records up to log offset %d: %w", cp.Flush.Offset, err)
	}
	s.outLastSeq.Store(lastSeq)
	s.outBytes.Add(outAdded)
	if len(cp.Records) > 0 {
		s.notifyOutbox()
	}
	return nil
}

func readFlush(tx *bolt.Tx) (*FlushMeta, error) {
	v := tx.Bucket(bucketCheckpoint).Get(keyFlushed)
	if v == nil {
		return nil, nil
	}
	var f FlushMeta
	if _, err := f.UnmarshalMsg(v); err != nil {
		return nil, fmt.Errorf("flush head: %w", err)
	}
	return &f, nil
}

// Flushed returns the head of the records committed ahead of the newest
// state checkpoint, or nil when there are none.
func (s *Store) Flushed() (*FlushMeta, error) {
	var f *FlushMeta
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if f, err = readFlush(tx); err != nil {
			return &CorruptError{Path: s.path, Err: err}
		}
		return nil
	})
	return f, err
}

// putOutbox appends records to the outbox at the next positions (setting
// their Pos) and applies the quota, inside tx. It returns the last position.
func (s *Store) putOutbox(tx *bolt.Tx, recs []Record, added *int64) (uint64, error) {
	ob := tx.Bucket(bucketOutbox)
	ob.FillPercent = 1 // positions only grow
	last := s.outLastSeq.Load()
	var buf []byte
	for i := range recs {
		r := &recs[i]
		last++
		r.Pos = last
		var err error
		if buf, err = r.MarshalMsg(buf[:0]); err != nil {
			return 0, err
		}
		v := append([]byte(nil), buf...)
		if err := ob.Put(u64key(r.Pos), v); err != nil {
			return 0, fmt.Errorf("outbox: %w", err)
		}
		*added += int64(len(v))
	}
	return last, s.outboxQuota(tx, added)
}

// AppendOutbox commits records straight to the outbox, outside any
// checkpoint: for records relayed from other gateways, which keep their own
// device, seq and id and need no processing. It returns the position of
// the last one.
func (s *Store) AppendOutbox(recs []Record) (uint64, error) {
	var added int64
	var last uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		added = 0
		var err error
		last, err = s.putOutbox(tx, recs, &added)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("append to outbox: %w", err)
	}
	s.outLastSeq.Store(last)
	s.outBytes.Add(added)
	s.notifyOutbox()
	return last, nil
}

func readCheckpoint(tx *bolt.Tx) (*CheckpointMeta, error) {
	v := tx.Bucket(bucketCheckpoint).Get(keyCurrent)
	if v == nil {
		return nil, nil
	}
	var m CheckpointMeta
	if _, err := m.UnmarshalMsg(v); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return &m, nil
}

// CheckpointMeta returns the newest checkpoint's head, or nil when there is
// none.
func (s *Store) CheckpointMeta() (*CheckpointMeta, error) {
	var meta *CheckpointMeta
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if meta, err = readCheckpoint(tx); err != nil {
			return &CorruptError{Path: s.path, Err: err}
		}
		return nil
	})
	return meta, err
}

// LoadState passes every stored state key to fn (operator name, key,
// value; the slices are valid only during the call).
func (s *Store) LoadState(fn func(op string, key, value []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketState)
		return sb.ForEachBucket(func(name []byte) error {
			op := string(name)
			return sb.Bucket(name).ForEach(func(k, v []byte) error {
				return fn(op, k, v)
			})
		})
	})
}

// StateOps returns the names of the operators that have stored state.
func (s *Store) StateOps() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// outboxQuota drops the oldest outbox records while the outbox is over
// OutboxMaxBytes, counting them. added is adjusted by the bytes dropped.
func (s *Store) outboxQuota(tx *bolt.Tx, added *int64) error {
	total := s.outBytes.Load() + *added
	if total <= s.opts.OutboxMaxBytes {
		return nil
	}
	ob := tx.Bucket(bucketOutbox)
	c := ob.Cursor()
	var dropped uint64
	var keys [][]byte
	for k, v := c.First(); k != nil && total > s.opts.OutboxMaxBytes; k, v = c.Next() {
		total -= int64(len(v))
		*added -= int64(len(v))
		dropped++
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := ob.Delete(k); err != nil {
			return err
		}
	}
	return addUint(tx.Bucket(bucketMeta), metaOutboxDropped, dropped)
}
