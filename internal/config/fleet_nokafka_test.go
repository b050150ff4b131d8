//go:build !kafka

package config

import "testing"

// TestKafkaNotBuilt: the default build refuses a kafka output at its type,
// with the way out.
func TestKafkaNotBuilt(t *testing.T) {
	runProblemCases(t, []problemCase{
		{"kafka in the default build", "[[output]]\nname = \"fleet\"\ntype = \"kafka\"\nbrokers = [\"k:9092\"]\n",
			[]string{`output[0] "fleet": type: this edged is built without Kafka: install the edged-kafka package (or build with make build TAGS=kafka)`}, 3},
	})
}
