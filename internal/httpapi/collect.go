package httpapi

import (
	"encoding/binary"
	"os"
	"strconv"
	"time"

	"github.com/edged/edged/ingest"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/runner"
	"github.com/edged/edged/store"
	"github.com/edged/edged/uplink"
	bolt "go.etcd.io/bbolt"
)

// Status is the body of /status, and what /metrics is made of. Fields
// that are not known are null (or left out): the pipeline's figures until
// the runner publishes a snapshot, the store's without a store.
type Status struct {
	Device        string    `json:"device"`
	Version       string    `json:"version"`
	State         string    `json:"state"` // recovering | ready | stopping
	Ready         bool      `json:"ready"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`

	Pipeline   *PipelineStatus  `json:"pipeline"`
	Checkpoint CheckpointStatus `json:"checkpoint"`
	Store      *StoreStatus     `json:"store,omitempty"`
	Sources    []SourceStatus   `json:"sources"`
	Outputs    []OutputStatus   `json:"outputs"`
}

// PipelineStatus comes from the runner's latest snapshot.
type PipelineStatus struct {
	Offset             uint64  `json:"offset"`  // next log offset to process
	Backlog            uint64  `json:"backlog"` // log entries not processed yet
	Processed          int64   `json:"processed"`
	Watermark          *int64  `json:"watermark"` // combined, Unix ms; null before the first
	Readings           int64   `json:"readings"`
	Late               int64   `json:"late_records"`
	WindowRecords      int64   `json:"window_records"`
	Alerts             int64   `json:"alerts"`
	DetectorLate       int64   `json:"detector_late"`
	StateKeys          int     `json:"state_keys"`
	StateResets        int64   `json:"state_resets"` // operators reset at restore: their stored state could not be restored
	SnapshotAgeSeconds float64 `json:"snapshot_age_seconds"`
}

// CheckpointStatus combines the runner's figures and the newest
// checkpoint in the data file.
type CheckpointStatus struct {
	Count             *int64     `json:"count,omitempty"`       // commits: records, and state every state_interval
	StateCount        *int64     `json:"state_count,omitempty"` // state checkpoints among them
	LastCommitSeconds *float64   `json:"last_commit_seconds,omitempty"`
	LastPauseSeconds  *float64   `json:"last_pause_seconds,omitempty"`
	MaxPauseSeconds   *float64   `json:"max_pause_seconds,omitempty"`
	AgeSeconds        *float64   `json:"age_seconds,omitempty"`
	Offset            *uint64    `json:"offset,omitempty"`         // of the newest state checkpoint: a replay after a crash starts here
	RecordsOffset     *uint64    `json:"records_offset,omitempty"` // records are committed up to here, ahead of the state
	Committed         *time.Time `json:"committed,omitempty"`
	Keys              *int64     `json:"keys,omitempty"`  // state keys stored
	Bytes             *int64     `json:"bytes,omitempty"` // written by the newest checkpoint
}

// StoreStatus are the data file's figures.
type StoreStatus struct {
	FileBytes         int64   `json:"file_bytes"`
	LogFirst          uint64  `json:"log_first"`
	LogEnd            uint64  `json:"log_end"`
	LogEntries        uint64  `json:"log_entries"`
	LogBytes          *int64  `json:"log_bytes,omitempty"`
	LogDropped        uint64  `json:"log_dropped"`
	LogCommits        *int64  `json:"log_commits,omitempty"`
	LogCommitError    *string `json:"log_commit_error,omitempty"`
	OutboxRecords     uint64  `json:"outbox_records"`
	OutboxLastSeq     uint64  `json:"outbox_last_seq"`
	OutboxBytes       *int64  `json:"outbox_bytes,omitempty"`
	OutboxDropped     uint64  `json:"outbox_dropped"`
	QuarantineTotal   uint64  `json:"quarantine_total"`
	QuarantineCount   uint64  `json:"quarantine_count"`
	QuarantineDropped uint64  `json:"quarantine_dropped"`
}

// SourceStatus is one source's figures. Readings and DecodeErrors count
// since this start of the daemon; the event-time figures come from the
// runner's snapshot; the connection figures from the source, for the types
// that keep them (mqtt, serial).
type SourceStatus struct {
	Name         string   `json:"name"`
	Type         string   `json:"type,omitempty"`
	Readings     int64    `json:"readings"`
	DecodeErrors int64    `json:"decode_errors"`
	MaxTS        *int64   `json:"max_ts,omitempty"`    // newest event time, Unix ms
	Watermark    *int64   `json:"watermark,omitempty"` // Unix ms
	LagSeconds   *float64 `json:"watermark_lag_seconds,omitempty"`
	Idle         *bool    `json:"idle,omitempty"`
	Received     *int64   `json:"messages_received,omitempty"`
	Connected    *bool    `json:"connected,omitempty"`
	Reconnects   *int64   `json:"reconnects,omitempty"`
	Dropped      *int64   `json:"dropped,omitempty"`
	LastError    string   `json:"last_error,omitempty"`
	// Modbus: a modbus source's polls and per-slave figures.
	Modbus *ingest.ModbusStats `json:"modbus,omitempty"`
}

// OutputStatus is one output's figures.
type OutputStatus struct {
	Name       string  `json:"name"`
	Cursor     uint64  `json:"cursor"`
	Backlog    uint64  `json:"backlog"` // outbox records it has not delivered
	Sent       *int64  `json:"sent,omitempty"`
	Acked      *int64  `json:"acked,omitempty"`
	Reconnects *int64  `json:"reconnects,omitempty"`
	LastError  *string `json:"last_error,omitempty"`
}

// sizer is a store that knows its log and outbox sizes from memory.
type sizer interface {
	Sizes() (logBytes, outboxBytes int64)
}

func ptr[T any](v T) *T { return &v }

func seconds(d time.Duration) float64 { return d.Seconds() }

// readiness says whether the pipeline has recovered, latching the answer.
// cpOffset is the newest committed checkpoint's offset, when known.
func (s *Server) readiness(cpOffset *uint64) (bool, string) {
	if s.stop.Load() {
		return false, "stopping"
	}
	if s.ready.Load() {
		return true, "ready"
	}
	ok := s.opts.RecoverFrom >= s.opts.RecoverTo
	if r := s.opts.Runner; r != nil && !ok {
		ok = r.Ready()
		if snap := r.Snapshot(); snap != nil && snap.Ready {
			ok = true
		}
	}
	if !ok && cpOffset == nil && s.opts.Store != nil {
		if m, err := s.opts.Store.CheckpointMeta(); err == nil && m != nil {
			cpOffset = &m.Offset
		}
	}
	if !ok && cpOffset != nil && *cpOffset >= s.opts.RecoverTo {
		ok = true
	}
	if ok {
		s.ready.Store(true)
		return true, "ready"
	}
	return false, "recovering"
}

// collect reads every figure; see the package doc for what is safe.
func (s *Server) collect() *Status {
	now := s.opts.Now()
	st := &Status{Device: s.opts.Device, Version: s.opts.Version, Started: s.started.UTC().Truncate(time.Millisecond),
		UptimeSeconds: now.Sub(s.started).Seconds(), Sources: []SourceStatus{}, Outputs: []OutputStatus{}}

	snap := s.snapshot()
	cursors := map[string]uint64{}
	if s.opts.Store != nil {
		st.Store = s.storeStatus(&st.Checkpoint, cursors)
		if a := s.opts.Appender; a != nil {
			as := a.Stats()
			st.Store.LogCommits = &as.Commits
			if as.LastErr != nil {
				st.Store.LogCommitError = ptr(as.LastErr.Error())
			}
		}
	}
	st.Ready, st.State = s.readiness(st.Checkpoint.Offset)

	// Pipeline and checkpoints.
	if r := s.opts.Runner; r != nil {
		st.Checkpoint.LastCommitSeconds = ptr(seconds(r.LastCommit()))
	}
	if snap != nil {
		p := &PipelineStatus{Offset: snap.Offset, Processed: snap.Processed,
			Readings: snap.Engine.Readings, Late: snap.Engine.Late, WindowRecords: snap.Engine.Fired, Alerts: snap.Engine.Alerts,
			DetectorLate: snap.Engine.DetectorLate, StateKeys: snap.Engine.Keys, StateResets: snap.StateResets, SnapshotAgeSeconds: now.Sub(snap.Taken).Seconds()}
		if st.Store != nil && st.Store.LogEnd > snap.Offset {
			p.Backlog = st.Store.LogEnd - snap.Offset
		}
		if snap.Watermark != pipeline.MinWatermark && snap.Watermark != pipeline.MaxWatermark {
			p.Watermark = ptr(snap.Watermark)
		}
		st.Pipeline = p
		st.Checkpoint.Count = ptr(snap.Checkpoints)
		st.Checkpoint.StateCount = ptr(snap.States)
		st.Checkpoint.LastPauseSeconds = ptr(seconds(snap.LastPause))
		st.Checkpoint.MaxPauseSeconds = ptr(seconds(snap.MaxPause))
		if !snap.LastCheckpoint.IsZero() {
			st.Checkpoint.AgeSeconds = ptr(now.Sub(snap.LastCheckpoint).Seconds())
		}
	} else if st.Checkpoint.Committed != nil {
		st.Checkpoint.AgeSeconds = ptr(now.Sub(*st.Checkpoint.Committed).Seconds())
	}

	// Sources: configured first, then any other seen in the log.
	wms := map[string]pipeline.SourceWM{}
	if snap != nil {
		for _, w := range snap.Sources {
			wms[w.Name] = w
			s.source(w.Name)
		}
	}
	s.mu.Lock()
	names := append([]string(nil), s.order...)
	states := make([]*sourceState, len(names))
	objs := make([]any, len(names))
	for i, n := range names {
		states[i] = s.srcs[n]
		objs[i] = states[i].obj
	}
	s.mu.Unlock()
	for i, n := range names {
		src := states[i]
		ss := SourceStatus{Name: n, Type: src.typ, Readings: src.readings.Load(), DecodeErrors: src.bad.Load()}
		if w, ok := wms[n]; ok {
			ss.Idle = ptr(w.Idle)
			if w.Seen {
				ss.MaxTS = ptr(w.MaxTS)
				ss.Watermark = ptr(w.Watermark)
				ss.LagSeconds = ptr(float64(now.UnixMilli()-w.Watermark) / 1000)
			}
		}
		switch o := objs[i].(type) {
		case interface{ Stats() ingest.MQTTStats }:
			ms := o.Stats()
			ss.Received, ss.Connected, ss.Reconnects, ss.Dropped = ptr(ms.Received), ptr(ms.Connected), ptr(ms.Reconnects), ptr(ms.Dropped)
			ss.LastError = ms.LastError
		case interface{ ModbusStats() ingest.ModbusStats }:
			ms := o.ModbusStats()
			ss.Connected, ss.Reconnects, ss.Modbus = ptr(ms.Connected), ptr(ms.Reconnects), &ms
		case interface {
			Dropped() int64
			Reconnects() int64
		}:
			ss.Dropped, ss.Reconnects = ptr(o.Dropped()), ptr(o.Reconnects())
		}
		st.Sources = append(st.Sources, ss)
	}

	// Outputs.
	for _, o := range s.opts.Outputs {
		out := OutputStatus{Name: o.Name(), Cursor: cursors[o.Name()]}
		if st.Store != nil && st.Store.OutboxLastSeq > out.Cursor {
			out.Backlog = st.Store.OutboxLastSeq - out.Cursor
		}
		if m, ok := o.(interface{ Stats() uplink.Stats }); ok {
			us := m.Stats()
			out.Sent, out.Acked, out.Reconnects = ptr(us.Sent), ptr(us.Acked), ptr(us.Reconnects)
			if us.LastErr != "" {
				out.LastError = ptr(us.LastErr)
			}
		}
		st.Outputs = append(st.Outputs, out)
	}
	return st
}

func (s *Server) snapshot() *runner.Snapshot {
	if s.opts.Runner == nil {
		return nil
	}
	return s.opts.Runner.Snapshot()
}

// storeStatus reads the store's atomics and, in one short read
// transaction, the counters kept in the data file (store/FORMAT.md), the
// outbox's first seq, the outputs' cursors and the newest checkpoint.
func (s *Server) storeStatus(cp *CheckpointStatus, cursors map[string]uint64) *StoreStatus {
	db := s.opts.Store
	ss := &StoreStatus{LogFirst: db.LogFirst(), LogEnd: db.LogEnd(), OutboxLastSeq: db.OutboxLastSeq()}
	if ss.LogEnd > ss.LogFirst {
		ss.LogEntries = ss.LogEnd - ss.LogFirst
	}
	if z, ok := any(db).(sizer); ok {
		l, o := z.Sizes()
		ss.LogBytes, ss.OutboxBytes = &l, &o
	}
	if fi, err := os.Stat(db.Path()); err == nil {
		ss.FileBytes = fi.Size()
	}
	u := func(b *bolt.Bucket, key string) uint64 {
		v, _ := strconv.ParseUint(string(b.Get([]byte(key))), 10, 64)
		return v
	}
	_ = db.DB().View(func(tx *bolt.Tx) error {
		if m := tx.Bucket([]byte("meta")); m != nil {
			ss.LogDropped = u(m, "log_dropped")
			ss.OutboxDropped = u(m, "outbox_dropped")
			ss.QuarantineTotal = u(m, "quarantine_total")
			ss.QuarantineCount = u(m, "quarantine_count")
			ss.QuarantineDropped = u(m, "quarantine_dropped")
		}
		if ob := tx.Bucket([]byte("outbox")); ob != nil {
			if k, _ := ob.Cursor().First(); len(k) == 8 && ss.OutboxLastSeq >= binary.BigEndian.Uint64(k) {
				ss.OutboxRecords = ss.OutboxLastSeq - binary.BigEndian.Uint64(k) + 1
			}
		}
		if cb := tx.Bucket([]byte("cursors")); cb != nil {
			for _, o := range s.opts.Outputs {
				if v := cb.Get([]byte(o.Name())); len(v) == 8 {
					cursors[o.Name()] = binary.BigEndian.Uint64(v)
				}
			}
		}
		if b := tx.Bucket([]byte("checkpoint")); b != nil {
			if v := b.Get([]byte("current")); v != nil {
				var m store.CheckpointMeta
				if _, err := m.UnmarshalMsg(v); err == nil {
					t := time.UnixMilli(m.Time).UTC()
					cp.Offset, cp.Committed, cp.Keys, cp.Bytes = &m.Offset, &t, &m.Keys, &m.Bytes
				}
			}
			if v := b.Get([]byte("flushed")); v != nil {
				var f store.FlushMeta
				if _, err := f.UnmarshalMsg(v); err == nil {
					cp.RecordsOffset = &f.Offset
				}
			}
		}
		return nil
	})
	return ss
}
