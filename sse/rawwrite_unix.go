//go:build unix

package sse

import (
	"net"
	"sync"
	"syscall"
)

// rawConn returns c's raw connection if c is a plain TCP or Unix socket
// (whose bytes go to the wire as written: not TLS), or nil.
func rawConn(c net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// rawWrite is one write that does not wait; its method value is made
// once per pooled rawWrite, not per write.
type rawWrite struct {
	p  []byte
	n  int
	fn func(fd uintptr) bool
}

func (w *rawWrite) write(fd uintptr) bool {
	if n, err := syscall.Write(int(fd), w.p); err == nil && n > 0 {
		w.n = n
	}
	return true // never wait for the socket: a writer goroutine does
}

var rawWrites = sync.Pool{New: func() any {
	w := &rawWrite{}
	w.fn = w.write
	return w
}}

// tryWrite writes what of p the socket takes at once and returns how
// much: 0 if its buffer is full, its write deadline has passed or it
// failed (a writer goroutine then writes p with a deadline and sees the
// error).
func tryWrite(raw syscall.RawConn, p []byte) int {
	w := rawWrites.Get().(*rawWrite)
	w.p, w.n = p, 0
	_ = raw.Write(w.fn)
	n := w.n
	w.p = nil
	rawWrites.Put(w)
	return n
}
