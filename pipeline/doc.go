// Package pipeline is edged's event-time engine: per-source watermarks, the
// combined watermark, keyed tumbling, sliding and session windows with
// allowed lateness, and their aggregates. It implements SEMANTICS.md
// sections 2 to 5; this comment records the choices made where that page is
// silent.
//
// # Threading
//
// An Engine is single-threaded: Process, Tick, Flush, Snapshot and Restore
// must be called from one goroutine, which also runs the Sink. There are no
// locks on the hot path. A run is a deterministic function of the order of
// Process calls (and of the processing times passed to Tick, for idleness).
//
// # Watermarks
//
// Each source's watermark is maxTs - max_out_of_orderness - 1, advanced
// right after each of its readings is processed. A declared source that has
// not delivered yet holds the combined watermark at MinWatermark until it
// delivers or becomes idle. Idleness is measured in processing time and
// evaluated by Tick; an idle source rejoins the minimum with its next
// reading, and the combined watermark never goes backwards. When every
// source is idle the watermark holds, as in Flink.
//
// # Lateness
//
// A reading is checked against the combined watermark as it was before the
// reading. It is late for a window operator when every window of its key it
// would belong to satisfies watermark >= end-1+allowed_lateness. For a
// session window the reading's own window [ts, ts+gap) is first merged with
// the key's live sessions, as Flink does, so a reading that touches a live
// session joins it even if its own window would be late. Lateness is per
// window operator: a reading late for two configured windows yields two
// late records, each naming its window in a "window" field.
//
// # Firing
//
// A window fires once when the watermark reaches end-1. Firings caused by
// one watermark advance come in a canonical order: by time, then window in
// config order, then key, so the output does not depend on arrival order or
// map iteration. With allowed lateness, a reading that lands in a window
// that already fired (but whose state is kept until end-1+lateness) fires it
// again at once with rev+1. A window that had no reading when the watermark
// passed its end, and receives one within allowed lateness, fires at once
// with rev 0.
//
// Session windows carry their firing count through merges: a session that
// grows after it fired fires again (at once, or when the watermark reaches
// its new end) with rev = the highest count among the merged sessions. Its
// start and end may differ from the earlier firing; a consumer that keeps
// the newest rev of overlapping sessions of a key has the current view.
//
// # Sliding windows
//
// Sliding windows keep one aggregate per pane of gcd(size, slide) and
// combine the panes of a window when it fires, so a reading costs one pane
// update, not size/slide window updates.
//
// # Aggregates
//
// first and last are by event time, ties broken by arrival order (first
// keeps the earlier arrival, last takes the later). stddev is the
// population standard deviation, computed with Welford's method and merged
// with Chan's formula. Percentiles pNN come from a DDSketch with 1% relative
// accuracy (internal/sketch), interpolated like numpy's default and clamped
// to the exact min and max.
//
// # State
//
// Snapshot returns the whole state as plain data (State); Restore loads it
// into an engine built from the same config or a changed one. Each
// operator's state is stored under its name ("detector/<name>" for a
// detector) with a fingerprint of its kind and shape (window type, size,
// slide, gap, offset, key, the aggregates' needs; a detector's kind and
// state layout, key and on_window). An operator no longer configured, or
// whose fingerprint changed, starts empty (BeginRestore lists it); one
// whose other parameters changed keeps its state (a lowered
// allowed_lateness frees what no reading can reach any more). A stored key
// that cannot be decoded resets its operator (StateError), never the
// engine. A stored source that is no longer declared is not restored, so it
// cannot hold the watermark back. Idleness is part of the state: it entered
// the engine from the log.
package pipeline
