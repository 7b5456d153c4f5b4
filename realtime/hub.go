package realtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/rtkit/rtkit"
	"golang.org/x/time/rate"
)

// Identity is who a connection acts for, as Authenticate decides.
type Identity struct {
	// User identifies the user; all connections of a user share their
	// direct messages. It must not be empty.
	User string
	// Meta is shown to other members in presence (a display name, say).
	Meta map[string]string
}

// ActionKind names what a client asks to do.
type ActionKind string

// The actions Authorize is asked about.
const (
	ActionJoin     ActionKind = "join"
	ActionPublish  ActionKind = "pub"
	ActionPresence ActionKind = "presence"
	ActionDirect   ActionKind = "direct"
	ActionCall     ActionKind = "call"
)

// Action is one request Authorize decides on.
type Action struct {
	Kind ActionKind
	// Room for join, pub and presence.
	Room string
	// To is the user a direct message is for.
	To string
	// Method is the called method.
	Method string
	// Ephemeral is set for a pub that skips history.
	Ephemeral bool
}

// Options configure a [Hub]. The zero value is a working single-process
// hub that accepts every connection from its own origin as an anonymous
// user: set Authenticate for anything real.
type Options struct {
	// Backplane carries room messages between nodes and keeps their
	// history. Default: a new [rtkit.MemoryBackplane], closed by
	// Shutdown. A backplane passed here is not closed by the hub.
	Backplane rtkit.Backplane
	// Presence tracks who is in which room across nodes. Default: an
	// in-process [MemoryPresence]; use [NewRedisPresence] with a Redis
	// backplane.
	Presence Presence
	// Authenticate runs before the upgrade and returns the connection's
	// identity, from a header, a cookie or the "token" query parameter.
	// An error refuses the connection with HTTP 401 before any upgrade
	// (403 when the error is an [*Error] with code forbidden). Default:
	// every connection is its own anonymous user.
	Authenticate func(r *http.Request) (Identity, error)
	// Authorize decides each join, pub, presence, direct and call. An error
	// is sent back as a forbidden reply (or as the [*Error] returned); the
	// connection stays. Default: allow, except rooms on topics rtkit uses
	// internally ([rtkit.ReservedTopic]: "tasks", "tasks:*", "rtkit-*",
	// "rtkit:*"), which are forbidden. Whatever Authorize says, pub and
	// presence need the connection to have joined the room, and rooms
	// starting with "inbox:" are refused (bad_request).
	Authorize func(ctx context.Context, id Identity, a Action) error
	// OnConnect and OnDisconnect are called when a connection is
	// established (after its welcome is queued) and when it ends, from the
	// connection's goroutine; they must not block for long. OnDisconnect
	// follows every OnConnect, and only those.
	OnConnect    func(c ConnInfo)
	OnDisconnect func(c ConnInfo, err error)
	// OriginPatterns lists the host patterns (path.Match syntax, e.g.
	// "*.example.com") whose pages may connect, besides the hub's own
	// origin. Origin checks are always on; []string{"*"} allows every
	// origin.
	OriginPatterns []string
	// MaxMessageSize bounds an inbound frame, in bytes; a larger one
	// closes the connection with 1009. Default 64 KiB.
	MaxMessageSize int64
	// SendQueueBytes bounds what may wait to be written to one connection.
	// A connection over it is a slow consumer: it is closed with
	// [CloseSlowConsumer] instead of slowing anyone else. Default 1 MiB.
	SendQueueBytes int
	// InboundRate and InboundBurst limit the objects a connection may send
	// per second. Over the limit, objects get rate_limited replies; a
	// client with more than 3 × InboundBurst objects refused within 10
	// seconds is closed with [CloseRateLimited], after the replies already
	// queued.
	// Defaults 50 per second, burst 100.
	InboundRate  rate.Limit
	InboundBurst int
	// MaxRoomsPerConn bounds the rooms one connection may join. Default 100.
	MaxRoomsPerConn int
	// MaxConnsPerUser bounds one user's connections to this node; more are
	// refused with HTTP 429 before the upgrade. Default 20.
	MaxConnsPerUser int
	// MaxConnsPerIP bounds the connections to this node from one client
	// address (the host of the request's RemoteAddr); more are refused
	// with HTTP 429 before the upgrade. Default 0: no limit, because
	// behind a reverse proxy every client has the proxy's address (set it
	// together with a middleware that puts the client's address from a
	// trusted proxy header into RemoteAddr).
	MaxConnsPerIP int
	// MaxConns bounds the connections to this node; more are refused with
	// HTTP 503 before the upgrade. Default 100,000.
	MaxConns int
	// PingInterval is how long a connection may be silent before the hub
	// pings it; a peer that does not answer within WriteTimeout is dropped
	// (it cannot receive a close frame). Default 25s.
	PingInterval time.Duration
	// WriteTimeout bounds one write, or one burst of writes of what was
	// queued (and a ping's pong): a connection that does not take them
	// within it is dropped. A burst gets between WriteTimeout and twice
	// it: the socket's write deadline is renewed once per WriteTimeout,
	// not per burst. Default 10s.
	WriteTimeout time.Duration
	// Compression lets a client that asks for it (the permessage-deflate
	// extension: browsers ask by default, the Go client with
	// [DialOptions.Compression]) receive compressed frames. A frame of at
	// least CompressionThreshold bytes is then compressed on its own
	// (no context takeover: no compressor is kept per connection, so
	// idle connections cost no more), for that connection: a message is
	// still encoded once per node, but compressed once per member, which
	// costs server CPU for every delivery (several µs for a frame of a few
	// hundred bytes, about what writing it costs). What it saves is large for
	// frames that carry several messages or long text, small for one short
	// message. Default off: frames are never compressed, whatever the
	// client asks.
	Compression bool
	// CompressionThreshold is the smallest frame compressed when
	// Compression is on; smaller frames go as they are. Default 512
	// bytes.
	CompressionThreshold int
	// CallTimeout bounds a call handler. Default 30s.
	CallTimeout time.Duration
	// MaxHistory caps the history a join may ask for. Default 100.
	MaxHistory int
	// MaxReplay caps the messages one rejoin with since (or one
	// inbox_since) replays from history. A client further behind gets the
	// newest MaxReplay messages and "recovered": false, and reloads.
	// Default 1000 (the backplanes' default history size).
	//
	// A replay is queued as the connection drains (half of SendQueueBytes
	// at a time), so it costs the node about SendQueueBytes per
	// connection, not the length of the history; with the memory
	// backplane the messages waiting are shared with its history. With
	// Redis, each rejoin reads its messages (at most MaxReplay) from the
	// stream and holds them until they are queued.
	MaxReplay int
	// PresenceInterval is how long a node gathers the joins and leaves of
	// a room before it sends them to the room's members as one presence
	// event (per room and node, at most one per interval, apart from
	// diffs longer than PresenceLimit, which are split). Default 200ms.
	PresenceInterval time.Duration
	// PresenceLimit is the room size (members on every node together)
	// up to which members get presence diffs and member lists (join and
	// presence replies). Above it they get only the count, when it
	// changed, spaced by one PresenceInterval per PresenceLimit members
	// (at most 25 intervals: 5s at the defaults), so that a large room's
	// count events cost about PresenceLimit deliveries per interval; server
	// code can still list every member with [Hub.Presence]. Default 100.
	PresenceLimit int
	// Logger receives connection errors. Default slog.Default(). Message
	// data and tokens are never logged.
	Logger *slog.Logger
}

// ConnInfo describes a connection to hooks.
type ConnInfo struct {
	ID       string
	Identity Identity
	// Request is the upgrade request (headers, remote address). It is set
	// for OnConnect only and nil afterwards, so that an idle connection
	// does not keep it alive: copy what later hooks need.
	Request *http.Request
}

// CallHandler answers a client's call. Its result is marshalled to JSON as
// the reply's data; an [*Error] chooses the error reply; any other error
// is logged and answered with an internal error.
type CallHandler func(ctx context.Context, c *Call) (any, error)

// Call is one client call.
type Call struct {
	Conn   ConnInfo
	Method string
	Data   json.RawMessage
}

// Stats are counters of one node's hub.
type Stats struct {
	Connections   int   // open connections
	Rooms         int   // rooms with members on this node
	Memberships   int   // room memberships on this node
	MessagesIn    int64 // client objects received
	Published     int64 // messages published to rooms (by clients and Publish), ephemeral ones excluded
	FramesOut     int64 // frames written (each may carry several objects)
	ObjectsOut    int64 // objects written
	SlowConsumers int64 // connections closed as slow consumers
	RateLimited   int64 // objects refused by the inbound rate limit
}

// Hub is a WebSocket room hub and an [http.Handler]: mount it on any mux,
// e.g. mux.Handle("GET /ws", hub). It is safe for concurrent use.
//
// Each connection has one goroutine that reads; a writer goroutine runs
// while the connection has something queued, and waits for the next burst
// while they come less than a second apart, so an idle connection costs
// its reading goroutine and the WebSocket buffers. Messages for a
// room are encoded once per node and the same bytes are queued to every
// local member; a writer joins everything queued into one frame and one
// write. A member that falls SendQueueBytes behind is closed with
// [CloseSlowConsumer] and never slows the room; its client reconnects and
// recovers from history.
type Hub struct {
	opts      Options
	bp        rtkit.Backplane
	ownBP     bool
	presence  Presence
	log       *slog.Logger
	calls     sync.Map // method → CallHandler
	rooms     roomTable
	pbatch    presenceBatch
	ctx       context.Context // cancelled by Shutdown
	cancel    context.CancelFunc
	connWG    sync.WaitGroup // connections (each waits for its own writer and calls)
	loopWG    sync.WaitGroup // the hub's ping, presence and presence event loops
	closing   atomic.Bool
	connsMu   sync.Mutex
	conns     map[*conn]struct{}
	perUser   map[string]int
	perIP     map[string]int
	reserved  int // connections counted by reserve (accepted or being upgraded)
	startOnce sync.Once
	// compression is the permessage-deflate mode offered to clients.
	compression websocket.CompressionMode
	epoch       time.Time // the start of clock

	messagesIn, published, framesOut, objectsOut, slow, limited atomic.Int64
}

// NewHub returns a Hub configured by opts. It starts no goroutine until
// the first connection; Shutdown ends them all.
func NewHub(opts Options) *Hub {
	h := &Hub{opts: opts, bp: opts.Backplane, presence: opts.Presence, log: opts.Logger,
		conns: make(map[*conn]struct{}), perUser: make(map[string]int), perIP: make(map[string]int)}
	o := &h.opts
	if h.bp == nil {
		h.bp, h.ownBP = rtkit.NewMemoryBackplane(rtkit.MemoryOptions{}), true
	}
	if h.presence == nil {
		h.presence = NewMemoryPresence()
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	setDefault(&o.MaxMessageSize, 64<<10)
	setDefault(&o.SendQueueBytes, 1<<20)
	setDefault(&o.InboundRate, 50)
	setDefault(&o.InboundBurst, 100)
	setDefault(&o.MaxRoomsPerConn, 100)
	setDefault(&o.MaxConnsPerUser, 20)
	setDefault(&o.MaxConns, 100_000)
	setDefault(&o.PingInterval, 25*time.Second)
	setDefault(&o.WriteTimeout, 10*time.Second)
	setDefault(&o.CompressionThreshold, 512)
	if o.Compression {
		h.compression = websocket.CompressionNoContextTakeover
	}
	setDefault(&o.CallTimeout, 30*time.Second)
	setDefault(&o.MaxHistory, 100)
	setDefault(&o.MaxReplay, rtkit.DefaultHistorySize)
	setDefault(&o.PresenceInterval, 200*time.Millisecond)
	setDefault(&o.PresenceLimit, 100)
	h.rooms.init()
	h.pbatch.init()
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.epoch = time.Now()
	return h
}

func setDefault[T int | int64 | time.Duration | rate.Limit](p *T, def T) {
	if *p <= 0 {
		*p = def
	}
}

// HandleCall registers the handler for a call method. It panics if the
// method is empty or already has a handler: register each method once,
// before serving.
func (h *Hub) HandleCall(method string, fn CallHandler) {
	if method == "" || fn == nil {
		panic("realtime: HandleCall needs a method name and a handler")
	}
	if _, dup := h.calls.LoadOrStore(method, fn); dup {
		panic(fmt.Sprintf("realtime: HandleCall(%q) called twice; register each method once", method))
	}
}

// ServeHTTP authenticates the request, upgrades it to a WebSocket and
// serves the connection. Failures before the upgrade are plain HTTP: 401
// or 403 (authentication), 403 (origin), 429 (too many connections for
// the user or the address), 503 (shutting down, or MaxConns reached).
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.closing.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	id := Identity{User: "anon-" + uuid.NewString()}
	if h.opts.Authenticate != nil {
		var err error
		id, err = h.opts.Authenticate(r)
		if err == nil && id.User == "" {
			err = errors.New("empty user")
		}
		if err != nil {
			status := http.StatusUnauthorized
			var e *Error
			if errors.As(err, &e) && e.Code == CodeForbidden {
				status = http.StatusForbidden
			}
			http.Error(w, http.StatusText(status), status)
			return
		}
	}
	ip := clientIP(r)
	if status, msg := h.reserve(id.User, ip); status != 0 {
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		http.Error(w, msg, status)
		return
	}
	var nc net.Conn
	ws, err := websocket.Accept(withSmallReader(w, &nc), r, &websocket.AcceptOptions{
		OriginPatterns:       h.opts.OriginPatterns,
		CompressionMode:      h.compression,
		CompressionThreshold: h.opts.CompressionThreshold,
		Subprotocols:         []string{CompactSubprotocol},
	})
	if err != nil {
		// Accept has written the response (403 for a bad origin).
		h.release(id.User, ip)
		return
	}
	ws.SetReadLimit(h.opts.MaxMessageSize)
	c := newConn(h, ws, ConnInfo{ID: newConnID(), Identity: id, Request: r})
	c.ip, c.nc = ip, nc
	if !h.register(c) {
		h.release(id.User, ip)
		_ = ws.Close(websocket.StatusGoingAway, "shutting down")
		return
	}
	// The handler returns; the connection lives on in its own goroutine,
	// whose stack is shallower than the HTTP server's.
	go c.serve(r.URL.Query().Get("inbox_since"))
}

func newConnID() string {
	id := uuid.Must(uuid.NewV7())
	return id.String()
}

// reserve counts a connection of user from ip against the limits, or
// returns the HTTP status and message that refuse it.
func (h *Hub) reserve(user, ip string) (int, string) {
	h.connsMu.Lock()
	defer h.connsMu.Unlock()
	switch {
	case h.reserved >= h.opts.MaxConns:
		return http.StatusServiceUnavailable, "too many connections to this server"
	case h.perUser[user] >= h.opts.MaxConnsPerUser:
		return http.StatusTooManyRequests, "too many connections for this user"
	case h.opts.MaxConnsPerIP > 0 && h.perIP[ip] >= h.opts.MaxConnsPerIP:
		return http.StatusTooManyRequests, "too many connections from this address"
	}
	h.reserved++
	h.perUser[user]++
	h.perIP[ip]++
	return 0, ""
}

func (h *Hub) release(user, ip string) {
	h.connsMu.Lock()
	defer h.connsMu.Unlock()
	h.reserved--
	if h.perUser[user]--; h.perUser[user] <= 0 {
		delete(h.perUser, user)
	}
	if h.perIP[ip]--; h.perIP[ip] <= 0 {
		delete(h.perIP, ip)
	}
}

// clientIP is the host of the request's RemoteAddr.
func clientIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// register adds c unless the hub is shutting down; the hub's WaitGroup
// then counts c's goroutine.
func (h *Hub) register(c *conn) bool {
	h.connsMu.Lock()
	defer h.connsMu.Unlock()
	if h.closing.Load() {
		return false
	}
	h.conns[c] = struct{}{}
	h.connWG.Add(1)
	h.startOnce.Do(func() {
		h.loopWG.Add(3)
		go h.pingLoop()
		go h.presenceLoop()
		go h.presenceEventLoop()
	})
	return true
}

func (h *Hub) unregister(c *conn) {
	h.connsMu.Lock()
	delete(h.conns, c)
	h.connsMu.Unlock()
	h.release(c.info.Identity.User, c.ip)
}

// Publish sends data, marshalled to JSON, to every member of room on
// every node, as a message from the server. It returns the message's ID.
// Invalid UTF-8 in the JSON (a [json.RawMessage] can carry some) is
// replaced by U+FFFD, as json.Marshal does for strings: clients get text
// frames, which must be UTF-8.
func (h *Hub) Publish(ctx context.Context, room string, data any) (rtkit.ID, error) {
	return h.publish(ctx, room, data, false)
}

// PublishEphemeral sends data, marshalled to JSON, to the members of room
// on every node that are connected now, as a message from the server,
// without keeping it in history: for state that is only worth its latest
// value (a cursor, a progress bar, a score) and must not push real
// messages out of the history. Members receive it as a "msg" with
// "ephemeral": true and no "id"; a client that is disconnected when it
// is sent never gets it, not even on resume. It is not counted in
// [Stats].Published. Data is handled as by [Hub.Publish].
func (h *Hub) PublishEphemeral(ctx context.Context, room string, data any) error {
	_, err := h.publish(ctx, room, data, true)
	return err
}

func (h *Hub) publish(ctx context.Context, room string, data any, ephemeral bool) (rtkit.ID, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return rtkit.ID{}, fmt.Errorf("realtime: publish to %q: %w", room, err)
	}
	if !utf8.Valid(raw) {
		raw = bytes.ToValidUTF8(raw, replacementChar)
	}
	if err := rtkit.CheckTopic(room); err != nil {
		return rtkit.ID{}, err
	}
	id, err := h.bp.Publish(ctx, room, msgEnvelope(opMsg, room, Sender{}, raw), rtkit.PublishOptions{Ephemeral: ephemeral})
	if err == nil && !ephemeral {
		h.published.Add(1)
	}
	return id, err
}

// History returns up to limit of the room's most recent messages, oldest
// first.
func (h *Hub) History(ctx context.Context, room string, limit int) ([]Message, error) {
	hist, err := h.bp.History(ctx, room, rtkit.HistoryOptions{Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]Message, 0, len(hist.Messages))
	for _, m := range hist.Messages {
		if msg, ok := decodeMessage(room, m); ok {
			out = append(out, msg)
		}
	}
	return out, nil
}

// Presence returns the members of room across all nodes, however many
// (PresenceLimit bounds only what clients are sent).
func (h *Hub) Presence(ctx context.Context, room string) ([]Member, error) {
	if err := rtkit.CheckTopic(room); err != nil {
		return nil, err
	}
	return h.presence.List(ctx, room)
}

// PresenceCount returns the number of members of room across all nodes,
// with the Presence's [PresenceCounter] when it has one (O(1) in memory,
// one ZCOUNT on Redis).
func (h *Hub) PresenceCount(ctx context.Context, room string) (int, error) {
	if err := rtkit.CheckTopic(room); err != nil {
		return 0, err
	}
	return countMembers(ctx, h.presence, room)
}

// Disconnect closes every connection of user, on every node, with
// [CloseKicked] and reason.
func (h *Hub) Disconnect(ctx context.Context, user, reason string) error {
	_, err := h.bp.Publish(ctx, inboxTopic(user), kickEnvelope(reason), rtkit.PublishOptions{Ephemeral: true})
	return err
}

// Stats returns this node's counters.
func (h *Hub) Stats() Stats {
	h.connsMu.Lock()
	n := len(h.conns)
	h.connsMu.Unlock()
	rooms, members := h.rooms.counts()
	return Stats{
		Connections: n, Rooms: rooms, Memberships: members,
		MessagesIn: h.messagesIn.Load(), Published: h.published.Load(), FramesOut: h.framesOut.Load(), ObjectsOut: h.objectsOut.Load(),
		SlowConsumers: h.slow.Load(), RateLimited: h.limited.Load(),
	}
}

// Shutdown stops the hub: new upgrades get 503, every connection is closed
// with 1001 (going away) so that clients reconnect elsewhere, presence
// entries of this node are removed, and Shutdown waits for every goroutine
// the hub started. It closes the backplane only if the hub created it. If
// ctx ends first, remaining connections are dropped without the close
// handshake and ctx's error is returned. Shutdown is idempotent.
func (h *Hub) Shutdown(ctx context.Context) error {
	if !h.closing.CompareAndSwap(false, true) {
		if err := waitGroup(ctx, &h.connWG); err != nil {
			return err
		}
		return waitGroup(ctx, &h.loopWG)
	}
	h.connsMu.Lock()
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.connsMu.Unlock()
	for _, c := range conns {
		c.closeWith(websocket.StatusGoingAway, "server shutting down")
	}
	err := waitGroup(ctx, &h.connWG)
	if err != nil {
		for _, c := range conns {
			_ = c.ws.CloseNow()
		}
		h.connWG.Wait()
	}
	h.cancel()
	h.loopWG.Wait()
	if h.ownBP {
		_ = h.bp.Close()
	}
	return err
}

// waitGroup waits for wg or ctx.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// inboxPrefix starts the topics of users' inboxes; rooms may not use it.
const inboxPrefix = "inbox:"

// inboxTopic is the topic of a user's direct messages and control
// messages. Characters a topic may not hold are percent-encoded; a name
// too long for a topic is replaced by its SHA-256, so that two users never
// share an inbox.
func inboxTopic(user string) string {
	var b strings.Builder
	b.WriteString(inboxPrefix)
	for i := 0; i < len(user); i++ {
		c := user[i]
		if c <= ' ' || c == '{' || c == '}' || c == '%' || c >= 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	s := b.String()
	if len(s) > rtkit.MaxTopicLen {
		sum := sha256.Sum256([]byte(user))
		s = inboxPrefix + "sha256:" + hex.EncodeToString(sum[:])
	}
	return s
}
