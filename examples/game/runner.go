package main

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/examples/game/engine"
	"github.com/rtkit/rtkit/examples/game/snake"
)

// A runner runs one match on the node that holds its lease. Two
// goroutines: the tick loop, which never waits on the network, and an I/O
// goroutine, which publishes what the loop produced, renews the lease,
// reads the match's players from the lobby and records results. Both end
// when the match is empty, the lease is lost, or the app shuts down.
type runner struct {
	a      *app
	id     string
	m      *engine.Match[snake.Input]
	g      *snake.Game
	in     chan []byte         // control messages from any node (inputs, acks, joins)
	roster chan map[int]player // the lobby's players, from the I/O goroutine
	out    chan *batch         // to the I/O goroutine
	cancel context.CancelFunc  // stops both goroutines
	sub    *rtkit.Subscription // of the match's control topic
	nobody atomic.Bool         // no viewer acknowledged lately

	players map[int]*slotState
	viewers map[string]time.Time // user → last acknowledgement
	pending batch                // what could not be handed over yet
}

type slotState struct {
	user, name string
	lastSeen   time.Time
	away       bool
}

// batch is one tick's work for the I/O goroutine.
type batch struct {
	msgs    []outMsg
	leaves  []string // users whose grace period ran out
	results []snake.Result
}

type outMsg struct {
	room string
	data []byte
}

// control is a message on a match's control topic ("gamein:<match>"),
// published by whichever node took the call. User is the authenticated
// user of the connection that sent it, never a field the client chose.
type control struct {
	Kind string `json:"k"` // "in", "ack", "join", "leave"
	User string `json:"u"`
	Slot int    `json:"p,omitempty"`
	Seq  uint32 `json:"s,omitempty"`
	Tick uint64 `json:"t,omitempty"`
	Dir  int8   `json:"d,omitempty"`
	Name string `json:"n,omitempty"`
}

func controlTopic(match string) string { return "gamein:" + match }
func matchRoom(match string) string    { return "game:" + match }
func viewerRoom(user string) string    { return "v:" + user }

func newRunner(a *app, id string) *runner {
	seed := uint64(time.Now().UnixNano())
	if a.cfg.Seed != 0 {
		seed = a.cfg.Seed
	}
	g := snake.New(seed, a.cfg.Snake)
	return &runner{a: a, id: id, g: g, m: engine.NewMatch[snake.Input](g, engine.MatchOptions{}),
		in: make(chan []byte, 1024), roster: make(chan map[int]player, 1), out: make(chan *batch, 8),
		players: map[int]*slotState{}, viewers: map[string]time.Time{}}
}

// HandleMessage and HandleGap make the runner the handler of its control
// topic: they only queue (a full queue drops, as a lossy link would).
func (r *runner) HandleMessage(m *rtkit.Message) {
	select {
	case r.in <- m.Data:
	default:
		r.a.stats.dropped.Add(1)
	}
}

func (r *runner) HandleGap(rtkit.ID) {}

// tick is one turn of the loop: take what arrived, step, hand the deltas
// over.
func (r *runner) tick(late time.Duration, skipped int) bool {
	now := time.Now()
	r.a.stats.observe(late, skipped)
	select {
	case ps := <-r.roster:
		r.syncRoster(ps, now)
	default:
	}
	for n := 0; n < cap(r.in); n++ {
		select {
		case raw := <-r.in:
			r.handle(raw, now)
			continue
		default:
		}
		break
	}
	var gone []int
	r.m.Update(func() { gone = r.checkGrace(now) })
	for _, slot := range gone {
		r.m.RemovePlayer(slot)
	}
	r.m.Step()
	var res *snake.Result
	r.m.Update(func() {
		if x, ok := r.g.TakeResult(); ok {
			res = &x
		}
	})
	b := &batch{leaves: r.pending.leaves, results: r.pending.results}
	if res != nil {
		b.results = append(b.results, *res)
	}
	for user, seen := range r.viewers {
		if now.Sub(seen) > r.a.cfg.ViewerTimeout {
			delete(r.viewers, user)
			r.m.Forget(user)
			continue
		}
		if d := r.m.DeltaFor(user); d != nil {
			b.msgs = append(b.msgs, outMsg{viewerRoom(user), r.wrap(d)})
		}
	}
	r.nobody.Store(len(r.viewers) == 0)
	select {
	case r.out <- b:
		r.pending = batch{}
	default:
		// The I/O goroutine is behind: the deltas are dropped (viewers keep
		// acknowledging older snapshots and get larger deltas next time);
		// leaves and results wait for the next tick.
		r.pending = batch{leaves: b.leaves, results: b.results}
		r.a.stats.dropped.Add(int64(len(b.msgs)))
	}
	return true
}

// wrap makes the payload viewers receive: {"m":"<match>","d":<delta>}.
func (r *runner) wrap(delta []byte) []byte {
	b := make([]byte, 0, len(delta)+len(r.id)+16)
	b = append(b, `{"m":"`...)
	b = append(b, r.id...)
	b = append(b, `","d":`...)
	b = append(b, delta...)
	return append(b, '}')
}

func (r *runner) handle(raw []byte, now time.Time) {
	var c control
	if json.Unmarshal(raw, &c) != nil {
		return
	}
	switch c.Kind {
	case "in":
		p := r.players[c.Slot]
		if p == nil || p.user != c.User {
			r.a.stats.refused.Add(1) // the slot changed hands meanwhile
			return
		}
		r.seen(p, now)
		err := r.m.Submit(engine.Input[snake.Input]{Player: c.Slot, Seq: c.Seq, Tick: c.Tick, Value: snake.Input{Dir: snake.Dir(c.Dir)}})
		if err != nil {
			r.a.stats.refused.Add(1)
		}
	case "ack":
		_ = r.m.Ack(c.User, c.Tick) // a future tick is ignored
		r.viewers[c.User] = now
		for _, p := range r.players {
			if p.user == c.User {
				r.seen(p, now)
			}
		}
	case "join":
		if p := r.players[c.Slot]; p == nil {
			r.addPlayer(c.Slot, c.User, c.Name, now)
		}
	case "leave":
		for slot, p := range r.players {
			if p.user == c.User {
				r.removePlayer(slot)
			}
		}
	}
}

func (r *runner) seen(p *slotState, now time.Time) {
	p.lastSeen = now
	if p.away {
		p.away = false
		slot := r.slotOf(p)
		r.m.Update(func() { r.g.SetAway(slot, false) })
	}
}

func (r *runner) slotOf(p *slotState) int {
	for s, q := range r.players {
		if q == p {
			return s
		}
	}
	return -1
}

func (r *runner) addPlayer(slot int, user, name string, now time.Time) {
	r.players[slot] = &slotState{user: user, name: name, lastSeen: now}
	r.m.Update(func() { r.g.Join(slot, name) })
}

func (r *runner) removePlayer(slot int) {
	delete(r.players, slot)
	r.m.Update(func() { r.g.Leave(slot) })
	r.m.RemovePlayer(slot)
}

// syncRoster makes the match's players those of the lobby.
func (r *runner) syncRoster(ps map[int]player, now time.Time) {
	for slot, p := range ps {
		if cur := r.players[slot]; cur == nil || cur.user != p.User {
			if cur != nil {
				r.removePlayer(slot)
			}
			r.addPlayer(slot, p.User, p.Name, now)
		}
	}
	for slot := range r.players {
		if _, ok := ps[slot]; !ok {
			r.removePlayer(slot)
		}
	}
}

// checkGrace marks silent players away and frees the slots of those
// silent for longer than the grace period, returning their slots. It
// runs inside Update.
func (r *runner) checkGrace(now time.Time) (gone []int) {
	for slot, p := range r.players {
		idle := now.Sub(p.lastSeen)
		if idle > r.a.cfg.Grace {
			delete(r.players, slot)
			r.g.Leave(slot)
			r.pending.leaves = append(r.pending.leaves, p.user)
			gone = append(gone, slot)
			continue
		}
		if idle > r.a.cfg.AwayAfter && !p.away {
			p.away = true
			r.g.SetAway(slot, true)
		}
	}
	return gone
}

// io is the runner's I/O goroutine.
func (r *runner) io(ctx context.Context) {
	every := time.NewTicker(r.a.cfg.LeaseTTL / 3)
	defer every.Stop()
	r.housekeep(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-r.out:
			r.flush(ctx, b)
		case <-every.C:
			r.housekeep(ctx)
		}
	}
}

func (r *runner) flush(ctx context.Context, b *batch) {
	for _, m := range b.msgs {
		if _, err := r.a.bp.Publish(ctx, m.room, m.data, rtkit.PublishOptions{Ephemeral: true}); err != nil {
			r.a.stats.dropped.Add(1)
		} else {
			r.a.stats.bytesOut.Add(int64(len(m.data)))
		}
	}
	for _, user := range b.leaves {
		if err := r.a.lobby.Leave(ctx, r.id, user); err != nil {
			r.a.log.Warn("lobby leave", "match", r.id, "err", err)
		}
	}
	for _, res := range b.results {
		r.a.recordResult(ctx, r.id, res)
	}
}

// housekeep renews the lease, refreshes the players from the lobby, and
// closes the match when nobody is left.
func (r *runner) housekeep(ctx context.Context) {
	ok, err := r.a.lobby.Acquire(ctx, r.id, r.a.node, r.a.cfg.LeaseTTL)
	if err != nil || !ok {
		if ctx.Err() == nil {
			r.a.log.Warn("match lease lost", "match", r.id, "err", err)
			r.cancel()
		}
		return
	}
	ps, err := r.a.lobby.Players(ctx, r.id)
	if err != nil {
		return
	}
	if len(ps) == 0 && r.nobody.Load() {
		if closed, err := r.a.lobby.Close(ctx, r.id); err == nil && closed {
			r.a.log.Info("match empty, stopped", "match", r.id)
			r.cancel()
			return
		}
	}
	select {
	case <-r.roster: // replace an unread one
	default:
	}
	r.roster <- ps
}
