package realtime

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blockingHandler is a log handler that holds the first record whose
// message is msg until release is closed.
type blockingHandler struct {
	msg     string
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *blockingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *blockingHandler) WithGroup(string) slog.Handler            { return h }
func (h *blockingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() {
			close(h.entered)
			<-h.release
		})
	}
	return nil
}

// Close during a reconnect's rejoin used to return while the rejoin
// goroutine was still running; it then sent on the closed Events channel
// (a panic). Close must wait for every goroutine of the client.
func TestClientCloseWaitsForRejoin(t *testing.T) {
	t.Parallel()
	var refuse atomic.Bool
	h, url := testHub(t, Options{Authenticate: bearer, Authorize: func(_ context.Context, _ Identity, a Action) error {
		if a.Kind == ActionJoin && refuse.Load() {
			return &Error{Code: CodeForbidden, Message: "not now"}
		}
		return nil
	}})
	log := &blockingHandler{msg: "realtime: rejoin refused; the room is no longer joined", entered: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, DialOptions{HTTPHeader: as("ada"), MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(log)})
	require.NoError(t, err)
	const rooms = 12
	for i := range rooms {
		_, err := c.Join(ctx, "room-"+itoa(int64(i)), JoinOptions{})
		require.NoError(t, err)
	}
	refuse.Store(true)
	dropConnections(h)
	<-log.entered // the rejoin goroutine is inside the logger, about to emit "joinfailed"

	closed := make(chan struct{})
	go func() {
		_ = c.Close()
		close(closed)
	}()
	// Give a Close that does not wait the time to return (the bug); one
	// that waits cannot return before the rejoin ends, whatever the timing.
	select {
	case <-closed:
		t.Error("Close returned while the rejoin goroutine was still running")
	case <-time.After(200 * time.Millisecond):
	}
	close(log.release) // the rejoin now emits "joinfailed" per room and "connected"
	<-closed
	for range c.Events() {
	}
}

// pausingProxy forwards TCP connections to target; while paused it stops
// forwarding what clients send, so that their writes block.
type pausingProxy struct {
	ln   net.Listener
	gate sync.RWMutex // held for writing while paused
}

func newPausingProxy(t *testing.T, target string) *pausingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &pausingProxy{ln: ln}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			// A small receive buffer, so that a paused client fills it soon.
			_ = in.(*net.TCPConn).SetReadBuffer(64 << 10)
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(in, out); _ = in.Close() })
			wg.Go(func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := in.Read(buf)
					if n > 0 {
						p.gate.RLock()
						_, werr := out.Write(buf[:n])
						p.gate.RUnlock()
						if werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				_ = out.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *pausingProxy) pause()  { p.gate.Lock() }
func (p *pausingProxy) resume() { p.gate.Unlock() }

// A request whose ctx ends while its frame is being written fails alone:
// the connection stays up (coder/websocket closes a connection whose
// write ctx ends, so the caller's ctx must never reach a write).
func TestClientRequestTimeoutKeepsConnection(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, Options{Authenticate: bearer, MaxMessageSize: 16 << 20})
	h.HandleCall("sink", func(context.Context, *Call) (any, error) { return nil, nil })
	h.HandleCall("echo", func(_ context.Context, c *Call) (any, error) { return c.Data, nil })
	proxy := newPausingProxy(t, strings.TrimPrefix(url, "ws://"))
	c := dialClient(t, "ws://"+proxy.ln.Addr().String(), "ada")
	col := collect(c)
	conn := c.ConnID()

	// More than the client's send buffer (at most 4 MiB on Linux by
	// default) and the proxy's receive buffer hold: the write blocks while
	// the proxy is paused.
	big := strings.Repeat("x", 12<<20)
	proxy.pause()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := c.Call(ctx, "sink", big, nil)
	cancel()
	proxy.resume()
	require.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)

	var got string
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, c.Call(ctx, "echo", "after", &got))
	assert.Equal(t, "after", got)
	assert.Equal(t, conn, c.ConnID(), "the connection survived the timed-out call")
	assert.Zero(t, col.count("disconnected"))
}

// A msg or direct without "time" takes the milliseconds of its ID, and
// one without "from" has an empty sender (PROTOCOL.md, compatibility).
func TestClientDerivesOmittedFields(t *testing.T) {
	c := &Client{events: make(chan Event, 4), rooms: map[string]*clientRoom{"r": {}}, ctx: context.Background(),
		log: slog.New(slog.DiscardHandler)}
	c.dispatch([]byte(`{"op":"msg","room":"r","id":"1732800000123-4","data":1}` + "\n" +
		`{"op":"direct","id":"1732800000200-0","time":1732800000201,"from":{"user":"ada","conn":"c1"},"data":2}`))
	m, d := <-c.events, <-c.events
	assert.Equal(t, time.UnixMilli(1732800000123), m.Time)
	assert.Equal(t, Sender{}, m.From)
	assert.Equal(t, time.UnixMilli(1732800000201), d.Time, "a time that is present stays")
	assert.Equal(t, Sender{User: "ada", Conn: "c1"}, d.From)
}
