package realtime

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// readBufferSize is the read buffer a connection keeps. Clients send small
// frames; coder/websocket reads larger payloads straight into its own
// buffer. net/http hands a hijacked connection its 4 KiB reader, which
// every idle connection would keep for its whole life.
const readBufferSize = 512

// smallReader wraps a ResponseWriter so that the connection websocket.Accept
// hijacks keeps a small read buffer. Bytes the client sent ahead (already
// in net/http's buffer) are carried over.
// It also records the hijacked connection in *nc, for write deadlines.
type smallReader struct {
	http.ResponseWriter
	hj http.Hijacker
	nc *net.Conn
}

func (w smallReader) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := w.hj.Hijack()
	if err != nil {
		return conn, brw, err
	}
	*w.nc = conn
	n := brw.Reader.Buffered()
	ahead, _ := brw.Reader.Peek(n)
	ahead = bytes.Clone(ahead)
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(ahead), conn), max(readBufferSize, n))
	if n > 0 {
		// Fill the new buffer with exactly those bytes (one read of the
		// bytes.Reader, none of the connection): Accept looks there.
		if _, err := r.Peek(n); err != nil {
			return conn, brw, err
		}
	}
	return conn, bufio.NewReadWriter(r, brw.Writer), nil
}

// withSmallReader returns w wrapped, or w itself when it cannot hijack.
// Once w is hijacked, *nc is the connection.
func withSmallReader(w http.ResponseWriter, nc *net.Conn) http.ResponseWriter {
	if hj, ok := w.(http.Hijacker); ok {
		return smallReader{ResponseWriter: w, hj: hj, nc: nc}
	}
	return w
}
