package cep

import (
	"errors"
	"fmt"
	"math"
	"time"
)

func init() { register("anomaly", newAnomaly) }

// anomaly is the detector that needs no tuning: five cheap on-line tests
// of each reading against what its key did before, graded on the common
// score scale; the alert fires when the highest score reaches MinScore
// (default 0.75, about 5.7 sigma).
//
//  1. Outlier: the reading against the long-term distribution of its key,
//     a robust z-score: its distance from the long-term median in units
//     of the spread on its side of the median (from the 10%/90% and
//     2.5%/97.5% quantiles, so heavy tails and skew are learned; each
//     side at least a quarter of the other). A value within the range of
//     the long-term samples scores no more than its rank among them says
//     (a value as extreme as some seen lately is not an outlier, however
//     heavy the tail); beyond their range the deviation grows from there.
//  2. Jump: the change from the previous reading against the largest
//     change lately (it halves over anomalyHorizon readings): a change
//     twice the largest counts 6 sigma. It sees a level shift at its
//     first reading even when the new level is within the usual range of
//     a swinging signal, and it learns the jumps a series makes as a
//     matter of course (a square wave's edges).
//  3. Stuck: the same value, exactly, for at least minStuck readings in a
//     row, longer than the longest such run lately and longer than the
//     series' share of repeated readings makes likely (run lengths are
//     geometric): a sensor that froze. A coarse sensor that repeats its
//     value half the time must repeat it for about 35 readings.
//  4. Level shift: the median of the last recentN readings against the
//     long-term median, in standard errors of a median of recentN
//     readings; the readings' autocorrelation (lag 1, learned) shrinks
//     their effective number, so a slowly wandering series is not judged
//     as if its readings were independent.
//  5. Distribution change, as relative-entropy detectors do: the histogram
//     of the last recentN readings (over anomalyBins bins cut at the
//     long-term quantiles when the key warmed up) against the histograms
//     seen before. Each histogram that recurs becomes a known pattern; a
//     window that matches no pattern seen at least patternSeen times
//     scores by its G statistic (2 n KL divergence, chi-square with
//     bins - 1 degrees of freedom, scaled to the effective number of
//     readings) against the closest known one.
//
// The long-term distribution is a reservoir of anomalySamples readings:
// every reading while the key is young, then a random one replaced with
// probability anomalySamples / anomalyHorizon, so it covers the last few
// thousand readings, weighted to the recent. A lasting change becomes the
// new normal over that horizon; an anomaly that comes and goes is one
// alert (ResolveCount, default 10 readings back below MinScore).
//
// The spread has the floor every statistical detector has (spreadFloor:
// half the series' quantization step, 0.1% of its level), so flat and
// quantized series do not explode: a change away from a constant value
// is a level change, scored against that floor. Tolerance, when set, is
// the smallest deviation from the long-term median (of the reading, or of
// the recent median) that may fire, in the series' units or relative to
// the median ("2%").
//
// It judges nothing during its first Warmup readings (default 100).
// Per key it keeps about 1.9 KB; a reading costs well under a microsecond
// and allocates nothing.
//
// What it does not catch: a value that is wrong for its time but usual
// for the series (a daily peak at night: it knows no seasons), a slow
// drift that stays within the usual range, a sensor that stops sending
// (deadman), or one stuck at a value that wobbles in its last digit.
type anomaly struct {
	name     string
	minScore float64
	warmup   int64
	tol      Tolerance
	resolve  int64
	renot    time.Duration
}

const (
	// anomalySamples is the size of the long-term reservoir.
	anomalySamples = 128
	// anomalyHorizon is the number of readings the reservoir spans once a
	// key is old: a reading stays in it for this many readings on average.
	anomalyHorizon = 2048
	// recentN is the window of the level and distribution tests.
	recentN = 32
	// anomalyBins is the number of bins of the distribution test.
	anomalyBins = 5
	// maxPatterns is the number of histograms (patterns) remembered.
	maxPatterns = 16
	// patternSeen is how many windows must have matched a pattern before
	// it is usual.
	patternSeen = recentN
	// patternMatch is the G statistic below which a window matches a
	// pattern: chi-square with anomalyBins - 1 = 4 degrees of freedom at
	// 1%, as relative-entropy detectors use.
	patternMatch = 13.28
	// defaultAnomalyWarmup and defaultAnomalyScore are the defaults of
	// Warmup and MinScore.
	defaultAnomalyWarmup = 100
	defaultAnomalyScore  = 0.75
	// jumpZ is the deviation a change as large as the largest lately
	// counts as: 3 sigma, so that a change twice as large (6 sigma) fires
	// at the default MinScore (5.66 sigma).
	jumpZ = 3.0
	// minStuck is the shortest run of one value the stuck test judges: a
	// few repeats of a coarse sensor's value are chance.
	minStuck = 8
)

func newAnomaly(s Spec) (Detector, error) {
	switch {
	case s.Warmup < 0:
		return nil, errors.New("anomaly: warmup must not be negative")
	case s.Renotify < 0:
		return nil, errors.New("anomaly: renotify must not be negative")
	case s.ResolveCount < 0:
		return nil, errors.New("anomaly: resolve_count must not be negative")
	case s.Sigma != 0 || s.Window != 0 || s.Alpha != 0:
		return nil, errors.New("anomaly takes no sigma, window or alpha: set min_score (default 0.9) to change what fires")
	}
	if err := s.Tolerance.check("anomaly"); err != nil {
		return nil, err
	}
	if err := checkMinScore("anomaly", s.MinScore); err != nil {
		return nil, err
	}
	a := &anomaly{name: s.Name, minScore: s.MinScore, warmup: int64(s.Warmup), tol: s.Tolerance, resolve: resolveCount(s.ResolveCount), renot: s.Renotify}
	if a.minScore == 0 {
		a.minScore = defaultAnomalyScore
	}
	if a.warmup == 0 {
		a.warmup = defaultAnomalyWarmup
	}
	return a, nil
}

func (a *anomaly) Name() string { return a.name }

func (a *anomaly) Fingerprint() string { return "anomaly/1" }

func (a *anomaly) NewState() State { return &anomalyState{d: a, rng: anomalySeed} }

// anomalySeed starts every key's random stream: the same readings give
// the same alerts, on every run and after every restore.
const anomalySeed = 0x9e3779b97f4a7c15

type anomalyState struct {
	d *anomaly
	Lifecycle
	calm int64       // readings in a row below MinScore while firing
	step stepTracker // the series' quantization step
	seen int64       // readings of the key so far
	rng  uint64      // xorshift state for the reservoir

	// The long-term reservoir, ascending: ref[:nref], and its median and
	// spreads while it does not change (not encoded).
	ref   [anomalySamples]float64
	nref  int
	quant struct {
		med, down, up float64
		ok            bool
	}

	// The last recentN readings: in arrival order (a ring from head) and
	// ascending (rsorted[:nrec]), and their bins.
	recent  [recentN]float64
	rbin    [recentN]uint8
	rsorted [recentN]float64
	nrec    int
	head    int

	// Lag-1 autocorrelation of the readings, clipped to the long-term
	// spread: exponentially weighted sums.
	acN, acMean, acVar, acCov, acPrev float64

	// jump is the largest change between consecutive readings lately: it
	// decays by half over anomalyHorizon readings and grows at most
	// twofold a reading once the key warmed up.
	jump float64

	// run counts the readings equal to the one before, in a row; longest
	// is the longest such run that ended lately (it decays like jump);
	// repeats is the share of readings equal to the one before, lately.
	run, longest, repeats float64

	// The distribution test: bin edges (set when the key warmed up), the
	// counts of the recent window per bin, and the patterns: log
	// probabilities per bin and how many windows matched each.
	edges    [anomalyBins - 1]float64
	binned   bool
	counts   [anomalyBins]uint8
	patLog   [maxPatterns][anomalyBins]float32
	patSeen  [maxPatterns]uint32
	patterns int
}

// which test scored highest, for the reason.
const (
	testOutlier = iota
	testJump
	testStuck
	testLevel
	testDistribution
)

// verdict is what the tests found on one reading.
type verdict struct {
	score, z   float64
	test       int
	med, scale float64 // long-term median and spread on the reading's side
	rmed       float64 // recent median
	neff       float64 // effective number of recent readings
	jump       float64 // the change from the previous reading
	run        float64 // readings equal to the one before, this one included
	g          float64 // distribution test: G against the closest usual pattern
	usual      int     // usual patterns
}

func (s *anomalyState) Observe(ev *Event, out *Emitter) {
	d, v := s.d, ev.Value
	if !finite(v) {
		return
	}
	s.pushRecent(v)
	judging := s.seen >= d.warmup && s.nref >= 2
	if judging && !s.binned {
		s.setBins()
	}
	// The G statistic of the recent window against every pattern, for the
	// test and for learning.
	var gs [maxPatterns]float64
	full := s.binned && s.nrec == recentN
	if full {
		for i := range s.patterns {
			gs[i] = s.g(i)
		}
	}
	var sd sideSpread
	if s.nref >= 2 {
		sd.med, sd.down, sd.up = s.sides()
	}
	if judging {
		var vd verdict
		s.judge(v, &sd, &gs, &vd)
		cond := vd.score >= d.minScore
		holds := debounce(&s.Lifecycle, &s.calm, cond, d.resolve)
		if emits(&s.Lifecycle, holds, ev.TS, d.renot) {
			s.Set(holds, d.name, ev.Key, ev.TS, v, vd.score, s.reason(holds, v, &vd), d.renot, out)
		}
	}
	if full {
		s.learnPattern(&gs)
	}
	s.learn(v, &sd)
	s.step.add(v)
	s.seen++
}

// sideSpread is the long-term median and the spreads below and above it.
type sideSpread struct{ med, down, up float64 }

// pushRecent adds v to the recent window, dropping the oldest reading
// when it is full.
func (s *anomalyState) pushRecent(v float64) {
	if s.nrec == recentN {
		if s.binned {
			s.counts[s.rbin[s.head]]--
		}
		removeSorted(s.rsorted[:s.nrec], s.recent[s.head])
		s.head = (s.head + 1) % recentN
		s.nrec--
	}
	i := (s.head + s.nrec) % recentN
	s.recent[i] = v
	if s.binned {
		b := s.bin(v)
		s.rbin[i] = b
		s.counts[b]++
	}
	insertSorted(s.rsorted[:s.nrec+1], s.nrec, v)
	s.nrec++
}

// insertSorted inserts v into a[:n] (ascending), a having room for n+1.
func insertSorted(a []float64, n int, v float64) {
	i := searchAbove(a[:n], v)
	for i < n && a[i] <= v { // after its equals: the same place as a linear insert
		i++
	}
	copy(a[i+1:n+1], a[i:n])
	a[i] = v
}

// removeSorted removes one v from ascending a (which holds it), moving the
// rest left.
func removeSorted(a []float64, v float64) {
	if i := searchAbove(a, v); i < len(a) {
		copy(a[i:], a[i+1:])
	}
}

// quantile returns the q-quantile of the reservoir, interpolated.
func (s *anomalyState) quantile(q float64) float64 {
	x := q * float64(s.nref-1)
	i := int(x)
	if i >= s.nref-1 {
		return s.ref[s.nref-1]
	}
	f := x - float64(i)
	return s.ref[i] + f*(s.ref[i+1]-s.ref[i])
}

// sides returns the long-term median and the spreads below and above it.
// The reservoir's part is cached until the reservoir changes (a reading
// in 16 once the key is old).
func (s *anomalyState) sides() (med, down, up float64) {
	if !s.quant.ok {
		q := &s.quant
		q.med = s.quantile(0.5)
		q.up = max((s.quantile(0.9)-q.med)/1.2816, (s.quantile(0.975)-q.med)/1.96)
		q.down = max((q.med-s.quantile(0.1))/1.2816, (q.med-s.quantile(0.025))/1.96)
		q.ok = true
	}
	med, down, up = s.quant.med, s.quant.down, s.quant.up
	floor := spreadFloor(med, s.step.step)
	return med, max(down, up/4, floor), max(up, down/4, floor)
}

// judge runs the three tests on v (already in the recent window).
func (s *anomalyState) judge(v float64, sd *sideSpread, gs *[maxPatterns]float64, vd *verdict) {
	d := s.d
	med, down, up := sd.med, sd.down, sd.up
	vd.med = med
	// 1. The reading.
	scale := up
	if v < med {
		scale = down
	}
	vd.scale = scale
	dev := math.Abs(v - med)
	if dev > d.tol.at(med) {
		vd.z, vd.test = s.outlierZ(v, med, scale), testOutlier
	}
	// 2. The change from the previous reading, against the largest lately.
	if s.step.has && s.jump > 0 {
		if z := jumpZ * math.Abs(v-s.step.prev) / s.jump; z > vd.z && dev > d.tol.at(med) {
			vd.z, vd.test = z, testJump
			vd.jump = math.Abs(v - s.step.prev)
		}
	}
	// 3. The same value again, for longer than the longest run lately
	// and longer than the series' share of repeats makes likely.
	if s.step.has && v == s.step.prev {
		if run := s.run + 1; run >= minStuck {
			if z := min(jumpZ*run/max(s.longest, 1), s.runZ(run)); z > vd.z {
				vd.z, vd.test = z, testStuck
				vd.run = run
			}
		}
	}
	// 4. The recent median, in standard errors of a median of neff
	// readings: 1.2533 sigma / sqrt(neff).
	rmed := median(s.rsorted[:s.nrec])
	vd.rmed = rmed
	rho := 0.0
	if s.acVar > 0 {
		rho = min(0.99, max(0, s.acCov/s.acVar))
	}
	vd.neff = max(1, float64(s.nrec)*(1-rho)/(1+rho))
	rscale := up
	if rmed < med {
		rscale = down
	}
	if rdev := math.Abs(rmed - med); rdev > d.tol.at(med) && s.nrec == recentN {
		if z := rdev / (1.2533 * rscale / math.Sqrt(vd.neff)); z > vd.z {
			vd.z, vd.test = z, testLevel
		}
	}
	// 5. The recent histogram against the usual patterns.
	if s.binned && s.nrec == recentN {
		g, usual := math.Inf(1), 0
		for i := range s.patterns {
			if s.patSeen[i] >= patternSeen {
				usual++
				g = min(g, gs[i])
			}
		}
		vd.g, vd.usual = g, usual
		// Autocorrelated readings carry less evidence than independent
		// ones: G scales with the effective number of readings.
		if usual > 0 && g > patternMatch {
			if z := chiSquareZ(g*vd.neff/recentN, anomalyBins-1); z > vd.z {
				vd.z, vd.test = z, testDistribution
			}
		}
	}
	vd.score = scoreOf(vd.z)
}

// outlierZ is the deviation of v from the long-term median med in
// standard deviations (scale on v's side), but never more than the rank of
// v among the reservoir's samples implies while v is within their range:
// a value as extreme as one seen lately is not an outlier, however heavy
// the tail; beyond the samples' range the deviation grows from there by
// the spread.
func (s *anomalyState) outlierZ(v, med, scale float64) float64 {
	z := math.Abs(v-med) / scale
	n := s.nref
	zEdge := edgeZ[n] // the most extreme sample
	if z < zEdge/2 {
		return z // far inside the samples' range: the cap cannot bind
	}
	// k: samples at least as extreme as v, on its side.
	var k int
	var edge float64
	if v >= med {
		k = n - searchAbove(s.ref[:n], v)
		edge = s.ref[n-1]
	} else {
		k = searchAbove(s.ref[:n], math.Nextafter(v, math.Inf(1)))
		edge = s.ref[0]
	}
	if k > 0 {
		return min(z, rankZ(k, n))
	}
	return min(z, zEdge+math.Abs(v-edge)/scale)
}

// searchAbove returns the index of the first value >= v in ascending a.
func searchAbove(a []float64, v float64) int {
	lo, hi := 0, len(a)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// runZ is how unlikely a run of run readings equal to the one before is
// in a series where a share repeats of the readings repeat the one before
// (geometric run lengths): the standard normal deviate of the chance that
// a run this long starts somewhere in anomalyHorizon readings.
func (s *anomalyState) runZ(run float64) float64 {
	// At least the current run: a series that always repeats is one run.
	p := max(anomalyHorizon*(1-s.repeats), 1) * math.Pow(s.repeats, run)
	if p >= 0.5 {
		return 0
	}
	return math.Sqrt2 * math.Erfinv(1-2*p)
}

// edgeZ[n] is rankZ(1, n): how extreme the most extreme of n samples is.
var edgeZ = func() (t [anomalySamples + 1]float64) {
	for n := 1; n <= anomalySamples; n++ {
		t[n] = rankZ(1, n)
	}
	return t
}()

// rankZ is the standard normal deviate of a two-sided tail probability of
// k in n+1: how extreme the k-th most extreme of n samples is.
func rankZ(k, n int) float64 {
	p := float64(k) / float64(2*(n+1))
	return -math.Sqrt2 * math.Erfinv(2*p-1)
}

// chiSquareZ is the standard normal deviate with the tail probability of a
// chi-square statistic x with k degrees of freedom (Wilson-Hilferty).
func chiSquareZ(x float64, k int) float64 {
	kf := float64(k)
	v := 2 / (9 * kf)
	return (math.Cbrt(x/kf) - (1 - v)) / math.Sqrt(v)
}

// lnCount[c] is ln(c / recentN), ln of a bin's share of the window.
var lnCount = func() (t [recentN + 1]float64) {
	for c := 1; c <= recentN; c++ {
		t[c] = math.Log(float64(c) / recentN)
	}
	return t
}()

// g returns the G statistic of the recent window against pattern i:
// 2 n KL(recent || pattern).
func (s *anomalyState) g(i int) float64 {
	var kl float64
	for b, c := range s.counts {
		if c > 0 {
			kl += float64(c) * (lnCount[c] - float64(s.patLog[i][b]))
		}
	}
	return 2 * kl // the counts carry the n: sum c ln(p/q) = n KL
}

// learnPattern counts the recent window (full) as a match of its
// closest pattern, or remembers it as a new pattern, replacing the least
// seen one when all places are taken.
func (s *anomalyState) learnPattern(gs *[maxPatterns]float64) {
	best, bi := math.Inf(1), -1
	for i := range s.patterns {
		if gs[i] < best {
			best, bi = gs[i], i
		}
	}
	if bi >= 0 && best <= patternMatch {
		if s.patSeen[bi] < math.MaxUint32 {
			s.patSeen[bi]++
		}
		return
	}
	i := s.patterns
	if i == maxPatterns {
		i = 0
		for j := 1; j < maxPatterns; j++ {
			if s.patSeen[j] < s.patSeen[i] {
				i = j
			}
		}
	} else {
		s.patterns++
	}
	// The pattern's probabilities, smoothed so that a bin it never saw
	// is unlikely, not impossible.
	for b, c := range s.counts {
		s.patLog[i][b] = float32(math.Log((float64(c) + 0.5) / (recentN + 0.5*anomalyBins)))
	}
	s.patSeen[i] = 1
}

// setBins cuts the bins at the reservoir's quantiles and bins the recent
// window.
func (s *anomalyState) setBins() {
	for i := range s.edges {
		s.edges[i] = s.quantile(float64(i+1) / anomalyBins)
	}
	s.binned = true
	s.counts = [anomalyBins]uint8{}
	for j := range s.nrec {
		i := (s.head + j) % recentN
		b := s.bin(s.recent[i])
		s.rbin[i] = b
		s.counts[b]++
	}
}

// bin returns the bin of v: the number of edges below it.
func (s *anomalyState) bin(v float64) uint8 {
	b := uint8(0)
	for _, e := range s.edges {
		if v > e {
			b++
		}
	}
	return b
}

// jumpDecay halves the largest change over anomalyHorizon readings.
var jumpDecay = math.Exp2(-1.0 / anomalyHorizon)

// learn folds v into the reservoir, the largest change and the
// autocorrelation.
func (s *anomalyState) learn(v float64, sd *sideSpread) {
	if s.step.has {
		dv := math.Abs(v - s.step.prev)
		if s.seen >= s.d.warmup && s.jump > 0 {
			dv = min(dv, 2*s.jump)
		}
		s.jump = max(s.jump*jumpDecay, dv)
		s.longest *= jumpDecay
		rep := 0.0
		if v == s.step.prev {
			rep = 1
		}
		s.repeats += (rep - s.repeats) / float64(min(s.seen, anomalyHorizon))
		if v == s.step.prev {
			s.run++
		} else {
			s.longest = max(s.longest, s.run) // a run counts once it ended
			s.run = 0
		}
	}
	if s.nref >= 2 {
		c := min(max(v, sd.med-3*sd.down), sd.med+3*sd.up) // clipped: spikes do not hide the correlation
		if s.acN == 0 {
			s.acMean, s.acPrev = c, c
		}
		s.acN = min(s.acN+1, anomalyHorizon)
		w := 1 / s.acN
		dPrev, dCur := s.acPrev-s.acMean, c-s.acMean
		s.acMean += w * dCur
		s.acVar += w * (dCur*dCur - s.acVar)
		s.acCov += w * (dPrev*dCur - s.acCov)
		s.acPrev = c
	}
	n := s.seen + 1
	switch {
	case s.nref < anomalySamples:
		insertSorted(s.ref[:s.nref+1], s.nref, v)
		s.nref++
		s.quant.ok = false
	default:
		// Reservoir sampling: uniform over all readings while the key is
		// younger than the horizon, then over a sliding exponential one.
		keep := float64(anomalySamples) / float64(min(n, anomalyHorizon))
		r := s.next()
		if float64(r>>11)/(1<<53) >= keep {
			return
		}
		i := int(r % anomalySamples) // the sample replaced, by rank
		s.replace(i, v)
		s.quant.ok = false
	}
}

// replace swaps the i-th smallest sample for v, keeping ref sorted.
func (s *anomalyState) replace(i int, v float64) {
	a := s.ref[:s.nref]
	for i > 0 && a[i-1] > v {
		a[i] = a[i-1]
		i--
	}
	for i < len(a)-1 && a[i+1] < v {
		a[i] = a[i+1]
		i++
	}
	a[i] = v
}

// next is xorshift64*.
func (s *anomalyState) next() uint64 {
	x := s.rng
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	s.rng = x
	return x * 2685821657736338717
}

func (s *anomalyState) reason(firing bool, v float64, vd *verdict) string {
	var back string
	if !firing && s.d.resolve > 1 {
		back = fmt.Sprintf("back below score %s for %d readings: ", FormatValue(s.d.minScore), s.d.resolve)
	}
	where := "above"
	if v < vd.med {
		where = "below"
	}
	base := fmt.Sprintf("%d samples of the last %d readings", s.nref, min(s.seen, anomalyHorizon))
	switch vd.test {
	case testLevel:
		where = "above"
		if vd.rmed < vd.med {
			where = "below"
		}
		return fmt.Sprintf("%slevel shift: the median %s of the last %d readings is %.3g standard errors %s the long-term median %s (%s; %.3g effective readings)",
			back, FormatValue(vd.rmed), s.nrec, vd.z, where, FormatValue(vd.med), base, vd.neff)
	case testJump:
		return fmt.Sprintf("%sjump: value %s changed by %s from the previous reading, %.3g times the largest change lately (%s); long-term median %s",
			back, FormatValue(v), FormatValue(vd.jump), vd.z/jumpZ, FormatValue(s.jump), FormatValue(vd.med))
	case testStuck:
		return fmt.Sprintf("%sstuck: value %s unchanged for %.0f readings in a row, %.3g times the longest such run lately (%.0f; %.3g%% of the readings repeat the one before)",
			back, FormatValue(v), vd.run, vd.run/max(s.longest, 1), max(s.longest, 1), 100*s.repeats)
	case testDistribution:
		return fmt.Sprintf("%sdistribution change: the last %d readings (value %s) match none of the %d usual patterns (G %.3g, %d bins, %.3g at most to match)",
			back, s.nrec, FormatValue(v), vd.usual, vd.g, anomalyBins, patternMatch)
	}
	if vd.scale <= spreadFloor(vd.med, s.step.step) {
		return fmt.Sprintf("%slevel change: value %s is %s %s the long-term median %s of a nearly constant series (%.3g x the spread floor %s; %s)",
			back, FormatValue(v), FormatValue(math.Abs(v-vd.med)), where, FormatValue(vd.med), vd.z, FormatValue(vd.scale), base)
	}
	return fmt.Sprintf("%svalue %s is %.3g sigma %s the long-term median %s (sigma %s on that side; %s)",
		back, FormatValue(v), vd.z, where, FormatValue(vd.med), FormatValue(vd.scale), base)
}

func (s *anomalyState) NextTimer() int64                { return NoTimer }
func (s *anomalyState) Advance(string, int64, *Emitter) {}

// anomaly states are encoded as version 2; version 1 (before the stuck
// test's run and longest) is still restored, with both starting at 0.
func (s *anomalyState) AppendState(b []byte) []byte {
	b = append(b, 2)
	b = appendLifecycle(b, &s.Lifecycle)
	b = appendI64(b, s.calm)
	b = appendStep(b, &s.step)
	b = appendI64(b, s.seen)
	b = appendU64(b, s.rng)
	b = appendU64(b, uint64(s.nref))
	for _, x := range s.ref[:s.nref] {
		b = appendF64(b, x)
	}
	// The recent window, oldest first (the bins follow from the edges).
	b = appendU64(b, uint64(s.nrec))
	for j := range s.nrec {
		b = appendF64(b, s.recent[(s.head+j)%recentN])
	}
	for _, x := range []float64{s.acN, s.acMean, s.acVar, s.acCov, s.acPrev, s.jump, s.run, s.longest, s.repeats} {
		b = appendF64(b, x)
	}
	b = appendBool(b, s.binned)
	for _, e := range s.edges {
		b = appendF64(b, e)
	}
	b = appendU64(b, uint64(s.patterns))
	for i := range s.patterns {
		for _, l := range s.patLog[i] {
			b = appendU32(b, math.Float32bits(l))
		}
		b = appendU32(b, s.patSeen[i])
	}
	return b
}

func (s *anomalyState) RestoreState(b []byte) error {
	d := decoder{b: b}
	version := d.versions(1, 2)
	d.lifecycle(&s.Lifecycle)
	s.calm = d.i64()
	d.stepTracker(&s.step)
	s.seen = d.i64()
	s.rng = d.u64()
	s.nref = d.count(8)
	s.quant.ok = false
	if s.nref > anomalySamples {
		d.err = errState
	}
	if d.err != nil {
		return d.err
	}
	for i := range s.nref {
		s.ref[i] = d.f64()
		if d.err == nil && (!finite(s.ref[i]) || i > 0 && s.ref[i] < s.ref[i-1]) {
			d.err = errState
		}
	}
	nrec := d.count(8)
	if nrec > recentN {
		d.err = errState
	}
	if d.err != nil {
		return d.err
	}
	rec := make([]float64, nrec)
	for j := range rec {
		rec[j] = d.f64()
		if d.err == nil && !finite(rec[j]) {
			d.err = errState
		}
	}
	fs := []*float64{&s.acN, &s.acMean, &s.acVar, &s.acCov, &s.acPrev, &s.jump}
	s.run, s.longest, s.repeats = 0, 0, 0
	if version >= 2 {
		fs = append(fs, &s.run, &s.longest, &s.repeats)
	}
	for _, p := range fs {
		*p = d.f64()
		if d.err == nil && !finite(*p) {
			d.err = errState
		}
	}
	s.binned = d.bool1()
	for i := range s.edges {
		s.edges[i] = d.f64()
	}
	s.patterns = d.count(anomalyBins*4 + 4)
	if s.patterns > maxPatterns {
		d.err = errState
	}
	if d.err != nil {
		return d.err
	}
	for i := range s.patterns {
		for j := range s.patLog[i] {
			s.patLog[i][j] = math.Float32frombits(d.u32())
			if d.err == nil && !(s.patLog[i][j] <= 0) { // a log probability, finite
				d.err = errState
			}
		}
		s.patSeen[i] = d.u32()
	}
	if err := d.done(); err != nil {
		return err
	}
	// Rebuild the recent window with its bins.
	s.nrec, s.head = 0, 0
	s.counts = [anomalyBins]uint8{}
	for _, v := range rec {
		s.pushRecent(v)
	}
	return nil
}
