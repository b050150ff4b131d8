package packaging

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The architectures of make deb, and what their binaries must be.
var debArches = []struct {
	arch    string
	machine elf.Machine
	goarch  string
	goarm   string
}{
	{"arm64", elf.EM_AARCH64, "arm64", ""},
	{"armhf", elf.EM_ARM, "arm", "6"}, // ARMv6: every Pi, Zero and 1 included
	{"amd64", elf.EM_X86_64, "amd64", ""},
}

// testXZLevel is the xz level of the packages built here (make deb's
// DEB_XZ_LEVEL; the default, 6, takes about 3 times as long).
const testXZLevel = "0"

// debEntry is a line of dpkg-deb -c.
type debEntry struct {
	mode, owner, stamp string
}

// The package's contents: every path, with its mode and owner.
var wantContents = map[string]string{
	"./":                                  "drwxr-xr-x",
	"./etc/":                              "drwxr-xr-x",
	"./etc/edged/":                        "drwxr-xr-x",
	"./etc/edged/edged.env":               "-rw-------",
	"./etc/edged/edged.toml":              "-rw-r-----", // root:edged after postinst
	"./lib/":                              "drwxr-xr-x",
	"./lib/systemd/":                      "drwxr-xr-x",
	"./lib/systemd/system/":               "drwxr-xr-x",
	"./lib/systemd/system/edged.service":  "-rw-r--r--",
	"./usr/":                              "drwxr-xr-x",
	"./usr/bin/":                          "drwxr-xr-x",
	"./usr/bin/edged":                     "-rwxr-xr-x",
	"./usr/share/":                        "drwxr-xr-x",
	"./usr/share/doc/":                    "drwxr-xr-x",
	"./usr/share/doc/edged/":              "drwxr-xr-x",
	"./usr/share/doc/edged/README.md":     "-rw-r--r--",
	"./usr/share/doc/edged/copyright":     "-rw-r--r--",
	"./usr/share/doc/edged/example.toml":  "-rw-r--r--",
	"./usr/share/doc/edged/install-pi.md": "-rw-r--r--",
}

// run runs a command and returns its stdout; it fails the test on error.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := output(env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// output runs a command; the error carries its stderr.
func output(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w\n%s", err, stderr.String())
	}
	return stdout.String(), err
}

func need(t *testing.T, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not found: cannot build or read .deb files here (apt-get install dpkg)", c)
		}
	}
}

// TestDebVersion checks the Debian versions made of git describe's output:
// valid for dpkg, and ordered as the commits are.
func TestDebVersion(t *testing.T) {
	cases := []struct{ in, count, want string }{
		{"v1.2.3", "", "1.2.3"},
		{"1.2.3", "", "1.2.3"},
		{"v1.2.3-rc1", "", "1.2.3~rc1"},
		{"v1.2.3-4-gabcdef0", "", "1.2.3+4.gabcdef0"},
		{"v1.2.3-4-gabcdef0-dirty", "", "1.2.3+4.gabcdef0.dirty"},
		{"v1.2.3-dirty", "", "1.2.3+0.dirty"},
		{"v1.2.3-rc1-dirty", "", "1.2.3~rc1+0.dirty"},
		{"v1.2.3-rc.1-2-g1234567", "", "1.2.3~rc.1+2.g1234567"},
		{"abcdef0", "57", "0.0.0+git57.abcdef0"},
		{"abcdef0-dirty", "57", "0.0.0+git57.abcdef0.dirty"},
		{"abcdef0", "", "0.0.0+gitabcdef0"},
		// A commit name that starts with digits is not a tag.
		{"786cfa2", "57", "0.0.0+git57.786cfa2"},
		{"786cfa2-dirty", "57", "0.0.0+git57.786cfa2.dirty"},
		{"1234567", "", "0.0.0+git1234567"},
		{"dev", "", "0.0.0+gitdev"},
	}
	for _, c := range cases {
		got, err := output(nil, "./debversion.sh", c.in, c.count)
		if err != nil {
			t.Errorf("debversion.sh %s %s: %v", c.in, c.count, err)
			continue
		}
		if got = strings.TrimSpace(got); got != c.want {
			t.Errorf("debversion.sh %s %s = %q, want %q", c.in, c.count, got, c.want)
		}
	}
	for _, bad := range []string{"v1.x/y", "v1.2 3"} {
		if out, err := output(nil, "./debversion.sh", bad); err == nil {
			t.Errorf("debversion.sh %q = %q, want an error", bad, out)
		}
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Log("dpkg not found: version order not checked")
		return
	}
	// Each sorts before the next, as the builds were made: a dirty build
	// after its commit's, before the next commit's.
	order := []string{"0.0.0+git57.abcdef0", "0.0.0+git57.abcdef0.dirty", "0.0.0+git58.0123456",
		"1.2.3~rc1", "1.2.3~rc1+0.dirty", "1.2.3~rc1+2.g1234567", "1.2.3", "1.2.3+0.dirty", "1.2.3+1.g89abcde",
		"1.2.3+4.gabcdef0", "1.2.3+4.gabcdef0.dirty", "1.2.3+10.g0000000", "1.2.4~rc1"}
	for i := 1; i < len(order); i++ {
		if _, err := output(nil, "dpkg", "--compare-versions", order[i-1], "lt", order[i]); err != nil {
			t.Errorf("dpkg: %s does not sort before %s", order[i-1], order[i])
		}
	}
}

// TestDeb builds the three packages with make deb and checks their
// fields, contents, modes, conffiles, scripts, binaries and unit file, and
// that the packaged config passes edged check with the packaged binary.
func TestDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not building the .deb files")
	}
	need(t, "dpkg-deb", "make", "git")
	dist := t.TempDir()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// xz level 0: a third of the time of dpkg's default 6 on these 12 MB
	// binaries, with the same contents (make deb's packages are checked
	// here as they are, only less compressed).
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", "..", "deb", "DIST="+dist, "DEB_XZ_LEVEL="+testXZLevel)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	t.Logf("make deb: %s", time.Since(start).Round(time.Second))

	debs := map[string]string{}
	for _, a := range debArches {
		m, _ := filepath.Glob(filepath.Join(dist, "edged_*_"+a.arch+".deb"))
		if len(m) != 1 {
			t.Fatalf("want one edged_*_%s.deb in %s, have %q", a.arch, dist, m)
		}
		debs[a.arch] = m[0]
	}

	// The amd64 binary, run here: its version stamp is the one the others
	// carry too (one make run).
	amd64Root := extract(t, debs["amd64"])
	edged := filepath.Join(amd64Root, "usr/bin/edged")
	ver := run(t, nil, edged, "version")
	m := regexp.MustCompile(`^edged (\S+) \(commit (\S+), built (\S+), `).FindStringSubmatch(ver)
	if m == nil {
		t.Fatalf("edged version: %q", ver)
	}
	version, commit, date := m[1], m[2], m[3]
	if version == "dev" || commit == "none" || date == "unknown" {
		t.Errorf("edged version is not stamped: %q", ver)
	}
	if _, err := time.Parse(time.RFC3339, date); err != nil {
		t.Errorf("edged version: build date %q: %v", date, err)
	}

	for _, a := range debArches {
		t.Run(a.arch, func(t *testing.T) {
			deb := debs[a.arch]
			checkFields(t, deb, a.arch, version)
			checkContents(t, deb)
			checkControl(t, deb)
			root := amd64Root
			if a.arch != "amd64" {
				root = extract(t, deb)
			}
			checkBinary(t, filepath.Join(root, "usr/bin/edged"), a.machine, a.goarch, a.goarm, version, commit)
			for installed, src := range map[string]string{
				"lib/systemd/system/edged.service":  "edged.service",
				"etc/edged/edged.toml":              "edged.toml",
				"etc/edged/edged.env":               "edged.env",
				"usr/share/doc/edged/install-pi.md": "../docs/install-pi.md",
			} {
				if !sameFile(t, filepath.Join(root, installed), src) {
					t.Errorf("/%s differs from packaging/%s", installed, src)
				}
			}
		})
	}

	t.Run("unit", func(t *testing.T) { checkUnit(t, amd64Root) })
	t.Run("config", func(t *testing.T) { checkConfig(t, edged, filepath.Join(amd64Root, "etc/edged/edged.toml")) })

	// The same binary and sources give the same bytes.
	t.Run("reproducible", func(t *testing.T) {
		again := t.TempDir()
		out := run(t, []string{"DEB_XZ_LEVEL=" + testXZLevel}, "./build-deb.sh", "amd64", filepath.Join(dist, "edged-linux-amd64"), version, again)
		a, _ := os.ReadFile(debs["amd64"])
		b, err := os.ReadFile(strings.TrimSpace(out))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("build-deb.sh twice on the same binary: %s and %s differ", debs["amd64"], strings.TrimSpace(out))
		}
	})
}

func extract(t *testing.T, deb string) string {
	t.Helper()
	root := t.TempDir()
	run(t, nil, "dpkg-deb", "-x", deb, root)
	return root
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

// checkFields checks dpkg-deb -I's control fields.
func checkFields(t *testing.T, deb, arch, version string) {
	t.Helper()
	info := run(t, nil, "dpkg-deb", "-I", deb)
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		// Fields are indented by one space; the summary lines by more.
		if len(line) > 1 && line[0] == ' ' && line[1] != ' ' {
			if k, v, ok := strings.Cut(line[1:], ": "); ok {
				fields[k] = v
			}
		}
	}
	count := ""
	if m := regexp.MustCompile(`^0\.0\.0\+git(\d+)\.`).FindStringSubmatch(fields["Version"]); m != nil {
		count = m[1]
	}
	wantVersion := strings.TrimSpace(run(t, nil, "./debversion.sh", version, count))
	want := map[string]string{
		"Package":      "edged",
		"Version":      wantVersion,
		"Architecture": arch,
		"Section":      "net",
		"Priority":     "optional",
		"Depends":      "passwd",
	}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("%s: %s = %q, want %q", filepath.Base(deb), k, fields[k], v)
		}
	}
	for _, k := range []string{"Maintainer", "Description", "Installed-Size"} {
		if fields[k] == "" {
			t.Errorf("%s: no %s field", filepath.Base(deb), k)
		}
	}
	if want := "edged_" + wantVersion + "_" + arch + ".deb"; filepath.Base(deb) != want {
		t.Errorf("file name %s, want %s", filepath.Base(deb), want)
	}
}

// checkContents checks dpkg-deb -c: exactly the files of wantContents,
// with their modes, all root:root, all with one timestamp.
func checkContents(t *testing.T, deb string) {
	t.Helper()
	got := map[string]debEntry{}
	sc := bufio.NewScanner(strings.NewReader(run(t, nil, "dpkg-deb", "-c", deb)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 {
			t.Errorf("dpkg-deb -c: unexpected line %q", sc.Text())
			continue
		}
		got[f[5]] = debEntry{mode: f[0], owner: f[1], stamp: f[3] + " " + f[4]}
	}
	stamps := map[string]bool{}
	for path, e := range got {
		stamps[e.stamp] = true
		mode, ok := wantContents[path]
		switch {
		case !ok:
			t.Errorf("%s: unexpected %s", filepath.Base(deb), path)
		case e.mode != mode:
			t.Errorf("%s: %s has mode %s, want %s", filepath.Base(deb), path, e.mode, mode)
		}
		if e.owner != "root/root" {
			t.Errorf("%s: %s is owned by %s, want root/root", filepath.Base(deb), path, e.owner)
		}
	}
	for path := range wantContents {
		if _, ok := got[path]; !ok {
			t.Errorf("%s: %s missing", filepath.Base(deb), path)
		}
	}
	if len(stamps) != 1 {
		t.Errorf("%s: files carry %d different timestamps, want one (SOURCE_DATE_EPOCH)", filepath.Base(deb), len(stamps))
	}
}

// checkControl checks the control archive: conffiles and the maintainer
// scripts.
func checkControl(t *testing.T, deb string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "DEBIAN")
	run(t, nil, "dpkg-deb", "-e", deb, dir)
	conffiles, err := os.ReadFile(filepath.Join(dir, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "/etc/edged/edged.env\n/etc/edged/edged.toml\n"; string(conffiles) != want {
		t.Errorf("conffiles = %q, want %q", conffiles, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"conffiles", "control", "postinst", "postrm", "prerm"}; !slices.Equal(names, want) {
		t.Errorf("control archive holds %q, want %q", names, want)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join(dir, s)
		fi, err := os.Stat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v, want 0755", s, fi.Mode().Perm())
		}
		if _, err := output(nil, "sh", "-n", p); err != nil {
			t.Errorf("sh -n %s: %v", s, err)
		}
		if !sameFile(t, p, filepath.Join("debian", s)) {
			t.Errorf("%s differs from packaging/debian/%s", s, s)
		}
	}
}

// checkBinary checks the packaged binary: its architecture, static, stripped,
// built with CGO off and -trimpath, stamped with the version and commit.
func checkBinary(t *testing.T, path string, machine elf.Machine, goarch, goarm, version, commit string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: machine %v, want %v", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked (%v)", path, p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s is not stripped (has .symtab)", path)
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	want := map[string]string{"GOOS": "linux", "GOARCH": goarch, "CGO_ENABLED": "0", "-trimpath": "true"}
	if goarm != "" {
		want["GOARM"] = goarm
	}
	for k, v := range want {
		if settings[k] != v {
			t.Errorf("%s: built with %s=%q, want %q", path, k, settings[k], v)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{version, commit} {
		if !bytes.Contains(data, []byte(s)) {
			t.Errorf("%s: %q is not stamped in it", path, s)
		}
	}
}

// checkUnit checks the unit's settings and runs systemd-analyze verify on
// it when this machine has it.
func checkUnit(t *testing.T, root string) {
	unitPath := filepath.Join(root, "lib/systemd/system/edged.service")
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = append(settings[k], v)
		}
	}
	const cfg = "/etc/edged/edged.toml"
	want := map[string][]string{
		"Type":                     {"notify"},
		"NotifyAccess":             {"main"},
		"WatchdogSec":              {"60s"},
		"User":                     {"edged"},
		"Group":                    {"edged"},
		"SupplementaryGroups":      {"dialout"},
		"ExecStartPre":             {"/bin/sh -c 'exec /usr/bin/edged check -c " + cfg + " >/dev/null'"},
		"ExecStart":                {"/usr/bin/edged run -c " + cfg},
		"ExecReload":               {"/bin/sh -c 'exec /usr/bin/edged check -c " + cfg + " >/dev/null'", "/bin/kill -HUP $MAINPID"},
		"Restart":                  {"on-failure"},
		"RestartPreventExitStatus": {"2"},
		"StartLimitIntervalSec":    {"0"},
		"TimeoutStopSec":           {"45s"},
		"StateDirectory":           {"edged"},
		"StateDirectoryMode":       {"0700"},
		"UMask":                    {"0077"},
		"ProtectSystem":            {"strict"},
		"ProtectHome":              {"yes"},
		"PrivateTmp":               {"yes"},
		"NoNewPrivileges":          {"yes"},
		"StandardOutput":           {"journal"},
		"StandardError":            {"journal"},
		"WantedBy":                 {"multi-user.target"},
	}
	for k, v := range want {
		if !slices.Equal(settings[k], v) {
			t.Errorf("edged.service: %s=%q, want %q", k, settings[k], v)
		}
	}
	for _, k := range []string{"PrivateDevices", "ProtectClock", "DynamicUser"} {
		if settings[k] != nil {
			t.Errorf("edged.service: %s is set; it would keep edged from its serial ports, its clock check or its user", k)
		}
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not found: the unit is not verified (apt-get install systemd)")
	}
	// systemd-analyze verify checks that the commands exist on this
	// machine: point them at the extracted binary. It exits 0 on unknown
	// keys and bad values, so any output is a failure. A unit that
	// cannot fail first tells whether this machine can verify at all.
	dir := t.TempDir()
	control := filepath.Join(dir, "edged-control.service")
	if err := os.WriteFile(control, []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", control).CombinedOutput(); err != nil || len(out) > 0 {
		t.Skipf("systemd-analyze verify fails on a trivial unit here (%v: %s): the unit is not verified", err, out)
	}
	local := filepath.Join(dir, "edged.service")
	rewritten := strings.ReplaceAll(string(unit), "/usr/bin/edged", filepath.Join(root, "usr/bin/edged"))
	if err := os.WriteFile(local, []byte(rewritten), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", local).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify edged.service: %v\n%s", err, out)
	}
}

// checkConfig runs the packaged binary's edged check on the packaged
// config, as installed and with every example in it uncommented.
func checkConfig(t *testing.T, edged, config string) {
	out, err := output(nil, edged, "check", "-c", config)
	if err != nil {
		t.Fatalf("edged check -c /etc/edged/edged.toml: %v", err)
	}
	if !regexp.MustCompile(`(?m)^data_dir\s*=\s*"/var/lib/edged"$`).MatchString(out) {
		t.Errorf("edged check: data_dir is not /var/lib/edged (the unit's StateDirectory):\n%s", out)
	}
	// The examples are commented out as "#key = value" and "#[[table]]";
	// prose comments have a space after "#".
	text, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	examples := regexp.MustCompile(`(?m)^#([^ #\n])`).ReplaceAll(text, []byte("$1"))
	if bytes.Equal(examples, text) {
		t.Fatal("the packaged config has no commented example")
	}
	full := filepath.Join(t.TempDir(), "edged.toml")
	if err := os.WriteFile(full, examples, 0o644); err != nil {
		t.Fatal(err)
	}
	// The secrets are values that appear nowhere else: edged check's header
	// says "secrets redacted", so a plain "secret" would match it.
	const password, token = "pw-Uplink-7f3a9c", "tok-Http-2b8e41"
	out, err = output([]string{"EDGED_UPLINK_PASSWORD=" + password, "EDGED_HTTP_TOKEN=" + token}, edged, "check", "-c", full)
	if err != nil {
		t.Fatalf("edged check on the packaged config with every example uncommented: %v", err)
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{`type = "serial"`, `type = "mqtt"`, `type = "file"`, "enabled = true",
		`listen = "0.0.0.0:9464"`, `password = "<redacted>"`, `token = "<redacted>"`} {
		if !strings.Contains(flat, want) {
			t.Errorf("edged check with the examples: %q missing from the effective config:\n%s", want, out)
		}
	}
	for _, secret := range []string{password, token} {
		if strings.Contains(out, secret) {
			t.Errorf("edged check printed the secret %q:\n%s", secret, out)
		}
	}
}

// TestDebInstall installs the amd64 package on this machine with dpkg,
// then reinstalls it over a changed config, removes and purges it, and
// checks the maintainer scripts' work at each step. It changes the machine
// (a system user, files in /usr, /etc, /var/lib), so it runs only with
// EDGED_DEB_INSTALL=1, as root, on a Debian amd64 machine without edged
// installed.
func TestDebInstall(t *testing.T) {
	if os.Getenv("EDGED_DEB_INSTALL") != "1" {
		t.Skip("EDGED_DEB_INSTALL=1 installs and purges the package on this machine")
	}
	need(t, "dpkg", "dpkg-deb", "make", "git")
	if os.Geteuid() != 0 {
		t.Fatal("EDGED_DEB_INSTALL=1 needs root")
	}
	if out, _ := output(nil, "dpkg", "--print-architecture"); strings.TrimSpace(out) != "amd64" {
		t.Skipf("dpkg architecture %q: the test installs the amd64 package", strings.TrimSpace(out))
	}
	if out, _ := output(nil, "dpkg-query", "-W", "-f", "${Status}", "edged"); strings.Contains(out, "installed") || strings.Contains(out, "config-files") {
		t.Fatalf("edged is already installed here (%s): remove it first", out)
	}
	_, userErr := output(nil, "getent", "passwd", "edged")
	userBefore := userErr == nil

	dist := t.TempDir()
	if out, err := exec.Command("make", "--no-print-directory", "-C", "..", "deb", "DIST="+dist, "DEB_ARCHES=amd64").CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "edged_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("no amd64 package in %s", dist)
	}
	deb := debs[0]
	t.Cleanup(func() {
		output(nil, "dpkg", "--purge", "edged")
		if !userBefore {
			output(nil, "userdel", "edged")
			output(nil, "groupdel", "edged")
		}
	})

	const wants = "/etc/systemd/system/multi-user.target.wants/edged.service"
	run(t, []string{"DEBIAN_FRONTEND=noninteractive"}, "dpkg", "-i", deb)
	if out := run(t, nil, "getent", "passwd", "edged"); !strings.Contains(out, ":/var/lib/edged:/usr/sbin/nologin") {
		t.Errorf("edged user: %q", out)
	}
	for path, want := range map[string]string{
		"/var/lib/edged":                    "edged:edged 700",
		"/etc/edged/edged.toml":             "root:edged 640", // it may hold a password
		"/etc/edged/edged.env":              "root:root 600",  // read by systemd, as root
		"/usr/bin/edged":                    "root:root 755",
		"/lib/systemd/system/edged.service": "root:root 644",
	} {
		if out := run(t, nil, "stat", "-c", "%U:%G %a", path); strings.TrimSpace(out) != want {
			t.Errorf("%s: %s, want %s", path, strings.TrimSpace(out), want)
		}
	}
	if _, err := os.Lstat(wants); err != nil {
		t.Errorf("the service is not enabled: %v", err)
	}
	run(t, nil, "/usr/bin/edged", "check", "-c", "/etc/edged/edged.toml")
	// The service's user can read its config (ExecStartPre runs this).
	run(t, nil, "runuser", "-u", "edged", "--", "/usr/bin/edged", "check", "-c", "/etc/edged/edged.toml")

	// A reinstall keeps a changed conffile.
	f, err := os.OpenFile("/etc/edged/edged.toml", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "# changed by TestDebInstall")
	f.Close()
	run(t, []string{"DEBIAN_FRONTEND=noninteractive"}, "dpkg", "--force-confold", "-i", deb)
	if b, _ := os.ReadFile("/etc/edged/edged.toml"); !bytes.Contains(b, []byte("changed by TestDebInstall")) {
		t.Error("a reinstall replaced the changed /etc/edged/edged.toml")
	}
	if err := os.WriteFile("/var/lib/edged/marker", nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// remove: the config and data stay, the unit is masked.
	run(t, nil, "dpkg", "--remove", "edged")
	for _, p := range []string{"/etc/edged/edged.toml", "/var/lib/edged/marker"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after remove: %v", err)
		}
	}
	if _, err := os.Stat("/usr/bin/edged"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after remove: /usr/bin/edged: %v", err)
	}
	if target, err := os.Readlink("/etc/systemd/system/edged.service"); err != nil || target != "/dev/null" {
		t.Errorf("after remove: the unit is not masked (%q, %v)", target, err)
	}

	// purge: config, data, enablement and mask are gone; the user stays.
	run(t, nil, "dpkg", "--purge", "edged")
	for _, p := range []string{"/etc/edged", "/var/lib/edged", wants, "/etc/systemd/system/edged.service"} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after purge: %s: %v", p, err)
		}
	}
	if _, err := output(nil, "getent", "passwd", "edged"); err != nil {
		t.Error("after purge: the edged user is gone; Debian keeps system users")
	}
}
