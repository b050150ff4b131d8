package sensortest_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensortest"
)

// fake decodes "sensor=value" payloads and misbehaves as told.
type fake struct {
	bug string
	n   int
}

func (f *fake) Decode(dst []sensors.Reading, p []byte) ([]sensors.Reading, error) {
	f.n++
	sensor, value, ok := bytes.Cut(p, []byte("="))
	if f.bug == "panic" && len(p) == 2 {
		panic("boom")
	}
	if !ok || len(sensor) == 0 || len(value) == 0 {
		if f.bug == "grow on error" {
			return append(dst, sensors.Reading{Sensor: "x"}), errors.New("bad")
		}
		if f.bug == "long error" {
			return dst, errors.New(strings.Repeat("bad ", 100))
		}
		return dst, errors.New("bad")
	}
	r := sensors.Reading{Sensor: strings.ToValidUTF8(string(sensor), "?"), Value: float64(len(value)), TS: sensors.NoTS}
	switch f.bug {
	case "overwrite":
		if len(dst) > 0 {
			dst[0].Value = 99
		}
	case "truncate":
		dst = dst[:0]
	case "nan":
		r.Value = math.NaN()
	case "ts":
		r.TS = sensors.MaxTS + 1
	case "source":
		r.Source = "me"
	case "state":
		r.Value += float64(f.n)
	case "empty sensor":
		r.Sensor = ""
	}
	return append(dst, r), nil
}

func TestCheck(t *testing.T) {
	valid := [][]byte{[]byte("s1=21.5"), []byte("s2=3")}
	for _, bug := range []string{"", "panic", "grow on error", "long error", "overwrite", "truncate",
		"nan", "ts", "source", "state", "empty sensor"} {
		err := sensortest.Check(func() sensors.Decoder { return &fake{bug: bug} }, valid)
		if bug == "" && err != nil {
			t.Errorf("correct decoder failed: %v", err)
		}
		if bug != "" && err == nil {
			t.Errorf("bug %q not caught", bug)
		}
	}
	if err := sensortest.Check(func() sensors.Decoder { return &fake{} }, [][]byte{[]byte("nope")}); err == nil {
		t.Error("an invalid sample was not reported")
	}
}
