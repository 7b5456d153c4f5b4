package realtime

import (
	"slices"

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
}

// heldItem is a message (or, with msg nil, a gap) waiting to be queued.
type heldItem struct {
	msg  *rtkit.Message
	live bool // arrived after the join reply: counted in c.heldLive
}

// HandleMessage queues the message's frame to the connection.
func (m *membership) HandleMessage(msg *rtkit.Message) {
	if m.room == nil {
		m.c.inboxMessage(msg)
		return
	}
	m.deliver(msg)
}

// HandleGap tells the client that messages may be lost.
func (m *membership) HandleGap(rtkit.ID) { m.deliver(nil) }

// deliver queues msg's frame (a gap frame for nil), or holds it while the
// membership's replay is not all queued.
func (m *membership) deliver(msg *rtkit.Message) {
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
		c.enqueueLocked(m.frame(msg, true))
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
	case live:
		return m.room.frame(msg)
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
		c.replaying = append(c.replaying, m)
	}
	// The reply is queued whatever the queue holds: every request gets it.
	c.queueLocked(reply, true)
}

// dropHeld forgets what m still holds (it left the room).
func (m *membership) dropHeldLocked() {
	c := m.c
	for _, it := range m.held {
		if it.live {
			c.heldLive -= itemSize(it.msg)
		}
	}
	m.held = nil
	c.replaying = slices.DeleteFunc(c.replaying, func(x *membership) bool { return x == m })
}

// refillLocked moves held messages of replaying memberships into the
// empty queue, up to half of SendQueueBytes (at least one frame), oldest
// join first. It reports whether it queued anything.
func (c *conn) refillLocked() bool {
	budget := max(c.h.opts.SendQueueBytes/2, 1)
	added := false
	for len(c.replaying) > 0 && c.queued < budget {
		m := c.replaying[0]
		for len(m.held) > 0 && c.queued < budget {
			it := m.held[0]
			m.held[0] = heldItem{}
			m.held = m.held[1:]
			if it.live {
				c.heldLive -= itemSize(it.msg)
			}
			f := m.frame(it.msg, false)
			c.queue = append(c.queue, f)
			c.queued += len(f)
			added = true
		}
		if len(m.held) == 0 {
			m.held = nil
			c.replaying[0] = nil
			c.replaying = c.replaying[1:]
		}
	}
	return added
}
