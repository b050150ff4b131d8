package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The operator kinds of the config-change matrix, in the order "change
// kind" rotates them within their family.
var (
	ccWindows   = []string{"tumbling", "sliding", "session"}
	ccDetectors = []string{"threshold", "zscore", "mad", "rate", "flatline", "deadman", "range", "pattern"}
)

// ccOp is the TOML of one operator of kind, named name; alt changes its
// parameters.
func ccOp(kind, name string, alt bool) string {
	pick := func(a, b string) string {
		if alt {
			return b
		}
		return a
	}
	switch kind {
	case "tumbling":
		return fmt.Sprintf("[[window]]\nname = %q\ntype = \"tumbling\"\nsize = %q\nallowed_lateness = %q\naggregates = %s\n",
			name, pick("10s", "5s"), pick("5s", "0s"), pick(`["count", "sum", "p95"]`, `["count", "max", "stddev"]`))
	case "sliding":
		return fmt.Sprintf("[[window]]\nname = %q\ntype = \"sliding\"\nsize = %q\nslide = %q\nallowed_lateness = %q\naggregates = [\"count\", \"mean\"]\n",
			name, pick("20s", "30s"), pick("5s", "10s"), pick("3s", "1s"))
	case "session":
		return fmt.Sprintf("[[window]]\nname = %q\ntype = \"session\"\ngap = %q\nallowed_lateness = %q\naggregates = [\"count\", \"last\"]\n",
			name, pick("30s", "2s"), pick("10s", "0s"))
	}
	s := fmt.Sprintf("[[detector]]\nname = %q\ntype = %q\n", name, kind)
	switch kind {
	case "threshold":
		s += pick("above = 50.0\n", "above = 90.0\nfor_count = 3\n")
	case "zscore":
		s += "sigma = 3.0\nwarmup = 5\n" + pick("window = \"1m\"\n", "alpha = 0.1\n")
	case "mad":
		s += "sigma = 3.0\nwarmup = 5\nwindow = " + pick(`"1m"`, `"5s"`) + "\n"
	case "rate":
		s += "max_rate = " + pick("10.0", "1.0") + "\n"
	case "flatline":
		s += "tolerance = 0.001\nduration = " + pick(`"20s"`, `"3s"`) + "\n"
	case "deadman":
		s += "duration = " + pick(`"1m"`, `"2s"`+"\nprocessing_time = true") + "\n"
	case "range":
		s += pick("min = -10.0\nmax = 200.0\n", "min = 0.0\nmax = 40.0\n")
	case "pattern":
		s += pick("steps = [\"value > 60\", \"value < 20\"]\nwithin = \"1m\"\n", "steps = [\"value > 70\"]\ntimes = 2\nwithin = \"5s\"\n")
	}
	return s
}

// ccNext is the kind "change kind" turns kind into.
func ccNext(kind string) string {
	for _, list := range [][]string{ccWindows, ccDetectors} {
		for i, k := range list {
			if k == kind {
				return list[(i+1)%len(list)]
			}
		}
	}
	return ""
}

// ccStateName is the name an operator's state is stored under.
func ccStateName(kind, name string) string {
	for _, k := range ccWindows {
		if k == kind {
			return name
		}
	}
	return "detector/" + name
}

// ccConfig writes the matrix's config: every kind of operator, each
// changed by change ("" for none), and the window "keep" no change
// touches.
func ccConfig(t *testing.T, path, dir, input, change string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `[device]
id = "gw-cc"
data_dir = %q
[pipeline]
max_out_of_orderness = "0s"
checkpoint_interval = "50ms"
state_interval = "50ms"
idle_timeout = "1h"
[log]
level = "debug"
[http]
enabled = false
[[source]]
name = "f"
type = "file"
path = %q
[[window]]
name = "keep"
type = "tumbling"
size = "1h"
key_by = "global"
aggregates = ["count"]
`, filepath.Join(dir, "data"), input)
	for _, kind := range append(append([]string{}, ccWindows...), ccDetectors...) {
		name := "op_" + kind
		switch change {
		case "":
			b.WriteString(ccOp(kind, name, false))
		case "remove":
		case "rename":
			b.WriteString(ccOp(kind, name+"_renamed", false))
		case "kind":
			b.WriteString(ccOp(ccNext(kind), name, false))
		case "params":
			b.WriteString(ccOp(kind, name, true))
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ccFeed appends n readings of 4 sensors, one second apart from second
// *sec on: a wave that crosses every detector's limits.
func ccFeed(t *testing.T, input string, sec *int, n int) {
	t.Helper()
	f, err := os.OpenFile(input, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		s := *sec + i
		fmt.Fprintf(f, `{"sensor":"s%d","ts":%d,"value":%d}`+"\n", s%4, 1_700_000_000_000+int64(s)*1000, (s*37)%100-5)
	}
	*sec += n
	f.Close()
}

// ccWantLines checks the log of a start (or reload) with the changed
// config: one line per operator whose state was dropped, as the change
// implies, and no operator reset for undecodable state.
func ccWantLines(t *testing.T, log, change string) {
	t.Helper()
	if strings.Contains(log, "cannot be restored") || strings.Contains(log, "cannot be decoded") {
		t.Errorf("%s: state was undecodable; log:\n%s", change, log)
	}
	want := map[string]string{"remove": "no longer configured", "rename": "no longer configured", "kind": "its kind or shape changed"}[change]
	if want == "" {
		return
	}
	for _, kind := range append(append([]string{}, ccWindows...), ccDetectors...) {
		op := ccStateName(kind, "op_"+kind)
		re := regexp.MustCompile(`operator state dropped: ` + want + `.* operator=` + regexp.QuoteMeta(op) + `(\s|$)`)
		if n := len(re.FindAllString(log, -1)); n != 1 {
			t.Errorf("%s: %d lines saying the state of %s was dropped (%s), want 1; log:\n%s", change, n, op, want, log)
		}
	}
}

// ccKeepCount is the count of the "keep" window's first hour in the outbox.
func ccKeepCount(t *testing.T, cfg string) string {
	t.Helper()
	re := regexp.MustCompile(`"window":"keep","key":"\*","start":1699999200000,.*?"count":(\d+)`)
	for _, l := range outbox(t, cfg) {
		if m := re.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return "none"
}

// TestConfigChangeRestarts: every window and detector kind x {remove,
// rename, change kind, change parameters} through restarts of edged run:
// each start with a changed config is clean (exit 0 at SIGTERM), logs once
// per operator what happened to its state, keeps processing, and a second
// start with the same config has nothing more to drop; the window no
// change touched counts every reading across all of it.
func TestConfigChangeRestarts(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	cfg := filepath.Join(dir, "edged.toml")
	sec, fed := 0, 0
	run := func(change string, feed int) string {
		t.Helper()
		ccConfig(t, cfg, dir, input, change)
		d := startDaemon(t, cfg)
		d.waitFor(t, regexp.MustCompile(`ready: pipeline caught up`), 30*time.Second)
		restoreLog := d.log.String()
		if feed > 0 {
			ccFeed(t, input, &sec, feed)
			fed += feed
			d.waitLogOffset(t, uint64(fed), 30*time.Second)
		}
		if code := d.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("%s: exit %d; log:\n%s", change, code, d.log)
		}
		return restoreLog
	}
	run("", 60)
	for _, change := range []string{"remove", "rename", "kind", "params"} {
		ccWantLines(t, run(change, 60), change)
		if log := run(change, 0); strings.Contains(log, "state dropped") {
			t.Errorf("%s: the second start with the same config drops state again; log:\n%s", change, log)
		}
		run("", 60)
	}
	sec = 3600 * 2 // far ahead: the keep window's hour fires
	ccFeed(t, input, &sec, 1)
	fed++
	run("", 0)
	if got, want := ccKeepCount(t, cfg), fmt.Sprint(fed-1); got != want {
		t.Errorf("the untouched window counted %s readings across the changes, want %s", got, want)
	}
}

// TestConfigChangeSIGHUP: the same matrix through SIGHUP on one running
// daemon: every reload starts cleanly, the daemon never exits.
func TestConfigChangeSIGHUP(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	cfg := filepath.Join(dir, "edged.toml")
	sec, fed := 0, 0
	ccConfig(t, cfg, dir, input, "")
	d := startDaemon(t, cfg)
	d.waitFor(t, regexp.MustCompile(`ready: pipeline caught up`), 30*time.Second)
	reload := func(change string, feed int) string {
		t.Helper()
		ccConfig(t, cfg, dir, input, change)
		from := d.log.Len()
		d.cmd.Process.Signal(syscall.SIGHUP)
		d.waitFor(t, regexp.MustCompile(`config reloaded`), 30*time.Second)
		d.waitFor(t, regexp.MustCompile(`ready: pipeline caught up`), 30*time.Second)
		log := d.log.String()[from:]
		if feed > 0 {
			ccFeed(t, input, &sec, feed)
			fed += feed
			d.waitLogOffset(t, uint64(fed), 30*time.Second)
		}
		return log
	}
	ccFeed(t, input, &sec, 60)
	fed += 60
	d.waitLogOffset(t, uint64(fed), 30*time.Second)
	for _, change := range []string{"remove", "rename", "kind", "params"} {
		ccWantLines(t, reload(change, 60), change)
		if log := reload(change, 0); strings.Contains(log, "state dropped") {
			t.Errorf("%s: the second reload with the same config drops state again; log:\n%s", change, log)
		}
		reload("", 60)
	}
	sec = 3600 * 2
	ccFeed(t, input, &sec, 1)
	fed++
	d.waitLogOffset(t, uint64(fed), 30*time.Second)
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, d.log)
	}
	if got, want := ccKeepCount(t, cfg), fmt.Sprint(fed-1); got != want {
		t.Errorf("the untouched window counted %s readings across the reloads, want %s", got, want)
	}
}
