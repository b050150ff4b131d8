package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts
// prints (Effective) to text it accepts again.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../../configs/*.toml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("[[window]]\nname = \"w\"\ntype = \"sliding\"\nsize = \"1m\"\nslide = \"7s\"\n"))
	f.Add([]byte("a.b.'c' = [1, {x = 2}]\n[[t]]\n[[t.u]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			return
		}
		if _, err := Parse("effective.toml", c.Effective()); err != nil {
			t.Fatalf("Effective of an accepted config is rejected: %v\n%s", err, c.Effective())
		}
	})
}
