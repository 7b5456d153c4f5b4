package realtime

import (
	"context"
	"sync"
	"time"

	"github.com/rtkit/rtkit"
)

// How presence reaches members (PROTOCOL.md, "presence"): a node does not
// publish every join and leave. It records, per room, the latest state of
// each of its connections that joined or left (and of the members of dead
// nodes whose entries its Refresh expired), and every PresenceInterval
// publishes one event per room with the room's count and, while the room
// has at most PresenceLimit members, the joins and leaves: a diff that a
// client applies by connection (join sets, leave deletes), so that
// applying it twice, or after a snapshot that already holds it, changes
// nothing. Filling a room of N therefore costs each member one event per
// interval, not N events.

// presenceChange is a connection's latest presence in a room since the
// last flush.
type presenceChange struct {
	m    Member
	join bool
}

// presenceBatch gathers this node's presence changes until the next flush.
type presenceBatch struct {
	mu    sync.Mutex
	rooms map[string]map[string]presenceChange // room → conn → latest change
	kick  chan struct{}                        // a change is waiting (capacity 1)

	// countSent is when this node last sent a count event per room
	// (used by the event loop only).
	countSent map[string]time.Time
}

func (b *presenceBatch) init() {
	b.rooms = make(map[string]map[string]presenceChange)
	b.kick = make(chan struct{}, 1)
	b.countSent = make(map[string]time.Time)
}

// maxCountIntervals caps the spacing of count events, in intervals.
const maxCountIntervals = 25

// countEvery is how far apart a node sends the count events of a room of
// n members above the limit: one interval per PresenceLimit members, at
// most maxCountIntervals (5s at the defaults). A room's count events then
// cost about PresenceLimit deliveries per interval whatever its size, up
// to maxCountIntervals × PresenceLimit members.
func (h *Hub) countEvery(n int) time.Duration {
	k := min((n+h.opts.PresenceLimit-1)/h.opts.PresenceLimit, maxCountIntervals)
	return time.Duration(k) * h.opts.PresenceInterval
}

// presenceChanged records that m joined or left room; the next flush
// publishes it. It must be called after the Presence was changed, so that
// the event follows the change a snapshot may already hold.
func (h *Hub) presenceChanged(room string, m Member, join bool) {
	b := &h.pbatch
	b.mu.Lock()
	r := b.rooms[room]
	if r == nil {
		r = make(map[string]presenceChange)
		b.rooms[room] = r
	}
	r[m.Conn] = presenceChange{m: m, join: join}
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// requeue puts back changes a flush could not publish, unless a newer
// change of the same connection came in meanwhile.
func (h *Hub) requeue(room string, changes map[string]presenceChange) {
	b := &h.pbatch
	b.mu.Lock()
	for conn, ch := range b.rooms[room] {
		changes[conn] = ch // newer
	}
	b.rooms[room] = changes
	b.mu.Unlock()
}

// presenceEventLoop publishes the gathered presence changes every
// PresenceInterval while there are any; an idle hub waits without a
// timer. On Shutdown (once every connection has left its rooms) it
// publishes what is left and ends.
func (h *Hub) presenceEventLoop() {
	defer h.loopWG.Done()
	var settle []string
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		if len(settle) == 0 {
			select {
			case <-h.pbatch.kick:
			case <-h.ctx.Done():
				h.finalFlush()
				return
			}
		}
		t.Reset(h.opts.PresenceInterval)
		select {
		case <-t.C:
		case <-h.ctx.Done():
			t.Stop()
			h.finalFlush()
			return
		}
		ctx, cancel := context.WithTimeout(h.ctx, h.opts.WriteTimeout)
		settle = h.flushPresence(ctx, settle)
		cancel()
	}
}

func (h *Hub) finalFlush() {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.WriteTimeout)
	defer cancel()
	h.flushPresence(ctx, nil)
}

// flushPresence publishes the changes gathered since the last flush, one
// event (or, for a diff longer than PresenceLimit, several) per room. It
// also checks the rooms it published to last time (settle) whose count
// the events of other nodes may have left stale: when their count differs
// from the last one delivered here, it publishes the right one. It
// returns the rooms to check next time.
func (h *Hub) flushPresence(ctx context.Context, settle []string) (next []string) {
	b := &h.pbatch
	b.mu.Lock()
	var pending map[string]map[string]presenceChange
	if len(b.rooms) > 0 {
		pending = b.rooms
		b.rooms = make(map[string]map[string]presenceChange)
	}
	b.mu.Unlock()
	for _, room := range settle {
		if _, ok := pending[room]; !ok && h.settleCount(ctx, room) {
			next = append(next, room)
		}
	}
	for room, changes := range pending {
		if h.publishChanges(ctx, room, changes) {
			next = append(next, room)
		}
	}
	now := time.Now()
	for room, at := range b.countSent {
		if now.Sub(at) > maxCountIntervals*h.opts.PresenceInterval {
			delete(b.countSent, room)
		}
	}
	return next
}

// publishChanges publishes one room's changes. On failure it puts them
// back for the next flush. It reports whether it published anything.
func (h *Hub) publishChanges(ctx context.Context, room string, changes map[string]presenceChange) bool {
	n, err := countMembers(ctx, h.presence, room)
	if err != nil {
		h.log.Warn("realtime: counting presence", "room", room, "err", err)
		h.requeue(room, changes)
		return false
	}
	if n > h.opts.PresenceLimit {
		// Count only, and only when it changed.
		if r := h.rooms.get(room); r != nil && r.lastCount.Load() == int64(n) {
			return false
		}
		b := &h.pbatch
		now := time.Now()
		if now.Before(b.countSent[room].Add(h.countEvery(n))) {
			// Not yet: the changes wait (should the room shrink below the
			// limit meanwhile, its next diff still has them), and the room
			// stays on the loop's list so that it is tried every interval.
			h.requeue(room, changes)
			return true
		}
		b.countSent[room] = now
		return h.publishPresence(ctx, room, presenceEnvelope(room, n, false, nil, nil), changes)
	}
	var joins, leaves []Member
	for _, ch := range changes {
		if ch.join {
			joins = append(joins, ch.m)
		} else {
			leaves = append(leaves, Member{User: ch.m.User, Conn: ch.m.Conn})
		}
	}
	sortMembers(joins)
	sortMembers(leaves)
	// Chunks of at most PresenceLimit entries: a burst of leaves that
	// empties a large room reaches the few members left in pieces.
	limit := h.opts.PresenceLimit
	for len(joins)+len(leaves) > 0 {
		j := joins[:min(len(joins), limit)]
		l := leaves[:min(len(leaves), limit-len(j))]
		joins, leaves = joins[len(j):], leaves[len(l):]
		if !h.publishPresence(ctx, room, presenceEnvelope(room, n, true, j, l), pick(changes, j, l, joins, leaves)) {
			return false
		}
	}
	return true
}

// pick returns, for a failed publish, the changes of this chunk and the
// ones after it (those published before are delivered).
func pick(changes map[string]presenceChange, lists ...[]Member) map[string]presenceChange {
	out := make(map[string]presenceChange)
	for _, l := range lists {
		for _, m := range l {
			out[m.Conn] = changes[m.Conn]
		}
	}
	return out
}

// publishPresence publishes one presence event; on failure it requeues
// changes and reports false.
func (h *Hub) publishPresence(ctx context.Context, room string, env []byte, changes map[string]presenceChange) bool {
	if _, err := h.bp.Publish(ctx, room, env, rtkit.PublishOptions{Ephemeral: true}); err != nil {
		h.log.Warn("realtime: publishing presence", "room", room, "err", err)
		h.requeue(room, changes)
		return false
	}
	return true
}

// settleCount publishes room's count if it differs from the last one
// delivered to this node: events of several nodes published at once may
// arrive in another order than their counts were read. It reports
// whether it published.
func (h *Hub) settleCount(ctx context.Context, room string) bool {
	r := h.rooms.get(room)
	if r == nil {
		return false
	}
	n, err := countMembers(ctx, h.presence, room)
	if err != nil || r.lastCount.Load() == int64(n) {
		return false
	}
	// An empty diff in a small room: it also tells clients whose list is
	// stale to fetch it.
	env := presenceEnvelope(room, n, n <= h.opts.PresenceLimit, nil, nil)
	_, err = h.bp.Publish(ctx, room, env, rtkit.PublishOptions{Ephemeral: true})
	return err == nil
}

// snapshot returns room's count and, when it has at most PresenceLimit
// members, the members (nil otherwise), for a join or presence reply.
func (h *Hub) snapshot(ctx context.Context, room string) (int, []Member, error) {
	n, err := countMembers(ctx, h.presence, room)
	if err != nil || n > h.opts.PresenceLimit {
		return n, nil, err
	}
	ms, err := h.presence.List(ctx, room)
	if err != nil {
		return 0, nil, err
	}
	if ms == nil {
		ms = []Member{}
	}
	return len(ms), ms, nil
}

// appendSnapshot appends ,"count":n and, for a list, ,"members":[...].
func appendSnapshot(b []byte, n int, ms []Member) []byte {
	b = appendInt(b, "count", n)
	if ms != nil {
		b = appendMembers(b, "members", ms, true)
	}
	return b
}
