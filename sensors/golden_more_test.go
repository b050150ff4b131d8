package sensors_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/edged/edged/sensors"
)

// moreFormats are the formats whose golden cases this file runs, in the
// layout golden_test.go describes.
var moreFormats = []string{"senml", "nmea", "kv", "raw"}

func TestGoldenMore(t *testing.T) {
	for _, format := range moreFormats {
		for _, c := range goldenCases(t, format) {
			t.Run(c.name, func(t *testing.T) {
				got, gotErrs := c.run(t)
				if *update {
					writeGolden(t, c.dir, got, gotErrs)
					return
				}
				want, wantErrs := readGolden(t, c.dir)
				if g, w := strings.Join(gotErrs, "\n"), strings.Join(wantErrs, "\n"); g != w {
					t.Errorf("errors:\ngot:\n%s\nwant:\n%s", g, w)
				}
				if g, w := encodeReadings(got), encodeReadings(want); g != w {
					t.Errorf("readings:\ngot:\n%s\nwant:\n%s", g, w)
				}
			})
		}
	}
}

// allReasons are the documented reasons, the older ones and those added
// with the formats of this file.
var allReasons = []error{
	sensors.ErrNotObject, sensors.ErrInvalidJSON, sensors.ErrInvalidCSV, sensors.ErrInvalidLine,
	sensors.ErrNoSensor, sensors.ErrSensorType, sensors.ErrMetricType, sensors.ErrNoValue,
	sensors.ErrNotNumber, sensors.ErrUnreadableTS, sensors.ErrTSRange, sensors.ErrLineTooLong,
	sensors.ErrPayloadTooLong, sensors.ErrFieldCount, sensors.ErrHeaderNoSensor, sensors.ErrHeaderData,
	sensors.ErrNotArray, sensors.ErrInvalidSenML, sensors.ErrRelativeTime,
	sensors.ErrNotNMEA, sensors.ErrMissingChecksum, sensors.ErrBadChecksum, sensors.ErrInvalidNMEA,
	sensors.ErrInvalidKV,
}

// TestGoldenMoreReasons checks that every decode error of the golden cases
// of moreFormats has a documented reason, and that the cases cover them.
func TestGoldenMoreReasons(t *testing.T) {
	seen := map[string]bool{}
	for _, format := range moreFormats {
		for _, c := range goldenCases(t, format) {
			d, err := c.newDecoder()
			if err != nil {
				continue
			}
			for _, p := range c.payloads {
				_, err := d.Decode(nil, p)
				if err == nil {
					continue
				}
				r := sensors.Reason(err)
				found := false
				for _, want := range allReasons {
					found = found || errors.Is(err, want)
				}
				if !found || !strings.HasPrefix(err.Error(), r) {
					t.Errorf("%s: error %q wraps no documented reason", c.name, err)
				}
				seen[format+": "+r] = true
			}
		}
	}
	for _, want := range []string{
		"senml: not a JSON array", "senml: invalid JSON", "senml: invalid SenML", "senml: no sensor",
		"senml: no value", "senml: value is not a number", "senml: unreadable timestamp",
		"senml: timestamp out of range", "senml: relative time not supported",
		"nmea: not an NMEA sentence", "nmea: missing checksum", "nmea: bad checksum",
		"nmea: invalid NMEA sentence", "nmea: value is not a number", "nmea: unreadable timestamp",
		"kv: invalid key=value line", "kv: no sensor", "kv: no value", "kv: value is not a number",
		"kv: unreadable timestamp", "kv: timestamp out of range",
		"raw: value is not a number", "raw: wrong number of fields", "raw: no value",
	} {
		if !seen[want] {
			t.Errorf("no golden case covers %s", want)
		}
	}
}

// TestReasonsNew checks that Reason reports the new reasons alone, however
// they are wrapped.
func TestReasonsNew(t *testing.T) {
	for _, r := range allReasons {
		if got := sensors.Reason(fmt.Errorf("context: %w: detail", r)); got != r.Error() {
			t.Errorf("Reason(%v) = %q", r, got)
		}
	}
}
