package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/redact"
)

// ErrDisconnected is returned by client requests that were in flight when
// the connection dropped: the server may or may not have applied them.
var ErrDisconnected = errors.New("realtime: disconnected")

// ErrClientClosed is returned by client methods after Close.
var ErrClientClosed = errors.New("realtime: client closed")

// DialOptions configure [Dial]. The zero value reconnects forever with
// backoff from 250ms to 10s.
type DialOptions struct {
	// HTTPHeader is sent with every connection attempt (Authorization,
	// Cookie, Origin...).
	HTTPHeader http.Header
	// HTTPClient dials the connection. Default http.DefaultClient.
	HTTPClient *http.Client
	// MinBackoff and MaxBackoff bound the delay between reconnection
	// attempts; the delay doubles with each failure, with jitter, and
	// starts over only once a connection has stayed up for 10 seconds (a
	// connection dropped sooner counts as a failure). Defaults 250ms and
	// 10s.
	MinBackoff, MaxBackoff time.Duration
	// NoReconnect makes the client stop at the first disconnection.
	NoReconnect bool
	// EventBuffer is the capacity of the Events channel. Default 256.
	// When it is full the client stops reading, the server sees a slow
	// consumer and disconnects it, and the client recovers on reconnect:
	// nothing is lost, but the client should keep up.
	EventBuffer int
	// WriteTimeout bounds one write to the connection. A write that takes
	// longer means the connection is dead: it is closed and the client
	// reconnects. Default 10s. (The ctx of a request bounds only how long
	// its caller waits, never the connection: see [Client].)
	WriteTimeout time.Duration
	// Compression asks the server for the permessage-deflate extension
	// (no context takeover). A hub with [Options.Compression] on then
	// compresses the frames it sends of at least its
	// CompressionThreshold, and this client compresses what it sends of at
	// least 512 bytes; a server that does not allow it answers without
	// the extension and nothing is compressed. It trades CPU on both
	// sides for bytes on the wire. Default off.
	Compression bool
	// Logger receives reconnection errors. Default slog.Default().
	// Credentials in the URL (the values of query parameters such as
	// token, access_token or api_key, and a userinfo password) are
	// replaced by "xxxxx" in every error and log line.
	Logger *slog.Logger
}

// Event is what a client receives. Op tells which fields are set:
//
//   - "msg": Room, ID (zero for ephemeral messages), From, Data, Time.
//   - "direct": ID, From, Data, Time.
//   - "presence": Room, Count, and Members, the client's list of the
//     room's members after this event (sorted by user then connection;
//     nil while the client does not know it: the room is above the
//     server's PresenceLimit, the join asked for no presence, or a fresh
//     list is being fetched). Joins and Leaves are the diff the server
//     sent (Leaves carry User and Conn only); both are nil for a count
//     event and for a snapshot (the list from a join or presence reply,
//     which the client emits as a "presence" event too). See
//     [Client.Members].
//   - "gap": Room ("" for the inbox): messages may have been lost and the
//     room's state should be reloaded.
//   - "connected": the client (re)connected and rejoined its rooms; Conn is
//     the new connection ID.
//   - "disconnected": the connection dropped; Err says why.
//   - "joinfailed": after a reconnect, the server refused to rejoin Room
//     (Err, an [*Error]; transient refusals, internal and rate_limited, are
//     retried first): the client is no longer in the room.
type Event struct {
	Op        string
	Room      string
	ID        rtkit.ID
	From      Sender
	Data      json.RawMessage
	Time      time.Time
	Ephemeral bool
	Count     int
	Joins     []Member
	Leaves    []Member
	Members   []Member
	Conn      string
	Err       error
}

// JoinResult is the reply to a join.
type JoinResult struct {
	// Recovered reports whether every message after since was delivered.
	Recovered bool
	// Position is the ID live delivery started after.
	Position rtkit.ID
	// Count is the number of members of the room, on every node, the
	// joiner included (-1 if the server could not count them).
	Count int
	// Members is the room's member list when the join took presence and
	// the room has at most the server's PresenceLimit members, else nil.
	// The client keeps it up to date from presence events: see
	// [Client.Members].
	Members []Member
}

// JoinOptions tune Client.Join.
type JoinOptions struct {
	// Since resumes after a message ID this client saw before.
	Since rtkit.ID
	// History asks for up to this many recent messages first (ignored
	// with Since).
	History int
	// NoPresence asks for no presence events in this room ("presence":
	// false): the client then knows only the count of the join reply,
	// and can ask with [Client.Presence].
	NoPresence bool
}

// Client is a connection to a [Hub] that reconnects by itself, rejoins
// its rooms with the ID of the last message it saw, and so misses nothing
// across reconnects (or reports a "gap" event when the server's history
// no longer reaches back). Its methods are safe for concurrent use.
//
// The ctx of a request (Join, Publish, Call...) bounds only that request:
// when it ends first the request returns ctx.Err() and the connection
// stays up. The server may or may not have applied such a request (its
// frame may already be on the way).
//
// Every goroutine of a Client is started and waited for by its own
// connection loop: once Close returns, none is left and Events is closed.
type Client struct {
	url  string
	opts DialOptions
	log  *slog.Logger

	events chan Event
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	cur       *clientConn   // nil while disconnected
	connected chan struct{} // closed when cur is set
	nextID    uint64
	pending   map[uint64]pendingReq
	rooms     map[string]*clientRoom // joined rooms
	inbox     rtkit.ID
	connID    string
	backoff   time.Duration // the next reconnection's delay (for tests)
	// wg counts the goroutines of run: connection writers, rejoins and
	// presence fetches. Only run's goroutine (and Dial, before it) adds
	// to it.
	wg sync.WaitGroup
}

// pendingReq is a request waiting for its reply. onOK, if set, runs on
// the read loop when the ok reply arrives, before anything that follows
// it is dispatched, and returns the events to emit.
type pendingReq struct {
	ch   chan reply
	onOK func(ok map[string]json.RawMessage) []Event
}

// clientConn is one connection of a Client. Its writer is the only
// goroutine that writes to ws, so that a request's ctx never reaches a
// write (coder/websocket closes the connection when a write's ctx ends).
type clientConn struct {
	ws   *websocket.Conn
	out  chan []byte   // frames for the writer, in order
	gone chan struct{} // closed when the connection has ended
}

type clientRoom struct {
	last   rtkit.ID // newest message seen (or the join position)
	joined bool     // the join was confirmed: rejoin it after a reconnect

	// Presence, as PROTOCOL.md's "Keeping a member list" describes it.
	noPresence bool
	count      int
	members    map[string]Member // by connection; nil: not known
	// syncing: a join or presence request whose reply carries a snapshot
	// is in flight; presence events received meanwhile wait in buf and
	// are applied after the snapshot.
	syncing bool
	buf     []wireEvent
	gen     uint64 // counts the waits for a snapshot
}

type reply struct {
	ok  map[string]json.RawMessage
	err error
}

// Dial connects to the hub at url (ws:// or wss://, or http(s)://) and
// keeps the connection up until Close. It returns once the first
// connection is established, or the error of the first attempt. It asks
// for the [CompactSubprotocol] (room messages as arrays, fewer bytes on the
// wire) and reads room messages in either form, so it works with servers
// that do not offer it; Events are the same either way.
func Dial(ctx context.Context, rawURL string, opts DialOptions) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("realtime: dial: %w", err))
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 256
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	c := &Client{
		url: u.String(), opts: opts, log: opts.Logger,
		events:    make(chan Event, opts.EventBuffer),
		done:      make(chan struct{}),
		pending:   make(map[uint64]pendingReq),
		rooms:     make(map[string]*clientRoom),
		connected: make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	ws, welcome, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	go c.run(c.install(ws, welcome))
	return c, nil
}

// Events returns the channel of everything the client receives. It is
// closed after Close.
func (c *Client) Events() <-chan Event { return c.events }

// ConnID returns the ID of the current (or last) connection.
func (c *Client) ConnID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connID
}

// Close closes the connection and stops reconnecting.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	cc := c.cur
	c.mu.Unlock()
	if cc != nil {
		_ = cc.ws.Close(websocket.StatusNormalClosure, "")
	}
	<-c.done
	return nil
}

// connect dials and reads the welcome.
func (c *Client) connect(ctx context.Context) (*websocket.Conn, map[string]json.RawMessage, error) {
	u := c.url
	c.mu.Lock()
	if c.connID != "" {
		// Reconnecting: resume the inbox ("0-0": it had no message yet).
		since := c.inbox.String()
		if since == "" {
			since = "0-0"
		}
		u = addQuery(u, "inbox_since", since)
	}
	c.mu.Unlock()
	// Room messages come as arrays when the server agrees (PROTOCOL.md,
	// "Compact frames"); dispatch reads both forms.
	dopts := &websocket.DialOptions{HTTPHeader: c.opts.HTTPHeader, HTTPClient: c.opts.HTTPClient,
		Subprotocols: []string{CompactSubprotocol}}
	if c.opts.Compression {
		dopts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	ws, _, err := websocket.Dial(ctx, u, dopts)
	if err != nil {
		// The URL may carry ?token=: never in an error or a log line.
		return nil, nil, redact.Error(fmt.Errorf("realtime: dial: %w", err))
	}
	ws.SetReadLimit(-1)
	_, frame, err := ws.Read(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("realtime: reading welcome: %w", err)
	}
	first, rest, _ := bytes.Cut(frame, []byte("\n"))
	var welcome map[string]json.RawMessage
	if err := json.Unmarshal(first, &welcome); err != nil || string(welcome["op"]) != `"welcome"` {
		_ = ws.CloseNow()
		return nil, nil, fmt.Errorf("realtime: expected welcome, got %.100q", first)
	}
	if len(rest) > 0 {
		welcome["_rest"] = append(json.RawMessage(nil), rest...)
	}
	return ws, welcome, nil
}

func addQuery(raw, k, v string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

// install makes ws the current connection.
func (c *Client) install(ws *websocket.Conn, welcome map[string]json.RawMessage) *clientConn {
	var conn, inbox string
	_ = json.Unmarshal(welcome["conn"], &conn)
	_ = json.Unmarshal(welcome["inbox"], &inbox)
	c.mu.Lock()
	if c.connID == "" {
		// The first connection: live delivery starts at this position. On
		// a reconnect the client's own position stands; the directs it
		// missed follow the welcome.
		c.inbox, _ = rtkit.ParseID(inbox)
	}
	cc := &clientConn{ws: ws, out: make(chan []byte, 16), gone: make(chan struct{})}
	c.cur, c.connID = cc, conn
	close(c.connected)
	c.mu.Unlock()
	if string(welcome["recovered"]) == "false" {
		c.emit(Event{Op: "gap"})
	}
	if rest := welcome["_rest"]; len(rest) > 0 {
		c.dispatch(rest)
	}
	return cc
}

// run reads from the connection, and reconnects when it fails, until
// Close. It owns every other goroutine of the client (each connection's
// writer, each rejoin) and waits for them before closing Events, so that
// nothing is sent on it afterwards.
func (c *Client) run(cc *clientConn) {
	defer close(c.done)
	defer close(c.events)
	defer c.wg.Wait()
	delay := c.opts.MinBackoff
	up := time.Now()
	for {
		w := cc // cc changes with each reconnect
		c.wg.Go(func() { c.write(w) })
		err := c.readLoop(cc.ws)
		_ = cc.ws.CloseNow()
		c.mu.Lock()
		c.cur = nil
		c.connected = make(chan struct{})
		pending := c.pending
		c.pending = make(map[uint64]pendingReq)
		for _, r := range c.rooms {
			// Unknown until the rejoin's snapshot.
			r.members, r.syncing, r.buf = nil, false, nil
		}
		c.mu.Unlock()
		close(cc.gone)
		for _, p := range pending {
			p.ch <- reply{err: ErrDisconnected}
		}
		if c.ctx.Err() != nil {
			return
		}
		c.emit(Event{Op: "disconnected", Err: err})
		if c.opts.NoReconnect {
			c.cancel()
			return
		}
		if time.Since(up) >= stableAfter {
			delay = c.opts.MinBackoff
		}
		if cc, delay = c.reconnect(delay); cc == nil {
			return
		}
		c.wg.Go(c.rejoin)
		up = time.Now()
	}
}

// write writes the frames queued for cc until it ends. A failed write
// closes the connection: the read loop then reconnects.
func (c *Client) write(cc *clientConn) {
	for {
		select {
		case b := <-cc.out:
			ctx, cancel := context.WithTimeout(c.ctx, c.opts.WriteTimeout)
			err := cc.ws.Write(ctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				c.log.Debug("realtime: write failed", "err", err)
				_ = cc.ws.CloseNow()
				return
			}
		case <-cc.gone:
			return
		}
	}
}

// stableAfter is how long a connection must stay up for the reconnection
// backoff to start over: one closed right after its welcome (a server that
// accepts and drops every connection, say) counts as a failed attempt.
const stableAfter = 10 * time.Second

// reconnect dials with backoff, starting at delay, until it succeeds or
// Close (then it returns nil). It returns the delay for the next
// reconnection, doubled by every attempt including the successful one.
func (c *Client) reconnect(delay time.Duration) (*clientConn, time.Duration) {
	defer func() {
		c.mu.Lock()
		c.backoff = delay
		c.mu.Unlock()
	}()
	for attempt := 1; ; attempt++ {
		jittered := delay/2 + rand.N(delay/2+1)
		select {
		case <-time.After(jittered):
		case <-c.ctx.Done():
			return nil, delay
		}
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		ws, welcome, err := c.connect(ctx)
		cancel()
		delay = min(delay*2, c.opts.MaxBackoff)
		if err == nil {
			return c.install(ws, welcome), delay
		}
		c.log.Debug("realtime: reconnect failed", "attempt", attempt, "err", err)
	}
}

// rejoin joins every room again after the last message seen there.
func (c *Client) rejoin() {
	c.mu.Lock()
	rooms := make(map[string]*clientRoom, len(c.rooms))
	for name, r := range c.rooms {
		if r.joined {
			rooms[name] = r
		}
	}
	conn := c.connID
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	for name, r := range rooms {
		c.mu.Lock()
		last, noPresence := r.last, r.noPresence
		c.mu.Unlock()
		c.rejoinRoom(ctx, name, last, noPresence)
	}
	c.emit(Event{Op: "connected", Conn: conn})
}

// maxRejoinRetries bounds how often a rejoin refused with a transient
// error (internal, rate_limited) is tried again.
const maxRejoinRetries = 5

// rejoinRoom joins room again after last. A transient refusal is retried
// with backoff; a lasting one forgets the room and emits "joinfailed"; a
// lost connection leaves the room to the next reconnect.
func (c *Client) rejoinRoom(ctx context.Context, room string, last rtkit.ID, noPresence bool) {
	delay := c.opts.MinBackoff
	for attempt := 0; ; attempt++ {
		res, err := c.join(ctx, room, JoinOptions{Since: last, NoPresence: noPresence}, false)
		var e *Error
		switch {
		case err == nil:
			if !res.Recovered {
				c.emit(Event{Op: "gap", Room: room})
			}
			return
		case errors.As(err, &e) && (e.Code == CodeInternal || e.Code == CodeRateLimited) && attempt < maxRejoinRetries:
			select {
			case <-time.After(delay/2 + rand.N(delay/2+1)):
			case <-ctx.Done():
				return
			}
			delay = min(delay*2, c.opts.MaxBackoff)
		case e != nil:
			c.log.Warn("realtime: rejoin refused; the room is no longer joined", "room", room, "err", err)
			c.mu.Lock()
			delete(c.rooms, room)
			c.mu.Unlock()
			c.emit(Event{Op: "joinfailed", Room: room, Err: err})
			return
		default:
			// Disconnected (the next connection rejoins) or closed. Messages
			// of the room are missed until then: say so.
			c.emit(Event{Op: "gap", Room: room})
			return
		}
	}
}

func (c *Client) readLoop(ws *websocket.Conn) error {
	for {
		_, frame, err := ws.Read(c.ctx)
		if err != nil {
			return err
		}
		c.dispatch(frame)
	}
}

// wireEvent is a server object as the client decodes it.
type wireEvent struct {
	Op        string          `json:"op"`
	ID        json.RawMessage `json:"id"`
	Room      string          `json:"room"`
	From      Sender          `json:"from"`
	Data      json.RawMessage `json:"data"`
	Time      int64           `json:"time"`
	Ephemeral bool            `json:"ephemeral"`
	Count     int             `json:"count"`
	Joins     []Member        `json:"joins"`
	Leaves    []Member        `json:"leaves"`
	Resync    bool            `json:"resync"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Inbox     bool            `json:"inbox"`
}

func (c *Client) dispatch(frame []byte) {
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		var w wireEvent
		var err error
		if trimmed := bytes.TrimLeft(line, " \t\r"); len(trimmed) > 0 && trimmed[0] == '[' {
			w, err = decodeCompact(trimmed)
		} else {
			err = json.Unmarshal(line, &w)
		}
		if err != nil {
			c.log.Warn("realtime: undecodable server object", "err", err)
			continue
		}
		switch w.Op {
		case "ok", "error":
			var id uint64
			if err := json.Unmarshal(w.ID, &id); err != nil || id == 0 {
				if w.Op == "error" {
					c.log.Warn("realtime: server error", "code", w.Code, "message", w.Message)
				}
				continue
			}
			var r reply
			if w.Op == "error" {
				r.err = &Error{Code: w.Code, Message: w.Message}
			} else {
				_ = json.Unmarshal(line, &r.ok)
			}
			c.mu.Lock()
			p, found := c.pending[id]
			delete(c.pending, id)
			c.mu.Unlock()
			if !found {
				continue
			}
			if p.onOK != nil && r.err == nil {
				for _, e := range p.onOK(r.ok) {
					c.emit(e)
				}
			}
			p.ch <- r
		case "msg", "direct":
			var sid string
			_ = json.Unmarshal(w.ID, &sid)
			id, _ := rtkit.ParseID(sid)
			if !c.advance(w.Op, w.Room, id) {
				continue // already seen
			}
			c.emit(Event{Op: w.Op, Room: w.Room, ID: id, From: w.From, Data: w.Data,
				Time: eventTime(w.Time, id), Ephemeral: w.Ephemeral})
		case "presence":
			c.mu.Lock()
			var evs []Event
			if r := c.rooms[w.Room]; r != nil {
				if r.syncing {
					r.buf = append(r.buf, w)
				} else {
					evs = c.applyPresenceLocked(w.Room, r, &w)
				}
			}
			c.mu.Unlock()
			for _, e := range evs {
				c.emit(e)
			}
		case "gap":
			c.emit(Event{Op: "gap", Room: w.Room})
		}
	}
}

// eventTime is a message's publish time: its "time" field, or, where the
// server left that out, the milliseconds of its ID (see PROTOCOL.md,
// compatibility).
func eventTime(ms int64, id rtkit.ID) time.Time {
	if ms == 0 && !id.IsZero() {
		ms = int64(id.MS)
	}
	return time.UnixMilli(ms)
}

// advance records id as the last seen of its room (or the inbox) and
// reports whether it is new.
func (c *Client) advance(op, room string, id rtkit.ID) bool {
	if id.IsZero() {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	last := &c.inbox
	if op == "msg" {
		r := c.rooms[room]
		if r == nil {
			return true
		}
		last = &r.last
	}
	if id.Compare(*last) <= 0 {
		return false
	}
	*last = id
	return true
}

func (c *Client) emit(e Event) {
	select {
	case c.events <- e:
	case <-c.ctx.Done():
	}
}

// request sends one object and waits for its reply. The object goes to
// the connection's writer; ctx bounds only the wait.
func (c *Client) request(ctx context.Context, obj map[string]any) (map[string]json.RawMessage, error) {
	return c.requestHook(ctx, obj, nil)
}

// requestHook is request with an onOK hook (see pendingReq).
func (c *Client) requestHook(ctx context.Context, obj map[string]any, onOK func(map[string]json.RawMessage) []Event) (map[string]json.RawMessage, error) {
	for {
		c.mu.Lock()
		cc, connected := c.cur, c.connected
		c.mu.Unlock()
		if c.ctx.Err() != nil {
			return nil, ErrClientClosed
		}
		if cc == nil {
			select {
			case <-connected:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-c.ctx.Done():
				return nil, ErrClientClosed
			}
		}
		ch := make(chan reply, 1)
		c.mu.Lock()
		if c.cur != cc {
			// The connection ended meanwhile: wait for the next one.
			c.mu.Unlock()
			continue
		}
		c.nextID++
		id := c.nextID
		// Registered while cc is current: when cc ends, run answers it
		// with ErrDisconnected.
		c.pending[id] = pendingReq{ch: ch, onOK: onOK}
		c.mu.Unlock()
		obj["id"] = id
		b, err := json.Marshal(obj)
		if err != nil {
			c.forget(id)
			return nil, fmt.Errorf("realtime: encoding request: %w", err)
		}
		select {
		case cc.out <- b:
		case <-cc.gone: // the reply is ErrDisconnected
		case <-ctx.Done():
			c.forget(id)
			return nil, ctx.Err()
		}
		select {
		case r := <-ch:
			return r.ok, r.err
		case <-ctx.Done():
			c.forget(id)
			return nil, ctx.Err()
		}
	}
}

// forget drops the pending request id.
func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Join joins room. The client rejoins it after every reconnect, starting
// after the last message it received there.
func (c *Client) Join(ctx context.Context, room string, opts JoinOptions) (JoinResult, error) {
	return c.join(ctx, room, opts, true)
}

func (c *Client) join(ctx context.Context, room string, opts JoinOptions, fresh bool) (JoinResult, error) {
	c.mu.Lock()
	r := c.rooms[room]
	if r == nil {
		r = &clientRoom{last: opts.Since, noPresence: opts.NoPresence}
		c.rooms[room] = r
	} else if fresh {
		c.mu.Unlock()
		return JoinResult{}, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("already joined (or joining) %q", room)}
	}
	// Presence events that arrive before the reply wait for its snapshot.
	r.members, r.syncing, r.buf = nil, false, nil
	gen := r.startSync()
	if opts.NoPresence {
		r.syncing = false
	}
	c.mu.Unlock()
	obj := map[string]any{"op": "join", "room": room}
	if opts.NoPresence {
		obj["presence"] = false
	}
	switch {
	case !opts.Since.IsZero():
		obj["since"] = opts.Since.String()
	case !fresh:
		// Rejoining a room that had no message yet: everything since.
		obj["since"] = "0-0"
	case opts.History > 0:
		obj["history"] = opts.History
	}
	ok, err := c.requestHook(ctx, obj, func(ok map[string]json.RawMessage) []Event {
		return c.installSnapshot(room, r, gen, ok)
	})
	if err != nil {
		c.mu.Lock()
		if r.syncing && r.gen == gen {
			r.syncing, r.buf = false, nil
		}
		if fresh && c.rooms[room] == r {
			delete(c.rooms, room)
		}
		c.mu.Unlock()
		return JoinResult{}, err
	}
	c.mu.Lock()
	r.joined = true
	c.mu.Unlock()
	res := JoinResult{Count: -1}
	var pos string
	_ = json.Unmarshal(ok["recovered"], &res.Recovered)
	_ = json.Unmarshal(ok["position"], &pos)
	if ok["count"] != nil {
		_ = json.Unmarshal(ok["count"], &res.Count)
	}
	if ok["members"] != nil {
		_ = json.Unmarshal(ok["members"], &res.Members)
	}
	res.Position, _ = rtkit.ParseID(pos)
	if fresh && opts.Since.IsZero() && opts.History == 0 {
		// A live-only join: resume from the room's position. (When history
		// is replayed, the messages that follow the reply advance last.)
		c.mu.Lock()
		if res.Position.Compare(r.last) > 0 {
			r.last = res.Position
		}
		c.mu.Unlock()
	}
	return res, nil
}

// Leave leaves room.
func (c *Client) Leave(ctx context.Context, room string) error {
	c.mu.Lock()
	delete(c.rooms, room)
	c.mu.Unlock()
	_, err := c.request(ctx, map[string]any{"op": "leave", "room": room})
	return err
}

// Publish sends data (marshalled to JSON) to room and returns the
// message's ID.
func (c *Client) Publish(ctx context.Context, room string, data any) (rtkit.ID, error) {
	return c.publish(ctx, map[string]any{"op": "pub", "room": room, "data": data})
}

// PublishEphemeral sends data to room's current members without keeping
// it in history (typing indicators and the like).
func (c *Client) PublishEphemeral(ctx context.Context, room string, data any) error {
	_, err := c.request(ctx, map[string]any{"op": "pub", "room": room, "data": data, "ephemeral": true})
	return err
}

// Direct sends data to every connection of user, on any node.
func (c *Client) Direct(ctx context.Context, user string, data any) (rtkit.ID, error) {
	return c.publish(ctx, map[string]any{"op": "direct", "to": user, "data": data})
}

func (c *Client) publish(ctx context.Context, obj map[string]any) (rtkit.ID, error) {
	ok, err := c.request(ctx, obj)
	if err != nil {
		return rtkit.ID{}, err
	}
	var s string
	_ = json.Unmarshal(ok["msg"], &s)
	return rtkit.ParseID(s)
}

// Call calls a server method with req (marshalled to JSON) and decodes
// the result into resp (if not nil).
func (c *Client) Call(ctx context.Context, method string, req, resp any) error {
	obj := map[string]any{"op": "call", "method": method}
	if req != nil {
		obj["data"] = req
	}
	ok, err := c.request(ctx, obj)
	if err != nil {
		return err
	}
	if resp != nil {
		if err := json.Unmarshal(ok["data"], resp); err != nil {
			return fmt.Errorf("realtime: decoding %s result: %w", method, err)
		}
	}
	return nil
}

// Presence asks the server for the members of a room the client has
// joined, sorted by user then connection. For a room with more members
// than the server's PresenceLimit it returns nil: [Client.Members] then
// has the count.
func (c *Client) Presence(ctx context.Context, room string) ([]Member, error) {
	ok, err := c.request(ctx, map[string]any{"op": "presence", "room": room})
	if err != nil {
		return nil, err
	}
	if ok["members"] == nil {
		return nil, nil
	}
	var ms []Member
	if err := json.Unmarshal(ok["members"], &ms); err != nil {
		return nil, fmt.Errorf("realtime: decoding presence: %w", err)
	}
	return ms, nil
}
