package redistest

import (
	"os/exec"
	"syscall"
)

// setPdeathsig has the kernel kill the server if the test binary dies
// without running its cleanups (a test timeout, say), so no redis-server
// outlives it. The signal is tied to the thread that started the process,
// which Go ends only when a goroutine exits while locked to it; tests that do
// that would see their servers killed early, loudly.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
