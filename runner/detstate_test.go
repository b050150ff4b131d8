package runner

import (
	"testing"
	"time"

	"github.com/edged/edged/cep"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/store/storetest"
)

// Detector state is stored under "detector/<name>": a restart must not
// take it for the state of an operator that is gone and drop it with its
// next checkpoint.
func TestDetectorStateSurvivesRestarts(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	fill(t, st, 5, 3)
	det, err := cep.New(cep.Spec{Name: "dead", Type: "deadman", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	mk := func() *Runner {
		r, err := New(st, nil, Config{Device: "gw", CheckpointInterval: time.Hour,
			Engine: pipeline.Config{DefaultOutOfOrderness: 2 * time.Second, Detectors: []pipeline.DetectorSpec{{Detector: det}}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	drain(t, mk())
	for i := 0; i < 2; i++ {
		r := mk()
		if len(r.dropOps) != 0 {
			t.Fatalf("restart %d drops %v", i+1, r.dropOps)
		}
		if k := r.eng.Stats().Keys; k != 5 {
			t.Fatalf("restart %d: %d detector keys, want 5", i+1, k)
		}
		drain(t, r)
	}
}
