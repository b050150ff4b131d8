//go:build unix

package cep

import "syscall"

// cpuTime returns the CPU time the process has used, in ns: a benchmark on
// a machine shared with other work measures itself by it, not by the wall
// clock.
func cpuTime() int64 {
	var r syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &r) != nil {
		return 0
	}
	return r.Utime.Nano() + r.Stime.Nano()
}
