package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

var (
	durationType  = reflect.TypeFor[Duration]()
	sizeType      = reflect.TypeFor[Size]()
	toleranceType = reflect.TypeFor[Tolerance]()
)

// field is one TOML key of a struct.
type field struct {
	key   string
	index int
}

// fieldsOf lists the keys of struct type t in declaration order: its
// exported fields with a toml tag other than "-".
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		fs = append(fs, field{key: tag, index: i})
	}
	return fs
}

// decoder walks the map that BurntSushi/toml produced into a Config,
// reporting every key it cannot use instead of stopping at the first.
type decoder struct {
	m      *meta
	lookup func(string) (string, bool)
}

// table decodes the TOML table t into the struct v.
func (d *decoder) table(l loc, t map[string]any, v reflect.Value) {
	fields := fieldsOf(v.Type())
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var f *field
		for i := range fields {
			if fields[i].key == k {
				f = &fields[i]
				break
			}
		}
		kl := l.child(k)
		if f == nil {
			d.m.addAt(kl.key, l.disp, "%s", unknownKey(k, fields))
			continue
		}
		d.m.set[kl.key] = true
		d.value(kl, k, t[k], v.Field(f.index))
	}
}

// unknownKey says that k is not a key of the table and lists the keys that
// are, suggesting the closest.
func unknownKey(k string, fields []field) string {
	allowed := make([]string, len(fields))
	for i, f := range fields {
		allowed[i] = f.key
	}
	msg := fmt.Sprintf("unknown key %q (", k)
	if s := suggest(k, allowed); s != "" {
		msg += fmt.Sprintf("did you mean %q? ", s)
	}
	return msg + "allowed: " + strings.Join(allowed, ", ") + ")"
}

// value decodes the TOML value x, found under key, into v.
func (d *decoder) value(l loc, key string, x any, v reflect.Value) {
	secret := isSecret(key)
	switch v.Type() {
	case durationType:
		s, ok := d.str(l, x, `a duration string such as "2s"`, secret)
		if !ok {
			return
		}
		dur, err := ParseDuration(s)
		if err != nil {
			d.m.add(l, "%v", err)
			return
		}
		v.SetInt(int64(dur))
		return
	case sizeType:
		if n, ok := x.(int64); ok {
			if n < 0 {
				d.m.add(l, "invalid size %d: must not be negative", n)
				return
			}
			v.SetInt(n)
			return
		}
		s, ok := d.str(l, x, `a size such as "256MiB" or a number of bytes`, secret)
		if !ok {
			return
		}
		n, err := ParseSize(s)
		if err != nil {
			d.m.add(l, "%v", err)
			return
		}
		v.SetInt(n)
		return
	case toleranceType:
		var t Tolerance
		switch n := x.(type) {
		case float64:
			t.Value = n
		case int64:
			t.Value = float64(n)
		default:
			s, ok := d.str(l, x, `a number such as 0.5 or a percentage such as "2%"`, secret)
			if !ok {
				return
			}
			var err error
			if t, err = ParseTolerance(s); err != nil {
				d.m.add(l, "%v", err)
				return
			}
		}
		v.Set(reflect.ValueOf(t))
		return
	}

	switch v.Kind() {
	case reflect.String:
		if s, ok := d.str(l, x, "a string", secret); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		b, ok := x.(bool)
		if !ok {
			d.wrongType(l, x, "a boolean (true or false)", secret)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := x.(int64)
		if !ok {
			if f, isFloat := x.(float64); isFloat && f == math.Trunc(f) {
				d.wrongType(l, x, fmt.Sprintf("an integer such as %.0f (without a decimal point)", f), secret)
			} else {
				d.wrongType(l, x, "an integer such as 1", secret)
			}
			return
		}
		if v.OverflowInt(n) {
			d.m.add(l, "integer %d is out of range", n)
			return
		}
		v.SetInt(n)
	case reflect.Float32, reflect.Float64:
		switch n := x.(type) {
		case float64:
			v.SetFloat(n)
		case int64:
			v.SetFloat(float64(n))
		default:
			d.wrongType(l, x, "a number such as 1.5", secret)
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		before := len(d.m.probs)
		d.value(l, key, x, p.Elem())
		if len(d.m.probs) == before {
			v.Set(p)
		}
	case reflect.Struct:
		t, ok := x.(map[string]any)
		if !ok {
			d.wrongType(l, x, fmt.Sprintf("a table [%s]", l.key), secret)
			return
		}
		d.table(l, t, v)
	case reflect.Slice:
		d.slice(l, key, x, v, secret)
	case reflect.Map:
		// A table of string values, such as labels = {room = "boiler"}.
		t, ok := x.(map[string]any)
		if !ok || v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
			d.wrongType(l, x, `a table of strings such as {room = "boiler"}`, secret)
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(t))
		for k, e := range t {
			s, ok := d.str(l.child(k), e, "a string", isSecret(k))
			if !ok {
				continue
			}
			m.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(s))
		}
		v.Set(m)
	default:
		d.m.add(l, "cannot decode into %s (a bug in edged's config types)", v.Type())
	}
}

// slice decodes an array, or an array of tables, into v.
func (d *decoder) slice(l loc, key string, x any, v reflect.Value, secret bool) {
	et := v.Type().Elem()
	var elems []any
	switch a := x.(type) {
	case []any:
		elems = a
	case []map[string]any:
		elems = make([]any, len(a))
		for i := range a {
			elems[i] = a[i]
		}
	default:
		switch {
		case et.Kind() == reflect.Struct && isTable(x):
			d.m.add(l, "expected an array of tables [[%s]], got a single table [%s]: write [[%s]], with two brackets, for each one", l.key, l.key, l.key)
		case et.Kind() == reflect.String:
			d.wrongType(l, x, `an array of strings such as ["a", "b"]`, secret)
		case et.Kind() == reflect.Struct:
			d.wrongType(l, x, fmt.Sprintf("an array of tables [[%s]]", l.key), secret)
		default:
			d.wrongType(l, x, "an array", secret)
		}
		return
	}
	out := reflect.MakeSlice(v.Type(), len(elems), len(elems))
	for i, e := range elems {
		name := ""
		if t, ok := e.(map[string]any); ok {
			if s, ok := t["name"].(string); ok {
				if exp, err := expand(s, d.lookup); err == nil {
					name = exp
				}
			}
		}
		d.value(l.index(i, name), key, e, out.Index(i))
	}
	v.Set(out)
}

// str returns x as a string with environment variables substituted.
func (d *decoder) str(l loc, x any, want string, secret bool) (string, bool) {
	s, ok := x.(string)
	if !ok {
		d.wrongType(l, x, want, secret)
		return "", false
	}
	out, err := expand(s, d.lookup)
	if err != nil {
		d.m.add(l, "%v", err)
		return "", false
	}
	return out, true
}

// wrongType reports a value of the wrong TOML type.
func (d *decoder) wrongType(l loc, x any, want string, secret bool) {
	d.m.add(l, "expected %s, got %s", want, describe(x, secret))
}

// isTable reports whether x is a TOML table.
func isTable(x any) bool {
	_, ok := x.(map[string]any)
	return ok
}

// describe names the TOML type of x and, unless secret, its value.
func describe(x any, secret bool) string {
	val := func(kind, v string) string {
		if secret {
			return "a " + kind
		}
		return kind + " " + v
	}
	switch v := x.(type) {
	case string:
		return val("string", strconv.Quote(v))
	case int64:
		return val("integer", strconv.FormatInt(v, 10))
	case float64:
		return val("float", strconv.FormatFloat(v, 'g', -1, 64))
	case bool:
		return val("boolean", strconv.FormatBool(v))
	case time.Time:
		return "a date/time"
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", x)
}

// suggest returns the candidate closest to s by edit distance, or "" when
// none is close enough to be a likely typo.
func suggest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	low := strings.ToLower(s)
	for _, c := range candidates {
		if d := editDistance(low, c); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= 1 {
		return best
	}
	{
		// "warning" for "warn", "temp" for "temperature".
		for _, c := range candidates {
			if len(c) >= 3 && len(low) >= 3 && (strings.HasPrefix(low, c) || strings.HasPrefix(c, low)) {
				return c
			}
		}
	}
	if bestD <= 1 || (bestD == 2 && len(s) >= 5) || bestD <= len(s)/3 {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
