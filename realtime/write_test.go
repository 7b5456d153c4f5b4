package realtime

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// conns returns the hub's connections.
func hubConns(h *Hub) []*conn {
	h.connsMu.Lock()
	defer h.connsMu.Unlock()
	out := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		out = append(out, c)
	}
	return out
}

// TestWriterBurstsInOrder publishes to members one message at a time and
// in bursts, while their writers are retired at arbitrary points: every
// member gets every message once, intact and in order, whether its writer
// was waiting, running or gone (goleak in TestMain checks that none is
// left behind after Shutdown).
func TestWriterBurstsInOrder(t *testing.T) {
	h, url := testHub(t, Options{Authenticate: bearer})
	const members = 3
	var rs []*raw
	for i := range members {
		r := dialRaw(t, url, as(fmt.Sprintf("u%d", i)))
		r.welcome()
		r.send(map[string]any{"op": "join", "room": "r", "id": 1})
		if rep := r.reply(1); rep["op"] != "ok" {
			t.Fatalf("join: %v", rep)
		}
		rs = append(rs, r)
	}
	ctx := context.Background()
	seq := 0
	expect := func(n int) {
		t.Helper()
		for _, r := range rs {
			for k := seq - n; k < seq; k++ {
				m := r.until("msg")
				data, _ := m["data"].(map[string]any)
				if data["seq"] != float64(k) || data["pad"] != fmt.Sprintf("p%d", k) {
					t.Fatalf("member got %v, want seq %d", m, k)
				}
			}
		}
	}
	publish := func(n int) {
		t.Helper()
		for range n {
			if _, err := h.Publish(ctx, "r", map[string]any{"seq": seq, "pad": fmt.Sprintf("p%d", seq)}); err != nil {
				t.Fatal(err)
			}
			seq++
		}
	}
	for round := range 60 {
		switch round % 4 {
		case 0: // one at a time: writers wait between messages
			publish(1)
			expect(1)
		case 1: // a burst queued at once: joined into few frames
			publish(50)
			expect(50)
		case 2: // retire every waiting writer, then publish
			for _, c := range hubConns(h) {
				c.retireIdleWriter(c.h.clock() + 3_600_000)
			}
			publish(2)
			expect(2)
		case 3: // retire while messages are in flight
			publish(5)
			for _, c := range hubConns(h) {
				c.retireIdleWriter(c.h.clock() + 3_600_000)
			}
			expect(5)
		}
	}

	// Objects queued while the writer cannot look go out as one frame,
	// in order and intact.
	c := hubConns(h)[0]
	var peer *raw
	for _, r := range rs {
		r.send(map[string]any{"op": "call", "method": "nope", "id": 9})
		if rep := r.reply(9); rep["op"] != "error" {
			t.Fatalf("call: %v", rep)
		}
	}
	// Find the raw client of c: the one whose welcome named c's user.
	for i, r := range rs {
		if c.info.Identity.User == fmt.Sprintf("u%d", i) {
			peer = r
		}
	}
	const n = 40
	c.mu.Lock()
	for k := range n {
		c.enqueueLocked([]byte(fmt.Sprintf(`{"op":"msg","room":"r","data":{"seq":%d,"pad":"p%d"}}`, seq+k, seq+k)))
	}
	c.mu.Unlock()
	_, frame, err := peer.ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(frame), "\n")
	if len(lines) != n {
		t.Fatalf("frame of %d objects, want %d: %q", len(lines), n, frame)
	}
	for k, line := range lines {
		if want := fmt.Sprintf(`{"op":"msg","room":"r","data":{"seq":%d,"pad":"p%d"}}`, seq+k, seq+k); line != want {
			t.Fatalf("object %d is %s, want %s", k, line, want)
		}
	}
}

// TestWriterEndsWithConnection closes connections whose writers wait for
// work: each connection ends and takes its writer along (the test's
// Shutdown and goleak check the rest).
func TestWriterEndsWithConnection(t *testing.T) {
	h, url := testHub(t, Options{Authenticate: bearer})
	// busy connects user and has the server publish to it until its
	// writer has run three bursts and waits for the next.
	busy := func(user string) *raw {
		r := dialRaw(t, url, as(user))
		r.welcome()
		r.send(map[string]any{"op": "join", "room": "r", "id": 1})
		r.reply(1)
		for i := range 3 {
			if _, err := h.Publish(context.Background(), "r", i); err != nil {
				t.Fatal(err)
			}
			r.until("msg")
		}
		return r
	}
	r := busy("ada")
	_ = r.ws.CloseNow()
	waitFor(t, "the connection to end", func() bool { return h.Stats().Connections == 0 })

	// A graceful close from the server while the writer waits.
	r = busy("bob")
	if err := h.Disconnect(context.Background(), "bob", "bye"); err != nil {
		t.Fatal(err)
	}
	if code := r.closeStatus(); code != CloseKicked {
		t.Fatalf("close code %d, want %d", code, CloseKicked)
	}
}

// TestConnSizeClass guards the memory of an idle connection: the conn
// struct stays within the 320-byte allocation size class it had before
// the writer kept its state in it (on 64-bit platforms).
func TestConnSizeClass(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit platforms")
	}
	if size := unsafe.Sizeof(conn{}); size > 320 {
		t.Errorf("conn is %d bytes, over the 320-byte size class", size)
	}
}

// TestWriteDeadlineWhileWaiting checks the socket's write deadline a
// waiting writer leaves behind: none when it could pass before the next
// burst (a short WriteTimeout), one at least deadlineMargin away
// otherwise, and none once the writer is retired; and that the
// connection then still answers a ping and gets messages.
func TestWriteDeadlineWhileWaiting(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		keep    bool
	}{{100 * time.Millisecond, false}, {10 * time.Second, true}} {
		t.Run(tc.timeout.String(), func(t *testing.T) {
			h, url := testHub(t, Options{Authenticate: bearer, WriteTimeout: tc.timeout})
			r := dialRaw(t, url, as("ada"))
			r.welcome()
			r.send(map[string]any{"op": "join", "room": "r", "id": 1})
			r.reply(1)
			ctx := context.Background()
			for i := range 3 {
				if _, err := h.Publish(ctx, "r", i); err != nil {
					t.Fatal(err)
				}
				r.until("msg")
			}
			c := hubConns(h)[0]
			var deadline uint32
			waitFor(t, "the writer to wait", func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				deadline = c.deadline
				return c.wake != nil && !c.writing && len(c.queue) == 0
			})
			if !tc.keep && deadline != 0 {
				t.Errorf("a deadline %d ms ahead is left set", int32(deadline-h.clock()))
			}
			if tc.keep && (deadline == 0 || int32(deadline-h.clock()) < int32(deadlineMargin/time.Millisecond)) {
				t.Errorf("deadline %d, %d ms ahead: want one at least %s ahead", deadline, int32(deadline-h.clock()), deadlineMargin)
			}
			c.retireIdleWriter(h.clock() + 3_600_000)
			waitFor(t, "the writer to end", func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				deadline = c.deadline
				return c.wake == nil && !c.writing
			})
			if deadline != 0 {
				t.Errorf("a retired writer left a deadline set")
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- r.ws.Ping(pctx) }()
			if _, err := h.Publish(ctx, "r", "after"); err != nil {
				t.Fatal(err)
			}
			if m := r.until("msg"); m["data"] != "after" {
				t.Fatalf("got %v", m)
			}
			r.ws.CloseRead(ctx) // reads on, so that the pong is handled
			if err := <-errc; err != nil {
				t.Fatalf("ping: %v", err)
			}
		})
	}
}
