//go:build unix

package sse

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tryWrite never waits for the socket: on a connection whose reader does
// not read it soon writes less than asked (the socket's buffers are
// full) and then nothing, and what it wrote arrives intact. After the
// write deadline it writes nothing.
func TestTryWriteDoesNotWait(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server := <-accepted
	require.NotNil(t, server)
	defer server.Close()
	raw := rawConn(server)
	require.NotNil(t, raw, "a TCP connection writes without waiting")

	var sent bytes.Buffer
	p := make([]byte, 64<<10)
	short := false
	for i := 0; i < 10_000 && !short; i++ { // loopback buffers hold a few MB at most
		for j := range p {
			p[j] = byte(i + j/251)
		}
		n := tryWrite(raw, p)
		sent.Write(p[:n])
		short = n < len(p)
	}
	require.True(t, short, "the socket's buffers filled")
	require.Zero(t, tryWrite(raw, p), "a full socket takes nothing more")

	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(client, int64(sent.Len())))
		got <- b
	}()
	require.True(t, bytes.Equal(sent.Bytes(), <-got), "what was written arrives intact")

	require.NoError(t, server.SetWriteDeadline(time.Now().Add(-time.Second)))
	require.Zero(t, tryWrite(raw, []byte("late")), "no write after the deadline")
	require.NoError(t, server.Close())
	require.Zero(t, tryWrite(raw, []byte("closed")), "no write on a closed connection")
}

// Only plain sockets are written to directly: anything else (TLS, a
// pipe, a wrapper) goes through its own Write.
func TestRawConnOnlyForPlainSockets(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	require.Nil(t, rawConn(a))
	require.Nil(t, rawConn(struct{ net.Conn }{a}))
}
