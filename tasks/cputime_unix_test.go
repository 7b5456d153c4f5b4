//go:build unix

package tasks

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time the process has used, every thread
// (the garbage collector's too), or 0 if unknown.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
