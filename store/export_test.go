package store

import bolt "go.etcd.io/bbolt"

// SetFormatVersionForTest rewrites the file's format version.
func (s *Store) SetFormatVersionForTest(v int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return putUint(tx.Bucket(bucketMeta), metaVersion, uint64(v))
	})
}
