//go:build unix

package realtime

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkQuietRoom measures a quiet room: the server publishes one
// message to 500 members and waits until every member has it before the
// next, so that every frame carries one message and every delivery is a
// write of its own, whatever the machine's load. cpu-µs/delivery is the
// process's CPU time (user + system, getrusage) per delivery: the hub's
// and the members' (coder/websocket readers), so that a change to the
// hub shows as a difference between two runs, not as an absolute.
func BenchmarkQuietRoom(b *testing.B) { benchDelivery(b, 500, false, true) }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
