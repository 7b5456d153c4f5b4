package sse

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pipeWriter is a ResponseWriter whose connection a stream can take over:
// one end of a net.Pipe, so that hijacked streams run in a synctest
// bubble. The other end is read as an HTTP response by pipeClient.
type pipeWriter struct {
	recorder
	conn net.Conn
}

func (w *pipeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

// pipeClient reads the response of a hijacked stream from a net.Pipe.
type pipeClient struct {
	conn net.Conn
	resp chan *http.Response
	mu   sync.Mutex
	body bytes.Buffer
	err  error // of reading the body to its end
	done chan struct{}
}

// serveOverPipe serves req with b over a net.Pipe and reads the response
// in the background.
func serveOverPipe(t *testing.T, b *Broker, req *http.Request) *pipeClient {
	t.Helper()
	server, client := net.Pipe()
	c := &pipeClient{conn: client, resp: make(chan *http.Response, 1), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		resp, err := http.ReadResponse(bufio.NewReader(client), req)
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		c.resp <- resp
		var p [512]byte
		for {
			n, err := resp.Body.Read(p[:])
			c.mu.Lock()
			c.body.Write(p[:n])
			if err != nil {
				if err != io.EOF {
					c.err = err
				}
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
		}
	}()
	b.ServeHTTP(&pipeWriter{recorder: recorder{header: http.Header{}}, conn: server}, req)
	return c
}

func (c *pipeClient) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.body.String()
}

func (c *pipeClient) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// A stream that took its connection over writes the response itself: the
// broker's headers, a chunked body with Connection: close; an idle stream
// gets its heartbeat after a silent interval (events put it off, without
// a timer reset per event), an event after it, and at the end of its
// lifetime the retry hint and a clean end of the body; a client resumes
// from the last id it got.
func TestHijackedStreamHeartbeatsResumesAndEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBroker(Options{Heartbeat: 15 * time.Second, MaxLifetime: 10 * time.Minute, Logger: slog.New(slog.DiscardHandler)})
		defer b.Shutdown(context.Background())
		c := serveOverPipe(t, b, httptest.NewRequest("GET", "/?topic=t", nil))
		// ServeHTTP returned: the stream goes on without the request's goroutine.
		synctest.Wait()
		resp := <-c.resp
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		assert.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
		assert.Equal(t, "no", resp.Header.Get("X-Accel-Buffering"))
		assert.NotEmpty(t, resp.Header.Get("Date"))
		assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
		assert.True(t, resp.Close, "Connection: close")
		assert.Equal(t, 1, b.Stats().Streams)
		start := c.String()
		assert.Equal(t, "retry: 2000\nid: 0-0\n\n", start)

		time.Sleep(15*time.Second - time.Millisecond)
		synctest.Wait()
		assert.Equal(t, start, c.String(), "no heartbeat before the interval")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		assert.Equal(t, start+":\n\n", c.String(), "a heartbeat when silent")

		time.Sleep(10 * time.Second)
		id, err := b.Publish(context.Background(), "t", Event{Data: []byte("x")})
		require.NoError(t, err)
		synctest.Wait()
		afterEvent := c.String()
		assert.True(t, strings.HasSuffix(afterEvent, "id: "+id.String()+"\ndata: x\n\n"), "%q", afterEvent)
		time.Sleep(14 * time.Second)
		synctest.Wait()
		assert.Equal(t, afterEvent, c.String(), "no heartbeat 14s after an event")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, afterEvent+":\n\n", c.String())

		// 40 s have passed; the stream ends between 9 and 11 minutes.
		time.Sleep(8 * time.Minute)
		synctest.Wait()
		assert.False(t, c.ended(), "ended before 90% of MaxLifetime")
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		require.True(t, c.ended(), "still open after 110% of MaxLifetime")
		assert.NoError(t, c.err, "the body ends cleanly")
		assert.True(t, strings.HasSuffix(c.String(), "\nretry: 2000\n\n"), "%q", c.String())
		assert.Equal(t, 0, b.Stats().Streams)

		// Missed while away: resumed from the last id.
		_, err = b.Publish(context.Background(), "t", Event{Data: []byte("y")})
		require.NoError(t, err)
		req := httptest.NewRequest("GET", "/?topic=t", nil)
		req.Header.Set("Last-Event-ID", id.String())
		c2 := serveOverPipe(t, b, req)
		synctest.Wait()
		<-c2.resp
		assert.Contains(t, c2.String(), "\ndata: y\n\n")
		assert.NotContains(t, c2.String(), "data: x")

		// A client that goes ends its stream.
		c2.conn.Close()
		synctest.Wait()
		assert.Equal(t, 0, b.Stats().Streams)
	})
}

// Shutdown ends hijacked streams with a randomized retry hint and a clean
// end of the body, and returns once they are gone.
func TestShutdownEndsHijackedStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBroker(Options{Logger: slog.New(slog.DiscardHandler)})
		var cs []*pipeClient
		for range 3 {
			cs = append(cs, serveOverPipe(t, b, httptest.NewRequest("GET", "/?topic=t", nil)))
		}
		synctest.Wait()
		require.Equal(t, 3, b.Stats().Streams)
		require.NoError(t, b.Shutdown(context.Background()))
		synctest.Wait()
		for _, c := range cs {
			require.True(t, c.ended())
			assert.NoError(t, c.err)
			assert.Regexp(t, `\nretry: \d+\n\n$`, c.String())
		}
	})
}

// An idle stream over HTTP/1.1 keeps one goroutine, the reader of its
// connection: no writer, and neither of net/http's (the connection's and
// its background reader). With NoHijack it stays in net/http, and still
// streams. (Not parallel: it counts the process's goroutines.)
func TestIdleStreamKeepsOnlyItsReader(t *testing.T) {
	const n = 20
	for _, noHijack := range []bool{false, true} {
		readers, handlers := countStacks("sse.(*stream).readLoop"), countStacks("sse.(*stream).serve")
		b, url := testBroker(t, Options{NoHijack: noHijack})
		var ps []*Parser
		for range n {
			p := openStream(t, url+"?topic=idle-"+map[bool]string{false: "h", true: "n"}[noHijack], "")
			next(t, p) // the opening
			ps = append(ps, p)
		}
		waitFor(t, func() bool { return b.Stats().Streams == n })
		_, err := b.Publish(context.Background(), "idle-"+map[bool]string{false: "h", true: "n"}[noHijack], Event{Data: []byte("z")})
		require.NoError(t, err)
		for _, p := range ps {
			assert.Equal(t, "z", string(next(t, p).Data))
		}
		// Writers end once the queue is empty.
		waitFor(t, func() bool { return countStacks("sse.(*stream).writeLoop") == 0 })
		if noHijack {
			// (Goroutines of earlier tests' streams may still be ending,
			// never starting: the counts can only have gone down.)
			assert.GreaterOrEqual(t, countStacks("sse.(*stream).serve"), n, "NoHijack: each stream waits in its handler")
			assert.LessOrEqual(t, countStacks("sse.(*stream).readLoop"), readers, "NoHijack: no reader of ours")
			continue
		}
		assert.GreaterOrEqual(t, countStacks("sse.(*stream).readLoop"), n, "a reader per stream")
		assert.LessOrEqual(t, countStacks("sse.(*stream).serve"), handlers, "no handler goroutine waits")
	}
}

// countStacks counts the goroutines running fn (in one of their frames,
// not as the one that created them).
func countStacks(fn string) int {
	fn += "("
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

// An HTTP/1.0 client gets a body delimited by the end of the connection
// (it knows no chunks), ending cleanly after the retry hint.
func TestHijackedHTTP10Stream(t *testing.T) {
	b := NewBroker(Options{Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(b)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /?topic=old HTTP/1.0\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	require.NoError(t, err)
	assert.Equal(t, "HTTP/1.0", resp.Proto)
	assert.Empty(t, resp.TransferEncoding)
	assert.Equal(t, int64(-1), resp.ContentLength)
	p := NewParser(resp.Body, 0)
	next(t, p) // the opening
	_, err = b.Publish(context.Background(), "old", Event{Data: []byte("hello")})
	require.NoError(t, err)
	assert.Equal(t, "hello", string(next(t, p).Data))
	require.NoError(t, b.Shutdown(context.Background()))
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Regexp(t, `^retry: \d+\n\n$`, string(rest))
}

// OnStream sees every stream start and end, hijacked or not, whatever
// ends it; Shutdown returns after the last end.
func TestOnStreamCountsStreams(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		var mu sync.Mutex
		open, started := 0, 0
		b := NewBroker(Options{NoHijack: noHijack, Logger: slog.New(slog.DiscardHandler),
			OnStream: func(r *http.Request) func() {
				assert.Equal(t, "t", r.URL.Query().Get("topic"))
				mu.Lock()
				defer mu.Unlock()
				open++
				started++
				return func() {
					mu.Lock()
					defer mu.Unlock()
					open--
				}
			}})
		srv := httptest.NewServer(b)
		count := func() (int, int) {
			mu.Lock()
			defer mu.Unlock()
			return open, started
		}
		p1 := openStream(t, srv.URL+"?topic=t", "")
		next(t, p1)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"?topic=t", nil)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		next(t, NewParser(resp.Body, 0))
		o, s := count()
		assert.Equal(t, 2, o)
		assert.Equal(t, 2, s)
		cancel() // the client goes
		resp.Body.Close()
		waitFor(t, func() bool { o, _ := count(); return o == 1 })
		require.NoError(t, b.Shutdown(context.Background()))
		o, s = count()
		assert.Equal(t, 0, o, "ended before Shutdown returns")
		assert.Equal(t, 2, s)
		srv.Close()
	}
}
