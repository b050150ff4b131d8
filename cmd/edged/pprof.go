//go:build pprof

package main

// Profiling for diagnosis, never in a release build: go build -tags pprof,
// then EDGED_PPROF=127.0.0.1:6060 edged run ... serves net/http/pprof
// (go tool pprof http://127.0.0.1:6060/debug/pprof/heap).

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("EDGED_PPROF"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
