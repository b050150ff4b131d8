package main

import (
	"log/slog"
	"os"

	"github.com/edged/edged/internal/config"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/store"
	"github.com/edged/edged/uplink"
)

// outputs builds the configured outputs and registers them with the store,
// so that their cursors hold records in the outbox until delivered.
func outputs(cfg *config.Config, st *store.Store, log *slog.Logger) ([]uplink.Output, error) {
	var outs []uplink.Output
	var names []string
	for i := range cfg.Outputs {
		o := &cfg.Outputs[i]
		names = append(names, o.Name)
		switch o.Type {
		case "file":
			outs = append(outs, &uplink.File{OutName: o.Name, Path: o.Path, Store: st, Logger: log})
		case "stdout":
			outs = append(outs, &uplink.Stdout{OutName: o.Name, W: os.Stdout, Store: st, Logger: log})
		case "mqtt":
			m := &uplink.MQTT{OutName: o.Name, Device: cfg.Device.ID, Broker: o.Broker, ClientID: o.ClientID,
				Username: o.Username, Password: o.Password, TLSCA: o.TLSCA, TLSCert: o.TLSCert, TLSKey: o.TLSKey, Insecure: o.TLSInsecure,
				QoS: byte(o.QoS), Topic: o.Topic, AlertTopic: o.AlertTopic, BatchTopic: o.BatchTopic, StatusTopic: o.StatusTopic,
				Inflight: o.Inflight, Batch: o.Batch, BacklogRate: *o.BacklogRate, Keepalive: o.Keepalive.D(), Store: st, Logger: log}
			if o.Latest != nil && *o.Latest {
				m.LatestTopic, m.LatestAlertTopic = o.LatestTopic, o.LatestAlertTopic
			}
			if o.HADiscovery {
				m.HAPrefix, m.HAClassOf, m.Version = o.HAPrefix, haClassOf(cfg), version
			}
			outs = append(outs, m)
		case "jetstream":
			outs = append(outs, &uplink.JetStream{OutName: o.Name, Device: cfg.Device.ID, URL: o.URL, Subject: o.Subject, Stream: o.Stream,
				CreateStream: *o.CreateStream, DuplicateWindow: o.DuplicateWindow.D(), ClientName: o.ClientID,
				Username: o.Username, Password: o.Password, Credentials: o.Credentials, NKey: o.NKey,
				TLSCA: o.TLSCA, TLSCert: o.TLSCert, TLSKey: o.TLSKey, Insecure: o.TLSInsecure,
				Inflight: o.Inflight, BacklogRate: *o.BacklogRate, LiveFirst: *o.LiveFirst, Store: st, Logger: log})
		case "kafka":
			k, err := kafkaOutput(cfg, o, st, log)
			if err != nil {
				return nil, err
			}
			outs = append(outs, k)
		}
	}
	return outs, st.RegisterOutputs(names)
}

// haClassOf returns what the window's ha entries say a key measures: the
// first entry whose match fits the key (a glob as in a detector's match).
func haClassOf(cfg *config.Config) func(window, key string) uplink.HAClass {
	classes := map[string][]config.HAClass{}
	for _, w := range cfg.Windows {
		classes[w.Name] = w.HA
	}
	return func(window, key string) uplink.HAClass {
		for _, c := range classes[window] {
			if c.Match == "" || pipeline.Glob(c.Match, key) {
				return uplink.HAClass{Unit: c.Unit, DeviceClass: c.DeviceClass, StateClass: c.StateClass}
			}
		}
		return uplink.HAClass{}
	}
}
