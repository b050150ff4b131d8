package main

import (
	"fmt"

	"github.com/edged/edged/internal/config"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
)

// loadConfig reads and validates a config; a bad one is a usage error.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usagef("no config: pass -c FILE (see configs/ for examples)")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

// windowSpecs translates the config's windows for the engine.
func windowSpecs(cfg *config.Config) ([]pipeline.WindowSpec, error) {
	var out []pipeline.WindowSpec
	for _, w := range cfg.Windows {
		spec := pipeline.WindowSpec{
			Name:            w.Name,
			Size:            w.Size.D(),
			Slide:           w.Slide.D(),
			Gap:             w.Gap.D(),
			Offset:          w.Offset.D(),
			AllowedLateness: cfg.Pipeline.AllowedLateness.D(),
			Sensors:         w.Sensors,
			Metrics:         w.Metrics,
			Sources:         w.FromSources,
			EarlyEvery:      w.EarlyEvery.D(),
		}
		if w.AllowedLateness != nil {
			spec.AllowedLateness = w.AllowedLateness.D()
		}
		switch w.Type {
		case "tumbling":
			spec.Type = pipeline.Tumbling
		case "sliding":
			spec.Type = pipeline.Sliding
		case "session":
			spec.Type = pipeline.Session
		default:
			return nil, fmt.Errorf("window %q: unknown type %q", w.Name, w.Type)
		}
		kb, err := pipeline.ParseKeyBy(w.KeyBy)
		if err != nil {
			return nil, fmt.Errorf("window %q: %w", w.Name, err)
		}
		spec.KeyBy = kb
		for _, a := range w.Aggregates {
			as, err := pipeline.ParseAgg(a)
			if err != nil {
				return nil, fmt.Errorf("window %q: %w", w.Name, err)
			}
			spec.Aggs = append(spec.Aggs, as)
		}
		out = append(out, spec)
	}
	return out, nil
}

// decoderOptions translates a source's field mapping for its decoder.
func decoderOptions(s *config.Source) sensors.Options {
	o := sensors.Options{
		SensorField: s.SensorField,
		MetricField: s.MetricField,
		ValueField:  s.ValueField,
		TSField:     s.TSField,
		TSUnit:      s.TSUnit,
		Sensor:      s.Sensor,
		Columns:     s.Columns,
	}
	if s.Delimiter != "" {
		o.Delimiter = []rune(s.Delimiter)[0]
	}
	return o
}

// sourceOOO is a source's bound on out-of-orderness.
func sourceOOO(cfg *config.Config, s *config.Source) config.Duration {
	if s != nil && s.MaxOutOfOrderness != nil {
		return *s.MaxOutOfOrderness
	}
	return cfg.Pipeline.MaxOutOfOrderness
}
