package config

import (
	"path/filepath"
	"testing"
)

// TestShippedConfigs loads every config in configs/, so that none of them
// can fall out of step with the loader.
func TestShippedConfigs(t *testing.T) {
	// Secrets the examples take from the environment.
	t.Setenv("EDGED_BROKER_PASSWORD", "test-password")
	files, err := filepath.Glob("../../configs/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no configs found in ../../configs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatalf("Load:\n%v", err)
			}
			checkRoundTrip(t, c)
		})
	}
}
