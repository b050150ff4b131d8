package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDebKafka builds the edged-kafka package (make deb TAGS=kafka, amd64)
// and checks that it replaces edged, holds a binary that takes a kafka
// output, and lists franz-go's license.
func TestDebKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not building the .deb files")
	}
	need(t, "dpkg-deb", "make", "git")
	dist := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", "..", "deb", "TAGS=kafka", "DEB_ARCHES=amd64", "DIST="+dist, "DEB_XZ_LEVEL="+testXZLevel)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb TAGS=kafka: %v\n%s", err, out)
	}
	m, _ := filepath.Glob(filepath.Join(dist, "edged-kafka_*_amd64.deb"))
	if len(m) != 1 {
		t.Fatalf("want one edged-kafka_*_amd64.deb in %s, have %q", dist, m)
	}
	for field, want := range map[string]string{"Package": "edged-kafka", "Provides": "edged", "Conflicts": "edged", "Replaces": "edged"} {
		if got := strings.TrimSpace(run(t, nil, "dpkg-deb", "-f", m[0], field)); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	root := t.TempDir()
	run(t, nil, "dpkg-deb", "-x", m[0], root)
	if c := run(t, nil, "cat", filepath.Join(root, "usr/share/doc/edged/copyright")); !strings.Contains(c, "github.com/twmb/franz-go") {
		t.Error("copyright does not list franz-go")
	}
	cfg := filepath.Join(t.TempDir(), "k.toml")
	toml := "[device]\nid = \"gw\"\ndata_dir = \"" + t.TempDir() + "\"\n[[output]]\nname = \"k\"\ntype = \"kafka\"\nbrokers = [\"127.0.0.1:9092\"]\n"
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, filepath.Join(root, "usr/bin/edged"), "check", "-c", cfg)
}
