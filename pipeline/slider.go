package pipeline

// Sliding windows with many panes per window (size/pane >= blockMinPanes)
// do not fold all their panes at every firing. Event time is cut into
// blocks of one window size, aligned like the windows. A window [s, e)
// contains exactly one block boundary m in (s, e], so it is the suffix of
// block [m-S, m) from s, followed by the prefix of block [m, m+S) up to e.
// Per key, the suffixes of one block are computed once (right to left) and
// the prefix of the next block grows pane by pane as windows fire, so a
// firing costs a few merges instead of size/pane.
//
// The grouping of the merges is a function of event time only, never of
// what happens to be cached: a cache that is missing or invalid (a reading
// landed in a pane it covers) is rebuilt the same way. So a run restored
// from a snapshot, which starts with empty caches, produces the same bits
// as one that never stopped.

// blockMinPanes is the number of panes per window from which the block
// scheme pays off.
const blockMinPanes = 8

// slider holds the per-key caches of the block scheme.
type slider struct {
	sufBlock int64
	sufOK    bool
	// suf[j] = pane_j ⊕ suf[j+1] over the block's slots of size P;
	// suf[n] is empty.
	suf []aggState

	preBlock int64
	preEnd   int64
	preOK    bool
	pre      aggState // pane_0 ⊕ pane_1 ⊕ ... up to preEnd (exclusive)
}

// touch invalidates the caches that cover the pane starting at p.
func (sl *slider) touch(p, size int64) {
	if sl.sufOK && p >= sl.sufBlock && p < sl.sufBlock+size {
		sl.sufOK = false
	}
	if sl.preOK && p >= sl.preBlock && p < sl.preEnd {
		sl.preOK = false
	}
}

func (sl *slider) release(pool *aggPool) {
	for i := range sl.suf {
		sl.suf[i].reset(pool)
	}
	sl.pre.reset(pool)
	sl.sufOK, sl.preOK = false, false
}

// blockAgg computes the aggregate of the window [start, end) of ks into
// dst with the block scheme.
func (op *windowOp) blockAgg(ks *keyState, start, end int64, dst *aggState) {
	sl := ks.sl
	if sl == nil {
		sl = &slider{}
		ks.sl = sl
	}
	S, P := op.S, op.P
	m := op.off + (floorDiv(start-op.off, S)+1)*S // the block boundary in (start, end]
	b := m - S

	// Suffixes of block b.
	n := int(S / P)
	if !sl.sufOK || sl.sufBlock != b {
		if len(sl.suf) != n+1 {
			for i := range sl.suf {
				sl.suf[i].reset(&op.pool)
			}
			sl.suf = make([]aggState, n+1)
		}
		sl.suf[n].reset(&op.pool)
		k := len(ks.panes) - 1
		for k >= 0 && ks.panes[k].start >= m {
			k--
		}
		for j := n - 1; j >= 0; j-- {
			slot := b + int64(j)*P
			s := &sl.suf[j]
			s.reset(&op.pool)
			if k >= 0 && ks.panes[k].start == slot {
				s.merge(&ks.panes[k].agg, op.needs, &op.pool)
				k--
			}
			s.merge(&sl.suf[j+1], op.needs, &op.pool)
		}
		sl.sufBlock, sl.sufOK = b, true
	}
	dst.reset(&op.pool)
	dst.merge(&sl.suf[(start-b)/P], op.needs, &op.pool)
	if m == end {
		return
	}

	// Prefix of block m up to end.
	if !sl.preOK || sl.preBlock != m || sl.preEnd > end {
		sl.pre.reset(&op.pool)
		sl.preBlock, sl.preEnd, sl.preOK = m, m, true
	}
	if sl.preEnd < end {
		k := len(ks.panes) - 1
		for k >= 0 && ks.panes[k].start >= sl.preEnd {
			k--
		}
		for k++; k < len(ks.panes) && ks.panes[k].start < end; k++ {
			sl.pre.merge(&ks.panes[k].agg, op.needs, &op.pool)
		}
		sl.preEnd = end
	}
	dst.merge(&sl.pre, op.needs, &op.pool)
}
