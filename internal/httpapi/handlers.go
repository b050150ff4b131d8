package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/edged/edged/ingest"
)

// healthz answers 200 once the pipeline has recovered (caught up with the
// log after a restart), 503 before that and while the daemon stops.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if !getOnly(w, r) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	ok, state := s.readiness(nil)
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		if state == "recovering" {
			fmt.Fprintf(w, "recovering: replaying the ingest log up to offset %d\n", s.opts.RecoverTo)
			return
		}
		fmt.Fprintln(w, state)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if !getOnly(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.collect())
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if !getOnly(w, r) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	promMetrics(s.collect()).write(w)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// promMetrics turns a Status into metric families. Dashboards and alerts
// depend on the names, types and labels: keep them stable
// (TestMetricNames lists them).
func promMetrics(st *Status) *metrics {
	m := newMetrics()
	m.add("edged_build_info", gauge, "Always 1; the labels name the build and the device.", 1, "device", st.Device, "version", st.Version)
	m.add("edged_start_time_seconds", gauge, "When this run of the daemon started (Unix seconds; a SIGHUP reload starts a new run).", float64(st.Started.UnixMilli())/1000)
	m.add("edged_ready", gauge, "1 once the pipeline has caught up with the ingest log after recovery (/healthz is 200), else 0.", b2f(st.Ready))

	for _, src := range st.Sources {
		l := []string{"source", src.Name}
		if src.Type != "" {
			m.add("edged_source_info", gauge, "Always 1; one per configured source, with its type.", 1, "source", src.Name, "type", src.Type)
		}
		m.add("edged_readings_total", counter, "Readings a source decoded and appended to the ingest log, since the start.", float64(src.Readings), l...)
		m.add("edged_decode_errors_total", counter, "Payloads a source could not decode and put in the quarantine (malformed, or without a timestamp while the clock is unsynchronised), since the start.", float64(src.DecodeErrors), l...)
		if src.Idle != nil {
			m.add("edged_source_idle", gauge, "1 while the source is marked idle and does not hold back the watermark.", b2f(*src.Idle), l...)
		}
		if src.Watermark != nil {
			m.add("edged_source_watermark_seconds", gauge, "The source's watermark (its newest event time minus its out-of-orderness bound), Unix seconds.", float64(*src.Watermark)/1000, l...)
			m.add("edged_watermark_lag_seconds", gauge, "Wall clock minus the source's watermark: how far event time trails behind (negative when the source's clock runs ahead).", *src.LagSeconds, l...)
		}
		if src.Received != nil {
			m.add("edged_mqtt_messages_received_total", counter, "MQTT messages an mqtt source received from its broker, redeliveries included, since the start.", float64(*src.Received), l...)
		}
		if src.Connected != nil {
			m.add("edged_source_connected", gauge, "1 while a source is connected: an mqtt source to its broker, a modbus source to its port or device.", b2f(*src.Connected), l...)
		}
		if src.Reconnects != nil {
			m.add("edged_source_reconnects_total", counter, "Connections a source made after its first (mqtt broker, serial port, modbus port or device), since the start.", float64(*src.Reconnects), l...)
		}
		if src.Dropped != nil {
			m.add("edged_source_dropped_total", counter, "Input a source dropped because intake was full (mqtt with overflow = \"drop\", serial lines), since the start.", float64(*src.Dropped), l...)
		}
		if mb := src.Modbus; mb != nil {
			modbusMetrics(m, src.Name, mb)
		}
	}

	if p := st.Pipeline; p != nil {
		m.add("edged_pipeline_readings_total", counter, "Readings the pipeline processed since the start, the replay after a restart included.", float64(p.Readings))
		m.add("edged_late_records_total", counter, "Late records (a reading behind the watermark, per window) since the start.", float64(p.Late))
		m.add("edged_window_records_total", counter, "Window records the pipeline emitted since the start.", float64(p.WindowRecords))
		m.add("edged_alerts_total", counter, "Alert records the detectors emitted since the start.", float64(p.Alerts))
		m.add("edged_detector_late_readings_total", counter, "Readings that reached a detector behind the watermark and were not seen by it, since the start.", float64(p.DetectorLate))
		m.add("edged_state_keys", gauge, "Keys with state over all windows and detectors: the size of the pipeline's state.", float64(p.StateKeys))
		m.add("edged_state_resets_total", counter, "Operators whose checkpointed state could not be restored at the start (undecodable): each was reset and started empty.", float64(p.StateResets))
		m.add("edged_pipeline_offset", gauge, "The next ingest log offset the pipeline processes.", float64(p.Offset))
		m.add("edged_pipeline_backlog_entries", gauge, "Ingest log entries the pipeline has not processed yet.", float64(p.Backlog))
		if p.Watermark != nil {
			m.add("edged_watermark_seconds", gauge, "The combined watermark (the minimum over active sources), Unix seconds.", float64(*p.Watermark)/1000)
		}
		m.add("edged_snapshot_age_seconds", gauge, "Age of the pipeline figures (published by the pipeline about once a second; growing means it is stuck).", p.SnapshotAgeSeconds)
	}

	cp := &st.Checkpoint
	if cp.Count != nil {
		m.add("edged_checkpoints_total", counter, "Checkpoints taken since the start (commits of records, with the state every state_interval).", float64(*cp.Count))
		if cp.StateCount != nil {
			m.add("edged_state_checkpoints_total", counter, "Checkpoints since the start that wrote the operators' state.", float64(*cp.StateCount))
		}
		m.add("edged_checkpoint_pause_seconds", gauge, "How long the pipeline paused for the last checkpoint.", *cp.LastPauseSeconds)
		m.add("edged_checkpoint_pause_max_seconds", gauge, "The longest pause of the pipeline for a checkpoint since the start.", *cp.MaxPauseSeconds)
	}
	if cp.LastCommitSeconds != nil {
		m.add("edged_checkpoint_commit_seconds", gauge, "How long the last checkpoint took to commit (write and fsync).", *cp.LastCommitSeconds)
	}
	if cp.AgeSeconds != nil {
		m.add("edged_checkpoint_age_seconds", gauge, "Seconds since the last checkpoint (growing beyond checkpoint_interval means checkpoints fail or stall).", *cp.AgeSeconds)
	}
	if cp.Bytes != nil {
		m.add("edged_checkpoint_bytes", gauge, "Bytes the newest checkpoint wrote (state and outbox records).", float64(*cp.Bytes))
	}

	if ss := st.Store; ss != nil {
		m.add("edged_data_file_bytes", gauge, "Size of the data file (edged.db).", float64(ss.FileBytes))
		m.add("edged_log_entries", gauge, "Entries in the ingest log.", float64(ss.LogEntries))
		m.add("edged_log_end_offset", gauge, "The offset the next ingest log entry gets.", float64(ss.LogEnd))
		if ss.LogBytes != nil {
			m.add("edged_log_bytes", gauge, "Bytes of the ingest log.", float64(*ss.LogBytes))
			m.add("edged_outbox_bytes", gauge, "Bytes of the outbox.", float64(*ss.OutboxBytes))
		}
		m.add("edged_log_dropped_total", counter, "Ingest log entries dropped by retention (max_bytes, retain), ever.", float64(ss.LogDropped))
		if ss.LogCommits != nil {
			m.add("edged_log_commits_total", counter, "Group commits of the ingest log since the start.", float64(*ss.LogCommits))
			m.add("edged_log_commit_failing", gauge, "1 while commits of the ingest log fail (a full disk: intake is paused).", b2f(ss.LogCommitError != nil))
		}
		m.add("edged_outbox_records", gauge, "Records in the outbox (kept until every output delivered them).", float64(ss.OutboxRecords))
		m.add("edged_outbox_dropped_total", counter, "Outbox records dropped by outbox_max_bytes, ever.", float64(ss.OutboxDropped))
		m.add("edged_quarantine_total", counter, "Payloads quarantined, ever.", float64(ss.QuarantineTotal))
		m.add("edged_quarantine_payloads", gauge, "Payloads in the quarantine now.", float64(ss.QuarantineCount))
		m.add("edged_quarantine_dropped_total", counter, "Quarantined payloads dropped by quarantine_max, ever.", float64(ss.QuarantineDropped))
	}

	for _, o := range st.Outputs {
		l := []string{"output", o.Name}
		if st.Store != nil {
			m.add("edged_outbox_backlog_records", gauge, "Outbox records an output has not delivered yet.", float64(o.Backlog), l...)
		}
		if o.Sent != nil {
			m.add("edged_output_sent_total", counter, "Messages an mqtt output sent, since the start.", float64(*o.Sent), l...)
			m.add("edged_output_acked_total", counter, "Messages an mqtt output had acknowledged by its broker, since the start.", float64(*o.Acked), l...)
			m.add("edged_output_reconnects_total", counter, "Connections an mqtt output made after its first, since the start.", float64(*o.Reconnects), l...)
		}
	}
	return m
}

// modbusMetrics adds a modbus source's polls, and per slave its requests,
// its failed requests by reason and whether it answers.
func modbusMetrics(m *metrics, source string, mb *ingest.ModbusStats) {
	m.add("edged_modbus_polls_total", counter, "Polls of a modbus source's slaves, since the start.", float64(mb.Polls), "source", source)
	m.add("edged_modbus_polls_skipped_total", counter, "Polls a modbus source skipped because the previous one still ran (poll_every too short for its slaves and registers), since the start.", float64(mb.PollsSkipped), "source", source)
	m.add("edged_modbus_poll_seconds", gauge, "How long a modbus source's last poll of all its slaves took.", mb.PollSeconds, "source", source)
	for _, sl := range mb.Slaves {
		id := strconv.Itoa(sl.Slave)
		m.add("edged_modbus_requests_total", counter, "Requests sent to a modbus slave, since the start.", float64(sl.Requests), "source", source, "slave", id)
		m.add("edged_modbus_slave_up", gauge, "1 while a modbus slave answers (an exception counts as an answer), 0 when it did not in the last poll.", b2f(sl.Up), "source", source, "slave", id)
		for i, n := range sl.Errors {
			m.add("edged_modbus_errors_total", counter, "Failed requests to a modbus slave by reason: timeout, crc, frame, io, or the exception it answered, since the start.", float64(n),
				"source", source, "slave", id, "reason", ingest.ModbusErrorReasons[i])
		}
	}
}
