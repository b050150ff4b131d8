package sensors

import (
	"errors"
	"strings"
)

// Reasons a payload is rejected. Decoders return these errors, either as they
// are or wrapped with detail after a colon ("unreadable timestamp: \"abc\""),
// so that errors.Is matches them and Reason groups them. Their texts are
// stable: they are what operators count and what the quarantine records.
var (
	// ErrNotObject: a json payload is not a single JSON object (an array,
	// a scalar, nothing at all).
	ErrNotObject = errors.New("not a JSON object")
	// ErrInvalidJSON: a json payload starts as an object but breaks the
	// JSON grammar; the detail says where.
	ErrInvalidJSON = errors.New("invalid JSON")
	// ErrInvalidCSV: a csv line breaks RFC 4180 quoting.
	ErrInvalidCSV = errors.New("invalid CSV")
	// ErrInvalidLine: an influx line breaks the line protocol's syntax.
	ErrInvalidLine = errors.New("invalid line protocol")
	// ErrNoSensor: the payload names no sensor and Options.Sensor is empty.
	ErrNoSensor = errors.New("no sensor")
	// ErrSensorType: the sensor field holds something other than a string
	// or a number.
	ErrSensorType = errors.New("sensor is not a string")
	// ErrMetricType: the metric field holds something other than a string
	// or a number.
	ErrMetricType = errors.New("metric is not a string")
	// ErrNoValue: the payload carries no numeric value.
	ErrNoValue = errors.New("no value")
	// ErrNotNumber: a value is not a finite number (a string, a boolean,
	// NaN, an infinity, an overflowing literal).
	ErrNotNumber = errors.New("value is not a number")
	// ErrUnreadableTS: the timestamp is neither a number nor RFC 3339.
	ErrUnreadableTS = errors.New("unreadable timestamp")
	// ErrTSRange: the timestamp, in Unix ms, lies outside [MinTS, MaxTS].
	ErrTSRange = errors.New("timestamp out of range")
	// ErrLineTooLong: a csv or influx line exceeds the decoder's limit.
	ErrLineTooLong = errors.New("line too long")
	// ErrPayloadTooLong: a json payload exceeds the decoder's limit.
	ErrPayloadTooLong = errors.New("payload too long")
	// ErrFieldCount: a csv line has a different number of fields than its
	// header.
	ErrFieldCount = errors.New("wrong number of fields")
	// ErrHeaderNoSensor: a csv header has no sensor column and
	// Options.Sensor is empty. Later lines are rejected with it until a
	// usable header arrives.
	ErrHeaderNoSensor = errors.New("header has no sensor column")
	// ErrHeaderData: a csv header has a column named like a number, so it is
	// most likely a data line of a stream whose header was lost.
	ErrHeaderData = errors.New("header looks like data")

	// ErrNotArray: a senml payload is not a JSON array (an object, a
	// scalar, nothing at all).
	ErrNotArray = errors.New("not a JSON array")
	// ErrInvalidSenML: a senml pack is valid JSON but not valid SenML: a
	// record that is not an object, a field of the wrong type, an
	// unsupported version or mandatory extension; the detail says which
	// record.
	ErrInvalidSenML = errors.New("invalid SenML")
	// ErrRelativeTime: a senml record that yields a reading has a time
	// relative to "now" (below 2^28 s, not 0), which a decoder without a
	// clock cannot place.
	ErrRelativeTime = errors.New("relative time not supported")
	// ErrNotNMEA: an nmea payload does not start with '$' or '!' and a
	// valid address field, or holds bytes outside printable ASCII.
	ErrNotNMEA = errors.New("not an NMEA sentence")
	// ErrMissingChecksum: an nmea sentence has no "*hh" checksum.
	ErrMissingChecksum = errors.New("missing checksum")
	// ErrBadChecksum: an nmea sentence's checksum is malformed or does not
	// match its contents.
	ErrBadChecksum = errors.New("bad checksum")
	// ErrInvalidNMEA: an nmea sentence with a good checksum has fields
	// that break its sentence type's layout (too few fields, a bad
	// hemisphere or status, a coordinate out of range).
	ErrInvalidNMEA = errors.New("invalid NMEA sentence")
	// ErrInvalidKV: a kv line breaks the key=value syntax (a pair without
	// '=', an empty key, an unterminated or stray quote, a control
	// character).
	ErrInvalidKV = errors.New("invalid key=value line")
)

var reasons = []error{
	ErrNotObject, ErrInvalidJSON, ErrInvalidCSV, ErrInvalidLine,
	ErrNoSensor, ErrSensorType, ErrMetricType, ErrNoValue, ErrNotNumber,
	ErrUnreadableTS, ErrTSRange, ErrLineTooLong, ErrPayloadTooLong,
	ErrFieldCount, ErrHeaderNoSensor, ErrHeaderData,
	ErrNotArray, ErrInvalidSenML, ErrRelativeTime,
	ErrNotNMEA, ErrMissingChecksum, ErrBadChecksum, ErrInvalidNMEA,
	ErrInvalidKV,
}

// Reason returns the stable part of a decode error, suitable as a metric
// label: the text of the reason it wraps (ErrNoValue, ErrTSRange, ...), or
// for another error its text up to the first ": ". It returns "" for nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r) {
			return r.Error()
		}
	}
	s := err.Error()
	if i := strings.Index(s, ": "); i >= 0 {
		return s[:i]
	}
	return s
}
