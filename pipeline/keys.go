package pipeline

import "math"

// noTimer marks a key with nothing scheduled.
const noTimer int64 = math.MaxInt64

// kkey is a key as the map sees it: two strings, so that a lookup by
// (sensor, metric) needs no concatenation and no allocation.
type kkey struct{ a, b string }

// keyState is the state of one key in one window operator. Aligned windows
// (tumbling, sliding) use panes and fired; session windows use sess.
type keyState struct {
	key   string // the key as written in records
	k     kkey
	panes []pane     // aligned: sorted by start; a window into pbuf
	pbuf  []pane     // the whole buffer panes lives in (see insertPane)
	fired []firedWin // aligned with lateness: fired, not yet cleaned; by end
	sess  []session  // session: sorted by start, disjoint, not touching; a window into sbuf
	sbuf  []session
	sl    *slider // sliding windows of many panes: cached partial aggregates
	timer int64   // next event time of this key, noTimer if none
	hidx  int     // index in the operator's heap, -1 when not queued
	dirty bool    // changed since the last snapshot
}

// insertPane inserts an empty pane starting at start at index i.
func (ks *keyState) insertPane(i int, start int64) {
	ks.panes, ks.pbuf = insertAt(ks.panes, ks.pbuf, i, pane{start: start})
}

// insertAt inserts v at index i of items, a window into buf, and returns
// both. Items leave from the front by reslicing (items = items[n:]), so the
// steady turnover of panes and sessions (one in at the back, one out at the
// front) moves no memory; the free space in front is reclaimed here when
// the buffer is full.
func insertAt[T any](items, buf []T, i int, v T) ([]T, []T) {
	n := len(items)
	if n == cap(items) {
		if front := cap(buf) - cap(items); front > 0 && front >= cap(buf)/4 {
			copy(buf, items)
			clear(buf[n:])
			items = buf[:n]
		} else {
			nb := make([]T, n, 2*n+2)
			copy(nb, items)
			buf = nb[:cap(nb)]
			items = nb
		}
	}
	items = items[:n+1]
	copy(items[i+1:], items[i:n])
	items[i] = v
	return items, buf
}

func (ks *keyState) empty() bool {
	return len(ks.panes) == 0 && len(ks.fired) == 0 && len(ks.sess) == 0
}

// pane is the aggregate of one slice-sized piece of event time of a key.
type pane struct {
	start int64
	agg   aggState
}

// firedWin remembers how often an aligned window fired, while it may still
// take late readings.
type firedWin struct {
	end   int64
	fires int32
}

// session is one session window of a key.
type session struct {
	start, end int64
	fires      int32
	pending    bool // holds readings not yet in a firing at its current end
	agg        aggState
}

// keyHeap orders keys by (timer, key) so that timers fire in a canonical
// order that does not depend on arrival order or map iteration.
type keyHeap []*keyState

func (h keyHeap) less(i, j int) bool {
	a, b := h[i], h[j]
	if a.timer != b.timer {
		return a.timer < b.timer
	}
	return a.key < b.key
}

func (h keyHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx = i
	h[j].hidx = j
}

func (h keyHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h keyHeap) down(i int) bool {
	i0 := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

// set places ks in the heap at timer t, or removes it when t is noTimer.
func (h *keyHeap) set(ks *keyState, t int64) {
	if t == noTimer {
		if ks.hidx >= 0 {
			h.remove(ks.hidx)
		}
		ks.timer = noTimer
		return
	}
	if ks.hidx < 0 {
		ks.timer = t
		ks.hidx = len(*h)
		*h = append(*h, ks)
		h.up(ks.hidx)
		return
	}
	if ks.timer == t {
		return
	}
	ks.timer = t
	if !h.down(ks.hidx) {
		h.up(ks.hidx)
	}
}

func (h *keyHeap) remove(i int) {
	old := *h
	n := len(old) - 1
	ks := old[i]
	if n != i {
		old.swap(i, n)
		old = old[:n]
		if !old.down(i) {
			old.up(i)
		}
	} else {
		old = old[:n]
	}
	ks.hidx = -1
	*h = old
}

// top returns the key with the earliest timer, or nil.
func (h keyHeap) top() *keyState {
	if len(h) == 0 {
		return nil
	}
	return h[0]
}
