//go:build !kafka

package main

import (
	"errors"
	"log/slog"

	"github.com/edged/edged/internal/config"
	"github.com/edged/edged/store"
	"github.com/edged/edged/uplink"
)

// kafkaOutput: this build has no Kafka (the config check refuses the type
// first; this is the backstop).
func kafkaOutput(*config.Config, *config.Output, *store.Store, *slog.Logger) (uplink.Output, error) {
	return nil, errors.New("this edged is built without Kafka: install the edged-kafka package, or build with make build TAGS=kafka")
}
