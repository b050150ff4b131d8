package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTightenDataPerms: a data file others may read is set to 0600 and
// said; a data dir others may enter is warned about with the chmod that
// fixes it; a private dir and file are left alone, silently.
func TestTightenDataPerms(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // past the umask
		t.Fatal(err)
	}
	file := filepath.Join(dir, "edged.db")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	tightenDataPerms(dir, file, log)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("data file mode %v, want 0600", fi.Mode().Perm())
	}
	out := buf.String()
	if !strings.Contains(out, "set to 0600") || !strings.Contains(out, "chmod 700 "+dir) {
		t.Errorf("log does not say what was done and how to fix the dir:\n%s", out)
	}

	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	tightenDataPerms(dir, file, log)
	if buf.Len() != 0 {
		t.Errorf("warnings for a private dir and file:\n%s", buf.String())
	}
}
