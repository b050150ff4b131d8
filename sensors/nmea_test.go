package sensors_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/edged/edged/sensors"
)

func TestNMEAConformance(t *testing.T) { conformance(t, "nmea") }

// FuzzNMEA feeds the fuzz input line by line to one decoder, so that RMC
// and GGA sentences meet in every order.
func FuzzNMEA(f *testing.F) {
	seedCorpus(f, "nmea")
	f.Fuzz(func(t *testing.T, p []byte, mode uint8) {
		var opts sensors.Options
		if mode&8 != 0 {
			opts.Sensor = "dflt"
		}
		d, err := sensors.New("nmea", opts)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.Split(p, []byte("\n"))
		if mode&1 != 0 {
			// Fix the checksums, so that the fuzzer explores the fields.
			for i, l := range lines {
				lines[i] = fixChecksum(l)
			}
		}
		fuzzDecode(t, d, lines)
		d, _ = sensors.New("nmea", opts)
		for _, l := range lines {
			rs, _ := d.Decode(nil, l)
			for _, r := range rs {
				if !nmeaInRange(r) {
					t.Fatalf("%q: reading %+v out of range", l, r)
				}
			}
		}
	})
}

// fixChecksum rewrites the checksum of a line that has one.
func fixChecksum(l []byte) []byte {
	star := bytes.IndexByte(l, '*')
	if star < 1 {
		return l
	}
	var sum byte
	for _, c := range l[1:star] {
		sum ^= c
	}
	return fmt.Appendf(l[:star+1:star+1], "%02X", sum)
}

// nmeaInRange checks the range of a reading of the nmea decoder.
func nmeaInRange(r sensors.Reading) bool {
	switch r.Metric {
	case "lat":
		return -90 <= r.Value && r.Value <= 90
	case "lon":
		return -180 <= r.Value && r.Value <= 180
	case "valid":
		return r.Value == 0 || r.Value == 1
	case "fix_quality", "satellites":
		return r.Value >= 0 && r.Value == float64(int64(r.Value))
	case "alt", "hdop", "speed", "course":
		return true
	}
	return false
}

// nmeaSentence adds the checksum to a sentence written without one.
func nmeaSentence(s string) []byte {
	var sum byte
	for i := 1; i < len(s); i++ {
		sum ^= s[i]
	}
	return fmt.Appendf(nil, "%s*%02X", s, sum)
}

// TestNMEAGGADate checks how long a GGA sentence takes its date from the
// last valid RMC.
func TestNMEAGGADate(t *testing.T) {
	d, _ := sensors.New("nmea", sensors.Options{})
	rmc := nmeaSentence("$GPRMC,120000,A,4807.038,N,01131.000,E,0.0,,230394,,")
	gga := nmeaSentence("$GPGGA,120001,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
	noGGA := nmeaSentence("$GPGSV,3,1,11")
	const want int64 = 764424001000 // 1994-03-23T12:00:01Z
	ts := func(p []byte) int64 {
		t.Helper()
		rs, err := d.Decode(nil, p)
		if err != nil || len(rs) == 0 {
			t.Fatalf("%s: %v, %v", p, rs, err)
		}
		return rs[0].TS
	}
	ts(rmc)
	for i := range 100 {
		if got := ts(gga); got != want {
			t.Fatalf("GGA %d after RMC: ts %d, want %d", i+1, got, want)
		}
		if _, err := d.Decode(nil, noGGA); err != nil {
			t.Fatal(err)
		}
	}
	if got := ts(gga); got != sensors.NoTS {
		t.Errorf("GGA 101 after RMC: ts %d, want NoTS", got)
	}
	ts(rmc)
	if got := ts(gga); got != want {
		t.Errorf("GGA after a new RMC: ts %d, want %d", got, want)
	}
	// A rejected RMC changes nothing; a void one forgets the date.
	if _, err := d.Decode(nil, nmeaSentence("$GPRMC,120000,A,4807.038,N,01131.000,E,x,,230394,,")); err == nil {
		t.Fatal("bad RMC accepted")
	}
	if got := ts(gga); got != want {
		t.Errorf("GGA after a rejected RMC: ts %d, want %d", got, want)
	}
	ts(nmeaSentence("$GPRMC,120000,V,,,,,,,230394,,"))
	if got := ts(gga); got != sensors.NoTS {
		t.Errorf("GGA after a void RMC: ts %d, want NoTS", got)
	}
}

func TestNMEALineTooLong(t *testing.T) {
	d, _ := sensors.New("nmea", sensors.Options{})
	long := nmeaSentence("$GPTXT," + strings.Repeat("x", 64<<10))
	if _, err := d.Decode(nil, long); sensors.Reason(err) != "line too long" {
		t.Errorf("got %v, want line too long", err)
	}
}

func TestNMEAAllocs(t *testing.T) {
	for _, s := range []string{
		"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47",
		"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A",
		"$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74",
	} {
		for _, opts := range []sensors.Options{{}, {Sensor: "boat"}} {
			d, _ := sensors.New("nmea", opts)
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
}

func BenchmarkNMEADecode(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"gga", "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"},
		{"rmc", "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"},
		{"gsv", "$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d, _ := sensors.New("nmea", sensors.Options{})
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
