package sse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/rtkit/rtkit"
)

// stream is one client's event stream. Nothing runs for it while it is
// idle but its connection's reader. An event that finds a stream of one
// topic on a plain socket idle is written by one of the broker's flush
// workers (flushQueue), without waiting on the socket; anything else
// (events and heartbeats otherwise, what a socket did not take at once)
// starts a writer goroutine, which writes everything queued in one write
// and one flush and ends when the queue is empty.
//
// Over HTTP/1.x the stream takes its connection over from net/http
// (Hijack) once it is subscribed, writes the response itself and lets
// the request's goroutine end: net/http's buffers, request and goroutine
// stacks are not kept for the stream's whole life. Otherwise (HTTP/2, a
// ResponseWriter that cannot hijack, Options.NoHijack) the request's
// goroutine waits for the stream to end and the writer writes through
// the ResponseWriter.
type stream struct {
	b      *Broker
	ip     string
	topics []string
	caches []*topicCache
	subs   []*rtkit.Subscription
	pos    []rtkit.ID // position per topic, as last written (writer only)

	// Until the stream starts (and for its whole life without a hijack).
	r  *http.Request
	w  http.ResponseWriter
	rc *http.ResponseController

	conn    net.Conn        // the hijacked connection, or nil
	raw     syscall.RawConn // conn's, if it is a plain socket: for writes that do not wait
	chunked bool            // hijacked HTTP/1.1: the body is chunked
	done    chan struct{}   // not hijacked: closed when the stream has ended

	onEnd     func() // what Options.OnStream returned
	writer    func() // s.writeLoop, made once: go s.writeLoop() would allocate it per event
	heartbeat *time.Timer
	lifetime  *time.Timer
	stopCtx   func() bool // not hijacked: stops watching the request's context

	// The writer's own (see writing).
	deadline    time.Time // the write deadline set on the connection
	noDeadlines bool      // the ResponseWriter has no write deadlines
	restEvents  int32     // the events rest finishes
	rest        []byte    // what the socket did not take of a write that did not wait

	mu         sync.Mutex
	queue      []queued
	queued     int  // bytes of live events queued
	recovering bool // subscribing: replayed history is not held to QueueBytes
	started    bool // writers may run
	writing    bool // a writer runs: a writer goroutine, or a flush worker (queued or writing)
	head       []byte
	preamble   []byte
	beat       bool  // a heartbeat comment is due
	lastWrite  int64 // when the writer last wrote (mono)
	ending     bool  // end with a retry hint of hint
	hint       time.Duration
	gone       bool // end without writing anything more
	ended      bool

	rbuf [16]byte // the reader's: what a client sends is discarded
}

// queued is an event waiting to be written (or a gap of topic idx).
type queued struct {
	idx int
	msg *rtkit.Message
	c   *cachedBody // its shared encoding, if any
}

// topicHandler receives one topic's messages for a stream.
type topicHandler struct {
	s   *stream
	idx int
}

func (h topicHandler) HandleMessage(m *rtkit.Message) {
	h.s.enqueue(queued{idx: h.idx, msg: m})
}

func (h topicHandler) HandleGap(rtkit.ID) { h.s.enqueue(queued{idx: h.idx}) }

func newStream(b *Broker, w http.ResponseWriter, r *http.Request, topics []string, ip string) *stream {
	return &stream{b: b, w: w, r: r, rc: http.NewResponseController(w), topics: topics, ip: ip}
}

// enqueue queues an event for the writer. The queue bound counts the
// events' data (as published, before framing), and an event always fits an
// empty queue: an event Publish accepted is deliverable to a reader that
// keeps up, whatever its size or number of lines. A stream over the bound
// is dropped: the write under way finishes (within WriteTimeout), then the
// stream ends with a retry hint and a clean end of the response.
//
// A stream of one topic on a plain socket with nothing else to write
// gives its event to the broker's flush workers (flushQueue) instead of
// starting a writer goroutine.
func (s *stream) enqueue(q queued) {
	s.mu.Lock()
	n := 0
	if q.msg != nil {
		n = len(q.msg.Data)
	}
	switch {
	case s.ending || s.gone || s.ended:
		s.mu.Unlock()
		return
	case s.recovering:
		// What a resuming client missed is bounded by MaxReplay, and it
		// must be able to catch up. Replayed messages are encoded as they
		// are written, a chunk at a time, so a long replay costs the node
		// no more than one chunk.
		s.queue = append(s.queue, q)
	case s.queued > 0 && s.queued+n > s.b.opts.QueueBytes:
		s.b.dropped.Add(1)
		s.endLocked(false, s.b.opts.Retry)
		s.mu.Unlock()
		return
	default:
		if q.msg != nil {
			// Live: every stream of the topic shares the encoded event.
			q.c = s.caches[q.idx].encoded(q.msg)
		}
		s.queue = append(s.queue, q)
		s.queued += n
		if s.raw != nil && s.started && !s.writing && !s.ended && len(s.queue) == 1 &&
			s.whole(q) && s.head == nil && s.preamble == nil && !s.beat {
			s.writing = true
			s.mu.Unlock()
			s.b.flush.push(s)
			return
		}
	}
	s.kickLocked()
	s.mu.Unlock()
}

// whole reports whether q's shared encoding is the whole event as the
// stream writes it, id included: a persistent message, to a stream of its
// topic alone.
func (s *stream) whole(q queued) bool {
	return q.c != nil && q.c.event != nil && len(s.topics) == 1
}

// flushNow is a flush worker's turn as the stream's writer (s.writing is
// set): it writes the whole events at the head of the queue (one: the
// shared bytes as they are; several: copied into one chunk) in one write
// that does not wait on the socket, and leaves what the socket does not
// take, and anything else, to a writer goroutine.
func (s *stream) flushNow() {
	s.mu.Lock()
	// The whole events at the head of the queue, up to writeChunk bytes
	// (at least one): a worker that falls behind writes several at once.
	k, size := 0, 0
	for _, q := range s.queue {
		if !s.whole(q) || (k > 0 && size+len(q.c.event) > writeChunk) {
			break
		}
		k, size = k+1, size+len(q.c.event)
	}
	if k == 0 || s.ending || s.gone || s.beat {
		s.mu.Unlock()
		go s.writer()
		return
	}
	var bp *[]byte
	var buf, p []byte
	if k == 1 {
		// The shared bytes, framed once per node.
		q := s.queue[0]
		s.pos[q.idx] = q.msg.ID
		p = q.c.event
		if s.chunked {
			p = q.c.chunk
		}
	} else {
		bp = writeBufs.Get().(*[]byte)
		buf = append((*bp)[:0], noChunkHeader[:]...)
		for _, q := range s.queue[:k] {
			s.pos[q.idx] = q.msg.ID
			buf = append(buf, q.c.event...)
		}
		if s.chunked {
			p = frameChunk(buf, len(buf)-chunkRoom)
		} else {
			p = buf[chunkRoom:]
		}
	}
	for _, q := range s.queue[:k] {
		if q.msg != nil {
			s.queued -= len(q.msg.Data)
		}
	}
	left := copy(s.queue, s.queue[k:])
	clear(s.queue[left:])
	s.queue = s.queue[:left]
	s.mu.Unlock()

	n := tryWrite(s.raw, p)
	if n == len(p) {
		s.b.written.Add(int64(k))
	} else if bp == nil {
		s.rest, s.restEvents = p[n:], 1 // shared bytes, never changed
	} else {
		s.rest, s.restEvents = bytes.Clone(p[n:]), int32(k)
	}
	if bp != nil && cap(buf) <= 2*writeChunk {
		*bp = buf[:0]
		writeBufs.Put(bp)
	}
	now := mono()
	s.mu.Lock()
	if n > 0 {
		s.lastWrite = now
	}
	if s.rest != nil || len(s.queue) > 0 || s.ending || s.gone || s.beat {
		go s.writer()
	} else {
		s.writing = false
	}
	s.mu.Unlock()
}

// kickLocked starts a writer unless one runs (or the stream has not
// started, or has ended).
func (s *stream) kickLocked() {
	if s.started && !s.writing && !s.ended {
		s.writing = true
		go s.writer()
	}
}

// end ends the stream: with a retry hint of hint (what is queued is
// dropped), or, if gone, without writing anything more.
func (s *stream) end(gone bool, hint time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(gone, hint)
}

func (s *stream) endLocked(gone bool, hint time.Duration) {
	if s.ended {
		return
	}
	if gone {
		s.gone = true
	} else if !s.ending {
		s.ending, s.hint = true, hint
	}
	s.queue, s.queued = nil, 0
	s.kickLocked()
}

// lastEventID reads where the client wants to resume.
func (s *stream) lastEventID() string {
	if id := s.r.Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	return s.r.URL.Query().Get(LastEventIDParam)
}

// subscribe subscribes to every topic, resuming from the client's
// Last-Event-ID, and returns the topics it could not resume.
func (s *stream) subscribe(ctx context.Context) (lost []string, err error) {
	n := len(s.topics)
	s.caches = make([]*topicCache, n)
	s.subs = make([]*rtkit.Subscription, 0, n)
	s.pos = make([]rtkit.ID, n)
	since, resume := []rtkit.ID(nil), false
	if last := s.lastEventID(); last != "" {
		since, resume = parsePositions(last, n)
		if !resume {
			lost = slices.Clone(s.topics) // an ID from another topic set: nothing to resume from
		}
	}
	liveOnReset := s.r.URL.Query().Get(OnResetParam) == "live"
	for i, t := range s.topics {
		s.caches[i] = s.b.acquire(t)
		if resume {
			s.pos[i] = since[i]
		} else if err := s.startAtNewest(ctx, i); err != nil {
			return nil, err
		}
		sub, err := s.b.bp.Subscribe(ctx, t, rtkit.SubscribeOptions{Since: s.pos[i], FromStart: s.pos[i].IsZero(), MaxReplay: s.b.opts.MaxReplay}, topicHandler{s, i})
		if err != nil {
			return nil, err
		}
		if resume && !sub.Recovered() {
			lost = append(lost, t)
			if liveOnReset {
				// The client reloads its state: drop the replay and start
				// at the newest message instead.
				sub.Close()
				s.dropQueued(i)
				if err := s.startAtNewest(ctx, i); err != nil {
					return nil, err
				}
				if sub, err = s.b.bp.Subscribe(ctx, t, rtkit.SubscribeOptions{Since: s.pos[i], FromStart: s.pos[i].IsZero()}, topicHandler{s, i}); err != nil {
					return nil, err
				}
			}
		}
		if p := sub.Position(); s.pos[i].Compare(p) > 0 {
			// A Last-Event-ID beyond the topic's newest message (made up,
			// or from a server that lost its history) is not echoed: the
			// stream announces where it really is.
			s.pos[i] = p
		}
		s.subs = append(s.subs, sub)
	}
	return lost, nil
}

// startAtNewest sets topic i's position to its newest message, a real ID
// a reconnect can resume from (zero for an empty topic: then the stream
// resumes from its start).
func (s *stream) startAtNewest(ctx context.Context, i int) error {
	h, err := s.b.bp.History(ctx, s.topics[i], rtkit.HistoryOptions{Limit: 1})
	if err != nil {
		return err
	}
	s.pos[i] = h.Position
	return nil
}

// dropQueued forgets what topic i queued while subscribing.
func (s *stream) dropQueued(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = slices.DeleteFunc(s.queue, func(q queued) bool { return q.idx == i })
}

func (s *stream) close() {
	for _, sub := range s.subs {
		sub.Close()
	}
	for i, c := range s.caches {
		if c != nil {
			s.b.release(s.topics[i], c)
		}
	}
}

// serve subscribes the stream and starts it. It reports whether it took
// the connection over, in which case the stream goes on after serve
// returns; otherwise serve returns when the stream has ended.
func (s *stream) serve() (hijacked bool) {
	ctx, cancel := context.WithTimeout(s.r.Context(), s.b.opts.WriteTimeout)
	s.recovering = true
	lost, err := s.subscribe(ctx)
	cancel()
	if err != nil {
		s.close()
		s.b.log.Error("sse: subscribing", "topics", s.topics, "err", err)
		http.Error(s.w, "could not subscribe", http.StatusServiceUnavailable)
		return false
	}

	// The retry hint and the starting position (an id with no data sets
	// the client's Last-Event-ID without dispatching an event), then the
	// reset event if history did not reach back far enough.
	preamble := appendRetry(nil, s.b.opts.Retry)
	preamble = appendField(preamble, "id", formatPositions(s.pos))
	preamble = append(preamble, '\n')
	if len(lost) > 0 {
		data, _ := json.Marshal(lost)
		preamble = appendBody(preamble, ResetEvent, data)
		preamble = append(preamble, '\n')
	}
	lifetime := s.lifetimeLeft()
	if s.b.opts.OnStream != nil {
		s.onEnd = s.b.opts.OnStream(s.r)
	}

	var head []byte
	if !s.b.opts.NoHijack && s.r.ProtoMajor == 1 {
		head = s.responseHead()
		if conn, _, err := s.rc.Hijack(); err == nil {
			s.conn, s.chunked = conn, s.r.ProtoAtLeast(1, 1)
		} else {
			head = nil
		}
		s.raw = rawConn(s.conn)
	}
	if s.conn == nil {
		s.w.WriteHeader(http.StatusOK)
		s.done = make(chan struct{})
		s.stopCtx = context.AfterFunc(s.r.Context(), func() { s.end(true, 0) })
	} else {
		// The request, the ResponseWriter and net/http's buffers go with
		// the request's goroutine.
		s.r, s.w, s.rc = nil, nil, nil
		s.b.streams.Add(1)
		go s.readLoop()
	}
	s.writer = s.writeLoop
	s.b.track(s)

	s.mu.Lock()
	s.heartbeat = time.AfterFunc(s.b.opts.Heartbeat, s.onHeartbeat)
	if lifetime > 0 {
		s.lifetime = time.AfterFunc(lifetime, func() { s.end(false, s.b.opts.Retry) })
	}
	s.recovering = false
	s.head, s.preamble = head, preamble
	s.started = true
	s.kickLocked()
	s.mu.Unlock()
	if s.conn != nil {
		return true
	}
	<-s.done
	return false
}

// responseHead is the status line and headers of a hijacked stream's
// response, as net/http would write them: the headers set on the
// ResponseWriter, a Date, chunked for HTTP/1.1 (HTTP/1.0: until the
// connection closes), and Connection: close (the connection is not
// reused after the stream).
func (s *stream) responseHead() []byte {
	h := s.w.Header().Clone() // as set, should the Hijack fail
	h.Del("Transfer-Encoding")
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	if s.r.ProtoAtLeast(1, 1) {
		h.Set("Transfer-Encoding", "chunked")
	}
	h.Set("Connection", "close")
	var b bytes.Buffer
	if s.r.ProtoAtLeast(1, 1) {
		b.WriteString("HTTP/1.1 200 OK\r\n")
	} else {
		b.WriteString("HTTP/1.0 200 OK\r\n")
	}
	_ = h.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}

// readLoop reads a hijacked connection until the client goes (or the
// stream closes it), discarding what the client sends.
func (s *stream) readLoop() {
	defer s.b.streams.Done()
	for {
		if _, err := s.conn.Read(s.rbuf[:]); err != nil {
			break
		}
	}
	s.end(true, 0)
}

// onHeartbeat queues a comment if the stream has been silent for a
// heartbeat interval, and otherwise waits for the rest of it: writes do
// not reset the timer.
func (s *stream) onHeartbeat() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.ending || s.gone {
		return
	}
	hb := s.b.opts.Heartbeat
	if s.writing {
		s.heartbeat.Reset(hb)
		return
	}
	if silent := time.Duration(mono() - s.lastWrite); silent < hb {
		s.heartbeat.Reset(hb - silent)
		return
	}
	s.beat = true
	s.kickLocked()
	s.heartbeat.Reset(hb)
}

// writeBufs are the writers' buffers: an idle stream holds none.
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// chunkRoom is the room a write buffer keeps in front for the chunk
// header (up to 8 hex digits and CRLF).
const chunkRoom = 10

var noChunkHeader [chunkRoom]byte

// writeLoop writes what is queued until the queue is empty, then ends.
func (s *stream) writeLoop() {
	bp := writeBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= 2*writeChunk {
			*bp = buf[:0]
			writeBufs.Put(bp)
		}
	}()
	var wrote int64
	var spare []queued
	for {
		if p := s.rest; p != nil {
			// The rest of an event enqueue wrote without waiting: before
			// anything else, even a retry hint (unless the client is gone).
			s.rest = nil
			s.mu.Lock()
			gone := s.gone
			s.mu.Unlock()
			if gone || s.send(p) != nil {
				s.end(true, 0)
			} else {
				s.b.written.Add(int64(s.restEvents))
				wrote = mono()
			}
		}
		s.mu.Lock()
		if wrote != 0 {
			s.lastWrite = wrote
		}
		if s.ending || s.gone {
			gone, hint, head, preamble := s.gone, s.hint, s.head, s.preamble
			s.ended, s.writing = true, false
			s.head, s.preamble, s.queue, s.queued = nil, nil, nil, 0
			s.mu.Unlock()
			if !gone && (head == nil || s.send(head) == nil) {
				buf = append(append(buf[:0], noChunkHeader[:]...), preamble...)
				buf = append(appendRetry(buf, hint), '\n')
				_ = s.sendChunk(buf, true)
			}
			s.finish()
			return
		}
		head, preamble, batch, beat := s.head, s.preamble, s.queue, s.beat
		if head == nil && preamble == nil && len(batch) == 0 && !beat {
			if s.queue == nil {
				// The next event queues into the array of the last
				// batch: no allocation per event per stream.
				s.queue = spare
			}
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.head, s.preamble, s.queue, s.queued, s.beat = nil, nil, spare, 0, false
		spare = nil
		s.mu.Unlock()
		taken := batch
		if head != nil && s.send(head) != nil {
			s.end(true, 0)
			continue
		}
		buf = append(append(buf[:0], noChunkHeader[:]...), preamble...)
		if len(batch) == 0 && preamble == nil {
			buf = appendComment(buf, "")
		}
		for {
			n := 0
			if len(batch) > 0 {
				buf, n = s.appendBatch(buf, batch)
			}
			if s.sendChunk(buf, false) != nil {
				s.end(true, 0)
				break
			}
			s.b.written.Add(int64(n))
			clear(batch[:n])
			batch = batch[n:]
			if len(batch) == 0 {
				break
			}
			buf = append(buf[:0], noChunkHeader[:]...)
		}
		if len(batch) == 0 && cap(taken) <= maxSpare {
			spare = taken[:0] // written and cleared
		}
		wrote = mono()
	}
}

// maxSpare is the largest queue array a stream keeps for reuse.
const maxSpare = 4

// writeChunk is how many bytes of events the stream encodes for one write.
const writeChunk = 64 << 10

// appendBatch encodes queued events, up to writeChunk bytes (at least
// one event): each persistent one with the id of the stream's positions
// after it, each gap as a reset event. It returns how many it encoded.
func (s *stream) appendBatch(buf []byte, batch []queued) ([]byte, int) {
	for i, q := range batch {
		if i > 0 && len(buf) >= writeChunk {
			return buf, i
		}
		if q.msg == nil {
			data, _ := json.Marshal([]string{s.topics[q.idx]})
			buf = appendBody(buf, ResetEvent, data)
			buf = append(buf, '\n')
			continue
		}
		if s.whole(q) {
			s.pos[q.idx] = q.msg.ID
			buf = append(buf, q.c.event...)
			continue
		}
		if !q.msg.Ephemeral() {
			s.pos[q.idx] = q.msg.ID
			buf = append(buf, "id: "...)
			buf = appendPositions(buf, s.pos)
			buf = append(buf, '\n')
		}
		if q.c != nil {
			buf = append(buf, q.c.body...)
		} else {
			buf = appendMessageBody(buf, q.msg)
		}
		buf = append(buf, '\n')
	}
	return buf, len(batch)
}

// sendChunk writes buf[chunkRoom:] as one piece of the body (a chunk of a
// hijacked HTTP/1.1 response), and, if last, the end of the body.
func (s *stream) sendChunk(buf []byte, last bool) error {
	if s.conn == nil || !s.chunked {
		return s.send(buf[chunkRoom:])
	}
	chunk := frameChunk(buf, len(buf)-chunkRoom)
	if last {
		chunk = append(chunk, "0\r\n\r\n"...)
	}
	return s.send(chunk)
}

// send writes p within WriteTimeout (and flushes it, through a
// ResponseWriter).
func (s *stream) send(p []byte) error {
	s.renewDeadline()
	if s.conn != nil {
		_, err := s.conn.Write(p)
		return err
	}
	if _, err := s.w.Write(p); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// renewDeadline makes sure the next write has at least WriteTimeout. The
// deadline is set a quarter further, so that a stream writing many times
// a second sets it only now and then.
func (s *stream) renewDeadline() {
	if s.noDeadlines {
		return
	}
	wt := s.b.opts.WriteTimeout
	now := time.Now()
	if now.Add(wt).Before(s.deadline) {
		return
	}
	s.deadline = now.Add(wt + wt/4)
	var err error
	if s.conn != nil {
		err = s.conn.SetWriteDeadline(s.deadline)
	} else {
		err = s.rc.SetWriteDeadline(s.deadline)
	}
	if errors.Is(err, http.ErrNotSupported) {
		// A writer without deadlines (a wrapping ResponseWriter with no
		// Unwrap): go on without them; a stuck client then holds its
		// stream until the connection dies.
		s.noDeadlines = true
		s.b.log.Warn("sse: the ResponseWriter does not support write deadlines; stuck clients are found only when their connection fails")
	}
}

// finish releases the stream once its writer has written the last bytes.
func (s *stream) finish() {
	s.heartbeat.Stop()
	if s.lifetime != nil {
		s.lifetime.Stop()
	}
	s.b.forget(s)
	s.close()
	if s.onEnd != nil {
		s.onEnd()
	}
	if s.conn == nil {
		s.stopCtx()
		close(s.done) // ServeHTTP returns
		return
	}
	_ = s.conn.Close()
	s.b.unregister(s.ip)
}

// lifetimeLeft is how long the stream may last: MaxLifetime with ±10%
// jitter, or until the credentials expire.
func (s *stream) lifetimeLeft() time.Duration {
	var d time.Duration
	if m := s.b.opts.MaxLifetime; m > 0 {
		d = m - m/10 + jitter(m/5)
	}
	if s.b.opts.Expires != nil {
		if exp := s.b.opts.Expires(s.r); !exp.IsZero() {
			left := max(time.Until(exp), time.Millisecond)
			if d == 0 || left < d {
				d = left
			}
		}
	}
	return d
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
