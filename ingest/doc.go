// Package ingest holds edged's sources: they read bytes from files, stdin,
// serial ports and MQTT, decode them with the sensors package and append the
// readings to the store's ingest log. A source never computes windows; its
// acknowledgement (an MQTT PUBACK, a saved file position) waits for the
// log's commit, so what was acknowledged is never lost.
//
// Every source runs in Run(ctx) until ctx ends, owns its goroutines, and
// returns only when they have stopped.
package ingest
