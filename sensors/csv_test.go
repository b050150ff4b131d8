package sensors_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/edged/edged/sensors"
)

func TestCSVConformance(t *testing.T) { conformance(t, "csv") }

// FuzzCSV feeds the fuzz input line by line to one decoder, so that headers,
// repeated headers and data lines meet in every order.
func FuzzCSV(f *testing.F) {
	seedCorpus(f, "csv")
	f.Fuzz(func(t *testing.T, p []byte, mode uint8) {
		d, err := sensors.New("csv", fuzzOptions(mode))
		if err != nil {
			t.Fatal(err)
		}
		fuzzDecode(t, d, bytes.Split(p, []byte("\n")))
	})
}

func TestCSVLineTooLong(t *testing.T) {
	d, _ := sensors.New("csv", sensors.Options{})
	long := "sensor,value\n" + strings.Repeat("x", 64<<10)
	if _, err := d.Decode(nil, []byte(long)); err == nil || sensors.Reason(err) != "line too long" {
		t.Errorf("got %v, want line too long", err)
	}
	// The limit is on the line without its end of line.
	ok := strings.Repeat("s", 64<<10-2) + ",1\r\n"
	if _, err := d.Decode(nil, []byte("sensor,value")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decode(nil, []byte(ok)); err != nil {
		t.Errorf("line of exactly the limit: %v", err)
	}
}

func TestCSVAllocs(t *testing.T) {
	for _, tc := range []struct{ header, line string }{
		{"sensor,ts,value", "s1,1700000000000,21.5"},
		{"sensor,metric,ts,value", `"s1",temp,1700000000000,21.5`},
		{"sensor,ts,temp,hum,pressure", "s1,1700000000000,21.5,40,1013.2"},
	} {
		d, _ := sensors.New("csv", sensors.Options{})
		dst := make([]sensors.Reading, 0, 8)
		if _, err := d.Decode(dst, []byte(tc.header)); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Decode(dst, []byte(tc.line)); err != nil {
			t.Fatal(err)
		}
		line, header := []byte(tc.line), []byte(tc.header)
		if n := testing.AllocsPerRun(100, func() { d.Decode(dst[:0], line) }); n != 0 {
			t.Errorf("%s: %v allocs per Decode", tc.line, n)
		}
		if n := testing.AllocsPerRun(100, func() { d.Decode(dst[:0], header) }); n != 0 {
			t.Errorf("repeated header %s: %v allocs per Decode", tc.header, n)
		}
	}
}

func BenchmarkCSVDecode(b *testing.B) {
	for _, bc := range []struct{ name, header, line string }{
		{"single", "sensor,ts,value", "s1,1700000000000,21.5"},
		{"multi", "sensor,ts,temp,hum,pressure", "s1,1700000000000,21.5,40.25,1013"},
		{"quoted", "sensor,metric,ts,value", `"s1","temp",1700000000000,21.5`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d, _ := sensors.New("csv", sensors.Options{})
			if _, err := d.Decode(nil, []byte(bc.header)); err != nil {
				b.Fatal(err)
			}
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
