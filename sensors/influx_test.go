package sensors_test

import (
	"strings"
	"testing"

	"github.com/edged/edged/sensors"
)

func TestInfluxConformance(t *testing.T) { conformance(t, "influx") }

func FuzzInflux(f *testing.F) {
	seedCorpus(f, "influx")
	f.Fuzz(func(t *testing.T, p []byte, mode uint8) {
		opts := fuzzOptions(mode)
		opts.Columns, opts.Delimiter = nil, 0
		d, err := sensors.New("influx", opts)
		if err != nil {
			t.Fatal(err)
		}
		fuzzDecode(t, d, [][]byte{p})
	})
}

func TestInfluxLineTooLong(t *testing.T) {
	d, _ := sensors.New("influx", sensors.Options{})
	long := "m f=1,s=\"" + strings.Repeat("x", 64<<10) + "\""
	if _, err := d.Decode(nil, []byte(long)); err == nil || sensors.Reason(err) != "line too long" {
		t.Errorf("got %v, want line too long", err)
	}
}

func TestInfluxAllocs(t *testing.T) {
	for _, s := range []string{
		"weather,sensor=s1,loc=lab temp=21.5,hum=40i 1700000000000000000",
		"boiler value=80.5,state=\"on\",ok=true",
		`my\ meas,sensor=a\,b temp=1 1700000000000000000`,
	} {
		d, _ := sensors.New("influx", sensors.Options{})
		dst := make([]sensors.Reading, 0, 8)
		p := []byte(s)
		if _, err := d.Decode(dst, p); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { d.Decode(dst[:0], p) }); n != 0 {
			t.Errorf("%s: %v allocs per Decode", p, n)
		}
	}
}

func BenchmarkInfluxDecode(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"single", "weather,sensor=s1 temp=21.5 1700000000000000000"},
		{"multi", "weather,sensor=s1,loc=lab temp=21.5,hum=40i,pressure=1013.25,ok=true 1700000000000000000"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d, _ := sensors.New("influx", sensors.Options{})
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
