package sensors_test

import (
	"strings"
	"testing"

	"github.com/edged/edged/sensors"
)

func TestKVConformance(t *testing.T) { conformance(t, "kv") }

func FuzzKV(f *testing.F) {
	seedCorpus(f, "kv")
	f.Fuzz(func(t *testing.T, p []byte, mode uint8) {
		opts := fuzzOptions(mode)
		opts.Columns, opts.Delimiter = nil, 0
		d, err := sensors.New("kv", opts)
		if err != nil {
			t.Fatal(err)
		}
		fuzzDecode(t, d, [][]byte{p})
	})
}

func TestKVLineTooLong(t *testing.T) {
	d, _ := sensors.New("kv", sensors.Options{})
	long := "sensor=s temp=1 note=\"" + strings.Repeat("x", 64<<10) + "\""
	if _, err := d.Decode(nil, []byte(long)); sensors.Reason(err) != "line too long" {
		t.Errorf("got %v, want line too long", err)
	}
}

func TestKVAllocs(t *testing.T) {
	for _, s := range []string{
		"sensor=s1 ts=1700000000000 temp=21.5 hum=40",
		`sensor="my sensor" metric=temp value=21.5 loc="lab \"2\""`,
		"sensor=s1,ts=2023-11-14T22:13:20Z,temp=21.5,hum=40,pressure=1013.25,a=1,b=2,c=3,d=4,e=5",
	} {
		d, _ := sensors.New("kv", sensors.Options{})
		dst := make([]sensors.Reading, 0, 16)
		p := []byte(s)
		if _, err := d.Decode(dst, p); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { d.Decode(dst[:0], p) }); n != 0 {
			t.Errorf("%s: %v allocs per Decode", p, n)
		}
	}
}

func BenchmarkKVDecode(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"single", "sensor=s1 ts=1700000000000 value=21.5"},
		{"multi", "sensor=s1 ts=1700000000000 temp=21.5 hum=40.25 pressure=1013 loc=\"lab 2\""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d, _ := sensors.New("kv", sensors.Options{})
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
