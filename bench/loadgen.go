package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
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
// payload in each object, counts it against its sequence number and records
// receipt − ts in its own histogram. Objects without a payload (replies,
// presence events) are skipped.

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
}

var protocols = map[string]*protocol{
	"rtkit": {
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
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: p.subprotocols})
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

const (
	ringSize = 1 << 16 // sequence numbers tracked at once; far above the window
	ringMask = ringSize - 1
)

// room is the fanout and latency setup: subscribers and one publisher in
// the bench room, each with a goroutine reading. The generator counts, for
// each message, how many subscribers got it.
type room struct {
	p     *protocol
	subs  []*subscriber
	pub   *wsClient
	wg    sync.WaitGroup // the readers
	nsubs int32

	counts [ringSize]atomic.Int32 // deliveries of seq, at seq&ringMask
	done   chan struct{}          // one value per message every subscriber got
	// measureFrom is the first seq whose latency is recorded.
	measureFrom atomic.Uint64

	seq             uint64 // next seq; publisher only
	pubBuf, dataBuf []byte // publisher only

	closing  atomic.Bool
	readErrs atomic.Int64
	firstErr atomic.Pointer[error]
}

type subscriber struct {
	c      *wsClient
	msgs   atomic.Int64 // payloads received
	frames atomic.Int64
	hist   histogram // the reader's only, until it ends
}

// newRoom connects n subscribers, then the publisher, all joined to the
// bench room, and starts their readers.
func newRoom(ctx context.Context, url string, p *protocol, n int) (*room, error) {
	clients, err := dialAll(ctx, url, p, n, true)
	if err != nil {
		return nil, err
	}
	r := &room{p: p, nsubs: int32(n), done: make(chan struct{}, ringSize)}
	r.measureFrom.Store(^uint64(0))
	for _, c := range clients {
		s := &subscriber{c: c}
		r.subs = append(r.subs, s)
		r.wg.Add(1)
		go r.read(s)
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

// read is a subscriber's reader: the per-message work measured.
func (r *room) read(s *subscriber) {
	defer r.wg.Done()
	ctx := context.Background()
	for {
		frame, err := s.c.readFrame(ctx)
		if err != nil {
			r.readFailed(err)
			return
		}
		now := time.Now().UnixNano()
		from := r.measureFrom.Load()
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
				r.answerPing(s.c, line)
				continue
			}
			n++
			if seq >= from {
				s.hist.record((now - ts) / 1000)
			}
			if r.counts[seq&ringMask].Add(1) == r.nsubs {
				select {
				case r.done <- struct{}{}:
				default:
				}
			}
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

func (r *room) readFailed(err error) {
	if r.closing.Load() {
		return
	}
	r.readErrs.Add(1)
	r.firstErr.CompareAndSwap(nil, &err)
}

// publish sends the next message, stamped with the current time.
func (r *room) publish(ctx context.Context) error {
	seq := r.seq
	r.seq++
	r.counts[seq&ringMask].Store(0)
	r.dataBuf = appendPayload(r.dataBuf[:0], seq, time.Now().UnixNano())
	r.pubBuf = r.p.appendPub(r.pubBuf[:0], seq+10, r.dataBuf)
	return r.pub.write(ctx, r.pubBuf)
}

// delivered returns the payloads all subscribers received so far.
func (r *room) delivered() int64 {
	var n int64
	for _, s := range r.subs {
		n += s.msgs.Load()
	}
	return n
}

func (r *room) frames() int64 {
	var n int64
	for _, s := range r.subs {
		n += s.frames.Load()
	}
	return n
}

// waitQuiet waits until no subscriber received a frame for 200ms (the
// joins' presence events have been delivered), at most limit.
func (r *room) waitQuiet(limit time.Duration) {
	deadline := time.Now().Add(limit)
	last := r.frames()
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		n := r.frames()
		if n == last {
			return
		}
		last = n
	}
}

// close closes every connection and waits for the readers; after it the
// subscribers' histograms may be read.
func (r *room) close() {
	r.closing.Store(true)
	for _, s := range r.subs {
		_ = s.c.ws.CloseNow()
	}
	if r.pub != nil {
		_ = r.pub.ws.CloseNow()
	}
	r.wg.Wait()
}

// latencies merges the subscribers' histograms; call after close.
func (r *room) latencies() *histogram {
	var h histogram
	for _, s := range r.subs {
		h.merge(&s.hist)
	}
	return &h
}

// readErrors returns how many readers failed and the first error.
func (r *room) readErrors() (int64, error) {
	if p := r.firstErr.Load(); p != nil {
		return r.readErrs.Load(), *p
	}
	return 0, nil
}

var (
	seqKey = []byte(`{"seq":`)
	tsKey  = []byte(`,"ts":`)
)

func appendPayload(b []byte, seq uint64, ts int64) []byte {
	b = append(b, seqKey...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, tsKey...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, '}')
}

// parsePayload finds the payload in one object.
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
