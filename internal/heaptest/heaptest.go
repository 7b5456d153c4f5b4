// Package heaptest helps tests that bound a server's memory: loopback
// connections whose kernel buffers are small, so that what a client does
// not read stays in the server's heap where it is measured, and a
// measurement of the live heap.
package heaptest

import (
	"context"
	"net"
	"net/http"
	"runtime"
)

// bufferSize is the kernel buffer both ends ask for (Linux doubles it).
const bufferSize = 4096

// Listener wraps a TCP listener so that accepted connections have small
// send buffers.
type Listener struct{ net.Listener }

// Accept implements [net.Listener].
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		_ = tc.SetWriteBuffer(bufferSize)
	}
	return c, err
}

// Client returns an HTTP client whose connections have small receive
// buffers.
func Client() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok && err == nil {
			_ = tc.SetReadBuffer(bufferSize)
		}
		return c, err
	}}}
}

// InUse returns the live heap after full collections.
func InUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
