package cep

import (
	"math"
	"testing"
	"time"
)

func TestRange(t *testing.T) {
	s := Spec{Type: "range", Min: fp(-60), Max: fp(150)}
	checkSeries(t, s, readings(sec(0), 1000, 20, -273.2, -300, -60, 150, 3000, 21, math.NaN(), 22),
		firingAt(sec(1), -273.2, "value -273.2 outside the possible range [-60, 150]"),
		resolvedAt(sec(3), -60, "value -60 back inside the possible range [-60, 150]"),
		firingAt(sec(5), 3000, "value 3000 outside the possible range [-60, 150]"),
		resolvedAt(sec(6), 21, ""),
		firingAt(sec(7), math.NaN(), "value NaN outside"),
		resolvedAt(sec(8), 22, ""))

	checkSeries(t, Spec{Type: "range", Min: fp(-273.15)}, readings(sec(0), 1000, 20, -273.2, 1e9),
		firingAt(sec(1), -273.2, "value -273.2 outside the possible range [-273.15, +inf)"),
		resolvedAt(sec(2), 1e9, "value 1e+09 back inside the possible range [-273.15, +inf)"))
	checkSeries(t, Spec{Type: "range", Max: fp(100)}, readings(sec(0), 1000, 101, 99),
		firingAt(sec(0), 101, "value 101 outside the possible range (-inf, 100]"),
		resolvedAt(sec(1), 99, ""))

	checkSeries(t, Spec{Type: "range", Max: fp(100), Renotify: time.Minute}, readings(sec(0), 30000, 101, 102, 103, 104, 105, 99),
		firingAt(sec(0), 101, "value 101"),
		firingAt(sec(60), 103, "value 103"),
		firingAt(sec(120), 105, "value 105"),
		resolvedAt(sec(150), 99, ""))
}
