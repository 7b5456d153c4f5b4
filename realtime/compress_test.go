package realtime

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// countingListener counts the bytes its connections write, before they
// are written: a peer that has read them finds them counted.
type countingListener struct {
	net.Listener
	written *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, written: l.written}, nil
}

type countingConn struct {
	net.Conn
	written *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.written.Add(int64(len(p)))
	return c.Conn.Write(p)
}

// countedHub serves a hub whose server counts the bytes it writes.
func countedHub(t testing.TB, opts Options) (*Hub, string, *atomic.Int64) {
	t.Helper()
	written := new(atomic.Int64)
	h, url := listenerHub(t, opts, func(l net.Listener) net.Listener {
		return countingListener{Listener: l, written: written}
	})
	return h, url, written
}

// compressible is a message of about 6 KB of text.
var compressible = strings.Repeat("the quick brown fox jumps over the lazy dog. ", 140)

// TestCompression checks permessage-deflate end to end: a Go client that
// asks for it gets compressed frames from a hub that allows it (fewer
// bytes on the wire than the message) and the message intact; a raw
// client that does not ask, and a Go client talking to a hub that does
// not allow it, get the same message uncompressed.
func TestCompression(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name       string
		allow, ask bool
	}{
		{"allowed and asked", true, true},
		{"allowed, not asked", true, false},
		{"asked, not allowed", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, url, written := countedHub(t, Options{Authenticate: bearer, Compression: tc.allow})
			c, err := Dial(ctx, url, DialOptions{HTTPHeader: as("ada"), Compression: tc.ask, NoReconnect: true,
				Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Join(ctx, "r", JoinOptions{})
			require.NoError(t, err)

			// The client sends a compressible message too: the hub reads
			// it whether or not it came compressed.
			_, err = c.Publish(ctx, "r", map[string]string{"text": compressible, "by": "client"})
			require.NoError(t, err)
			got := nextMsg(t, c)
			require.JSONEq(t, `{"text":"`+compressible+`","by":"client"}`, string(got.Data))

			before := written.Load()
			_, err = h.Publish(ctx, "r", map[string]string{"text": compressible})
			require.NoError(t, err)
			got = nextMsg(t, c)
			sent := written.Load() - before
			require.JSONEq(t, `{"text":"`+compressible+`"}`, string(got.Data))
			if tc.allow && tc.ask {
				require.Less(t, sent, int64(len(compressible)/4), "compressed frame")
			} else {
				require.Greater(t, sent, int64(len(compressible)), "uncompressed frame")
			}
		})
	}
}

// TestCompressionRawClient checks the handshake and frames as a client
// other than the Go one sees them: the extension is agreed only when the
// client offers it, and then frames below CompressionThreshold go as
// they are, larger ones compressed, all readable.
func TestCompressionRawClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, url, written := countedHub(t, Options{Authenticate: bearer, Compression: true, CompressionThreshold: 256})
	for _, ask := range []bool{false, true} {
		opts := &websocket.DialOptions{HTTPHeader: as("bob")}
		if ask {
			opts.CompressionMode = websocket.CompressionNoContextTakeover
		}
		ws, resp, err := websocket.Dial(ctx, url, opts)
		require.NoError(t, err)
		ext := resp.Header.Get("Sec-WebSocket-Extensions")
		if ask {
			require.Contains(t, ext, "permessage-deflate")
		} else {
			require.Empty(t, ext)
		}
		ws.SetReadLimit(-1)
		r := &raw{t: t, ws: ws}
		r.welcome()
		r.send(map[string]any{"op": "join", "room": "raw", "id": 1})
		require.Equal(t, "ok", r.reply(1)["op"])
		for _, text := range []string{"short", compressible} {
			before := written.Load()
			_, err := h.Publish(ctx, "raw", text)
			require.NoError(t, err)
			m := r.until("msg")
			sent := written.Load() - before
			require.Equal(t, text, m["data"])
			if ask && len(text) > 256 {
				require.Less(t, sent, int64(len(text)/4))
			} else {
				require.Greater(t, sent, int64(len(text)))
			}
		}
		_ = ws.Close(websocket.StatusNormalClosure, "")
	}
}

func nextMsg(t *testing.T, c *Client) Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-c.Events():
			require.True(t, ok, "events closed")
			if e.Op == "msg" {
				return e
			}
		case <-timeout:
			t.Fatal("no message")
		}
	}
}
