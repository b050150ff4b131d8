package sensors_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/edged/edged/sensors"
)

func TestRawConformance(t *testing.T) { conformance(t, "raw") }

// FuzzRaw feeds the fuzz input line by line to one decoder.
func FuzzRaw(f *testing.F) {
	seedCorpus(f, "raw")
	f.Fuzz(func(t *testing.T, p []byte, mode uint8) {
		opts := fuzzOptions(mode)
		opts.Sensor = "dflt"
		d, err := sensors.New("raw", opts)
		if err != nil {
			t.Fatal(err)
		}
		fuzzDecode(t, d, bytes.Split(p, []byte("\n")))
	})
}

func TestRawLineTooLong(t *testing.T) {
	d, _ := sensors.New("raw", sensors.Options{Sensor: "s"})
	long := "1" + strings.Repeat(" ", 64<<10)
	if _, err := d.Decode(nil, []byte(long)); sensors.Reason(err) != "line too long" {
		t.Errorf("got %v, want line too long", err)
	}
}

func TestRawAllocs(t *testing.T) {
	for _, tc := range []struct {
		cols []string
		line string
	}{
		{nil, "21.5"},
		{[]string{"temp", "hum"}, "21.5 40"},
		{[]string{"temp", "hum", "pressure"}, "21.5, 40, 1013.25"},
	} {
		d, _ := sensors.New("raw", sensors.Options{Sensor: "probe", Columns: tc.cols})
		dst := make([]sensors.Reading, 0, 8)
		p := []byte(tc.line)
		if _, err := d.Decode(dst, p); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { d.Decode(dst[:0], p) }); n != 0 {
			t.Errorf("%s: %v allocs per Decode", p, n)
		}
	}
}

func BenchmarkRawDecode(b *testing.B) {
	for _, bc := range []struct {
		name string
		cols []string
		line string
	}{
		{"single", nil, "21.5"},
		{"columns", []string{"temp", "hum", "pressure"}, "21.5,40.25,1013"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d, _ := sensors.New("raw", sensors.Options{Sensor: "probe", Columns: bc.cols})
			p := []byte(bc.line)
			dst := make([]sensors.Reading, 0, 8)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = d.Decode(dst[:0], p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
