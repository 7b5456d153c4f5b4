//go:build !unix

package sse

import (
	"net"
	"syscall"
)

// rawConn returns nil: streams here write through their writer goroutine
// only.
func rawConn(net.Conn) syscall.RawConn { return nil }

func tryWrite(syscall.RawConn, []byte) int { return 0 }
