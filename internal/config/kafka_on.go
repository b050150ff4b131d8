//go:build kafka

package config

// kafkaBuilt reports whether this build has the kafka output (the kafka
// build tag: make build TAGS=kafka, the edged-kafka package).
const kafkaBuilt = true
