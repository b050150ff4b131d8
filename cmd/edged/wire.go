package main

import (
	"errors"
	"fmt"

	"github.com/edged/edged/cep"

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

// detectorSpecs builds the configured detectors. A detector the cep
// package refuses (a bad pattern expression, say) is a config error at the
// detector's line.
func detectorSpecs(cfg *config.Config) ([]pipeline.DetectorSpec, error) {
	var out []pipeline.DetectorSpec
	var errs []error
	for i := range cfg.Detectors {
		d := &cfg.Detectors[i]
		at := fmt.Sprintf("detector.%d", i)
		disp := fmt.Sprintf("detector[%d] %q", i, d.Name)
		spec := cep.Spec{Name: d.Name, Type: d.Type, Above: d.Above, Below: d.Below, Hysteresis: d.Hysteresis,
			ForCount: d.ForCount, ForDuration: d.ForDuration.D(), Sigma: d.Sigma, Window: d.Window.D(), Alpha: d.Alpha,
			Warmup: d.Warmup, MaxRate: d.MaxRate, Duration: d.Duration.D(), Min: d.Min, Max: d.Max,
			Tolerance: cep.Tolerance{Value: d.Tolerance.Value, Relative: d.Tolerance.Relative},
			MinScore:  d.MinScore, ResolveCount: d.ResolveCount,
			Renotify: d.Renotify.D(), ProcessingTime: d.ProcessingTime}
		if d.Type == "pattern" {
			spec.Pattern = &cep.PatternSpec{Steps: d.Steps, NotFollowedBy: d.NotFollowedBy, Within: d.Within.D(), Times: d.Times, MaxPartial: d.MaxPartial}
		}
		det, err := cep.New(spec)
		if err != nil {
			if u := errors.Unwrap(err); u != nil && !errors.Is(err, cep.ErrUnknownType) {
				err = u // the detector's name is in disp already
			}
			key := at
			if d.Type == "pattern" {
				key = at + ".steps"
			}
			errs = append(errs, cfg.Problemf(key, disp, "%v", err))
			continue
		}
		kb, err := pipeline.ParseKeyBy(d.KeyBy)
		if err != nil {
			errs = append(errs, cfg.Problemf(at+".key_by", disp, "%v", err))
			continue
		}
		out = append(out, pipeline.DetectorSpec{Detector: det, Match: d.Match, KeyBy: kb,
			Sensors: d.Sensors, Metrics: d.Metrics, Sources: d.FromSources, OnWindow: d.OnWindow, Field: d.Field,
			Severity: d.Severity, Labels: d.Labels})
	}
	if len(errs) > 0 {
		return nil, usageError{errors.Join(errs...)}
	}
	return out, nil
}
