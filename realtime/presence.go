package realtime

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Presence records which connections are in which rooms, across every
// node that shares it. The hub adds an entry when a connection joins a
// room and removes it when the connection leaves or closes.
//
// Entries of a node that dies without removing them must not stay
// forever: an implementation that spans nodes expires entries that are not
// refreshed, and Refresh reports what it expired so that the hub can tell
// the room.
type Presence interface {
	// Add records m as present in room.
	Add(ctx context.Context, room string, m Member) error
	// Remove removes the entry of connection conn from room.
	Remove(ctx context.Context, room, conn string) error
	// List returns the members of room, ordered by user then connection.
	List(ctx context.Context, room string) ([]Member, error)
	// Refresh keeps this node's entries alive (local maps room to the
	// connection IDs present on this node) and returns, per room, the
	// members of other nodes whose entries expired and were removed by
	// this call. The hub calls it periodically.
	Refresh(ctx context.Context, local map[string][]string) (expired map[string][]Member, err error)
}

// PresenceCounter is implemented by a [Presence] that counts a room's
// members without listing them. The hub counts with it wherever it needs a
// count (every presence event and join reply carries one); with a
// Presence that lacks it, the hub counts len(List).
type PresenceCounter interface {
	// Count returns the number of members of room: len(List), without
	// building the list.
	Count(ctx context.Context, room string) (int, error)
}

// countMembers counts room's members with p's Count, or len(List).
func countMembers(ctx context.Context, p Presence, room string) (int, error) {
	if pc, ok := p.(PresenceCounter); ok {
		return pc.Count(ctx, room)
	}
	ms, err := p.List(ctx, room)
	return len(ms), err
}

// MemoryPresence is the in-process [Presence]: it sees the connections of
// one hub only. It is safe for concurrent use; the zero value is not
// usable, call NewMemoryPresence.
type MemoryPresence struct {
	mu    sync.Mutex
	rooms map[string]map[string]Member
}

var (
	_ Presence        = (*MemoryPresence)(nil)
	_ PresenceCounter = (*MemoryPresence)(nil)
)

// NewMemoryPresence returns an empty MemoryPresence.
func NewMemoryPresence() *MemoryPresence {
	return &MemoryPresence{rooms: make(map[string]map[string]Member)}
}

// Add implements [Presence.Add].
func (p *MemoryPresence) Add(_ context.Context, room string, m Member) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rooms[room]
	if r == nil {
		r = make(map[string]Member)
		p.rooms[room] = r
	}
	r[m.Conn] = m
	return nil
}

// Remove implements [Presence.Remove].
func (p *MemoryPresence) Remove(_ context.Context, room, conn string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.rooms[room]; r != nil {
		delete(r, conn)
		if len(r) == 0 {
			delete(p.rooms, room)
		}
	}
	return nil
}

// List implements [Presence.List].
func (p *MemoryPresence) List(_ context.Context, room string) ([]Member, error) {
	p.mu.Lock()
	out := make([]Member, 0, len(p.rooms[room]))
	for _, m := range p.rooms[room] {
		out = append(out, m)
	}
	p.mu.Unlock()
	sortMembers(out)
	return out, nil
}

// Count implements [PresenceCounter.Count] in O(1).
func (p *MemoryPresence) Count(_ context.Context, room string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.rooms[room]), nil
}

// Refresh implements [Presence.Refresh]: in one process nothing expires.
func (p *MemoryPresence) Refresh(context.Context, map[string][]string) (map[string][]Member, error) {
	return nil, nil
}

func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int {
		if c := strings.Compare(a.User, b.User); c != 0 {
			return c
		}
		return strings.Compare(a.Conn, b.Conn)
	})
}
