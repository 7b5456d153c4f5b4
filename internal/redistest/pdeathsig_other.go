//go:build !linux

package redistest

import "os/exec"

// setPdeathsig does nothing where the kernel has no parent-death signal: a
// test binary that dies without its cleanups leaves its servers running.
func setPdeathsig(*exec.Cmd) {}
