package sse

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtkit/rtkit"
)

// stream is one client's event stream, written by its request's goroutine.
type stream struct {
	b      *Broker
	w      http.ResponseWriter
	rc     *http.ResponseController
	r      *http.Request
	topics []string
	caches []*topicCache
	subs   []*rtkit.Subscription
	pos    []rtkit.ID // position per topic, as last written

	mu         sync.Mutex
	queue      []queued
	queued     int  // bytes of live events queued
	recovering bool // subscribing: replayed history is not held to QueueBytes
	overflow   bool
	wake       chan struct{}

	deadlines atomic.Bool // the writer supports write deadlines
}

// queued is an event waiting to be written (or a gap of topic idx).
type queued struct {
	idx  int
	msg  *rtkit.Message
	body []byte
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

func newStream(b *Broker, w http.ResponseWriter, r *http.Request, topics []string) *stream {
	return &stream{b: b, w: w, r: r, rc: http.NewResponseController(w), topics: topics,
		wake: make(chan struct{}, 1)}
}

// enqueue queues an event for the writer. The queue bound counts the
// events' data (as published, before framing), and an event always fits an
// empty queue: an event Publish accepted is deliverable to a reader that
// keeps up, whatever its size or number of lines. A stream over the bound
// is dropped: the write under way finishes (within WriteTimeout), then the
// stream ends with a retry hint and a clean end of the response.
func (s *stream) enqueue(q queued) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if q.msg != nil {
		n = len(q.msg.Data)
	}
	switch {
	case s.overflow:
		return
	case s.recovering:
		// What a resuming client missed is bounded by MaxReplay, and it
		// must be able to catch up. Replayed messages are encoded as they
		// are written, a chunk at a time, so a long replay costs the node
		// no more than one chunk.
		s.queue = append(s.queue, q)
	case s.queued > 0 && s.queued+n > s.b.opts.QueueBytes:
		s.overflow = true
		s.queue, s.queued = nil, 0
		s.b.dropped.Add(1)
	default:
		if q.msg != nil {
			// Live: every stream of the topic shares the encoded body.
			q.body = s.caches[q.idx].body(q.msg)
		}
		s.queue = append(s.queue, q)
		s.queued += n
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
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

// run serves the stream until the client goes, the stream's lifetime ends,
// it falls behind, or the broker shuts down.
func (s *stream) run() {
	defer s.close()
	s.deadlines.Store(true)
	ctx, cancel := context.WithTimeout(s.r.Context(), s.b.opts.WriteTimeout)
	s.recovering = true
	lost, err := s.subscribe(ctx)
	cancel()
	s.mu.Lock()
	s.recovering = false
	s.mu.Unlock()
	if err != nil {
		s.b.log.Error("sse: subscribing", "topics", s.topics, "err", err)
		http.Error(s.w, "could not subscribe", http.StatusServiceUnavailable)
		return
	}
	s.w.WriteHeader(http.StatusOK)

	// The retry hint and the starting position (an id with no data sets
	// the client's Last-Event-ID without dispatching an event), then the
	// reset event if history did not reach back far enough.
	buf := appendRetry(nil, s.b.opts.Retry)
	buf = appendField(buf, "id", formatPositions(s.pos))
	buf = append(buf, '\n')
	if len(lost) > 0 {
		data, _ := json.Marshal(lost)
		buf = appendBody(buf, ResetEvent, data)
		buf = append(buf, '\n')
	}
	if !s.write(buf) {
		return
	}
	s.b.streaming(1)
	defer s.b.streaming(-1)

	heartbeat := time.NewTimer(s.b.opts.Heartbeat)
	defer heartbeat.Stop()
	var end <-chan time.Time
	if d := s.lifetime(); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		end = t.C
	}
	buf = buf[:0]
	for {
		select {
		case <-s.wake:
		case <-heartbeat.C:
			if !s.write(appendComment(buf[:0], "")) {
				return
			}
			heartbeat.Reset(s.b.opts.Heartbeat)
			continue
		case <-s.r.Context().Done():
			return
		case <-s.b.ctx.Done():
			s.write(append(appendRetry(buf[:0], s.b.comeBackIn()), '\n'))
			return
		case <-end:
			s.write(append(appendRetry(buf[:0], s.b.opts.Retry), '\n'))
			return
		}
		// Let publishers queue more: one write and one flush carry it all.
		runtime.Gosched()
		s.mu.Lock()
		batch, overflow := s.queue, s.overflow
		s.queue, s.queued = nil, 0
		s.mu.Unlock()
		if overflow {
			// The retry hint reaches the client if the socket has room.
			s.write(append(appendRetry(buf[:0], s.b.opts.Retry), '\n'))
			return
		}
		for len(batch) > 0 {
			var n int
			buf, n = s.appendBatch(buf[:0], batch)
			if !s.write(buf) {
				return
			}
			s.b.written.Add(int64(n))
			clear(batch[:n])
			batch = batch[n:]
		}
		heartbeat.Reset(s.b.opts.Heartbeat)
	}
}

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
		if !q.msg.Ephemeral() {
			s.pos[q.idx] = q.msg.ID
			buf = append(buf, "id: "...)
			buf = appendPositions(buf, s.pos)
			buf = append(buf, '\n')
		}
		if q.body != nil {
			buf = append(buf, q.body...)
		} else {
			buf = appendMessageBody(buf, q.msg)
		}
		buf = append(buf, '\n')
	}
	return buf, len(batch)
}

// lifetime is how long the stream may last: MaxLifetime with ±10%
// jitter, or until the credentials expire.
func (s *stream) lifetime() time.Duration {
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

// write writes and flushes p within WriteTimeout. It reports whether the
// stream may go on.
func (s *stream) write(p []byte) bool {
	if s.deadlines.Load() {
		if err := s.rc.SetWriteDeadline(time.Now().Add(s.b.opts.WriteTimeout)); errors.Is(err, http.ErrNotSupported) {
			// A writer without deadlines (a wrapping ResponseWriter with no
			// Unwrap): go on without them; a stuck client then holds its
			// stream until the connection dies.
			s.deadlines.Store(false)
			s.b.log.Warn("sse: the ResponseWriter does not support write deadlines; stuck clients are found only when their connection fails")
		}
	}
	if _, err := s.w.Write(p); err != nil {
		return false
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return false
	}
	return true
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
