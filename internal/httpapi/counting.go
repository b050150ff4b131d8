package httpapi

import (
	"context"

	"github.com/edged/edged/ingest"
	"github.com/edged/edged/store"
)

// counting is an ingest.Appender that counts, per source, the readings
// and the quarantined payloads of the requests the appender accepted.
type counting struct {
	next ingest.Appender
	s    *Server
}

type srcCount struct {
	name        string
	readings    int64
	quarantined int64
}

func (c *counting) Append(ctx context.Context, r store.AppendRequest) error {
	// Counted before the request is handed over: from then on the
	// committer's goroutine owns it.
	var one [1]srcCount
	counts := one[:0]
	at := func(name string) int {
		for i := range counts {
			if counts[i].name == name {
				return i
			}
		}
		counts = append(counts, srcCount{name: name})
		return len(counts) - 1
	}
	cur := -1
	for i := range r.Entries {
		e := &r.Entries[i]
		if e.Kind != store.EntryReading {
			continue
		}
		if cur < 0 || counts[cur].name != e.Source {
			cur = at(e.Source)
		}
		counts[cur].readings++
	}
	for i := range r.Quarantine {
		counts[at(r.Quarantine[i].Source)].quarantined++
	}
	if err := c.next.Append(ctx, r); err != nil {
		return err
	}
	for i := range counts {
		st := c.s.source(counts[i].name)
		st.readings.Add(counts[i].readings)
		st.bad.Add(counts[i].quarantined)
	}
	return nil
}
