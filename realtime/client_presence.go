package realtime

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// The client keeps each joined room's member list as PROTOCOL.md's
// "Keeping a member list" says: the snapshot of the join reply, then
// every presence diff received after the join was sent (those that arrive
// before the reply wait for it), applied by connection. A count event
// (room above the server's PresenceLimit) makes the list unknown; a diff
// or a resync event that finds it unknown makes the client fetch a new
// snapshot with a presence request, again applying what arrives after
// the request was sent.

// Members returns what the client knows of room's members: the list
// (sorted by user then connection) and ok true when it knows it, and the
// room's count (members on every node) from the last presence event or
// reply. ok is false for a room not joined, a join with NoPresence, a room
// above the server's PresenceLimit, while disconnected, and while a fresh
// list is being fetched. A "presence" event follows every change.
func (c *Client) Members(room string) (members []Member, count int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[room]
	if r == nil {
		return nil, 0, false
	}
	return sortedMembers(r.members), r.count, r.members != nil
}

func sortedMembers(m map[string]Member) []Member {
	if m == nil {
		return nil
	}
	out := slices.Collect(maps.Values(m))
	sortMembers(out)
	return out
}

// applyPresenceLocked applies one presence event to r and returns the
// event to emit. It may start fetching a snapshot.
func (c *Client) applyPresenceLocked(room string, r *clientRoom, w *wireEvent) []Event {
	r.count = w.Count
	diff := w.Joins != nil || w.Leaves != nil
	switch {
	case w.Resync, diff && r.members == nil:
		// Events were missed, or the room is small again: fetch the list.
		// This event's change is in it.
		r.members = nil
		c.fetchMembersLocked(room, r)
	case diff:
		for _, m := range w.Joins {
			r.members[m.Conn] = m
		}
		for _, m := range w.Leaves {
			delete(r.members, m.Conn)
		}
	default:
		r.members = nil
	}
	return []Event{{Op: "presence", Room: room, Count: w.Count, Joins: w.Joins, Leaves: w.Leaves, Members: sortedMembers(r.members)}}
}

// installSnapshot applies the snapshot of a join or presence reply, then
// the presence events that arrived since the request was sent. It runs on
// the read loop and returns the events to emit.
func (c *Client) installSnapshot(room string, r *clientRoom, gen uint64, ok map[string]json.RawMessage) []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rooms[room] != r {
		return nil
	}
	if r.noPresence {
		_ = json.Unmarshal(ok["count"], &r.count)
		return nil
	}
	if !r.syncing || r.gen != gen {
		// A wait that ended (a reconnect): events since were applied.
		return nil
	}
	if ok["count"] != nil {
		_ = json.Unmarshal(ok["count"], &r.count)
	}
	r.members = nil
	if raw := ok["members"]; raw != nil {
		var ms []Member
		if json.Unmarshal(raw, &ms) == nil {
			r.members = make(map[string]Member, len(ms))
			for _, m := range ms {
				r.members[m.Conn] = m
			}
		}
	}
	r.syncing = false
	evs := []Event{{Op: "presence", Room: room, Count: r.count, Members: sortedMembers(r.members)}}
	buf := r.buf
	r.buf = nil
	for i := range buf {
		if r.syncing {
			// An event asked for another snapshot: the rest waits for it.
			r.buf = append(r.buf, buf[i:]...)
			break
		}
		evs = append(evs, c.applyPresenceLocked(room, r, &buf[i])...)
	}
	return evs
}

// fetchMembersLocked asks for a snapshot of room's members; presence
// events wait in r.buf until it arrives. It runs on the read loop (run's
// goroutine), the only one that adds to c.wg while run may wait for it.
func (c *Client) fetchMembersLocked(room string, r *clientRoom) {
	gen := r.startSync()
	c.wg.Go(func() {
		ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		defer cancel()
		_, err := c.requestHook(ctx, map[string]any{"op": "presence", "room": room}, func(ok map[string]json.RawMessage) []Event {
			return c.installSnapshot(room, r, gen, ok)
		})
		if err == nil {
			return
		}
		// Refused or lost: the list stays unknown; the next diff asks
		// again (a reconnect's rejoin brings a snapshot anyway).
		c.log.Debug("realtime: fetching members", "room", room, "err", err)
		c.mu.Lock()
		if r.syncing && r.gen == gen {
			for _, w := range r.buf {
				r.count = w.Count
			}
			r.syncing, r.buf = false, nil
		}
		c.mu.Unlock()
	})
}

// startSync marks r as waiting for a snapshot and returns the wait's
// generation: a request that fails ends only its own wait.
func (r *clientRoom) startSync() uint64 {
	r.gen++
	r.syncing, r.buf = true, nil
	return r.gen
}
