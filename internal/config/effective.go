package config

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Effective returns the configuration as TOML with every default filled
// in, in a fixed order: [device], [pipeline], then each [[source]],
// [[window]], [[detector]] and [[output]] in file order, then [log]; keys in
// the order of the Config types. Values of secret keys (password, token,
// secret and names ending in _password, _token, _secret) are written as
// "<redacted>". Unset optional keys are left out, except where leaving them
// out would change the meaning (pipeline durations, an mqtt qos). The text
// parses again with Parse to the same Config, secrets aside.
func (c *Config) Effective() []byte {
	var b bytes.Buffer
	b.WriteString("# Effective edged configuration: defaults filled in, secrets redacted.\n")
	if c.File != "" {
		fmt.Fprintf(&b, "# Read from %s.\n", strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return '?'
			}
			return r
		}, c.File))
	}
	v := reflect.ValueOf(c).Elem()
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		switch fv.Kind() {
		case reflect.Struct:
			fmt.Fprintf(&b, "\n[%s]\n", f.key)
			writeFields(&b, f.key, fv)
		case reflect.Slice:
			for i := 0; i < fv.Len(); i++ {
				fmt.Fprintf(&b, "\n[[%s]]\n", f.key)
				writeFields(&b, f.key, fv.Index(i))
			}
		}
	}
	return b.Bytes()
}

// writeFields writes the keys of struct v, one per line, with the "="
// signs aligned.
func writeFields(b *bytes.Buffer, section string, v reflect.Value) {
	type kv struct{ k, v string }
	var lines []kv
	var tables []field // arrays of tables that hold arrays of tables: [[section.key]]
	width := 0
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		if !keep(section, f.key, v, fv) {
			continue
		}
		if fv.Kind() == reflect.Slice && nestsTables(fv.Type().Elem()) {
			tables = append(tables, f)
			continue
		}
		lines = append(lines, kv{f.key, literal(f.key, fv)})
		width = max(width, len(f.key))
	}
	for _, l := range lines {
		fmt.Fprintf(b, "%-*s = %s\n", width, l.k, l.v)
	}
	for _, f := range tables {
		fv := v.Field(f.index)
		for i := 0; i < fv.Len(); i++ {
			fmt.Fprintf(b, "\n[[%s.%s]]\n", section, f.key)
			writeFields(b, section+"."+f.key, fv.Index(i))
		}
	}
}

// nestsTables reports whether t is a struct with an array of tables
// (a modbus slave and its registers): such an element is written as a
// table of its own rather than inline.
func nestsTables(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for _, f := range fieldsOf(t) {
		if ft := t.Field(f.index).Type; ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			return true
		}
	}
	return false
}

// keep says whether Effective writes key of the struct elem.
func keep(section, key string, elem, fv reflect.Value) bool {
	switch fv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map:
		return !fv.IsNil()
	case reflect.Slice:
		return fv.Len() > 0
	}
	switch {
	case section == "device", section == "pipeline", section == "store", section == "log":
		return true
	case section == "broker", section == "http":
		return key == "enabled" || elem.FieldByName("Enabled").Bool() && !fv.IsZero()
	case key == "name", key == "type":
		return true
	case key == "slave_id":
		// slave_id = 0 (a TCP unit id) must stay written, or it would read
		// back as the default 1.
		if elem.Type() == reflect.TypeFor[ModbusSlave]() {
			return true
		}
		return elem.FieldByName("Type").String() == "modbus" && elem.FieldByName("Slave").Len() == 0
	case key == "address" && elem.Type() == reflect.TypeFor[ModbusRegister]():
		return true
	case key == "qos":
		// qos = 0 must stay written, or it would read back as the default 1.
		return elem.FieldByName("Type").String() == "mqtt"
	}
	return !fv.IsZero()
}

// literal formats v, the value of key, as a TOML value.
func literal(key string, v reflect.Value) string {
	switch v.Type() {
	case durationType:
		return quote(formatDuration(Duration(v.Int())))
	case sizeType:
		t, _ := Size(v.Int()).MarshalText()
		return quote(string(t))
	case toleranceType:
		t := v.Interface().(Tolerance)
		if t.Relative {
			return quote(t.String())
		}
		return formatFloat(t.Value)
	}
	switch v.Kind() {
	case reflect.String:
		if isSecret(key) && v.String() != "" {
			return quote("<redacted>")
		}
		return quote(escapeDollar(v.String()))
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Float32, reflect.Float64:
		return formatFloat(v.Float())
	case reflect.Pointer:
		return literal(key, v.Elem())
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k.String() + " = " + literal(k.String(), v.MapIndex(k))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = literal(key, v.Index(i))
		}
		if v.Type().Elem().Kind() == reflect.Struct {
			// Inline tables one a line (a modbus register map).
			return "[\n  " + strings.Join(parts, ",\n  ") + ",\n]"
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Struct:
		var parts []string
		for _, f := range fieldsOf(v.Type()) {
			fv := v.Field(f.index)
			if keep("", f.key, v, fv) {
				parts = append(parts, f.key+" = "+literal(f.key, fv))
			}
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return quote(fmt.Sprint(v.Interface()))
}

// quote writes s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// formatFloat writes f as a TOML float.
func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s
}

// formatDuration writes d compactly in a form ParseDuration reads back
// exactly: "10s", "1m30s", "1s500ms", "24h", "0s".
func formatDuration(d Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	rest := time.Duration(d)
	for _, u := range []struct {
		name string
		n    time.Duration
	}{{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}, {"us", time.Microsecond}, {"ns", time.Nanosecond}} {
		if k := rest / u.n; k > 0 {
			b.WriteString(strconv.FormatInt(int64(k), 10))
			b.WriteString(u.name)
			rest -= k * u.n
		}
	}
	return b.String()
}
