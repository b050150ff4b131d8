package pipeline

// SourceWM is one source's event-time progress, for monitoring.
type SourceWM struct {
	Name string
	// Seen is false until the source's first reading: MaxTS and Watermark
	// are then meaningless (the source holds the combined watermark at
	// MinWatermark unless it is idle).
	Seen bool
	// MaxTS is the newest event time the source delivered, Unix ms.
	MaxTS int64
	// Watermark is the source's own watermark: MaxTS minus its
	// out-of-orderness bound, minus 1 ms.
	Watermark int64
	// Idle is true while the source is marked idle and does not hold back
	// the combined watermark.
	Idle bool
}

// SourceWatermarks returns every known source's event-time progress, in
// order of first appearance. Like every Engine method it must be called
// on the engine's goroutine.
func (e *Engine) SourceWatermarks() []SourceWM {
	out := make([]SourceWM, len(e.sources))
	for i, s := range e.sources {
		out[i] = SourceWM{Name: s.name, Seen: s.has, Idle: s.idle, Watermark: s.watermark()}
		if s.has {
			out[i].MaxTS = s.maxTS
		}
	}
	return out
}
