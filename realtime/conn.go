package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/bits"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/rtkit/rtkit"
	"golang.org/x/time/rate"
)

// conn is one client connection.
type conn struct {
	h    *Hub
	ws   *websocket.Conn
	info ConnInfo
	ip   string // counted against MaxConnsPerIP

	ctx    context.Context // ends with the connection
	cancel context.CancelFunc

	nc net.Conn // the hijacked connection, for write deadlines; nil if unknown

	mu     sync.Mutex
	queue  [][]byte // objects waiting for the writer
	queued int      // their bytes
	// wake is non-nil while a writer goroutine exists that may wait for
	// work on it (see writeLoop).
	wake    chan struct{}
	closing chan struct{} // closed when a graceful close (with a code) ends
	// The graceful close's code and reason; closeOnce ends the close
	// exactly once.
	closeReason string
	closeOnce   sync.Once
	// closeCode is a websocket.StatusCode (they fit in 16 bits; the
	// fields up to closed fill what sync.Once leaves of 16 bytes: an idle
	// connection's struct stays in its size class).
	closeCode uint16
	// writing is set while the writer has work: it writes, or it was
	// woken (or started) and will look at the queue. The close frame is
	// sent by the writer after what is queued if it was writing when the
	// close was decided.
	writing bool
	closed  bool // nothing more is queued; no goroutine is added
	rooms   map[string]*membership
	inbox   *membership
	// backlog lists, oldest join first, the memberships (inbox included)
	// with held messages the writer still has to queue or with a resync
	// event still due for dropped presence events (see deliverPresence);
	// heldLive counts the bytes of the live messages held. One list for
	// both keeps an idle connection's struct in its size class.
	backlog  []*membership
	heldLive int
	wg       sync.WaitGroup // writer, calls, pings and the closer

	// Read side: only the connection's own goroutine uses these.
	limiter  *rate.Limiter
	refusals *rate.Limiter // refused objects: see allow

	lastSeen atomic.Int64 // unix nanos of the last frame or pong from the peer
	ending   atomic.Bool  // a close was decided: inbound objects are no longer run
	pinging  atomic.Bool
	calls    atomic.Int32
	// lastBurst is when the writer last started a burst (guarded by mu),
	// on the hub's millisecond clock.
	lastBurst uint32
	// deadline is the socket's write deadline on that clock, 0 for none;
	// only the writer uses it (see setDeadline).
	deadline uint32
}

func newConn(h *Hub, ws *websocket.Conn, info ConnInfo) *conn {
	c := &conn{h: h, ws: ws, info: info}
	c.ctx, c.cancel = context.WithCancel(h.ctx)
	c.lastSeen.Store(time.Now().UnixNano())
	return c
}

// send queues one object.
func (c *conn) send(frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enqueueLocked(frame)
}

// enqueueLocked queues frame and makes sure a writer runs. A connection
// whose queue overflows is closed as a slow consumer.
func (c *conn) enqueueLocked(frame []byte) { c.queueLocked(frame, false) }

// queueLocked queues frame; unless force is set, a full queue closes the
// connection instead. A frame larger than SendQueueBytes is accepted when
// nothing else waits: a message the backplane accepted is deliverable to a
// client that keeps up.
func (c *conn) queueLocked(frame []byte, force bool) {
	if c.closed {
		return
	}
	if pending := c.queued + c.heldLive; !force && pending > 0 && pending+len(frame) > c.h.opts.SendQueueBytes {
		c.slowLocked()
		return
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.kickLocked()
}

// kickLocked makes sure the writer looks at the queue: it wakes a waiting
// writer, or starts one.
func (c *conn) kickLocked() {
	if c.writing {
		return
	}
	c.writing = true
	if c.wake != nil {
		c.wake <- struct{}{} // buffered, and empty while !writing
		return
	}
	c.wake = make(chan struct{}, 1)
	c.wg.Add(1)
	go c.writeLoop(c.wake)
}

// writerLinger is how soon after its previous burst a burst must end for
// the writer to wait for the next one instead of ending: a connection
// that gets messages steadily keeps its writer (no goroutine start, no
// stack growth per message), one that got a single burst (a welcome, a
// reply) has none left. A waiting writer that gets nothing for
// writerLinger is retired by the ping loop.
const writerLinger = time.Second

// maxWriteFrame is how many bytes the writer joins into one frame.
const maxWriteFrame = 64 << 10

// minWriteBuf is the smallest buffer the writer joins objects in.
const minWriteBuf = 1 << 10

// writeBufs holds the buffers writers join objects in, one pool per power
// of two from minWriteBuf to maxWriteFrame: a writer takes the smallest
// that holds what it joins into a frame, so that the buffers in use (and
// left in the pools until the next collections) scale with the bytes
// being written, not with the writers. A count event that wakes the
// writers of 5,000 members, each joining it with a reply, thus holds a few
// KiB per member at most, not 64 KiB.
var writeBufs [writeBufClasses]sync.Pool

// writeBufClasses is the number of pools: minWriteBuf<<(writeBufClasses-1)
// is maxWriteFrame.
const writeBufClasses = 7

// getWriteBuf returns a pooled buffer of at least n bytes (n at most
// maxWriteFrame) and the pool it goes back to.
func getWriteBuf(n int) (*[]byte, *sync.Pool) {
	class := 0
	if n > minWriteBuf {
		class = bits.Len(uint(n-1)) - bits.Len(uint(minWriteBuf-1))
	}
	p := &writeBufs[class]
	if bp, ok := p.Get().(*[]byte); ok {
		return bp, p
	}
	b := make([]byte, 0, minWriteBuf<<class)
	return &b, p
}

// writeLoop writes what is queued. When the queue is empty it ends, or,
// if its last two bursts started less than writerLinger apart, waits on
// wake for the next burst (a closed wake: it was retired).
//
// Before a burst the writer yields (runtime.Gosched) when its previous
// burst carried several objects: the connection is under load, and
// letting whoever is queueing (a fan-out to many members) run first makes
// the next write carry more objects. After a burst of one object (a quiet
// room: every message written alone) it does not: the yield would only
// cost a trip through the scheduler's global queue per delivery. A new
// writer yields before its first burst.
//
// The hub's clock is read once per pass of the loop: the time serves the
// steady check, the write deadline and its relaxing alike.
func (c *conn) writeLoop(wake chan struct{}) {
	defer c.wg.Done()
	steady := false // the last two bursts started within writerLinger
	batched := true // the last burst carried several objects
	for {
		if batched {
			runtime.Gosched()
		}
		c.mu.Lock()
		if len(c.queue) == 0 && !c.closed {
			c.refillLocked()
		}
		frames := c.queue
		now := c.h.clock()
		// Once closed, what is queued is still written (every reply
		// already produced reaches the client), then the close frame,
		// unless the connection ended without a graceful close.
		graceful := c.closing != nil
		if len(frames) == 0 || (c.closed && !graceful) {
			if len(frames) == 0 && !c.closed && steady && c.wake == wake {
				// Steady connection: wait for the next burst.
				c.writing = false
				c.relaxDeadline(true, now)
				c.mu.Unlock()
				<-wake
				continue
			}
			c.writing = false
			if c.wake == wake {
				c.wake = nil
			}
			c.queue, c.queued = nil, 0
			// Under mu: the next writer may start as soon as it is released.
			c.relaxDeadline(false, now)
			c.mu.Unlock()
			if graceful {
				c.sendClose()
			}
			return
		}
		steady = now-c.lastBurst < uint32(writerLinger/time.Millisecond)
		c.lastBurst = now
		c.queue, c.queued = nil, 0
		c.mu.Unlock()
		batched = len(frames) > 1
		if err := c.writeFrames(frames, now); err != nil {
			c.mu.Lock()
			c.writing = false
			if c.wake == wake {
				c.wake = nil
			}
			c.closed = true
			graceful = c.closing != nil
			c.mu.Unlock()
			_ = c.ws.CloseNow()
			if graceful {
				c.closeOnce.Do(func() { close(c.closing) })
			}
			return
		}
	}
}

// deadlineMargin is how long a write deadline must still have to run for
// the writer to leave it set while it waits for the next burst: what it
// waits (writerLinger, then the ping loop's tick) with room to spare, so
// that the deadline never passes while no burst runs (coder/websocket
// also writes pongs and close frames on the socket).
const deadlineMargin = 5 * time.Second

// setDeadline makes sure the socket's write deadline leaves the burst
// about to be written at least WriteTimeout: it sets the deadline to
// twice WriteTimeout ahead when less than WriteTimeout is left, so that
// at a steady rate the deadline is set once per WriteTimeout, not twice
// per burst (each is a runtime timer change). A burst thus gets between
// WriteTimeout and twice it. A WriteTimeout beyond a day is set and
// cleared around every burst (the clock is 32 bits).
func (c *conn) setDeadline(now uint32) error {
	wt := c.h.opts.WriteTimeout
	if wt > 24*time.Hour {
		c.deadline = 1
		return c.nc.SetWriteDeadline(time.Now().Add(wt))
	}
	ms := uint32(wt / time.Millisecond)
	if c.deadline != 0 && int32(c.deadline-now) >= int32(ms) {
		return nil
	}
	c.deadline = max(now+2*ms, 1)
	return c.nc.SetWriteDeadline(time.Now().Add(2 * wt))
}

// relaxDeadline clears the socket's write deadline before the writer
// waits (if it could pass before the next burst) or, wait false, ends.
// The writer calls it holding mu, so that the next writer finds
// c.deadline as this one left it; now is the hub's clock.
func (c *conn) relaxDeadline(wait bool, now uint32) {
	if c.deadline == 0 || c.nc == nil {
		return
	}
	if wait && c.h.opts.WriteTimeout <= 24*time.Hour && int32(c.deadline-now) >= int32(deadlineMargin/time.Millisecond) {
		return
	}
	c.deadline = 0
	_ = c.nc.SetWriteDeadline(time.Time{})
}

// retireIdleWriter ends the connection's writer if it has waited for work
// for writerLinger (now is the hub's clock). The writer wakes to its
// closed channel with writing set, so that no other writer starts before
// it has looked at the queue.
func (c *conn) retireIdleWriter(now uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wake != nil && !c.writing && now-c.lastBurst >= uint32(writerLinger/time.Millisecond) {
		c.writing = true
		close(c.wake)
		c.wake = nil
	}
}

// writeFrames joins objects with '\n' into frames of up to maxWriteFrame
// bytes (an object larger than that goes alone) and writes them, all
// within WriteTimeout (up to twice it).
//
// The bound is the socket's write deadline (see setDeadline), and the
// WebSocket writes get a context without one: coder/websocket arms a
// timer and a context callback for every write given a context with a
// deadline, which cost more than the write's own work at steady rates.
// (Without the socket, a context bounds the burst.)
func (c *conn) writeFrames(frames [][]byte, now uint32) error {
	ctx := context.Background()
	if c.nc != nil {
		if err := c.setDeadline(now); err != nil {
			return err
		}
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.h.opts.WriteTimeout)
		defer cancel()
	}
	c.h.objectsOut.Add(int64(len(frames)))
	var bp *[]byte
	var pool *sync.Pool
	defer func() {
		if bp != nil {
			pool.Put(bp)
		}
	}()
	for len(frames) > 0 {
		var out []byte
		if len(frames) == 1 || len(frames[0])+1+len(frames[1]) > maxWriteFrame {
			out, frames = frames[0], frames[1:]
		} else {
			// The objects that go into this frame, and their bytes.
			k, n := 1, len(frames[0])
			for k < len(frames) && n+1+len(frames[k]) <= maxWriteFrame {
				n += 1 + len(frames[k])
				k++
			}
			if bp != nil && cap(*bp) < n {
				pool.Put(bp)
				bp = nil
			}
			if bp == nil {
				bp, pool = getWriteBuf(n)
			}
			buf := (*bp)[:0]
			for i, f := range frames[:k] {
				if i > 0 {
					buf = append(buf, '\n')
				}
				buf = append(buf, f...)
			}
			frames = frames[k:]
			*bp = buf
			out = buf
		}
		if err := c.ws.Write(ctx, websocket.MessageText, out); err != nil {
			return err
		}
		c.h.framesOut.Add(1)
	}
	return nil
}

// closeWith closes the connection with code, after what is already
// queued... as far as the close handshake allows. It does not block.
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked(code, reason)
}

// slowLocked closes a connection whose send queue overflowed.
func (c *conn) slowLocked() {
	c.h.slow.Add(1)
	c.closeLocked(CloseSlowConsumer, "slow consumer: send queue full")
}

// closeLocked starts a graceful close: nothing more is queued; what is
// queued is written first (by the running writer, which then sends the
// close frame), except for a slow consumer, whose queue is dropped.
func (c *conn) closeLocked(code websocket.StatusCode, reason string) {
	if c.closed {
		return
	}
	c.closed = true
	c.ending.Store(true)
	for _, m := range c.backlog {
		m.held, m.listed = nil, false
	}
	c.backlog, c.heldLive = nil, 0
	if code == CloseSlowConsumer {
		c.queue, c.queued = nil, 0
	}
	c.closing = make(chan struct{})
	c.closeCode, c.closeReason = uint16(code), reason
	if c.writing && code != CloseSlowConsumer {
		// The writer sends the close frame after the queue. A slow
		// consumer's writer may be stuck on a full socket: the close
		// starts now and cuts that write short.
		return
	}
	if !c.writing && c.wake != nil {
		// A waiting writer wakes to an empty queue and sends the close.
		c.kickLocked()
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.sendClose()
	}()
}

// sendClose runs the close handshake with the code closeLocked chose.
func (c *conn) sendClose() {
	c.closeOnce.Do(func() {
		defer close(c.closing)
		_ = c.ws.Close(websocket.StatusCode(c.closeCode), c.closeReason)
	})
}

// goLocked runs fn in a goroutine the connection waits for, unless the
// connection is closing. It reports whether fn was started.
func (c *conn) goTracked(fn func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
	return true
}

// serve runs the connection: welcome, then read until it ends, then clean
// up. The hub's connWG counts it.
func (c *conn) serve(inboxSince string) {
	defer c.h.connWG.Done()
	if err := c.start(inboxSince); err != nil {
		c.finish()
		return
	}
	if c.h.opts.OnConnect != nil {
		c.h.opts.OnConnect(c.info)
	}
	c.info.Request = nil
	err := c.readLoop()
	c.finish()
	if c.h.opts.OnDisconnect != nil {
		c.h.opts.OnDisconnect(c.info, err)
	}
}

// start subscribes the connection to its inbox and queues the welcome.
func (c *conn) start(inboxSince string) error {
	since, perr := rtkit.ParseID(inboxSince)
	m := &membership{c: c}
	c.mu.Lock()
	c.inbox = m
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, c.h.opts.WriteTimeout)
	defer cancel()
	resume := inboxSince != "" && perr == nil // a garbage inbox_since starts live
	sub, err := c.h.bp.Subscribe(ctx, inboxTopic(c.info.Identity.User),
		rtkit.SubscribeOptions{Since: since, FromStart: resume && since.IsZero(), MaxReplay: c.h.opts.MaxReplay}, m)
	if err != nil {
		c.h.log.Error("realtime: subscribing to inbox", "conn", c.info.ID, "err", err)
		c.closeWith(websocket.StatusInternalError, "internal error")
		return err
	}
	c.mu.Lock()
	m.sub = sub
	c.mu.Unlock()
	b := []byte(`{"op":"welcome"`)
	b = appendField(b, "conn", c.info.ID)
	b = appendField(b, "user", c.info.Identity.User)
	// The inbox position before the recovered directs (queued after the
	// welcome): what the client resumed from, or where live delivery starts.
	pos := sub.Position()
	if resume {
		pos = since
	}
	b = appendField(b, "inbox", positionText(pos))
	b = appendBool(b, "recovered", inboxSince == "" || (perr == nil && sub.Recovered()))
	b = append(b, `,"ping":`...)
	b = strconv.AppendInt(b, c.h.opts.PingInterval.Milliseconds(), 10)
	m.markReady(append(b, '}'), nil)
	return nil
}

// positionText is a position as the protocol sends it: "0-0" before any
// message, so that a client can always resume from what it was told.
func positionText(id rtkit.ID) string {
	if id.IsZero() {
		return "0-0"
	}
	return id.String()
}

// inboxMessage handles a message on the user's inbox: a direct message is
// delivered; a kick closes the connection.
func (c *conn) inboxMessage(msg *rtkit.Message) {
	op, rest := envelopeOp(msg.Data)
	switch {
	case bytes.Equal(op, opDirect):
		c.inbox.deliver(msg, nil)
	case bytes.Equal(op, opKick):
		reason := "disconnected by the server"
		var k struct{ Reason string }
		if json.Unmarshal(append(append([]byte(nil), opKick...), rest...), &k) == nil && k.Reason != "" {
			reason = truncate(k.Reason, 100)
		}
		c.closeWith(CloseKicked, reason)
	}
}

var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readLoop reads frames until the connection ends. A buffer is taken from
// a pool only while a frame is being handled, so an idle connection holds
// none.
func (c *conn) readLoop() error {
	for {
		// No context: with one, every read would register a callback on it
		// (memory held by every idle connection). Closing the WebSocket
		// ends the read instead.
		typ, r, err := c.ws.Reader(context.Background())
		if err != nil {
			return err
		}
		c.lastSeen.Store(time.Now().UnixNano())
		if typ != websocket.MessageText {
			c.closeWith(websocket.StatusUnsupportedData, "binary frames are not supported")
			return errors.New("realtime: binary frame")
		}
		bp := readBufs.Get().(*[]byte)
		buf, err := readAll(r, (*bp)[:0])
		if err == nil {
			decodeFrame(buf, c.handle)
		}
		*bp = buf[:0]
		if cap(buf) <= 64<<10 {
			readBufs.Put(bp)
		}
		if err != nil {
			return err
		}
	}
}

func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// finish tears the connection down: leaves every room (with presence
// leave events), ends the inbox subscription, closes the socket and waits
// for the connection's goroutines.
func (c *conn) finish() {
	c.mu.Lock()
	c.closed = true
	if c.wake != nil {
		c.kickLocked() // a waiting writer ends
	}
	rooms := c.rooms
	c.rooms = nil
	inbox := c.inbox
	closing := c.closing
	c.mu.Unlock()
	if closing != nil {
		// Let the close handshake carry its code to the peer (it gives up
		// after 5 seconds) before the socket is dropped.
		<-closing
	}
	if inbox != nil && inbox.sub != nil {
		inbox.sub.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.h.opts.WriteTimeout)
	defer cancel()
	for _, m := range rooms {
		c.leaveRoom(ctx, m)
	}
	c.cancel()
	_ = c.ws.CloseNow()
	c.wg.Wait()
	c.h.unregister(c)
}

func (c *conn) member() Member {
	return Member{User: c.info.Identity.User, Conn: c.info.ID, Meta: c.info.Identity.Meta}
}

// leaveRoom ends a membership: subscription, presence entry, and the
// leave in the room's next presence event.
func (c *conn) leaveRoom(ctx context.Context, m *membership) {
	if m.sub != nil {
		m.sub.Close()
	}
	c.h.rooms.release(m.room)
	if err := c.h.presence.Remove(ctx, m.room.name, c.info.ID); err != nil {
		c.h.log.Warn("realtime: removing presence", "room", m.room.name, "err", err)
	}
	c.h.presenceChanged(m.room.name, c.member(), false)
}
