package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// httpGet fetches url with an optional bearer token.
func httpGet(url, token string) (int, string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// logged is a running `edged run` whose stderr is kept whole (the daemon
// helper's log is not safe to read once it stopped).
type logged struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

func startLogged(t *testing.T, cfg string, env ...string) *logged {
	t.Helper()
	d := &logged{cmd: exec.Command(edgedBin, "run", "-c", cfg), log: &syncBuffer{}, done: make(chan struct{})}
	d.cmd.Stderr = d.log
	if env != nil {
		d.cmd.Env = append(os.Environ(), env...)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

// waitFor waits until the log matches re.
func (d *logged) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !re.MatchString(d.log.String()) {
		select {
		case <-d.done:
			t.Fatalf("daemon exited before logging %q; log:\n%s", re, d.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v; log:\n%s", re, timeout, d.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM, waits for the exit and returns the exit code.
func (d *logged) stop(t *testing.T) int {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		t.Fatalf("daemon did not stop after SIGTERM; log:\n%s", d.log)
	}
	return d.cmd.ProcessState.ExitCode()
}

// pollHTTP GETs url until ok accepts the answer, or fails the test.
func pollHTTP(t *testing.T, d *logged, url, token string, timeout time.Duration, ok func(code int, body string) bool) (int, string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var code int
	var body string
	var err error
	for {
		code, body, err = httpGet(url, token)
		if err == nil && ok(code, body) {
			return code, body
		}
		if time.Now().After(deadline) {
			d.stop(t)
			t.Fatalf("GET %s: %d %v\n%s\nlog:\n%s", url, code, err, body, d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpConfig(t *testing.T, dir, httpSection string) string {
	t.Helper()
	input := filepath.Join(dir, "in.jsonl")
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, `{"sensor":"s%d","ts":%d,"value":%d}`+"\n", i%5, 1_700_000_000_000+int64(i)*100, i)
		if i%200 == 0 {
			b.WriteString("{\"sensor\":\"broken\n")
		}
	}
	if err := os.WriteFile(input, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "edged.toml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[device]
id = "gw-http"
data_dir = %q
[pipeline]
checkpoint_interval = "50ms"
[http]
%s
[[source]]
name = "f"
type = "file"
path = %q
[[window]]
name = "t1s"
type = "tumbling"
size = "1s"
`, filepath.Join(dir, "data"), httpSection, input)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var httpListening = regexp.MustCompile(`http endpoint listening`)

// TestHTTPEndpoint runs the daemon on a file and reads its endpoint:
// /healthz until 200, /metrics until the file is counted, /status.
func TestHTTPEndpoint(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	cfg := httpConfig(t, dir, fmt.Sprintf("listen = %q", addr))
	d := startLogged(t, cfg)
	d.waitFor(t, httpListening, 10*time.Second)
	base := "http://" + addr

	pollHTTP(t, d, base+"/healthz", "", 10*time.Second, func(code int, body string) bool { return code == 200 && body == "ok\n" })
	_, metrics := pollHTTP(t, d, base+"/metrics", "", 10*time.Second, func(code int, body string) bool {
		return code == 200 && strings.Contains(body, "\nedged_readings_total{source=\"f\"} 500\n") &&
			strings.Contains(body, "\nedged_quarantine_total 3\n") && strings.Contains(body, "\nedged_log_entries 500\n")
	})
	for _, want := range []string{
		"# HELP edged_readings_total ",
		"# TYPE edged_readings_total counter\n",
		"\nedged_decode_errors_total{source=\"f\"} 3\n",
		"\nedged_source_info{source=\"f\",type=\"file\"} 1\n",
		"\nedged_build_info{device=\"gw-http\",version=",
		"\nedged_ready 1\n",
		"# TYPE edged_checkpoint_commit_seconds gauge\n",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("no %q in /metrics:\n%s", want, metrics)
		}
	}
	// The runner publishes its snapshots: the pipeline's figures are
	// there too, and agree.
	_, metrics = pollHTTP(t, d, base+"/metrics", "", 10*time.Second, func(code int, body string) bool {
		return strings.Contains(body, "\nedged_pipeline_readings_total 500\n") && strings.Contains(body, "\nedged_pipeline_backlog_entries 0\n")
	})
	for _, want := range []string{"\nedged_watermark_lag_seconds{source=\"f\"} ", "\nedged_state_keys ", "\nedged_snapshot_age_seconds ", "\nedged_checkpoints_total ", "\nedged_state_checkpoints_total "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("no %q in /metrics:\n%s", want, metrics)
		}
	}

	code, body, err := httpGet(base+"/status", "")
	if err != nil || code != 200 {
		t.Fatalf("/status: %d %v", code, err)
	}
	var st struct {
		Device  string `json:"device"`
		Ready   bool   `json:"ready"`
		State   string `json:"state"`
		Sources []struct {
			Name         string `json:"name"`
			Type         string `json:"type"`
			Readings     int64  `json:"readings"`
			DecodeErrors int64  `json:"decode_errors"`
		} `json:"sources"`
		Store *struct {
			QuarantineTotal uint64 `json:"quarantine_total"`
		} `json:"store"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, body)
	}
	if st.Device != "gw-http" || !st.Ready || st.State != "ready" || len(st.Sources) != 1 || st.Sources[0].Name != "f" ||
		st.Sources[0].Type != "file" || st.Sources[0].Readings != 500 || st.Sources[0].DecodeErrors != 3 || st.Store == nil || st.Store.QuarantineTotal != 3 {
		t.Errorf("/status:\n%s", body)
	}
	if code, _, _ := httpGet(base+"/nope", ""); code != 404 {
		t.Errorf("/nope: %d", code)
	}

	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, d.log)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the HTTP port is still open after the daemon stopped")
	}
	for _, l := range strings.Split(d.log.String(), "\n") {
		if (strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR")) && !strings.Contains(l, "payload quarantined") {
			t.Errorf("a warning from a clean run: %s", l)
		}
	}

	// Safe defaults: the data dir is the daemon's only, and so is its file.
	for path, want := range map[string]os.FileMode{filepath.Join(dir, "data"): 0o700 | os.ModeDir, filepath.Join(dir, "data", "edged.db"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

// TestHTTPToken: with a token, every endpoint refuses a request without it
// or with another, and the token appears neither in the log nor in
// `edged check`.
func TestHTTPToken(t *testing.T) {
	const token = "t0ken-from-the-env-4f9a"
	t.Setenv("EDGED_TEST_HTTP_TOKEN", token)
	dir := t.TempDir()
	addr := freePort(t)
	cfg := httpConfig(t, dir, fmt.Sprintf("listen = %q\ntoken = \"${EDGED_TEST_HTTP_TOKEN}\"", addr))

	out, errOut, code := runEdged(t, dir, nil, "check", "-c", cfg)
	if code != 0 || strings.Contains(out+errOut, token) || !strings.Contains(out, `token   = "<redacted>"`) || errOut != "" {
		t.Fatalf("check: exit %d\n%s\n%s", code, out, errOut)
	}

	d := startLogged(t, cfg)
	d.waitFor(t, httpListening, 10*time.Second)
	base := "http://" + addr
	for _, path := range []string{"/healthz", "/metrics", "/status"} {
		for _, tok := range []string{"", "wrong", token + "x"} {
			if code, body, err := httpGet(base+path, tok); err != nil || code != 401 || strings.Contains(body, token) {
				t.Errorf("%s with %q: %d %v %q", path, tok, code, err, body)
			}
		}
	}
	pollHTTP(t, d, base+"/healthz", token, 10*time.Second, func(code int, body string) bool { return code == 200 })
	pollHTTP(t, d, base+"/metrics", token, 10*time.Second, func(code int, body string) bool {
		return code == 200 && strings.Contains(body, "\nedged_readings_total{source=\"f\"} 500\n")
	})
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, d.log)
	}
	if strings.Contains(d.log.String(), token) {
		t.Errorf("the token is in the log:\n%s", d.log)
	}
}

// TestHTTPDisabled: enabled = false opens no port.
func TestHTTPDisabled(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	cfg := httpConfig(t, dir, fmt.Sprintf("enabled = false\nlisten = %q", addr))
	d := startLogged(t, cfg)
	d.waitFor(t, regexp.MustCompile(`ready: pipeline caught up`), 10*time.Second)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("a port is open with [http] enabled = false")
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, d.log)
	}
	if strings.Contains(d.log.String(), "http endpoint") {
		t.Errorf("http endpoint logged while disabled:\n%s", d.log)
	}
}

// TestCheckWarnings: `edged check` warns about an endpoint open to the
// network without a token and MQTT without TLS to another machine, on
// stderr, and still exits 0.
func TestCheckWarnings(t *testing.T) {
	t.Setenv("EDGED_TEST_PASS", "hunter2-secret")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "edged.toml")
	err := os.WriteFile(cfg, []byte(`[device]
id = "gw"
data_dir = "/tmp/edged-warn"

[http]
listen = "0.0.0.0:9464"

[[source]]
name = "lab"
type = "mqtt"
broker = "tcp://broker.example:1883"
topics = ["sensors/#"]
username = "gw"
password = "${EDGED_TEST_PASS}"

[[source]]
name = "local"
type = "mqtt"
broker = "tcp://127.0.0.1:1883"
topics = ["sensors/#"]

[[window]]
name = "w"
type = "tumbling"
size = "10s"

[[output]]
name = "cloud"
type = "mqtt"
broker = "ssl://broker.example:8883"
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runEdged(t, dir, nil, "check", "-c", cfg)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	want := "warning: " + cfg + `:6: http listens on 0.0.0.0:9464 without a token: anyone on the network can read the metrics; set [http] token or listen on 127.0.0.1
warning: ` + cfg + `:11: source "lab": MQTT without TLS to broker.example:1883: the readings and the password cross the network in clear and can be read or changed on the way; use ssl:// (or wss://), with tls_ca if the broker's certificate is not signed by a public CA
`
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
	if strings.Contains(out+errOut, "hunter2") || !strings.Contains(out, "[http]\nenabled = true\nlisten  = \"0.0.0.0:9464\"\n") {
		t.Errorf("stdout:\n%s", out)
	}
}
