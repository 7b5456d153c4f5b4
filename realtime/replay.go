package realtime

import (
	"bytes"
	"slices"
	"strconv"

	"github.com/rtkit/rtkit"
)

// membership is the connection's subscription to a room (or to its
// inbox, when room is nil). It is the rtkit.Handler of that subscription.
//
// Until its join reply is queued (ready), what the subscription delivers
// (history, then live messages) is held as *rtkit.Message: the backplane's
// own values, shared with its history and with other members, not a frame
// per member. After the reply, the writer turns held messages into frames
// a chunk at a time as the connection drains (refillLocked), so a replay
// costs the node about one chunk per connection whatever its length; live
// messages that arrive meanwhile queue behind it and count against
// SendQueueBytes like any live message.
type membership struct {
	c     *conn
	room  *room
	sub   *rtkit.Subscription
	ready bool       // guarded by c.mu: the join reply is queued
	held  []heldItem // guarded by c.mu: delivered, not yet queued as frames
	// noPresence: the join asked for no presence events ("presence":
	// false); set before the subscription starts.
	noPresence bool
	// compact: the connection negotiated the compact subprotocol; room
	// messages are queued in their array form. Kept here, where delivery
	// reads it, in what was padding (the conn struct is unchanged); set
	// before the subscription starts.
	compact bool
	// stale (guarded by c.mu): presence events were dropped because the
	// queue was too full for them; a resync event carrying staleCount is
	// queued once there is room (see deliverPresence).
	stale      bool
	staleCount int
	// listed (guarded by c.mu): m is in c.backlog.
	listed bool
}

// listLocked puts m at the end of c.backlog unless it is there already.
func (m *membership) listLocked() {
	if !m.listed {
		m.listed = true
		m.c.backlog = append(m.c.backlog, m)
	}
}

// heldItem is a message (or, with msg nil, a gap) waiting to be queued.
type heldItem struct {
	msg  *rtkit.Message
	live bool // arrived after the join reply: counted in c.heldLive
	// raw: msg.Data is the frame itself (a presence resync). A flag, not a
	// frame field, keeps the item at 16 bytes: a join's replay holds up to
	// MaxReplay of them per room.
	raw bool
}

// size is what a live item counts in c.heldLive.
func (it heldItem) size() int {
	if it.raw {
		return len(it.msg.Data)
	}
	return itemSize(it.msg)
}

// HandleMessage queues the message's frame to the connection.
func (m *membership) HandleMessage(msg *rtkit.Message) {
	if m.room == nil {
		m.c.inboxMessage(msg)
		return
	}
	if op, _ := envelopeOp(msg.Data); bytes.Equal(op, opPresence) {
		m.deliverPresence(m.room.entry(msg))
		return
	}
	// Encoded when queued (through the room's cache when live), not here:
	// a join's replay delivers up to MaxReplay messages at once, which are
	// encoded as the connection drains.
	m.deliver(msg, nil)
}

// HandleGap tells the client that messages may be lost.
func (m *membership) HandleGap(rtkit.ID) { m.deliver(nil, nil) }

// deliver queues msg's frame (a gap frame for nil), or holds it while the
// membership's replay is not all queued. live is the frame of a room
// message (nil for the inbox and gaps).
func (m *membership) deliver(msg *rtkit.Message, live []byte) {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if !m.ready {
		m.held = append(m.held, heldItem{msg: msg})
		return
	}
	if len(m.held) == 0 {
		if live == nil {
			live = m.frame(msg, true)
		}
		c.enqueueLocked(live)
		return
	}
	n := itemSize(msg)
	if c.queued+c.heldLive > 0 && c.queued+c.heldLive+n > c.h.opts.SendQueueBytes {
		c.slowLocked()
		return
	}
	c.heldLive += n
	m.held = append(m.held, heldItem{msg: msg, live: true})
}

// deliverPresence queues a presence event (cf) of m's room, unless the
// join opted out of them. Presence never closes a connection as a slow
// consumer: an event that would take the queued and held bytes past half
// of SendQueueBytes is dropped instead, with the ones after it, and a
// resync event ({"op":"presence","count":N,"room":...,"resync":true})
// takes their place as soon as the queue has room again (the next
// presence event that fits, or the writer emptying the queue), so the
// client knows to fetch the member list again. Presence events of a room
// therefore take at most half the queue, whatever their rate and
// however many rooms the connection is in.
func (m *membership) deliverPresence(cf *cachedFrame) {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || m.noPresence {
		return
	}
	if !m.ready {
		// Queued after the join reply, which carries the snapshot they
		// apply to.
		m.held = append(m.held, heldItem{msg: cf.msg})
		return
	}
	frame := cf.frame
	pending := c.queued + c.heldLive
	if pending > 0 && pending+len(frame) > c.h.opts.SendQueueBytes/2 {
		m.stale = true
		m.listLocked()
		m.staleCount = cf.count
		return
	}
	it := heldItem{msg: cf.msg, live: true}
	if m.stale {
		// This event's change is in the list the client fetches.
		m.stale = false // refillLocked unlists m once it holds nothing
		frame = resyncFrame(m.room.name, cf.count)
		it = heldItem{msg: &rtkit.Message{Data: frame}, live: true, raw: true}
	}
	if len(m.held) == 0 {
		c.queueLocked(frame, true)
		return
	}
	c.heldLive += it.size()
	m.held = append(m.held, it)
}

// resyncFrame is the event that replaces the presence events a connection
// missed.
func resyncFrame(room string, count int) []byte {
	b := make([]byte, 0, 64+len(room))
	b = append(b, `{"op":"presence","count":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	b = appendField(b, "room", room)
	return append(b, `,"resync":true}`...)
}

func itemSize(msg *rtkit.Message) int {
	if msg == nil {
		return 32
	}
	return len(msg.Data) + 64
}

// frame encodes a held or delivered item. Live room messages go through
// the room's cache (every local member queues the same bytes); replayed
// ones are encoded for this member, as they are not shared.
func (m *membership) frame(msg *rtkit.Message, live bool) []byte {
	switch {
	case msg == nil:
		b := []byte(`{"op":"gap"`)
		if m.room != nil {
			b = appendField(b, "room", m.room.name)
		} else {
			b = append(b, `,"inbox":true`...)
		}
		return append(b, '}')
	case m.room == nil:
		return clientFrame("", msg)
	case live && m.compact:
		return m.room.entry(msg).compactFrame(m.room.name)
	case live:
		return m.room.entry(msg).frame
	case m.compact:
		if f := compactFrame(m.room.name, msg); f != nil {
			return f
		}
	}
	return clientFrame(m.room.name, msg)
}

// markReady queues the join reply (or welcome), puts history (messages a
// history join read before subscribing) ahead of what the subscription
// delivered, and lets the writer drain them in chunks.
func (m *membership) markReady(reply []byte, history []*rtkit.Message) {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(history) > 0 {
		items := make([]heldItem, 0, len(history)+len(m.held))
		for _, msg := range history {
			items = append(items, heldItem{msg: msg})
		}
		m.held = append(items, m.held...)
	}
	m.ready = true
	if c.closed {
		m.held = nil
		return
	}
	if len(m.held) > 0 {
		m.listLocked()
	}
	// The reply is queued whatever the queue holds: every request gets it.
	c.queueLocked(reply, true)
}

// dropHeld forgets what m still holds (it left the room).
func (m *membership) dropHeldLocked() {
	c := m.c
	for _, it := range m.held {
		if it.live {
			c.heldLive -= it.size()
		}
	}
	m.held = nil
	m.stale = false
	if m.listed {
		m.listed = false
		c.backlog = slices.DeleteFunc(c.backlog, func(x *membership) bool { return x == m })
	}
}

// refillLocked moves held messages of the backlog's memberships into the
// empty queue, up to half of SendQueueBytes (at least one frame), oldest
// join first, then the resync events of memberships that dropped
// presence events and replay nothing. It reports whether it queued
// anything.
func (c *conn) refillLocked() bool {
	budget := max(c.h.opts.SendQueueBytes/2, 1)
	added := false
	for _, m := range c.backlog {
		if c.queued >= budget {
			break
		}
		for len(m.held) > 0 && c.queued < budget {
			it := m.held[0]
			m.held[0] = heldItem{}
			m.held = m.held[1:]
			if it.live {
				c.heldLive -= it.size()
			}
			var f []byte
			if it.raw {
				f = it.msg.Data
			} else {
				f = m.frame(it.msg, false)
			}
			c.queue = append(c.queue, f)
			c.queued += len(f)
			added = true
		}
		if len(m.held) == 0 {
			m.held = nil
		}
	}
	for _, m := range c.backlog {
		if c.queued >= budget {
			break
		}
		if len(m.held) > 0 || !m.stale {
			continue
		}
		f := resyncFrame(m.room.name, m.staleCount)
		m.stale = false
		c.queue = append(c.queue, f)
		c.queued += len(f)
		added = true
	}
	c.backlog = slices.DeleteFunc(c.backlog, func(m *membership) bool {
		if len(m.held) > 0 || m.stale {
			return false
		}
		m.listed = false
		return true
	})
	return added
}
