package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FormatVersion is the version of the on-disk layout (FORMAT.md). A file
// written by a newer layout is refused; an older one is migrated or refused
// with a message saying which release can read it.
const FormatVersion = 1

// FileName is the name of the data file inside the data directory.
const FileName = "edged.db"

// Bucket names.
var (
	bucketMeta       = []byte("meta")
	bucketLog        = []byte("log")
	bucketPositions  = []byte("positions")
	bucketCheckpoint = []byte("checkpoint")
	bucketState      = []byte("state")
	bucketOutbox     = []byte("outbox")
	bucketCursors    = []byte("cursors")
	bucketQuarantine = []byte("quarantine")

	allBuckets = [][]byte{bucketMeta, bucketLog, bucketPositions, bucketCheckpoint, bucketState, bucketOutbox, bucketCursors, bucketQuarantine}
)

// Keys in the meta bucket.
var (
	metaVersion           = []byte("format_version")
	metaDevice            = []byte("device_id")
	metaCreated           = []byte("created")
	metaClean             = []byte("clean_shutdown")
	metaLogDropped        = []byte("log_dropped")
	metaOutboxDropped     = []byte("outbox_dropped")
	metaQuarantineDropped = []byte("quarantine_dropped")
	metaQuarantineTotal   = []byte("quarantine_total")
	metaQuarantineCount   = []byte("quarantine_count")
	keyCurrent            = []byte("current")
	keyFlushed            = []byte("flushed")
)

// Errors of Open, to test with errors.Is.
var (
	// ErrLocked: another process holds the data file.
	ErrLocked = errors.New("data file is locked by another process")
	// ErrNewerFormat: the file was written by a newer edged.
	ErrNewerFormat = errors.New("data file written by a newer edged")
	// ErrOlderFormat: the file was written by an older edged whose format
	// this one cannot migrate.
	ErrOlderFormat = errors.New("data file written by an older edged")
	// ErrCorrupt: the file cannot be read as an edged data file.
	ErrCorrupt = errors.New("data file is corrupt")
)

// Options tunes a Store. The zero value (or nil) means the defaults noted on
// each field.
type Options struct {
	// DeviceID is recorded in the file's metadata. Default "".
	DeviceID string
	// LogMaxBytes caps the ingest log; the oldest chunks already covered by
	// a checkpoint are dropped first. Default 256 MiB. On 32-bit ARM keep
	// the whole file well under 1 GiB (see MaxFileBytes).
	LogMaxBytes int64
	// LogRetain drops log chunks older than this (by ingest time) once a
	// checkpoint covers them. Default 7 days; negative keeps forever.
	LogRetain time.Duration
	// OutboxMaxBytes caps the outbox; when full the oldest records are
	// dropped and counted. Default 64 MiB.
	OutboxMaxBytes int64
	// QuarantineMax caps the number of quarantined payloads; the oldest go
	// first. Default 10,000.
	QuarantineMax int
	// LockTimeout is how long Open waits for another process's lock on the
	// file before failing with ErrLocked. Default 1 s.
	LockTimeout time.Duration
	// MaxFileBytes refuses to grow the file beyond this size (bbolt's
	// MaxSize); writes then fail like a full disk. Default: none on 64-bit,
	// 1 GiB on 32-bit, where bbolt's memory map cannot exceed 2 GiB.
	MaxFileBytes int
	// NoSync skips fsync. Only for benchmarks and tests: a power cut then
	// loses committed data.
	NoSync bool
	// OpenFile replaces os.OpenFile for the data file (fault injection in
	// tests).
	OpenFile func(string, int, os.FileMode) (*os.File, error)
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
	// ReadOnly opens an existing file for reading only (edged inspect,
	// replay): no write, the clean-shutdown mark untouched, and other
	// readers may open it at the same time.
	ReadOnly bool
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.LogMaxBytes == 0 {
		r.LogMaxBytes = 256 << 20
	}
	if r.LogRetain == 0 {
		r.LogRetain = 7 * 24 * time.Hour
	}
	if r.OutboxMaxBytes == 0 {
		r.OutboxMaxBytes = 64 << 20
	}
	if r.QuarantineMax == 0 {
		r.QuarantineMax = 10000
	}
	if r.LockTimeout == 0 {
		r.LockTimeout = time.Second
	}
	if r.MaxFileBytes == 0 && unsafe.Sizeof(uintptr(0)) == 4 {
		r.MaxFileBytes = 1 << 30
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return r
}

// Store is edged's data file: the ingest log, checkpoints, the outbox and
// the quarantine in one bbolt file. Its methods are safe for concurrent use;
// bbolt serialises the write transactions.
type Store struct {
	db   *bolt.DB
	path string
	opts Options

	// Opened says what Open found.
	Opened OpenInfo

	logEnd     atomic.Uint64 // next offset to append
	logFirst   atomic.Uint64 // first offset still in the log
	logBytes   atomic.Int64  // bytes of the log's values
	cpOffset   atomic.Uint64 // offset of the newest checkpoint: retention stops there
	outBytes   atomic.Int64
	outLastSeq atomic.Uint64 // seq of the newest outbox record, 0 if none ever

	closeOnce sync.Once

	notifyMu  sync.Mutex
	outNotify chan struct{}   // closed when records are committed to the outbox
	outputs   map[string]bool // registered outputs, whose cursors hold records
}

// OpenInfo describes the file Open found.
type OpenInfo struct {
	Created       bool   // the file was new
	Unclean       bool   // the previous run did not close it (crash, power cut, kill -9)
	Checked       bool   // a consistency check ran (after an unclean stop)
	FormatVersion int    // the version found (FormatVersion after a migration)
	PrevDeviceID  string // the device id recorded before, when it changed
}

// Path returns the data file's path.
func (s *Store) Path() string { return s.path }

// Open opens or creates the data file in dir. A second process opening the
// same dir fails with ErrLocked after Options.LockTimeout. After an unclean
// stop the file is checked for consistency before use.
func Open(dir string, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if !o.ReadOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
	}
	path := filepath.Join(dir, FileName)
	_, statErr := os.Stat(path)
	if o.ReadOnly && statErr != nil {
		return nil, fmt.Errorf("no data file at %s: edged has not run with this data_dir (%w)", path, statErr)
	}
	var pre *OpenInfo
	if statErr == nil {
		if err := CheckExtent(path); err != nil {
			return nil, err
		}
		if !o.ReadOnly {
			// bbolt's read-write open scans the free pages on a goroutine
			// of its own, where a damaged page would crash edged: after an
			// unclean stop, read the whole file here first, guarded.
			var err error
			if pre, err = precheck(path, &o); err != nil {
				return nil, err
			}
		}
	}
	bo := &bolt.Options{
		Timeout:        o.LockTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		MaxSize:        o.MaxFileBytes,
		NoSync:         o.NoSync,
		OpenFile:       o.OpenFile,
		ReadOnly:       o.ReadOnly,
	}
	db, err := bolt.Open(path, 0o600, bo)
	if err != nil {
		return nil, openError(path, err)
	}
	s := &Store{db: db, path: path, opts: o}
	s.Opened.Created = errors.Is(statErr, os.ErrNotExist)
	if pre != nil {
		s.Opened.Unclean, s.Opened.Checked = pre.Unclean, pre.Checked
	}
	if err := s.guardedInit(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) guardedInit() (err error) {
	defer ReadGuard(s.path, &err, nil)()
	return s.init()
}

// precheck opens the file read-only, reads every page under ReadGuard, and
// when its last run did not stop cleanly runs bbolt's consistency check, so
// that damage gives a CorruptError rather than a crash.
func precheck(path string, o *Options) (info *OpenInfo, err error) {
	defer ReadGuard(path, &err, nil)()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: o.LockTimeout, OpenFile: o.OpenFile})
	if err != nil {
		return nil, openError(path, err)
	}
	defer db.Close()
	info = &OpenInfo{}
	err = db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return nil // not initialised yet: a crash during the first open
		}
		info.Unclean = string(m.Get(metaClean)) != "1"
		return nil
	})
	if err != nil {
		return info, err
	}
	// bbolt's read-write open reads every page anyway (it rebuilds the free
	// list, which edged does not store), so reading them here first costs
	// little I/O: a damaged page, even in a file closed cleanly, is caught.
	if err := touchAll(db); err != nil {
		return nil, &CorruptError{Path: path, Err: err}
	}
	if !info.Unclean {
		return info, nil
	}
	info.Checked = true
	var errs []error
	db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			if errs = append(errs, err); len(errs) >= 10 {
				break
			}
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return nil, &CorruptError{Path: path, Err: err}
	}
	return info, nil
}

func openError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("open %s: %w: another edged is using this data_dir; stop it, or give this one its own data_dir", path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return &CorruptError{Path: path, Err: err}
	}
	return fmt.Errorf("open %s: %w", path, err)
}

// CorruptError reports a data file that cannot be used, and says what to do.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: %v: %v. `edged inspect --check -c CONFIG` reports the damage; "+
		"to start fresh, stop edged and move the file aside (mv %s %s.broken): edged then creates a new one, "+
		"and `edged inspect --salvage %s.broken` prints the log entries that can still be read",
		e.Path, ErrCorrupt, e.Err, e.Path, e.Path, e.Path)
}

// Unwrap lets errors.Is match ErrCorrupt and the cause.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

func (s *Store) init() error {
	if s.opts.ReadOnly {
		return s.initReadOnly()
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		v := m.Get(metaVersion)
		if v == nil {
			// New file (or one from before metadata existed: none such).
			if err := putUint(m, metaVersion, FormatVersion); err != nil {
				return err
			}
			if err := putUint(m, metaCreated, uint64(s.opts.Now().UnixMilli())); err != nil {
				return err
			}
			s.Opened.FormatVersion = FormatVersion
		} else {
			ver, err := strconv.Atoi(string(v))
			if err != nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("format version %q is not a number", v)}
			}
			s.Opened.FormatVersion = ver
			if ver > FormatVersion {
				return fmt.Errorf("%s: %w (format %d; this edged reads format %d): run the newer edged, or move the file aside to start fresh", s.path, ErrNewerFormat, ver, FormatVersion)
			}
			if ver < FormatVersion {
				return fmt.Errorf("%s: %w (format %d; this edged reads format %d and has no migration): run the edged that wrote it to deliver its outbox, then move the file aside to start fresh", s.path, ErrOlderFormat, ver, FormatVersion)
			}
		}
		if prev := string(m.Get(metaDevice)); prev != s.opts.DeviceID {
			if prev != "" {
				s.Opened.PrevDeviceID = prev
			}
			if err := m.Put(metaDevice, []byte(s.opts.DeviceID)); err != nil {
				return err
			}
		}
		return m.Put(metaClean, []byte("0"))
	})
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) || errors.Is(err, ErrNewerFormat) || errors.Is(err, ErrOlderFormat) {
			return err
		}
		return fmt.Errorf("initialise %s: %w", s.path, err)
	}
	// After an unclean stop, precheck has read and checked the file.
	return s.loadCounters()
}

func (s *Store) initReadOnly() error {
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("bucket %q missing: not an edged data file", b)}
			}
		}
		m := tx.Bucket(bucketMeta)
		ver, _ := strconv.Atoi(string(m.Get(metaVersion)))
		s.Opened.FormatVersion = ver
		if ver > FormatVersion {
			return fmt.Errorf("%s: %w (format %d; this edged reads format %d)", s.path, ErrNewerFormat, ver, FormatVersion)
		}
		s.Opened.Unclean = string(m.Get(metaClean)) != "1"
		return nil
	})
	if err != nil {
		return err
	}
	return s.loadCounters()
}

// Check runs bbolt's consistency check over the whole file. Do not run it
// while another goroutine writes: bbolt's check in a read transaction may
// then report pages the writer is freeing.
func (s *Store) Check() error {
	var errs []error
	err := s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
			if len(errs) >= 10 {
				break
			}
		}
		return nil
	})
	if err == nil {
		err = errors.Join(errs...)
	}
	if err != nil {
		return &CorruptError{Path: s.path, Err: err}
	}
	return nil
}

// loadCounters reads the in-memory figures: log bounds and size, outbox
// size, newest checkpoint offset.
func (s *Store) loadCounters() error {
	return s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLog).Cursor()
		var bytes int64
		first, end := uint64(0), uint64(0)
		k, v := c.First()
		empty := k == nil
		if !empty {
			first = binary.BigEndian.Uint64(k)
		}
		for ; k != nil; k, v = c.Next() {
			bytes += int64(len(v))
		}
		if k, v := c.Last(); k != nil {
			n, err := chunkLen(v)
			if err != nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("last log chunk: %w", err)}
			}
			end = binary.BigEndian.Uint64(k) + uint64(n)
		}
		if cp, err := readCheckpoint(tx); err != nil {
			return &CorruptError{Path: s.path, Err: err}
		} else if cp != nil {
			s.cpOffset.Store(cp.Offset)
			// The log may have been emptied by retention: it continues at
			// the checkpoint's offset at least.
			end = max(end, cp.Offset)
			if empty {
				first = end
			}
		}
		s.logFirst.Store(first)
		s.logEnd.Store(end)
		s.logBytes.Store(bytes)
		var ob int64
		oc := tx.Bucket(bucketOutbox).Cursor()
		for k, v := oc.First(); k != nil; k, v = oc.Next() {
			ob += int64(len(v))
		}
		s.outBytes.Store(ob)
		// The outbox's last position: its last record's, or, when every
		// record was delivered and deleted, no less than the seqs committed
		// and the outputs' cursors (a position below a cursor would never
		// be sent).
		var last uint64
		if k, _ := oc.Last(); k != nil {
			last = binary.BigEndian.Uint64(k)
		} else {
			if cp, _ := readCheckpoint(tx); cp != nil && cp.NextSeq > 0 {
				last = cp.NextSeq - 1
			}
			if f, _ := readFlush(tx); f != nil && f.NextSeq > 0 {
				last = max(last, f.NextSeq-1)
			}
			tx.Bucket(bucketCursors).ForEach(func(_, v []byte) error {
				if len(v) == 8 {
					last = max(last, binary.BigEndian.Uint64(v))
				}
				return nil
			})
		}
		s.outLastSeq.Store(last)
		return nil
	})
}

// Close records a clean shutdown and closes the file. It is idempotent.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		var uerr error
		if !s.opts.ReadOnly {
			uerr = s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(metaClean, []byte("1"))
			})
		}
		err = errors.Join(uerr, s.db.Close())
	})
	return err
}

// DB exposes the bbolt handle to the package's tests and to inspect.
func (s *Store) DB() *bolt.DB { return s.db }

func u64key(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func putUint(b *bolt.Bucket, key []byte, v uint64) error {
	return b.Put(key, strconv.AppendUint(nil, v, 10))
}

func getUint(b *bolt.Bucket, key []byte) uint64 {
	v, _ := strconv.ParseUint(string(b.Get(key)), 10, 64)
	return v
}

func addUint(b *bolt.Bucket, key []byte, d uint64) error {
	if d == 0 {
		return nil
	}
	return putUint(b, key, getUint(b, key)+d)
}

// Retryable reports whether a failed write may succeed later without any
// change by edged: the disk or the file's size cap was full, or the device
// reported an I/O error. Such failures pause intake; others are fatal.
func Retryable(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EIO) ||
		errors.Is(err, berrors.ErrMaxSizeReached) {
		return true
	}
	// bbolt formats the errors of growing the file with %s, losing the
	// errno: recognise their text.
	if err != nil {
		msg := err.Error()
		return strings.Contains(msg, "no space left on device") || strings.Contains(msg, "disk quota exceeded") ||
			strings.Contains(msg, "input/output error")
	}
	return false
}
