//go:build unix

package main

import "syscall"

// fileLimit returns RLIMIT_NOFILE's hard limit: the most descriptors this
// process, and a child it starts, can raise its limit to.
func fileLimit() (uint64, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, false
	}
	return l.Max, true
}
