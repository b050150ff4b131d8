//go:build kafka

package main

import (
	"log/slog"

	"github.com/edged/edged/internal/config"
	"github.com/edged/edged/store"
	"github.com/edged/edged/uplink"
)

// kafkaOutput builds a kafka output (the kafka build).
func kafkaOutput(cfg *config.Config, o *config.Output, st *store.Store, log *slog.Logger) (uplink.Output, error) {
	return &uplink.Kafka{OutName: o.Name, Device: cfg.Device.ID, Brokers: o.Brokers, Topic: o.Topic, ClientID: o.ClientID,
		TLS: o.TLS, TLSCA: o.TLSCA, TLSCert: o.TLSCert, TLSKey: o.TLSKey, Insecure: o.TLSInsecure,
		SASLMechanism: o.SASLMechanism, Username: o.Username, Password: o.Password,
		Inflight: o.Inflight, BacklogRate: *o.BacklogRate, LiveFirst: *o.LiveFirst, Store: st, Logger: log}, nil
}
