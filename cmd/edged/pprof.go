//go:build pprof

package main

// Profiling for diagnosis, never in a release build: go build -tags pprof,
// then EDGED_PPROF=127.0.0.1:6060 edged run ... serves net/http/pprof
// (go tool pprof http://127.0.0.1:6060/debug/pprof/heap).
// EDGED_MEMPROFILERATE=N samples one allocation per N bytes instead of Go's
// 512 KiB, for a finer heap profile of a small heap.

import (
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"strconv"
)

func init() {
	if n, err := strconv.Atoi(os.Getenv("EDGED_MEMPROFILERATE")); err == nil && n > 0 {
		runtime.MemProfileRate = n
	}
	if addr := os.Getenv("EDGED_PPROF"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
