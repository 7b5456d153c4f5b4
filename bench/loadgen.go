package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// The load generator is shared by every server: the same WebSocket client
// (coder/websocket), the same payload and the same per-message work. Only
// the protocol adapter differs: how to handshake, join the room and wrap a
// publish.
//
// Every payload is {"seq":N,"ts":UNIXNANOS}. A subscriber reads a frame
// into a reused buffer, splits it on '\n' (rtkit and centrifuge join queued
// objects into one frame; melody sends one message per frame), finds the
// payload in each line (an object, or the array rtkit sends a room message
// as on a connection that negotiated rtkit.compact, as its clients do),
// counts it against its sequence number and records receipt − ts in its
// own histogram. Lines without a payload (replies, presence events) are
// skipped.

// protocol adapts the generator to one server's wire protocol.
type protocol struct {
	subprotocols []string
	// setup completes the handshake on a new connection and, with join,
	// joins (subscribes to) the bench room.
	setup func(ctx context.Context, c *wsClient, join bool) error
	// appendPub appends a request publishing data to the bench room.
	appendPub func(b []byte, id uint64, data []byte) []byte
	// ping is an application-level ping to answer with pong (nil: none).
	ping, pong []byte
	// deflate asks for permessage-deflate (no context takeover).
	deflate bool
}

func init() {
	d := *protocols["rtkit"]
	d.deflate = true
	protocols["rtkit-deflate"] = &d
}

var protocols = map[string]*protocol{
	"rtkit": {
		// As rtkit's Go and browser clients do: room messages come as
		// arrays (["bench","<id>",{"seq":...},"<user>","<conn>"]), every
		// other event as an object.
		subprotocols: []string{"rtkit.compact"},
		setup: func(ctx context.Context, c *wsClient, join bool) error {
			if err := c.readUntil(ctx, func(line []byte) (bool, error) {
				return bytes.HasPrefix(line, []byte(`{"op":"welcome"`)), nil
			}); err != nil || !join {
				return err
			}
			if err := c.write(ctx, []byte(`{"op":"join","id":1,"room":"`+benchRoom+`"}`)); err != nil {
				return err
			}
			return c.readUntil(ctx, func(line []byte) (bool, error) {
				if bytes.HasPrefix(line, []byte(`{"op":"error"`)) {
					return false, fmt.Errorf("join: %s", line)
				}
				return bytes.HasPrefix(line, []byte(`{"op":"ok","id":1,`)), nil
			})
		},
		appendPub: func(b []byte, id uint64, data []byte) []byte {
			b = append(b, `{"op":"pub","id":`...)
			b = strconv.AppendUint(b, id, 10)
			b = append(b, `,"room":"`+benchRoom+`","data":`...)
			b = append(b, data...)
			return append(b, '}')
		},
	},
	"centrifuge": {
		subprotocols: []string{"centrifuge-json"},
		setup: func(ctx context.Context, c *wsClient, join bool) error {
			if err := centrifugeRequest(ctx, c, 1, `"connect":{}`); err != nil || !join {
				return err
			}
			return centrifugeRequest(ctx, c, 2, `"subscribe":{"channel":"`+benchRoom+`"}`)
		},
		appendPub: func(b []byte, id uint64, data []byte) []byte {
			b = append(b, `{"id":`...)
			b = strconv.AppendUint(b, id, 10)
			b = append(b, `,"publish":{"channel":"`+benchRoom+`","data":`...)
			b = append(b, data...)
			return append(b, "}}"...)
		},
		ping: []byte(`{}`),
		pong: []byte(`{}`),
	},
	"melody": {
		setup: func(ctx context.Context, c *wsClient, join bool) error { return nil },
		appendPub: func(b []byte, id uint64, data []byte) []byte {
			return append(b, data...)
		},
	},
}

// centrifugeRequest sends {"id":ID,BODY} and waits for its reply.
func centrifugeRequest(ctx context.Context, c *wsClient, id int, body string) error {
	prefix := `{"id":` + strconv.Itoa(id) + `,`
	if err := c.write(ctx, []byte(prefix+body+`}`)); err != nil {
		return err
	}
	return c.readUntil(ctx, func(line []byte) (bool, error) {
		if !bytes.HasPrefix(line, []byte(prefix)) {
			return false, nil
		}
		if bytes.HasPrefix(line[len(prefix):], []byte(`"error"`)) {
			return false, fmt.Errorf("%s: %s", body, line)
		}
		return true, nil
	})
}

// wsClient is one generator connection.
type wsClient struct {
	ws  *websocket.Conn
	buf []byte
}

func dial(ctx context.Context, url string, p *protocol, join bool) (*wsClient, error) {
	opts := &websocket.DialOptions{Subprotocols: p.subprotocols}
	if p.deflate {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	ws, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(-1)
	c := &wsClient{ws: ws}
	if err := p.setup(ctx, c, join); err != nil {
		_ = ws.CloseNow()
		return nil, err
	}
	return c, nil
}

// dialAll opens n connections, a few at a time.
func dialAll(ctx context.Context, url string, p *protocol, n int, join bool) ([]*wsClient, error) {
	const parallel = 32
	clients := make([]*wsClient, n)
	next := make(chan int)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range parallel {
		wg.Go(func() {
			for i := range next {
				c, err := dial(ctx, url, p, join)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					cancel()
					continue
				}
				clients[i] = c
			}
		})
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		closeAll(clients)
		return nil, firstErr
	}
	return clients, nil
}

func closeAll(clients []*wsClient) {
	for _, c := range clients {
		if c != nil {
			_ = c.ws.CloseNow()
		}
	}
}

func (c *wsClient) write(ctx context.Context, b []byte) error {
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// readFrame reads one frame into the client's buffer, valid until the next
// call.
func (c *wsClient) readFrame(ctx context.Context) ([]byte, error) {
	_, r, err := c.ws.Reader(ctx)
	if err != nil {
		return nil, err
	}
	b := c.buf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	c.buf = b
	return b, nil
}

// readUntil reads objects until match returns true or an error.
func (c *wsClient) readUntil(ctx context.Context, match func(line []byte) (bool, error)) error {
	for {
		frame, err := c.readFrame(ctx)
		if err != nil {
			return err
		}
		for line := range bytes.SplitSeq(frame, []byte{'\n'}) {
			if ok, err := match(line); ok || err != nil {
				return err
			}
		}
	}
}

// room is the fanout and latency setup: subscribers and one publisher in
// the bench room, each with a goroutine reading.
type room struct {
	*tally
	p    *protocol
	subs []*wsClient
	pub  *wsClient      // nil when the server publishes
	post *posters       // the server's publisher, or nil
	wg   sync.WaitGroup // the readers

	pubBuf []byte // publisher only
}

// wsTarget is a realtime server's WebSocket endpoint and, for
// server-side publishing, its /publish.
type wsTarget struct {
	url string
	p   *protocol
	// serverPub makes the room's publisher POST payloads to publish,
	// with at most posters requests in flight, instead of a member
	// publishing them.
	serverPub bool
	publish   string
	posters   int
}

func (t wsTarget) room(ctx context.Context, n int) (audience, error) {
	if t.serverPub {
		return newServerPubRoom(ctx, t, n)
	}
	r, err := newRoom(ctx, t.url, t.p, n)
	if err != nil {
		return nil, err
	}
	r.waitQuiet(10 * time.Second)
	return r, nil
}

func (t wsTarget) idle(ctx context.Context, n int) (func(), error) {
	clients, err := dialAll(ctx, t.url, t.p, n, false)
	if err != nil {
		return nil, err
	}
	return func() { closeAll(clients) }, nil
}

// newRoom connects n subscribers, then the publisher, all joined to the
// bench room, and starts their readers.
func newRoom(ctx context.Context, url string, p *protocol, n int) (*room, error) {
	clients, err := dialAll(ctx, url, p, n, true)
	if err != nil {
		return nil, err
	}
	r := &room{tally: newTally(n), p: p, subs: clients}
	for i, c := range clients {
		r.wg.Add(1)
		go r.read(c, r.sinks[i])
	}
	r.pub, err = dial(ctx, url, p, true)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("publisher: %w", err)
	}
	r.wg.Add(1)
	go r.drainPublisher()
	return r, nil
}

// newServerPubRoom is n subscribers whose payloads the server publishes
// (each POSTed to its /publish), with no member publishing.
func newServerPubRoom(ctx context.Context, t wsTarget, n int) (*room, error) {
	clients, err := dialAll(ctx, t.url, t.p, n, true)
	if err != nil {
		return nil, err
	}
	r := &room{tally: newTally(n), p: t.p, subs: clients, post: newPosters(t.publish, t.posters)}
	for i, c := range clients {
		r.wg.Add(1)
		go r.read(c, r.sinks[i])
	}
	return r, nil
}

// read is a subscriber's reader: the per-message work measured.
func (r *room) read(c *wsClient, s *sink) {
	defer r.wg.Done()
	ctx := context.Background()
	for {
		frame, err := c.readFrame(ctx)
		if err != nil {
			r.readFailed(err)
			return
		}
		now := time.Now().UnixNano()
		var n int64
		for len(frame) > 0 {
			line := frame
			if i := bytes.IndexByte(frame, '\n'); i >= 0 {
				line, frame = frame[:i], frame[i+1:]
			} else {
				frame = nil
			}
			seq, ts, ok := parsePayload(line)
			if !ok {
				r.answerPing(c, line)
				continue
			}
			n++
			r.got(s, seq, ts, now)
		}
		s.frames.Add(1)
		if n > 0 {
			s.msgs.Add(n)
		}
	}
}

// drainPublisher reads what the publisher's connection receives (replies,
// its own messages) and drops it.
func (r *room) drainPublisher() {
	defer r.wg.Done()
	ctx := context.Background()
	for {
		frame, err := r.pub.readFrame(ctx)
		if err != nil {
			r.readFailed(err)
			return
		}
		for line := range bytes.SplitSeq(frame, []byte{'\n'}) {
			r.answerPing(r.pub, line)
		}
	}
}

func (r *room) answerPing(c *wsClient, line []byte) {
	if r.p.ping != nil && bytes.Equal(line, r.p.ping) {
		_ = c.write(context.Background(), r.p.pong)
	}
}

// publish sends the next message, stamped with the current time.
func (r *room) publish(ctx context.Context) error {
	seq, data := r.next()
	if r.post != nil {
		return r.post.send(ctx, data)
	}
	r.pubBuf = r.p.appendPub(r.pubBuf[:0], seq+10, data)
	return r.pub.write(ctx, r.pubBuf)
}

// close closes every connection and waits for the readers; after it the
// subscribers' histograms may be read.
func (r *room) close() {
	r.closing.Store(true)
	if r.post != nil {
		r.post.close()
	}
	closeAll(r.subs)
	if r.pub != nil {
		_ = r.pub.ws.CloseNow()
	}
	r.wg.Wait()
}

// parsePayload finds the payload in one object (or SSE data line).
func parsePayload(line []byte) (seq uint64, ts int64, ok bool) {
	i := bytes.Index(line, seqKey)
	if i < 0 {
		return 0, 0, false
	}
	seq, rest, ok := parseUint(line[i+len(seqKey):])
	if !ok || !bytes.HasPrefix(rest, tsKey) {
		return 0, 0, false
	}
	t, _, ok := parseUint(rest[len(tsKey):])
	return seq, int64(t), ok
}

func parseUint(b []byte) (uint64, []byte, bool) {
	var v uint64
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + uint64(b[i]-'0')
		i++
	}
	return v, b[i:], i > 0
}
