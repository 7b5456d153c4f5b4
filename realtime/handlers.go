package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rtkit/rtkit"
	"golang.org/x/time/rate"
)

// maxCallsInFlight bounds the concurrent calls of one connection.
const maxCallsInFlight = 16

// handle runs one client object, from the connection's read goroutine.
func (c *conn) handle(in *inbound, perr *Error) {
	c.h.messagesIn.Add(1)
	if c.ending.Load() {
		// Closing: what the client sent after the decision is not run (it
		// could not be answered).
		return
	}
	if !c.allow(in.ID) {
		return
	}
	if perr != nil {
		c.reply(in.ID, perr)
		return
	}
	var err *Error
	switch in.Op {
	case "join":
		err = c.join(in)
	case "leave":
		err = c.leave(in)
	case "pub":
		err = c.publish(in)
	case "direct":
		err = c.direct(in)
	case "presence":
		err = c.listPresence(in)
	case "call":
		err = c.call(in)
	}
	if err != nil {
		c.reply(in.ID, err)
	}
}

// refusalWindow is the window over which refused objects are counted: a
// connection with more than refusalsAllowed × InboundBurst of them in it is
// closed.
const (
	refusalWindow   = 10 * time.Second
	refusalsAllowed = 3
)

// allow applies the inbound rate limit. A client that keeps sending while
// refused is closed: refusals fill a bucket of 3 × InboundBurst that
// drains at that many per refusalWindow, and the refusal that finds it
// full closes the connection with CloseRateLimited (after the replies
// already queued).
func (c *conn) allow(id uint64) bool {
	if c.limiter == nil {
		c.limiter = rate.NewLimiter(c.h.opts.InboundRate, c.h.opts.InboundBurst)
		n := refusalsAllowed * c.h.opts.InboundBurst
		c.refusals = rate.NewLimiter(rate.Limit(float64(n)/refusalWindow.Seconds()), n)
	}
	if c.limiter.Allow() {
		return true
	}
	c.h.limited.Add(1)
	if !c.refusals.Allow() {
		c.closeWith(CloseRateLimited, "rate limited")
		return false
	}
	c.send(errorFrame(id, errorf(CodeRateLimited, "too many messages; slow down")))
	return false
}

// reply queues an error reply (e) or nothing.
func (c *conn) reply(id uint64, e *Error) {
	c.send(errorFrame(id, e))
}

// authorize asks the Authorize hook. Without one, rooms on topics rtkit
// uses internally ([rtkit.ReservedTopic]) are refused.
func (c *conn) authorize(ctx context.Context, a Action) *Error {
	if c.h.opts.Authorize == nil {
		if a.Room != "" && rtkit.ReservedTopic(a.Room) {
			return errorf(CodeForbidden, "room %q is reserved", truncate(a.Room, 64))
		}
		return nil
	}
	err := c.h.opts.Authorize(ctx, c.info.Identity, a)
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return errorf(CodeForbidden, "not allowed to %s", a.Kind)
}

func (c *conn) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.h.opts.WriteTimeout)
}

func checkRoom(name string) *Error {
	if err := rtkit.CheckTopic(name); err != nil {
		return errorf(CodeBadRequest, "invalid room name: %v", errors.Unwrap(err))
	}
	if strings.HasPrefix(name, inboxPrefix) {
		return errorf(CodeBadRequest, "room names starting with %q are reserved", inboxPrefix)
	}
	return nil
}

func (c *conn) membershipOf(room string) *membership {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rooms[room]
}

func (c *conn) join(in *inbound) *Error {
	if e := checkRoom(in.Room); e != nil {
		return e
	}
	since, err := rtkit.ParseID(in.Since)
	if err != nil {
		return errorf(CodeBadRequest, "invalid since %q", truncate(in.Since, 40))
	}
	ctx, cancel := c.opContext()
	defer cancel()
	if e := c.authorize(ctx, Action{Kind: ActionJoin, Room: in.Room}); e != nil {
		return e
	}
	m := &membership{c: c, noPresence: in.Presence != nil && !*in.Presence, compact: c.wantsCompact()}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil
	case c.rooms[in.Room] != nil:
		c.mu.Unlock()
		return errorf(CodeBadRequest, "already joined %q", in.Room)
	case len(c.rooms) >= c.h.opts.MaxRoomsPerConn:
		c.mu.Unlock()
		return errorf(CodeBadRequest, "too many rooms: at most %d per connection", c.h.opts.MaxRoomsPerConn)
	}
	if c.rooms == nil {
		c.rooms = make(map[string]*membership)
	}
	c.rooms[in.Room] = m
	m.room = c.h.rooms.acquire(in.Room)
	c.mu.Unlock()

	fail := func(what string, err error) *Error {
		c.mu.Lock()
		if c.rooms[in.Room] == m {
			delete(c.rooms, in.Room)
		}
		c.mu.Unlock()
		if m.sub != nil {
			m.sub.Close()
		}
		c.h.rooms.release(m.room)
		c.h.log.Error("realtime: join", "room", in.Room, "step", what, "err", err)
		return errorf(CodeInternal, "could not join %q", in.Room)
	}
	var history []*rtkit.Message
	if since.IsZero() && in.History > 0 {
		hist, err := c.h.bp.History(ctx, in.Room, rtkit.HistoryOptions{Limit: min(in.History, c.h.opts.MaxHistory)})
		if err != nil {
			return fail("history", err)
		}
		history, since = hist.Messages, hist.Position
	}
	// FromStart: a rejoin at "0-0", or a history join of an empty room (a
	// message published since the History call must not slip by).
	fromStart := since.IsZero() && (in.Since != "" || in.History > 0)
	sub, err := c.h.bp.Subscribe(ctx, in.Room, rtkit.SubscribeOptions{Since: since, FromStart: fromStart, MaxReplay: c.h.opts.MaxReplay}, m)
	if err != nil {
		return fail("subscribe", err)
	}
	m.sub = sub
	member := c.member()
	if err := c.h.presence.Add(ctx, in.Room, member); err != nil {
		return fail("presence", err)
	}
	c.h.presenceChanged(in.Room, member, true)
	// The snapshot is taken after subscribing: every presence event
	// published after it reaches this member (after the reply), so the
	// client that applies them to it has the exact list.
	var count int
	var members []Member
	if m.noPresence {
		count, err = countMembers(ctx, c.h.presence, in.Room)
	} else {
		count, members, err = c.h.snapshot(ctx, in.Room)
	}
	if err != nil {
		c.h.log.Warn("realtime: presence snapshot", "room", in.Room, "err", err)
		count, members = -1, nil
	}

	ok := okFrame(in.ID, func(b []byte) []byte {
		b = appendField(b, "room", in.Room)
		b = appendBool(b, "recovered", in.Since == "" || sub.Recovered())
		b = appendField(b, "position", positionText(sub.Position()))
		if count >= 0 {
			b = appendSnapshot(b, count, members)
		}
		return b
	})
	m.markReady(ok, history)
	return nil
}

func (c *conn) leave(in *inbound) *Error {
	c.mu.Lock()
	m := c.rooms[in.Room]
	delete(c.rooms, in.Room)
	if m != nil {
		m.dropHeldLocked()
	}
	c.mu.Unlock()
	if m == nil {
		return errorf(CodeNotFound, "not a member of %q", truncate(in.Room, 64))
	}
	ctx, cancel := c.opContext()
	defer cancel()
	c.leaveRoom(ctx, m)
	c.send(okFrame(in.ID, func(b []byte) []byte { return appendField(b, "room", in.Room) }))
	return nil
}

func (c *conn) publish(in *inbound) *Error {
	if c.membershipOf(in.Room) == nil {
		return errorf(CodeForbidden, "join %q before publishing to it", truncate(in.Room, 64))
	}
	ctx, cancel := c.opContext()
	defer cancel()
	if e := c.authorize(ctx, Action{Kind: ActionPublish, Room: in.Room, Ephemeral: in.Ephemeral}); e != nil {
		return e
	}
	env := msgEnvelope(opMsg, in.Room, Sender{User: c.info.Identity.User, Conn: c.info.ID}, in.Data)
	id, err := c.h.bp.Publish(ctx, in.Room, env, rtkit.PublishOptions{Ephemeral: in.Ephemeral})
	if err != nil {
		return c.internal("publish", err)
	}
	if !in.Ephemeral {
		c.h.published.Add(1)
	}
	c.send(okFrame(in.ID, func(b []byte) []byte {
		if !id.IsZero() {
			b = appendField(b, "msg", id.String())
		}
		return b
	}))
	return nil
}

func (c *conn) direct(in *inbound) *Error {
	ctx, cancel := c.opContext()
	defer cancel()
	if e := c.authorize(ctx, Action{Kind: ActionDirect, To: in.To}); e != nil {
		return e
	}
	env := msgEnvelope(opDirect, "", Sender{User: c.info.Identity.User, Conn: c.info.ID}, in.Data)
	id, err := c.h.bp.Publish(ctx, inboxTopic(in.To), env, rtkit.PublishOptions{})
	if err != nil {
		return c.internal("direct", err)
	}
	c.send(okFrame(in.ID, func(b []byte) []byte { return appendField(b, "msg", id.String()) }))
	return nil
}

func (c *conn) listPresence(in *inbound) *Error {
	if c.membershipOf(in.Room) == nil {
		return errorf(CodeForbidden, "join %q to see who is in it", truncate(in.Room, 64))
	}
	ctx, cancel := c.opContext()
	defer cancel()
	if e := c.authorize(ctx, Action{Kind: ActionPresence, Room: in.Room}); e != nil {
		return e
	}
	n, members, err := c.h.snapshot(ctx, in.Room)
	if err != nil {
		return c.internal("presence", err)
	}
	c.send(okFrame(in.ID, func(b []byte) []byte {
		b = appendField(b, "room", in.Room)
		return appendSnapshot(b, n, members)
	}))
	return nil
}

func (c *conn) call(in *inbound) *Error {
	v, ok := c.h.calls.Load(in.Method)
	if !ok {
		return errorf(CodeNotFound, "no method %q", truncate(in.Method, 64))
	}
	fn := v.(CallHandler)
	if c.calls.Load() >= maxCallsInFlight {
		return errorf(CodeRateLimited, "more than %d calls in flight", maxCallsInFlight)
	}
	call := &Call{Conn: c.info, Method: in.Method, Data: in.Data}
	c.calls.Add(1)
	started := c.goTracked(func() {
		defer c.calls.Add(-1)
		ctx, cancel := context.WithTimeout(c.ctx, c.h.opts.CallTimeout)
		defer cancel()
		if e := c.authorize(ctx, Action{Kind: ActionCall, Method: in.Method}); e != nil {
			c.reply(in.ID, e)
			return
		}
		res, err := runCall(ctx, fn, call)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				c.h.log.Error("realtime: call failed", "method", in.Method, "err", err)
				e = errorf(CodeInternal, "call %q failed", in.Method)
			}
			c.reply(in.ID, e)
			return
		}
		raw, err := json.Marshal(res)
		if err != nil {
			c.reply(in.ID, c.internal("call result", err))
			return
		}
		c.send(okFrame(in.ID, func(b []byte) []byte { return appendRaw(b, "data", raw) }))
	})
	if !started {
		c.calls.Add(-1)
	}
	return nil
}

// runCall runs a call handler, turning a panic into an error.
func runCall(ctx context.Context, fn CallHandler, call *Call) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return fn(ctx, call)
}

func (c *conn) internal(what string, err error) *Error {
	c.h.log.Error("realtime: "+what, "conn", c.info.ID, "err", err)
	return errorf(CodeInternal, "%s failed", what)
}
