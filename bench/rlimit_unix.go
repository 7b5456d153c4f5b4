//go:build unix

package main

import "syscall"

// raiseFileLimit raises RLIMIT_NOFILE to its hard limit: the idle workload
// holds 10,000 connections in the load generator and as many in the server.
func raiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur == l.Max {
		return nil
	}
	l.Cur = l.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}
