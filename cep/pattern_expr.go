package cep

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// The conditions of a pattern are expr-lang/expr expressions compiled once,
// when the detector is built, against patEnv (see pattern.go for the
// names an expression can read).

// patternMaxSteps bounds Steps: s1..s16 are the names of matched events.
const patternMaxSteps = 16

// patEvent is a matched event as conditions see it (s1, prev, first...).
type patEvent struct {
	Value  float64 `expr:"value"`
	TS     int64   `expr:"ts"`
	Sensor string  `expr:"sensor"`
	Metric string  `expr:"metric"`
}

// patEnv is what a condition reads: the current event's fields, and the
// events matched by earlier steps.
type patEnv struct {
	Value  float64 `expr:"value"`
	TS     int64   `expr:"ts"`
	Sensor string  `expr:"sensor"`
	Metric string  `expr:"metric"`
	Source string  `expr:"source"`
	Key    string  `expr:"key"`

	Prev  *patEvent `expr:"prev"`  // the event matched by the previous step
	First *patEvent `expr:"first"` // the event matched by step 1

	S1  *patEvent `expr:"s1"`
	S2  *patEvent `expr:"s2"`
	S3  *patEvent `expr:"s3"`
	S4  *patEvent `expr:"s4"`
	S5  *patEvent `expr:"s5"`
	S6  *patEvent `expr:"s6"`
	S7  *patEvent `expr:"s7"`
	S8  *patEvent `expr:"s8"`
	S9  *patEvent `expr:"s9"`
	S10 *patEvent `expr:"s10"`
	S11 *patEvent `expr:"s11"`
	S12 *patEvent `expr:"s12"`
	S13 *patEvent `expr:"s13"`
	S14 *patEvent `expr:"s14"`
	S15 *patEvent `expr:"s15"`
	S16 *patEvent `expr:"s16"`
}

// bind points prev, first and s1..s<upto> at a partial match's events.
func (e *patEnv) bind(evs []patEvent, upto int) {
	e.First, e.Prev = &evs[0], &evs[len(evs)-1]
	ss := [patternMaxSteps]**patEvent{&e.S1, &e.S2, &e.S3, &e.S4, &e.S5, &e.S6, &e.S7, &e.S8,
		&e.S9, &e.S10, &e.S11, &e.S12, &e.S13, &e.S14, &e.S15, &e.S16}
	for i := range min(upto, len(evs)) {
		*ss[i] = &evs[i]
	}
}

// unbind drops the pointers into partial matches.
func (e *patEnv) unbind() { *e = patEnv{} }

// patCond is one compiled condition, split at its top-level "&&" into the
// conjuncts that read only the current event (guard: evaluated once per
// event, whatever the number of partial matches) and those that read
// earlier steps (rest: evaluated per partial match, only if the guard
// holds).
type patCond struct {
	id    int    // index in pattern.conds: the per-event guard cache
	src   string // as configured
	guard *vm.Program
	rest  *vm.Program
	upto  int // s1..s<upto> are bound for rest
}

func patOptions() []expr.Option {
	return []expr.Option{
		expr.Env(patEnv{}),
		expr.AsBool(),
		// now() is processing time: a restart or a replay would not give
		// the same alerts.
		expr.DisableBuiltin("now"),
		expr.Function("distance_km", distanceKm, new(func(float64, float64, float64, float64) float64)),
	}
}

// earthRadiusKm is the mean Earth radius (IUGG).
const earthRadiusKm = 6371.0088

// distanceKm is the great-circle (haversine) distance between two points
// given in degrees.
func distanceKm(p ...any) (any, error) {
	var f [4]float64
	for i := range f {
		v, ok := toF64(p[i])
		if !ok {
			return nil, fmt.Errorf("distance_km: argument %d is %T, not a number", i+1, p[i])
		}
		f[i] = v * math.Pi / 180
	}
	dlat, dlon := f[2]-f[0], f[3]-f[1]
	h := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(f[0])*math.Cos(f[2])*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * earthRadiusKm * math.Asin(math.Sqrt(min(1, h))), nil
}

func toF64(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float32:
		return float64(x), true
	case int32:
		return float64(x), true
	}
	return 0, false
}

// compileCond compiles the condition of a step (what says which, e.g.
// "step 2"); avail is how many events earlier steps have matched when it
// is evaluated (0 for step 1).
func compileCond(id int, what, src string, avail int) (*patCond, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("%s is empty", what)
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %s", what, src, exprMessage(err))
	}
	c := &patCond{id: id, src: src, upto: avail}
	var indep, dep []ast.Node
	for _, n := range conjuncts(tree.Node, nil) {
		r := refsOf(n)
		if err := r.check(avail); err != "" {
			return nil, fmt.Errorf("%s %q: %s", what, src, err)
		}
		if r.dep {
			dep = append(dep, n)
		} else {
			indep = append(indep, n)
		}
	}
	full, err := expr.Compile(src, patOptions()...)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %s", what, src, exprMessage(err))
	}
	switch {
	case len(dep) == 0:
		c.guard = full
	case len(indep) == 0:
		c.rest = full
	default:
		g, err1 := expr.Compile(joinAnd(indep), patOptions()...)
		r, err2 := expr.Compile(joinAnd(dep), patOptions()...)
		if err1 != nil || err2 != nil {
			// Cannot happen for an expression that compiled whole; if it
			// does, evaluate it whole for every partial match.
			c.guard, c.rest = nil, full
		} else {
			c.guard, c.rest = g, r
		}
	}
	return c, nil
}

// exprMessage is expr's error on one line: the message and where.
func exprMessage(err error) string {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return err.Error()
	}
	if fe.Line > 1 {
		return fmt.Sprintf("%s (line %d, column %d)", fe.Message, fe.Line, fe.Column+1)
	}
	return fmt.Sprintf("%s (column %d)", fe.Message, fe.Column+1)
}

// conjuncts flattens a top-level chain of "&&" (or "and").
func conjuncts(n ast.Node, out []ast.Node) []ast.Node {
	if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
		out = conjuncts(b.Left, out)
		return conjuncts(b.Right, out)
	}
	return append(out, n)
}

func joinAnd(ns []ast.Node) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = "(" + n.String() + ")"
	}
	return strings.Join(parts, " && ")
}

// patRefs is what a condition reads of earlier steps.
type patRefs struct {
	dep  bool   // reads prev, first, sN or $env
	prev bool   // reads prev or first
	smax int    // highest N of the sN it reads
	bad  string // an sN beyond s16
}

func (r *patRefs) Visit(node *ast.Node) {
	id, ok := (*node).(*ast.IdentifierNode)
	if !ok {
		return
	}
	switch name := id.Value; {
	case name == "prev" || name == "first":
		r.dep, r.prev = true, true
	case name == "$env":
		r.dep = true
	case len(name) >= 2 && name[0] == 's':
		n, err := strconv.Atoi(name[1:])
		if err != nil || n < 1 || name[1] < '1' || name[1] > '9' {
			return
		}
		r.dep = true
		if n > patternMaxSteps && r.bad == "" {
			r.bad = fmt.Sprintf("%s: there are at most %d steps", name, patternMaxSteps)
		}
		r.smax = max(r.smax, n)
	}
}

// check says what is wrong with reading these when avail events are
// matched, or "".
func (r *patRefs) check(avail int) string {
	switch {
	case r.bad != "":
		return r.bad
	case avail == 0 && r.prev:
		return "prev and first: step 1 has no earlier match to refer to"
	case avail == 0 && r.smax > 0:
		return fmt.Sprintf("s%d: step 1 has no earlier match to refer to", r.smax)
	case r.smax > avail && avail == 1:
		return fmt.Sprintf("s%d: only s1 is matched before it", r.smax)
	case r.smax > avail:
		return fmt.Sprintf("s%d: only s1..s%d are matched before it", r.smax, avail)
	}
	return ""
}

func refsOf(n ast.Node) patRefs {
	var r patRefs
	ast.Walk(&n, &r)
	return r
}
