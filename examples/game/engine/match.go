package engine

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
)

// Input is one command of one player.
type Input[I any] struct {
	// Player is the player's number in the match (a slot, say).
	Player int
	// Seq numbers the player's inputs: each one greater than the last.
	Seq uint32
	// Tick is the tick the client meant the input for (its estimate of the
	// server's clock), or 0 for "whenever it arrives".
	Tick uint64
	// Value is the game's command.
	Value I
}

// Game is a simulation a [Match] runs. Its methods are called from one
// goroutine at a time (the match serializes them).
type Game[I any] interface {
	// Step advances the state to tick, applying inputs: at most one per
	// player, in player order. It must be deterministic: the next state
	// depends only on the current state (seed included) and the inputs.
	Step(tick uint64, inputs []Input[I])
	// AppendEntities appends the state's entities to dst, sorted by ID,
	// with IDs that sort before [AcksEntity], and returns it. The
	// entities' Data must not change afterwards (make new bytes each
	// tick for what changed).
	AppendEntities(dst []Entity) []Entity
}

// AcksEntity is the ID of the entity the match adds to every snapshot:
// a JSON object from player number to the sequence number of the newest
// input the match has processed for that player, applied or refused, e.g.
// {"0":17,"3":4}. A client drops its pending inputs up to that number and
// replays the rest on top of the snapshot (client-side prediction).
const AcksEntity = "~acks"

// Errors of [Match.Submit] and [Match.Ack].
var (
	// ErrStale: the input's sequence number is not after the player's
	// last one (a duplicate or a replay).
	ErrStale = errors.New("engine: input sequence number not after the last one")
	// ErrQueueFull: the player already has QueueLen inputs waiting.
	ErrQueueFull = errors.New("engine: too many inputs queued for the player")
	// ErrLate: the input was meant for a tick more than MaxLate ticks ago.
	ErrLate = errors.New("engine: input too late")
	// ErrFuture: an input meant for more than MaxLate ticks ahead, or an
	// acknowledgement of a tick not reached yet.
	ErrFuture = errors.New("engine: input or acknowledgement for a tick in the future")
)

// MatchOptions configure a [Match]. The zero value works.
type MatchOptions struct {
	// QueueLen bounds the inputs waiting per player. Default 8.
	QueueLen int
	// MaxLate is how many ticks in the past (or future) an input may be
	// meant for. Default 15.
	MaxLate int
	// History is how many recent snapshots are kept as bases for deltas.
	// Default 64.
	History int
}

// Match runs one [Game]: it queues inputs, steps the game, keeps recent
// snapshots and makes each viewer's delta. It is safe for concurrent use:
// inputs and acknowledgements may arrive from any goroutine while another
// calls Step.
type Match[I any] struct {
	mu        sync.Mutex
	game      Game[I]
	opts      MatchOptions
	tick      uint64
	players   []int // sorted
	queues    map[int][]Input[I]
	submitted map[int]uint32 // newest sequence number submitted
	processed map[int]uint32 // newest applied or refused
	ring      []*Snapshot
	acks      map[string]uint64
	encoded   map[uint64][]byte // base → this tick's delta, encoded
	inbuf     []Input[I]
}

// NewMatch returns a match of g at tick 0, with no snapshot yet.
func NewMatch[I any](g Game[I], opts MatchOptions) *Match[I] {
	if opts.QueueLen <= 0 {
		opts.QueueLen = 8
	}
	if opts.MaxLate <= 0 {
		opts.MaxLate = 15
	}
	if opts.History <= 0 {
		opts.History = 64
	}
	return &Match[I]{game: g, opts: opts, queues: make(map[int][]Input[I]),
		submitted: make(map[int]uint32), processed: make(map[int]uint32),
		ring: make([]*Snapshot, opts.History), acks: make(map[string]uint64), encoded: make(map[uint64][]byte)}
}

// Tick returns the tick of the newest snapshot (0 before the first Step).
func (m *Match[I]) Tick() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tick
}

// Submit queues in for the next ticks, or refuses it (see the package
// documentation): the error wraps [ErrStale], [ErrQueueFull], [ErrLate] or
// [ErrFuture]. A refused input still counts as processed in the acks
// entity, except a stale one.
func (m *Match[I]) Submit(in Input[I]) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := in.Player
	if in.Seq <= m.submitted[p] {
		return fmt.Errorf("%w: %d after %d", ErrStale, in.Seq, m.submitted[p])
	}
	m.submitted[p] = in.Seq
	var err error
	switch next := m.tick + 1; {
	case in.Tick != 0 && in.Tick+uint64(m.opts.MaxLate) < next:
		err = fmt.Errorf("%w: meant for tick %d, now %d", ErrLate, in.Tick, next)
	case in.Tick > next+uint64(m.opts.MaxLate):
		err = fmt.Errorf("%w: meant for tick %d, now %d", ErrFuture, in.Tick, next)
	case len(m.queues[p]) >= m.opts.QueueLen:
		err = fmt.Errorf("%w (%d)", ErrQueueFull, m.opts.QueueLen)
	}
	if err != nil {
		m.processed[p] = in.Seq
		return err
	}
	if _, known := m.queues[p]; !known {
		i, _ := slices.BinarySearch(m.players, p)
		m.players = slices.Insert(m.players, i, p)
	}
	m.queues[p] = append(m.queues[p], in)
	return nil
}

// LastSeq returns the newest sequence number submitted for player, so that
// a client that comes back (a reloaded page) continues after it.
func (m *Match[I]) LastSeq(player int) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.submitted[player]
}

// RemovePlayer forgets player's queue and sequence numbers: the next
// occupant of its number starts afresh.
func (m *Match[I]) RemovePlayer(player int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i, ok := slices.BinarySearch(m.players, player); ok {
		m.players = slices.Delete(m.players, i, i+1)
	}
	delete(m.queues, player)
	delete(m.submitted, player)
	delete(m.processed, player)
}

// Update runs fn while no Step runs, for changes made outside of inputs
// (a player joining, say). fn must not call the match.
func (m *Match[I]) Update(fn func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn()
}

// Step advances the game by one tick with the inputs due, records the
// snapshot and returns it.
func (m *Match[I]) Step() *Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tick++
	ins := m.inbuf[:0]
	for _, p := range m.players {
		q := m.queues[p]
		if len(q) == 0 {
			continue
		}
		ins = append(ins, q[0])
		m.processed[p] = q[0].Seq
		m.queues[p] = q[:copy(q, q[1:])]
	}
	m.game.Step(m.tick, ins)
	clear(ins)
	m.inbuf = ins[:0]
	ents := m.game.AppendEntities(nil)
	ents = append(ents, Entity{ID: AcksEntity, Data: m.acksJSON()})
	s := &Snapshot{Tick: m.tick, Entities: ents}
	m.ring[m.tick%uint64(len(m.ring))] = s
	clear(m.encoded)
	return s
}

func (m *Match[I]) acksJSON() []byte {
	b := []byte{'{'}
	ps := make([]int, 0, len(m.processed))
	for p := range m.processed {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = strconv.AppendInt(b, int64(p), 10)
		b = append(b, `":`...)
		b = strconv.AppendUint(b, uint64(m.processed[p]), 10)
	}
	return append(b, '}')
}

// snapshotAt returns the kept snapshot of tick, or nil.
func (m *Match[I]) snapshotAt(tick uint64) *Snapshot {
	if tick == 0 || tick > m.tick {
		return nil
	}
	if s := m.ring[tick%uint64(len(m.ring))]; s != nil && s.Tick == tick {
		return s
	}
	return nil
}

// Snapshot returns the newest snapshot, or nil before the first Step.
func (m *Match[I]) Snapshot() *Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snapshotAt(m.tick)
}

// Ack records that viewer holds the snapshot of tick, the base of its
// next deltas. An acknowledgement older than the viewer's last is
// ignored; tick 0 asks for a full snapshot next; a tick not reached yet
// is refused with [ErrFuture].
func (m *Match[I]) Ack(viewer string, tick uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case tick > m.tick:
		return fmt.Errorf("%w: acknowledged tick %d, now %d", ErrFuture, tick, m.tick)
	case tick == 0:
		m.acks[viewer] = 0
	case tick > m.acks[viewer]:
		m.acks[viewer] = tick
	}
	return nil
}

// Forget drops viewer's acknowledgement.
func (m *Match[I]) Forget(viewer string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.acks, viewer)
}

// DeltaFor returns the encoded delta (see [Delta.AppendJSON]) from the
// snapshot viewer last acknowledged to the newest one, or a full snapshot
// when that one is no longer kept (or viewer never acknowledged one). It
// returns nil before the first Step and when viewer already acknowledged
// the newest snapshot. The bytes are shared by every viewer
// with the same base: do not modify them.
func (m *Match[I]) DeltaFor(viewer string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.snapshotAt(m.tick)
	if cur == nil {
		return nil
	}
	base := m.snapshotAt(m.acks[viewer])
	if base == cur {
		return nil
	}
	key := tickOf(base)
	if b, ok := m.encoded[key]; ok {
		return b
	}
	d := Diff(base, cur)
	b := d.AppendJSON(nil)
	m.encoded[key] = b
	return b
}
