package realtime

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/rtkit/rtkit"
)

// room is a room with members on this node. It caches the frame of the
// last message delivered, so that every local member queues the same
// bytes: the backplane hands all local subscribers of a topic the same
// *rtkit.Message, one after another.
type room struct {
	name  string
	refs  int // guarded by the table shard
	cache atomic.Pointer[cachedFrame]
	// lastCount is the count of the last presence event delivered to this
	// node's members (-1 before the first): the hub compares it with the
	// room's count to skip count events that change nothing and to
	// correct a count that concurrent events of other nodes left stale.
	lastCount atomic.Int64
}

// cachedFrame is a message's client frame, and what a presence event
// carries.
type cachedFrame struct {
	msg      *rtkit.Message
	frame    []byte
	presence bool // a presence event
	count    int  // its count
	// compact is the frame for members that negotiated the compact
	// subprotocol, encoded by the first of them to need it.
	compactOnce sync.Once
	compact     []byte
}

// compactFrame returns the frame of c's message for members that
// negotiated the compact subprotocol: its array form, or the object
// frame for what has none.
func (c *cachedFrame) compactFrame(room string) []byte {
	c.compactOnce.Do(func() {
		if c.compact = compactFrame(room, c.msg); c.compact == nil {
			c.compact = c.frame
		}
	})
	return c.compact
}

// entry returns the client frame for m, encoding it once per node.
func (r *room) entry(m *rtkit.Message) *cachedFrame {
	if c := r.cache.Load(); c != nil && c.msg == m {
		return c
	}
	c := &cachedFrame{msg: m, frame: clientFrame(r.name, m)}
	if n, ok := presenceFrameCount(c.frame); ok {
		c.presence, c.count = true, n
		r.lastCount.Store(int64(n))
	}
	r.cache.Store(c)
	return c
}

// roomTable holds the rooms with local members, sharded so that joins to
// different rooms rarely contend.
type roomTable struct {
	seed   maphash.Seed
	shards [32]struct {
		mu    sync.Mutex
		rooms map[string]*room
	}
}

func (t *roomTable) init() {
	t.seed = maphash.MakeSeed()
	for i := range t.shards {
		t.shards[i].rooms = make(map[string]*room)
	}
}

func (t *roomTable) shard(name string) int {
	return int(maphash.String(t.seed, name) % uint64(len(t.shards)))
}

// acquire returns the room, counting one more local member.
func (t *roomTable) acquire(name string) *room {
	sh := &t.shards[t.shard(name)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.rooms[name]
	if r == nil {
		r = &room{name: name}
		r.lastCount.Store(-1)
		sh.rooms[name] = r
	}
	r.refs++
	return r
}

// get returns the room if it has local members, else nil.
func (t *roomTable) get(name string) *room {
	sh := &t.shards[t.shard(name)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.rooms[name]
}

// release counts one local member less, dropping the room at zero.
func (t *roomTable) release(r *room) {
	sh := &t.shards[t.shard(r.name)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r.refs--; r.refs <= 0 {
		delete(sh.rooms, r.name)
	}
}

// counts returns the number of rooms and memberships on this node.
func (t *roomTable) counts() (rooms, members int) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		rooms += len(sh.rooms)
		for _, r := range sh.rooms {
			members += r.refs
		}
		sh.mu.Unlock()
	}
	return rooms, members
}
