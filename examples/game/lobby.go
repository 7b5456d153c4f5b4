package main

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rtkit/rtkit/examples/game/snake"
)

// A seat is where a user plays: a match and a slot in it (-1 for a
// spectator).
type seat struct {
	Match string `json:"match"`
	Slot  int    `json:"slot"`
}

// player is who sits in a slot.
type player struct {
	User string `json:"u"`
	Name string `json:"n"`
}

// lobby is what every node shares about matches: who sits where, and
// which node runs each match (its lease). memoryLobby serves one process,
// redisLobby many. Every method is safe for concurrent use.
type lobby interface {
	// Join returns user's seat: the one it has (a player who comes back
	// resumes), else a free slot in the open match with the most players,
	// else a slot in a new match.
	Join(ctx context.Context, user, name string) (seat, error)
	// Seat returns user's seat; ok is false when it has none.
	Seat(ctx context.Context, user string) (s seat, ok bool, err error)
	// Players returns the players of match by slot.
	Players(ctx context.Context, match string) (map[int]player, error)
	// Leave frees user's slot in match (nothing if it has none there).
	Leave(ctx context.Context, match, user string) error
	// Matches lists the open matches with their number of players.
	Matches(ctx context.Context) (map[string]int, error)
	// Close removes match if it has no player, and reports whether it did.
	Close(ctx context.Context, match string) (bool, error)
	// Acquire takes match's lease for node for ttl, or renews it if node
	// holds it; it reports whether node holds it now.
	Acquire(ctx context.Context, match, node string, ttl time.Duration) (bool, error)
	// Release gives match's lease up if node holds it.
	Release(ctx context.Context, match, node string) error
}

// memoryLobby is the lobby of a single process.
type memoryLobby struct {
	mu      sync.Mutex
	next    int
	matches map[string]map[int]player
	seats   map[string]seat
	leases  map[string]lease
}

type lease struct {
	node    string
	expires time.Time
}

func newMemoryLobby() *memoryLobby {
	return &memoryLobby{matches: map[string]map[int]player{}, seats: map[string]seat{}, leases: map[string]lease{}}
}

var _ lobby = (*memoryLobby)(nil)

func (l *memoryLobby) Join(_ context.Context, user, name string) (seat, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.seats[user]; ok {
		return s, nil
	}
	best, most := "", -1
	ids := make([]string, 0, len(l.matches))
	for id := range l.matches {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if n := len(l.matches[id]); n < snake.MaxPlayers && n > most {
			best, most = id, n
		}
	}
	if best == "" {
		l.next++
		best = "m" + strconv.Itoa(l.next)
		l.matches[best] = map[int]player{}
	}
	ps := l.matches[best]
	for slot := range snake.MaxPlayers {
		if _, taken := ps[slot]; !taken {
			ps[slot] = player{User: user, Name: name}
			s := seat{Match: best, Slot: slot}
			l.seats[user] = s
			return s, nil
		}
	}
	panic("unreachable: the match had a free slot")
}

func (l *memoryLobby) Seat(_ context.Context, user string) (seat, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.seats[user]
	return s, ok, nil
}

func (l *memoryLobby) Players(_ context.Context, match string) (map[int]player, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]player{}
	for k, v := range l.matches[match] {
		out[k] = v
	}
	return out, nil
}

func (l *memoryLobby) Leave(_ context.Context, match, user string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.seats[user]; ok && s.Match == match {
		delete(l.seats, user)
		delete(l.matches[match], s.Slot)
	}
	return nil
}

func (l *memoryLobby) Matches(context.Context) (map[string]int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for id, ps := range l.matches {
		out[id] = len(ps)
	}
	return out, nil
}

func (l *memoryLobby) Close(_ context.Context, match string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.matches[match]) > 0 {
		return false, nil
	}
	delete(l.matches, match)
	return true, nil
}

func (l *memoryLobby) Acquire(_ context.Context, match, node string, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if cur, ok := l.leases[match]; ok && cur.node != node && now.Before(cur.expires) {
		return false, nil
	}
	l.leases[match] = lease{node: node, expires: now.Add(ttl)}
	return true, nil
}

func (l *memoryLobby) Release(_ context.Context, match, node string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.leases[match].node == node {
		delete(l.leases, match)
	}
	return nil
}
