package sensors

import (
	"bytes"
	"fmt"
	"time"
)

func init() { Register("nmea", newNMEA) }

// NMEA constants.
const (
	// maxNMEAFields is the number of fields of a sentence the decoder
	// keeps; GGA has 14, RMC up to 13. Later fields are not looked at.
	maxNMEAFields = 16
	// maxGGAWithoutRMC is how many GGA sentences may follow the last valid
	// RMC and still take their date from it.
	maxGGAWithoutRMC = 100
	// knotMS is one knot in m/s.
	knotMS = 1852.0 / 3600.0

	dayMS  = 24 * 60 * 60 * 1000
	halfMS = dayMS / 2
)

// nmeaDecoder decodes one NMEA 0183 sentence per payload. GGA and RMC
// sentences of any talker yield readings; other sentences with a good
// checksum yield nothing.
//
// It is stateful: GGA carries only the time of day, so a GGA sentence takes
// its date from the last valid RMC sentence of the stream, as long as no
// more than maxGGAWithoutRMC GGA sentences came since, choosing the day that
// puts it within 12 hours of that RMC.
type nmeaDecoder struct {
	sensor string // Options.Sensor, or "gps"

	rmcTS    int64 // the time of the last valid RMC, Unix ms
	haveRMC  bool  // rmcTS is usable
	ggaSince int   // GGA sentences decoded since that RMC

	f [maxNMEAFields][]byte // the current sentence's fields after the address
	n int                   // the number of fields, maxNMEAFields at most
}

func newNMEA(opts Options) (Decoder, error) {
	return &nmeaDecoder{sensor: or(opts.Sensor, "gps")}, nil
}

// Decode implements Decoder.
func (d *nmeaDecoder) Decode(dst []Reading, line []byte) ([]Reading, error) {
	line = trimEOL(line)
	if len(line) > maxLine {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrLineTooLong, len(line), maxLine)
	}
	line = bytes.Trim(line, " \t")
	if len(line) == 0 {
		return dst, nil
	}
	if line[0] != '$' && line[0] != '!' {
		return dst, fmt.Errorf("%w: %s", ErrNotNMEA, excerpt(line))
	}
	a := 1
	for a < len(line) && (isDigit(line[a]) || 'A' <= line[a] && line[a] <= 'Z') {
		a++
	}
	if a == 1 || (a < len(line) && line[a] != ',' && line[a] != '*') {
		return dst, fmt.Errorf("%w: %s", ErrNotNMEA, excerpt(line))
	}
	for i, c := range line {
		if c < 0x20 || c > 0x7e {
			return dst, fmt.Errorf("%w: byte 0x%02x at offset %d", ErrNotNMEA, c, i)
		}
	}
	star := bytes.IndexByte(line, '*')
	if star < 0 {
		return dst, ErrMissingChecksum
	}
	want, ok := hex2(line[star+1:])
	if !ok {
		return dst, fmt.Errorf("%w: malformed %s", ErrBadChecksum, excerpt(line[star:]))
	}
	var sum byte
	for _, c := range line[1:star] {
		sum ^= c
	}
	if sum != want {
		return dst, fmt.Errorf("%w: got *%02X, want *%02X", ErrBadChecksum, want, sum)
	}
	addr := line[1:a]
	if line[0] != '$' || len(addr) != 5 || addr[0] == 'P' { // P: proprietary
		return dst, nil
	}
	d.split(line[a:star])
	switch string(addr[2:]) {
	case "GGA":
		return d.gga(dst)
	case "RMC":
		return d.rmc(dst)
	}
	return dst, nil
}

// hex2 decodes b when it is exactly two hex digits.
func hex2(b []byte) (byte, bool) {
	if len(b) != 2 {
		return 0, false
	}
	var v byte
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | c
	}
	return v, true
}

// split cuts the fields after the address (body starts with ',' unless
// empty) into d.f.
func (d *nmeaDecoder) split(body []byte) {
	d.n = 0
	if len(body) == 0 {
		return
	}
	body = body[1:]
	for d.n < maxNMEAFields {
		k := bytes.IndexByte(body, ',')
		if k < 0 {
			d.f[d.n] = body
			d.n++
			return
		}
		d.f[d.n] = body[:k]
		d.n++
		body = body[k+1:]
	}
}

// reading appends one reading of the sentence.
func (d *nmeaDecoder) reading(dst []Reading, metric string, v float64, ts int64) []Reading {
	return append(dst, Reading{Sensor: d.sensor, Metric: metric, Value: v, TS: ts})
}

// gga decodes $--GGA: time, lat, N/S, lon, E/W, fix quality, satellites,
// HDOP, altitude, M, geoid separation, M, DGPS age, DGPS station.
func (d *nmeaDecoder) gga(dst []Reading) ([]Reading, error) {
	if d.n < 10 {
		return dst, fmt.Errorf("%w: GGA with %d fields, want at least 10", ErrInvalidNMEA, d.n)
	}
	f := &d.f
	tod, hasTime, err := timeOfDay(f[0])
	if err != nil {
		return dst, err
	}
	lat, hasLat, err := coord(f[1], f[2], "lat", 'N', 'S', 90)
	if err != nil {
		return dst, err
	}
	lon, hasLon, err := coord(f[3], f[4], "lon", 'E', 'W', 180)
	if err != nil {
		return dst, err
	}
	quality, hasQuality, err := nmeaInt(f[5], "fix_quality")
	if err != nil {
		return dst, err
	}
	sats, hasSats, err := nmeaInt(f[6], "satellites")
	if err != nil {
		return dst, err
	}
	hdop, hasHDOP, err := nmeaNumber(f[7], "hdop")
	if err != nil {
		return dst, err
	}
	alt, hasAlt, err := nmeaNumber(f[8], "alt")
	if err != nil {
		return dst, err
	}
	if hasAlt && string(f[9]) != "M" {
		return dst, fmt.Errorf("%w: altitude unit %s, want \"M\"", ErrInvalidNMEA, excerpt(f[9]))
	}

	ts := NoTS
	if hasTime && d.haveRMC && d.ggaSince < maxGGAWithoutRMC {
		ts = floorDiv(d.rmcTS, dayMS)*dayMS + tod
		if ts-d.rmcTS > halfMS {
			ts -= dayMS
		} else if ts-d.rmcTS < -halfMS {
			ts += dayMS
		}
	}
	fix := hasQuality && quality != 0
	if fix && hasLat {
		dst = d.reading(dst, "lat", lat, ts)
	}
	if fix && hasLon {
		dst = d.reading(dst, "lon", lon, ts)
	}
	if fix && hasAlt {
		dst = d.reading(dst, "alt", alt, ts)
	}
	if hasQuality {
		dst = d.reading(dst, "fix_quality", quality, ts)
	}
	if hasSats {
		dst = d.reading(dst, "satellites", sats, ts)
	}
	if hasHDOP {
		dst = d.reading(dst, "hdop", hdop, ts)
	}
	d.ggaSince++
	return dst, nil
}

// rmc decodes $--RMC: time, status, lat, N/S, lon, E/W, speed (knots),
// course, date, magnetic variation, E/W, mode, navigational status.
func (d *nmeaDecoder) rmc(dst []Reading) ([]Reading, error) {
	if d.n < 9 {
		return dst, fmt.Errorf("%w: RMC with %d fields, want at least 9", ErrInvalidNMEA, d.n)
	}
	f := &d.f
	tod, hasTime, err := timeOfDay(f[0])
	if err != nil {
		return dst, err
	}
	var valid bool
	switch string(f[1]) {
	case "A":
		valid = true
	case "V":
	default:
		return dst, fmt.Errorf("%w: RMC status %s, want \"A\" or \"V\"", ErrInvalidNMEA, excerpt(f[1]))
	}
	if d.n > 11 && string(f[11]) == "N" { // mode indicator: data not valid
		valid = false
	}
	lat, hasLat, err := coord(f[2], f[3], "lat", 'N', 'S', 90)
	if err != nil {
		return dst, err
	}
	lon, hasLon, err := coord(f[4], f[5], "lon", 'E', 'W', 180)
	if err != nil {
		return dst, err
	}
	speed, hasSpeed, err := nmeaNumber(f[6], "speed")
	if err != nil {
		return dst, err
	}
	course, hasCourse, err := nmeaNumber(f[7], "course")
	if err != nil {
		return dst, err
	}
	day, hasDate, err := nmeaDate(f[8])
	if err != nil {
		return dst, err
	}

	if !valid {
		d.haveRMC = false
		return d.reading(dst, "valid", 0, NoTS), nil
	}
	ts := NoTS
	if hasTime && hasDate {
		ts = day + tod
	}
	if hasLat {
		dst = d.reading(dst, "lat", lat, ts)
	}
	if hasLon {
		dst = d.reading(dst, "lon", lon, ts)
	}
	if hasSpeed {
		dst = d.reading(dst, "speed", speed*knotMS, ts)
	}
	if hasCourse {
		dst = d.reading(dst, "course", course, ts)
	}
	dst = d.reading(dst, "valid", 1, ts)
	d.rmcTS, d.haveRMC, d.ggaSince = ts, ts != NoTS, 0
	return dst, nil
}

// floorDiv is a/b rounded toward negative infinity, for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// timeOfDay reads hhmmss[.sss] as milliseconds since midnight, dropping
// digits beyond the millisecond. An empty field is absent.
func timeOfDay(b []byte) (ms int64, present bool, err error) {
	if len(b) == 0 {
		return 0, false, nil
	}
	bad := func() (int64, bool, error) {
		return 0, false, fmt.Errorf("%w: time %s", ErrUnreadableTS, excerpt(b))
	}
	if len(b) < 6 || len(b) == 7 {
		return bad()
	}
	for i, c := range b {
		if i == 6 && c != '.' || i != 6 && !isDigit(c) {
			return bad()
		}
	}
	h, m, s := two(b[0:]), two(b[2:]), two(b[4:])
	if h > 23 || m > 59 || s > 60 { // 60: a leap second
		return bad()
	}
	ms = (h*3600 + m*60 + s) * 1000
	if len(b) > 7 {
		scale := int64(100)
		for _, c := range b[7:min(len(b), 10)] {
			ms += int64(c-'0') * scale
			scale /= 10
		}
	}
	return ms, true, nil
}

// two reads two decimal digits.
func two(b []byte) int64 { return int64(b[0]-'0')*10 + int64(b[1]-'0') }

// nmeaDate reads ddmmyy as the Unix ms of that day's midnight, UTC. Years
// 80-99 are 1980-1999, 00-79 are 2000-2079. An empty field is absent.
func nmeaDate(b []byte) (ms int64, present bool, err error) {
	if len(b) == 0 {
		return 0, false, nil
	}
	if len(b) != 6 || !isInteger(b) || b[0] == '-' {
		return 0, false, fmt.Errorf("%w: date %s", ErrUnreadableTS, excerpt(b))
	}
	dd, mm, yy := int(two(b[0:])), int(two(b[2:])), int(two(b[4:]))
	year := 2000 + yy
	if yy >= 80 {
		year = 1900 + yy
	}
	t := time.Date(year, time.Month(mm), dd, 0, 0, 0, 0, time.UTC)
	if mm < 1 || mm > 12 || dd < 1 || t.Day() != dd {
		return 0, false, fmt.Errorf("%w: date %s", ErrUnreadableTS, excerpt(b))
	}
	return t.UnixMilli(), true, nil
}

// isNMEANumber reports whether b is an optional '-', digits and an optional
// fraction, with at least one digit.
func isNMEANumber(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	d, point := 0, false
	for _, c := range b {
		switch {
		case isDigit(c):
			d++
		case c == '.' && !point:
			point = true
		default:
			return false
		}
	}
	return d > 0
}

// nmeaNumber reads a numeric field. An empty field is absent.
func nmeaNumber(b []byte, name string) (v float64, present bool, err error) {
	if len(b) == 0 {
		return 0, false, nil
	}
	if isNMEANumber(b) {
		if v, ok := parseFloat(b); ok {
			return v, true, nil
		}
	}
	return 0, false, fmt.Errorf("%w: field=%q", ErrNotNumber, name)
}

// nmeaInt reads a field of digits. An empty field is absent.
func nmeaInt(b []byte, name string) (v float64, present bool, err error) {
	if len(b) == 0 {
		return 0, false, nil
	}
	if len(b) <= 9 && isInteger(b) && b[0] != '-' {
		v, _ := parseFloat(b)
		return v, true, nil
	}
	return 0, false, fmt.Errorf("%w: field=%q", ErrNotNumber, name)
}

// coord reads a latitude (ddmm.mmmm) or longitude (dddmm.mmmm) and its
// hemisphere as signed decimal degrees, negative for neg. Both fields empty
// are absent; one without the other is invalid.
func coord(v, hemi []byte, name string, pos, neg byte, maxDeg float64) (deg float64, present bool, err error) {
	if len(v) == 0 && len(hemi) == 0 {
		return 0, false, nil
	}
	if len(v) == 0 || len(hemi) != 1 || (hemi[0] != pos && hemi[0] != neg) {
		return 0, false, fmt.Errorf("%w: %s %s with hemisphere %s", ErrInvalidNMEA, name, excerpt(v), excerpt(hemi))
	}
	intLen := bytes.IndexByte(v, '.')
	if intLen < 0 {
		intLen = len(v)
	}
	if !isNMEANumber(v) || v[0] == '-' || intLen < 3 {
		return 0, false, fmt.Errorf("%w: field=%q", ErrNotNumber, name)
	}
	d, ok1 := parseFloat(v[:intLen-2])
	m, ok2 := parseFloat(v[intLen-2:])
	deg = d + m/60
	if !ok1 || !ok2 || m >= 60 || deg > maxDeg {
		return 0, false, fmt.Errorf("%w: %s %s out of range", ErrInvalidNMEA, name, excerpt(v))
	}
	if hemi[0] == neg {
		deg = -deg
	}
	return deg, true, nil
}
