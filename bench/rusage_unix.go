//go:build unix

package main

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// selfUsage is the process's CPU time (getrusage RUSAGE_SELF, user +
// system) and the bytes it has written with write-like syscalls (Linux's
// /proc/self/io wchar: sockets included; 0 where it is missing).
func selfUsage() usage {
	var ru syscall.Rusage
	var u usage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.CPUMicros = ru.Utime.Sec*1e6 + int64(ru.Utime.Usec) + ru.Stime.Sec*1e6 + int64(ru.Stime.Usec)
	}
	if b, err := os.ReadFile("/proc/self/io"); err == nil {
		for line := range bytes.SplitSeq(b, []byte{'\n'}) {
			if v, ok := bytes.CutPrefix(line, []byte("wchar: ")); ok {
				u.WrittenBytes, _ = strconv.ParseInt(string(v), 10, 64)
			}
		}
	}
	return u
}
