// Package mqttconn is edged's MQTT 3.1.1 client, used by the MQTT source
// (ingest) and the MQTT output (uplink): the network connection (tcp, ssl,
// ws, wss), CONNECT, SUBSCRIBE, the packets of QoS 0, 1 and 2 in both
// directions, keepalive pings and DISCONNECT, and the TLS configuration
// from the config's files.
//
// # Why not a library
//
// paho.mqtt.golang, which edged used before, spends a goroutine hop and a
// select per message, a map entry per QoS 1 message in its store and one
// write system call per acknowledgement: about half of the CPU of an MQTT
// source at QoS 1 (BENCHMARKS.md, issue 13). This client is built for a
// source that writes every message to a durable log before acknowledging
// it:
//
//   - One buffered reader per connection, on the caller's goroutine
//     (Conn.Next): no goroutine hop per message. A PUBLISH's topic and
//     payload are slices of the read buffer, valid until the next Next:
//     no allocation per message.
//   - The size of a packet is known from its fixed header: a PUBLISH whose
//     payload is larger than Options.MaxPayload is returned with only the
//     head of its payload (Packet.Truncated) and the rest is skipped while
//     it is read, without a buffer of its size; the connection goes on.
//   - Acknowledgements are queued in bulk (Conn.Ack, typically once per
//     log commit) and go out in one write, in the order given.
//   - Backpressure is the caller's: while it does not call Next, nothing
//     is read from the socket and the broker holds the messages (TCP flow
//     control). Keepalive pings are sent by the connection's own writer
//     goroutine, so a paused reader does not lose its session.
//
// # Goroutines
//
// A Conn owns two goroutines: the writer (every write to the socket,
// coalesced) and the pinger. Close stops both. Next must be called from
// one goroutine at a time; Ack, Publish and Subscribe may be called from
// any goroutine.
package mqttconn
