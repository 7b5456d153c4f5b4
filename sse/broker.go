package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/rtkit/rtkit"
)

// ErrBrokerClosed is returned by Publish after Shutdown.
var ErrBrokerClosed = errors.New("sse: broker shut down")

var errReserved = errors.New("sse: reserved topic")

// ResetEvent is the type of the event a stream sends, before anything
// else, when it cannot resume every topic from the client's Last-Event-ID
// (the ID fell out of history): messages were lost, and the page should
// reload its state. Its data is a JSON array of the topics concerned:
//
//	es.addEventListener("rtkit-reset", (e) => reloadEverything());
const ResetEvent = "rtkit-reset"

// LastEventIDParam is the query parameter a client that cannot set the
// Last-Event-ID header (a first connection from a page that saved the ID
// itself, say) uses instead.
const LastEventIDParam = "last_event_id"

// OnResetParam is the query parameter that chooses what a stream does for
// a topic it cannot resume (the topics of its [ResetEvent]): by default it
// replays the topic's retained history after the reset event; with
// on_reset=live it starts at the topic's newest message instead, for a
// page that reloads its state on reset and would otherwise apply the
// replayed events twice:
//
//	new EventSource("/events?topic=orders&on_reset=live")
const OnResetParam = "on_reset"

// Options configure a [Broker]. The zero value streams the topics named by
// the "topic" query parameters, with no authorization: set Authorize for
// anything real.
type Options struct {
	// Backplane carries events between nodes and keeps their history.
	// Default: a new [rtkit.MemoryBackplane], closed by Shutdown.
	Backplane rtkit.Backplane
	// Topics returns the topics a request streams. Default: the values of
	// the "topic" query parameter. An error is answered with 400.
	Topics func(r *http.Request) ([]string, error)
	// Authorize decides whether the request may stream topic. An error
	// refuses the whole request with 403 before the stream starts.
	// Default: allow every topic except those rtkit uses internally
	// ([rtkit.ReservedTopic]: the realtime hub's inboxes "inbox:*", the
	// tasks runner's "tasks" and "tasks:*", "rtkit-*" and "rtkit:*"), which
	// get 403; an Authorize hook decides those too (a task dashboard
	// allows "tasks" to its operators, say). Set Authorize (or Topics)
	// whenever clients may not read everything.
	Authorize func(r *http.Request, topic string) error
	// Expires, if set, returns when the request's credentials expire: the
	// stream ends then, so that the client reconnects and is authorized
	// again. A zero time means never.
	Expires func(r *http.Request) time.Time
	// MaxLifetime, if positive, ends every stream after about this long
	// (±10%, so that reconnects spread out); clients reconnect and resume.
	MaxLifetime time.Duration
	// Heartbeat is how long a stream may stay silent before a comment is
	// sent, so that proxies keep it open and dead clients are found.
	// Default 15s.
	Heartbeat time.Duration
	// Retry is the reconnection delay the stream suggests to clients when
	// it starts. Default 2s.
	Retry time.Duration
	// WriteTimeout bounds each write; a client that does not take the data
	// in time is dropped. Default 10s. (The deadline is renewed when less
	// than WriteTimeout of it is left, to a quarter more, so that a busy
	// stream sets it now and then rather than on every write: a write gets
	// between WriteTimeout and 1.25 × WriteTimeout.)
	WriteTimeout time.Duration
	// QueueBytes bounds the data of the events waiting to be written to
	// one stream, counted as published (framing, "data: " per line, is not
	// counted). An event always fits an empty queue, so any event Publish
	// accepts (up to the backplane's MaxMessageSize, 1 MiB by default)
	// reaches a reader that keeps up; keep QueueBytes at least that large
	// so that a burst of large events does not drop streams. A stream over
	// it is dropped: the write under way finishes, the stream ends with a
	// retry hint and a clean end of the response, and the client resumes
	// from history when it reconnects. Default 1 MiB.
	QueueBytes int
	// MaxReplay caps the events one resume replays per topic (the newest
	// ones; older ones are reported with a reset event, as if they had left
	// history). Replayed events are encoded and written a chunk (64 KiB) at
	// a time, so a resume costs the node about one chunk plus a pointer per
	// waiting event, whatever the history holds. Default 1000.
	MaxReplay int
	// MaxTopics bounds the topics of one stream. Default 32.
	MaxTopics int
	// MaxStreamsPerIP bounds the streams from one client address (the
	// host of the request's RemoteAddr). Default 0: no limit, because
	// behind a reverse proxy every client has the proxy's address. MaxStreams
	// bounds the streams of this node; default 100,000. A request over a
	// limit gets what a request during Shutdown gets: 200, a randomized
	// retry hint (Retry plus up to 3 s) and an empty stream, so that the
	// client comes back later instead of giving up (EventSource gives up
	// for good on any other status).
	MaxStreamsPerIP int
	MaxStreams      int
	// NoHijack keeps every stream inside net/http. By default a stream
	// over HTTP/1.x takes its connection over (http.ResponseController's
	// Hijack) once it is subscribed and writes the response itself, so
	// that an idle stream keeps no net/http goroutine, request or buffer:
	// about 4.5 KB per idle stream instead of 28 KB. A hijacked stream's
	// response is chunked (HTTP/1.1; HTTP/1.0: delimited by the end of the
	// connection) with Connection: close, middleware that wraps the
	// ResponseWriter sees none of its writes, and http.Server's Shutdown
	// and Close leave it alone (Broker.Shutdown ends it); what the client
	// sends on the connection after its request is read and discarded.
	// HTTP/2 streams, and streams whose ResponseWriter cannot hijack, stay
	// in net/http.
	NoHijack bool
	// OnStream, if set, is called when a stream starts (subscribed, its
	// response about to begin), with its request; the function it
	// returns, if not nil, is called once when the stream ends, whatever
	// ends it (the client, its lifetime, a slow-consumer drop, Shutdown,
	// which returns after it). Count who is connected with it, not with a
	// wrapper around ServeHTTP: a hijacked stream outlives its ServeHTTP
	// call (see NoHijack).
	OnStream func(r *http.Request) (ended func())
	// Logger receives stream errors. Default slog.Default().
	Logger *slog.Logger
}

// Broker is a Server-Sent Events broker and an [http.Handler]: mount it on
// any mux, e.g. mux.Handle("GET /events", broker). It is safe for
// concurrent use.
//
// Nothing runs for an idle stream but the reader of its connection (over
// HTTP/1.x the stream takes the connection over from net/http, see
// Options.NoHijack). An event for an idle stream of one topic on a plain
// TCP or Unix socket is written by one of the broker's flush workers (at
// most GOMAXPROCS, running while there are such events and ending when
// there are none) with one write that does not wait on the socket; what
// the socket does not take at once, and any other event or heartbeat,
// starts a writer goroutine, which writes everything queued in one write
// and one flush and ends when the queue is empty. Events of a topic are
// encoded once per node and the same bytes written to every stream of
// the topic (a stream of one topic writes them whole, id included). A
// stream that falls QueueBytes behind is dropped with a retry hint; its
// client reconnects with Last-Event-ID and misses nothing.
type Broker struct {
	opts    Options
	bp      rtkit.Backplane
	ownBP   bool
	log     *slog.Logger
	closing atomic.Bool
	streams sync.WaitGroup
	closeBP sync.Once

	mu     sync.Mutex
	topics map[string]*topicCache
	live   map[*stream]struct{} // streams started, for Shutdown
	active int
	open   int            // streams counted against MaxStreams
	perIP  map[string]int // streams per client address

	published, written, dropped atomic.Int64

	flush flushQueue
}

// flushQueue holds the streams that have one whole event to write and
// nothing else (stream.enqueue): a few flush workers, started as streams
// come and ending when there are none, write each stream's event without
// waiting on its socket, so that an event at a steady rate reaches an
// idle stream without a goroutine started for it. What a socket does not
// take at once goes to the stream's writer goroutine.
type flushQueue struct {
	mu      sync.Mutex
	streams []*stream
	spare   []*stream
	workers int
	running sync.WaitGroup // the workers, for Shutdown
	work    func()         // f.run, made once: go f.run() would allocate it per start
}

// push queues s (whose writing is set) for a flush worker.
func (f *flushQueue) push(s *stream) {
	f.mu.Lock()
	f.streams = append(f.streams, s)
	start := f.workers < maxFlushWorkers
	if start {
		f.workers++
		f.running.Add(1)
	}
	f.mu.Unlock()
	if start {
		go f.work()
	}
}

func (f *flushQueue) init() { f.work = f.run }

// maxFlushWorkers bounds the flush workers of a broker: writes that do
// not wait need no more than the CPUs.
var maxFlushWorkers = max(runtime.GOMAXPROCS(0), 1)

// run flushes queued streams until there are none.
func (f *flushQueue) run() {
	var list []*stream
	for {
		f.mu.Lock()
		if cap(list) > cap(f.spare) {
			f.spare = list[:0] // the larger array, for the next list
		}
		if len(f.streams) == 0 {
			f.workers--
			f.mu.Unlock()
			f.running.Done()
			return
		}
		list, f.streams, f.spare = f.streams, f.spare, nil
		f.mu.Unlock()
		for i, s := range list {
			s.flushNow()
			list[i] = nil
		}
	}
}

// NewBroker returns a Broker configured by opts. It starts no goroutine.
func NewBroker(opts Options) *Broker {
	b := &Broker{opts: opts, bp: opts.Backplane, log: opts.Logger, topics: make(map[string]*topicCache),
		live: make(map[*stream]struct{}), perIP: make(map[string]int)}
	if b.bp == nil {
		b.bp, b.ownBP = rtkit.NewMemoryBackplane(rtkit.MemoryOptions{}), true
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.flush.init()
	o := &b.opts
	if o.Topics == nil {
		o.Topics = func(r *http.Request) ([]string, error) { return r.URL.Query()["topic"], nil }
	}
	setDefault(&o.Heartbeat, 15*time.Second)
	setDefault(&o.Retry, 2*time.Second)
	setDefault(&o.WriteTimeout, 10*time.Second)
	setDefault(&o.QueueBytes, 1<<20)
	setDefault(&o.MaxTopics, 32)
	setDefault(&o.MaxStreams, 100_000)
	setDefault(&o.MaxReplay, rtkit.DefaultHistorySize)
	return b
}

func setDefault[T int | time.Duration](p *T, def T) {
	if *p <= 0 {
		*p = def
	}
}

// Stats are counters of one node's broker.
type Stats struct {
	Streams   int   // streams subscribed to their topics and streaming
	Published int64 // events published through this broker
	Written   int64 // events written to streams
	Dropped   int64 // streams dropped as slow consumers
}

// Stats returns this node's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	n := b.active
	b.mu.Unlock()
	return Stats{Streams: n, Published: b.published.Load(), Written: b.written.Load(), Dropped: b.dropped.Load()}
}

// Publish sends e to every stream of topic on every node and keeps it in
// the topic's history. e.ID is ignored (the backplane assigns IDs);
// e.Retry is not carried. A type with a line break or NUL, or a type or
// data that is not valid UTF-8, is refused with an error wrapping
// [ErrInvalidEvent]. After Shutdown it returns [ErrBrokerClosed].
func (b *Broker) Publish(ctx context.Context, topic string, e Event) (rtkit.ID, error) {
	if err := checkField("event type", e.Type); err != nil {
		return rtkit.ID{}, err
	}
	if err := checkData(e.Data); err != nil {
		return rtkit.ID{}, err
	}
	if b.closing.Load() {
		return rtkit.ID{}, ErrBrokerClosed
	}
	id, err := b.bp.Publish(ctx, topic, encodePayload(e.Type, e.Data), rtkit.PublishOptions{})
	if err == nil {
		b.published.Add(1)
	}
	return id, err
}

// What an event carries on the backplane: its data, prefixed by its type
// when it has one (or when the data starts with a record separator, so
// that it is never taken for another package's envelope). A payload the
// realtime hub published (its envelope mark, then a JSON object starting
// with {"op":"...") streams as an event of that op's type, so a page can
// listen to a chat room's "msg" and "presence" events; the event's data is
// the JSON object.
const (
	typedPrefix = "\x1esse\x1f"
	hubMark     = "\x1ehub\x1f" // realtime.EnvelopeMark
)

func encodePayload(typ string, data []byte) []byte {
	if typ == "" && (len(data) == 0 || data[0] != '\x1e') {
		return data
	}
	b := make([]byte, 0, len(typedPrefix)+len(typ)+1+len(data))
	b = append(b, typedPrefix...)
	b = append(b, typ...)
	b = append(b, '\x1f')
	return append(b, data...)
}

func decodePayload(p []byte) (typ string, data []byte) {
	if rest, ok := bytes.CutPrefix(p, []byte(typedPrefix)); ok {
		if t, d, ok := bytes.Cut(rest, []byte{'\x1f'}); ok {
			return string(t), d
		}
	}
	if env, ok := bytes.CutPrefix(p, []byte(hubMark)); ok {
		if rest, ok := bytes.CutPrefix(env, []byte(`{"op":"`)); ok {
			if i := bytes.IndexByte(rest, '"'); i > 0 && i <= 32 {
				return string(rest[:i]), env
			}
		}
	}
	return "", p
}

// topicCache encodes each event of a topic once per node.
type topicCache struct {
	refs int
	last atomic.Pointer[cachedBody]
}

type cachedBody struct {
	msg  *rtkit.Message
	body []byte
	// event is the whole event of a persistent message for a stream of
	// this topic alone: its id (the message's ID), body and blank line;
	// chunk is the same framed as one chunk of a chunked body.
	event, chunk []byte
}

// monoBase makes monotonic times int64s: nanoseconds since monoBase.
var monoBase = time.Now()

func mono() int64 { return int64(time.Since(monoBase)) }

// encoded returns m's event, encoded once for every stream of the topic:
// the shared part (event and data fields) and, for a persistent message,
// the whole event as a single-topic stream writes it.
func (t *topicCache) encoded(m *rtkit.Message) *cachedBody {
	if c := t.last.Load(); c != nil && c.msg == m {
		return c
	}
	c := &cachedBody{msg: m}
	if m.Ephemeral() {
		c.body = appendMessageBody(make([]byte, 0, len(m.Data)+16), m)
	} else {
		// Room in front for the chunk header, and after for its CRLF.
		ev := append(make([]byte, chunkRoom, chunkRoom+len(m.Data)+64), "id: "...)
		ev, _ = m.ID.AppendText(ev)
		ev = append(ev, '\n')
		start := len(ev)
		ev = append(appendMessageBody(ev, m), '\n')
		c.body, c.event = ev[start:len(ev)-1:len(ev)-1], ev[chunkRoom:len(ev):len(ev)]
		c.chunk = frameChunk(ev, len(ev)-chunkRoom)
	}
	t.last.Store(c)
	return c
}

// frameChunk frames the n bytes at the end of buf, which has chunkRoom
// bytes of room before them, as one chunk of a chunked body, in place.
func frameChunk(buf []byte, n int) []byte {
	var size [chunkRoom]byte
	hdr := append(strconv.AppendUint(size[:0], uint64(n), 16), '\r', '\n')
	start := len(buf) - n - len(hdr)
	copy(buf[start:], hdr)
	return append(buf[start:], '\r', '\n')
}

// appendMessageBody appends the event and data fields of m's event.
func appendMessageBody(b []byte, m *rtkit.Message) []byte {
	typ, data := decodePayload(m.Data)
	if checkField("event type", typ) != nil {
		typ = ""
	}
	if !utf8.Valid(data) {
		// Published by other code on the backplane: the stream stays UTF-8.
		data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
	}
	return appendBody(b, typ, data)
}

func (b *Broker) acquire(topic string) *topicCache {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[topic]
	if t == nil {
		t = &topicCache{}
		b.topics[topic] = t
	}
	t.refs++
	return t
}

func (b *Broker) release(topic string, t *topicCache) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.refs--; t.refs <= 0 && b.topics[topic] == t {
		delete(b.topics, topic)
	}
}

// ServeHTTP streams the request's topics. Before the stream starts it
// answers 400 (no or invalid topics), 403 (Authorize refused a topic) or
// 405 (not GET); during Shutdown a request gets a retry hint and an empty
// stream, not 503 (which makes browsers give up for good).
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	topics, err := b.opts.Topics(r)
	if err == nil {
		topics, err = canonicalTopics(topics, b.opts.MaxTopics)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, t := range topics {
		err := errReserved
		if b.opts.Authorize != nil {
			err = b.opts.Authorize(r, t)
		} else if !rtkit.ReservedTopic(t) {
			err = nil
		}
		if err != nil {
			http.Error(w, "not allowed to stream "+t, http.StatusForbidden)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "keep-alive")
	h.Del("Content-Encoding")
	h.Del("Content-Length")

	ip := clientIP(r)
	if !b.register(ip) {
		// Shutting down or over a limit: come back later (a status other
		// than 200 would make EventSource give up for good).
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(appendRetry(nil, b.comeBackIn()))
		_, _ = w.Write([]byte("\n"))
		return
	}
	if !newStream(b, w, r, topics, ip).serve() {
		b.unregister(ip)
	} // else the stream goes on: it unregisters when it ends
}

// register counts a stream from ip, unless the broker shuts down or a
// limit is reached.
func (b *Broker) register(ip string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing.Load() || b.open >= b.opts.MaxStreams ||
		(b.opts.MaxStreamsPerIP > 0 && b.perIP[ip] >= b.opts.MaxStreamsPerIP) {
		return false
	}
	b.open++
	b.perIP[ip]++
	b.streams.Add(1)
	return true
}

func (b *Broker) unregister(ip string) {
	b.mu.Lock()
	b.open--
	if b.perIP[ip]--; b.perIP[ip] <= 0 {
		delete(b.perIP, ip)
	}
	b.mu.Unlock()
	b.streams.Done()
}

// clientIP is the host of the request's RemoteAddr.
func clientIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// track counts a stream that is subscribed and starts streaming, for
// Stats and Shutdown; a stream that starts during Shutdown is ended at
// once with a retry hint.
func (b *Broker) track(s *stream) {
	b.mu.Lock()
	b.live[s] = struct{}{}
	b.active++
	closing := b.closing.Load()
	b.mu.Unlock()
	if closing {
		s.end(false, b.comeBackIn())
	}
}

// forget is the end of what track began.
func (b *Broker) forget(s *stream) {
	b.mu.Lock()
	delete(b.live, s)
	b.active--
	b.mu.Unlock()
}

// comeBackIn is the randomized delay Shutdown suggests, spreading the
// reconnects over a few seconds.
func (b *Broker) comeBackIn() time.Duration {
	return b.opts.Retry + jitter(3*time.Second)
}

// canonicalTopics validates topics and sorts them, so that the same set
// always yields the same composite Last-Event-ID.
func canonicalTopics(topics []string, maxTopics int) ([]string, error) {
	if len(topics) == 0 {
		return nil, errors.New("sse: no topic requested")
	}
	if len(topics) > maxTopics {
		return nil, fmt.Errorf("sse: %d topics requested, at most %d", len(topics), maxTopics)
	}
	out := make([]string, 0, len(topics))
	for _, t := range topics {
		if err := rtkit.CheckTopic(t); err != nil {
			return nil, fmt.Errorf("sse: topic %q: %w", truncate(t, 64), err)
		}
		out = append(out, t)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Shutdown ends every stream with a randomized retry hint (so that clients
// come back, spread out, to whichever node serves them next), refuses new
// streams the same way, and waits for the streams to end. It closes the
// backplane only if the broker created it. It returns ctx's error if ctx
// ends first. Shutdown is idempotent.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	first := !b.closing.Swap(true)
	var live []*stream
	if first {
		for s := range b.live {
			live = append(live, s)
		}
	}
	b.mu.Unlock()
	for _, s := range live {
		s.end(false, b.comeBackIn())
	}
	done := make(chan struct{})
	go func() {
		b.streams.Wait()
		b.flush.running.Wait() // no stream is left to queue
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	var err error
	if b.ownBP {
		// Whichever call sees the streams end closes it, once.
		b.closeBP.Do(func() { err = b.bp.Close() })
	}
	return err
}

// formatPositions encodes the stream's position in each topic as the
// event id: the topics' last IDs joined by commas, in the stream's (sorted)
// topic order, "0-0" for a topic with no message yet (never an empty id,
// which would make the client send no Last-Event-ID at all).
func formatPositions(pos []rtkit.ID) string {
	return string(appendPositions(nil, pos))
}

// appendPositions appends what formatPositions returns: written for every
// event of every stream, it allocates nothing.
func appendPositions(b []byte, pos []rtkit.ID) []byte {
	for i, p := range pos {
		if i > 0 {
			b = append(b, ',')
		}
		if p.IsZero() {
			b = append(b, "0-0"...)
			continue
		}
		b, _ = p.AppendText(b)
	}
	return b
}

// parsePositions decodes a Last-Event-ID for n topics; ok is false when it
// does not fit (another topic set, or garbage).
func parsePositions(s string, n int) (pos []rtkit.ID, ok bool) {
	parts := strings.Split(s, ",")
	if len(parts) != n {
		return nil, false
	}
	pos = make([]rtkit.ID, n)
	for i, p := range parts {
		id, err := rtkit.ParseID(p)
		if err != nil {
			return nil, false
		}
		pos[i] = id
	}
	return pos, true
}
