// Package snake is the game of the example: multiplayer snake in a walled
// arena, written on the [engine.Game] interface.
//
// Up to [MaxPlayers] snakes move one cell every few ticks. Eating food
// scores 1 and grows the snake; a snake whose head hits a wall, itself or
// another snake dies, and the owner of the body it hit scores 3. Two heads
// meeting kill both. A dead snake drops food and comes back after a short
// wait. A round goes: waiting (fewer than MinPlayers: practice, nothing
// counts), a countdown, a timed round, the results, and again.
//
// Everything is integer arithmetic with a random source kept in the
// state, so a game is a pure function of its seed and its inputs.
package snake

import (
	"encoding/json"
	"slices"
	"strconv"

	"github.com/rtkit/rtkit/examples/game/engine"
)

// MaxPlayers is the number of snakes (slots) a game holds.
const MaxPlayers = 8

// Dir is a direction: Up, Right, Down or Left.
type Dir int8

// The directions, as inputs carry them.
const (
	Up Dir = iota
	Right
	Down
	Left
)

// Valid reports whether d is one of the four directions.
func (d Dir) Valid() bool { return d >= Up && d <= Left }

func (d Dir) opposite() Dir { return (d + 2) % 4 }

var steps = [4]point{{0, -1}, {1, 0}, {0, 1}, {-1, 0}}

// Input is a player's command: turn to Dir. A turn into the opposite
// direction (back into the snake's own neck) is ignored; up to two turns
// wait for the snake's next moves, so a quick "up, left" is not lost.
type Input struct {
	Dir Dir
}

// Phase is where a round is.
type Phase string

// The phases of a round.
const (
	Waiting   Phase = "wait"  // fewer than MinPlayers: practice, no score
	Countdown Phase = "count" // snakes placed, frozen
	Playing   Phase = "play"
	Ended     Phase = "end" // results shown, snakes frozen
)

// Options shape a game; durations are in ticks. The zero value gives the
// defaults, made for 30 ticks a second.
type Options struct {
	Width, Height int // arena in cells; default 40×28, from 10 to 99 each
	MoveEvery     int // a snake moves every MoveEvery ticks; default 3 (10 cells/s)
	MinPlayers    int // players for a round; default 2
	Countdown     int // default 90 (3 s)
	Duration      int // a round; default 1800 (60 s)
	EndPause      int // results; default 150 (5 s)
	Respawn       int // a dead snake's wait; default 45 (1.5 s)
	StartLen      int // default 4
	Food          int // food on the board besides one per snake; default 3
}

func (o *Options) defaults() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.Width, 40)
	def(&o.Height, 28)
	def(&o.MoveEvery, 3)
	def(&o.MinPlayers, 2)
	def(&o.Countdown, 90)
	def(&o.Duration, 1800)
	def(&o.EndPause, 150)
	def(&o.Respawn, 45)
	def(&o.StartLen, 4)
	def(&o.Food, 3)
	o.Width, o.Height = max(min(o.Width, 99), 10), max(min(o.Height, 99), 10)
}

type point struct{ X, Y int }

func (p point) add(q point) point { return point{p.X + q.X, p.Y + q.Y} }

type snake struct {
	name      string
	body      []point // head first
	dir       Dir
	turns     []Dir
	grow      int
	alive     bool
	respawnAt uint64
	score     int
	kills     int
	deaths    int
	away      bool
	body0     []byte // the last encodings of its entities
	card      []byte
}

// Game is one arena. It implements [engine.Game]; use it through an
// [engine.Match], which serializes its methods.
type Game struct {
	o        Options
	rng      uint64
	tick     uint64
	phase    Phase
	phaseEnd uint64
	round    int
	snakes   [MaxPlayers]*snake
	food     []point // sorted by (Y, X)
	result   *Result
	meta     []byte
	grid     []int8 // scratch: occupant+1 of each cell
}

var _ engine.Game[Input] = (*Game)(nil)

// New returns a game in the Waiting phase with no player, its random
// source seeded by seed.
func New(seed uint64, o Options) *Game {
	o.defaults()
	g := &Game{o: o, rng: max(seed^0x9e3779b97f4a7c15, 1), phase: Waiting, grid: make([]int8, o.Width*o.Height)}
	g.fillFood()
	return g
}

// Result is the outcome of a finished round.
type Result struct {
	Round   int            `json:"round"`
	Tick    uint64         `json:"tick"`
	Players []PlayerResult `json:"players"` // best score first
}

// PlayerResult is one player's line in a [Result].
type PlayerResult struct {
	Slot   int    `json:"slot"`
	Name   string `json:"name"`
	Score  int    `json:"score"`
	Kills  int    `json:"kills"`
	Deaths int    `json:"deaths"`
}

// Join puts a player in slot (0 to MaxPlayers-1) under name; it reports
// false if the slot is out of range or taken. The snake appears at its
// spawn point at the next tick that allows it.
func (g *Game) Join(slot int, name string) bool {
	if slot < 0 || slot >= MaxPlayers || g.snakes[slot] != nil {
		return false
	}
	g.snakes[slot] = &snake{name: name, respawnAt: g.tick + 1}
	return true
}

// Leave removes the player of slot and its snake.
func (g *Game) Leave(slot int) {
	if slot >= 0 && slot < MaxPlayers {
		g.snakes[slot] = nil
	}
}

// SetAway marks the player of slot as disconnected (or back): the snake
// goes on, and the page shows it.
func (g *Game) SetAway(slot int, away bool) {
	if slot >= 0 && slot < MaxPlayers && g.snakes[slot] != nil {
		g.snakes[slot].away = away
	}
}

// Players returns the number of players.
func (g *Game) Players() int {
	n := 0
	for _, s := range g.snakes {
		if s != nil {
			n++
		}
	}
	return n
}

// Phase returns the current phase.
func (g *Game) Phase() Phase { return g.phase }

// TakeResult returns the result of the round that just ended, once.
func (g *Game) TakeResult() (Result, bool) {
	if g.result == nil {
		return Result{}, false
	}
	r := *g.result
	g.result = nil
	return r, true
}

// Score returns the score of slot's player.
func (g *Game) Score(slot int) int {
	if slot < 0 || slot >= MaxPlayers || g.snakes[slot] == nil {
		return 0
	}
	return g.snakes[slot].score
}

// random returns a number in [0, n) from the game's xorshift64* source.
func (g *Game) random(n int) int {
	g.rng ^= g.rng >> 12
	g.rng ^= g.rng << 25
	g.rng ^= g.rng >> 27
	return int((g.rng * 2685821657736338717 >> 33) % uint64(n))
}

// Step implements [engine.Game].
func (g *Game) Step(tick uint64, inputs []engine.Input[Input]) {
	g.tick = tick
	for _, in := range inputs {
		if s := g.snake(in.Player); s != nil && in.Value.Dir.Valid() && len(s.turns) < 2 {
			s.turns = append(s.turns, in.Value.Dir)
		}
	}
	players := g.Players()
	switch g.phase {
	case Waiting:
		if players >= g.o.MinPlayers {
			g.startCountdown()
		}
	case Countdown:
		if players < g.o.MinPlayers {
			g.setPhase(Waiting, 0)
		} else if tick >= g.phaseEnd {
			g.setPhase(Playing, tick+uint64(g.o.Duration))
		}
	case Playing:
		if players < g.o.MinPlayers || tick >= g.phaseEnd {
			g.finish()
		}
	case Ended:
		if tick >= g.phaseEnd {
			if players >= g.o.MinPlayers {
				g.startCountdown()
			} else {
				g.setPhase(Waiting, 0)
			}
		}
	}
	if g.phase == Waiting || g.phase == Playing {
		g.respawn()
		if tick%uint64(g.o.MoveEvery) == 0 {
			g.move()
		}
	}
}

func (g *Game) snake(slot int) *snake {
	if slot < 0 || slot >= MaxPlayers {
		return nil
	}
	return g.snakes[slot]
}

func (g *Game) setPhase(p Phase, end uint64) {
	g.phase, g.phaseEnd = p, end
}

func (g *Game) startCountdown() {
	g.round++
	g.setPhase(Countdown, g.tick+uint64(g.o.Countdown))
	for _, s := range g.snakes {
		if s != nil {
			s.score, s.kills, s.deaths = 0, 0, 0
			s.alive, s.body, s.turns, s.grow = false, nil, nil, 0
		}
	}
	g.food = g.food[:0]
	for i, s := range g.snakes {
		if s != nil {
			g.spawn(i, s)
		}
	}
	g.fillFood()
}

func (g *Game) finish() {
	r := Result{Round: g.round, Tick: g.tick}
	for i, s := range g.snakes {
		if s != nil {
			r.Players = append(r.Players, PlayerResult{Slot: i, Name: s.name, Score: s.score, Kills: s.kills, Deaths: s.deaths})
		}
	}
	slices.SortStableFunc(r.Players, func(a, b PlayerResult) int { return b.Score - a.Score })
	g.result = &r
	g.setPhase(Ended, g.tick+uint64(g.o.EndPause))
}

// spawnPoint returns slot's spawn head and direction: around the arena,
// facing inwards.
func (g *Game) spawnPoint(slot int) (point, Dir) {
	w, h := g.o.Width, g.o.Height
	switch slot % MaxPlayers {
	case 0:
		return point{w / 5, h / 6}, Right
	case 1:
		return point{w - 1 - w/5, h - 1 - h/6}, Left
	case 2:
		return point{w - 1 - w/6, h / 5}, Down
	case 3:
		return point{w / 6, h - 1 - h/5}, Up
	case 4:
		return point{w / 5, h / 2}, Right
	case 5:
		return point{w - 1 - w/5, h/2 - 1}, Left
	case 6:
		return point{w / 2, h / 6}, Down
	default:
		return point{w/2 - 1, h - 1 - h/6}, Up
	}
}

// spawn places s at its slot's spawn point, or the next free one; it
// reports whether there was room.
func (g *Game) spawn(slot int, s *snake) bool {
	g.fillGrid()
	for k := range MaxPlayers {
		head, dir := g.spawnPoint(slot + k)
		body := make([]point, g.o.StartLen)
		back := steps[dir.opposite()]
		free := true
		for i := range body {
			body[i] = point{head.X + back.X*i, head.Y + back.Y*i}
			if !g.inside(body[i]) || g.grid[g.cell(body[i])] != 0 {
				free = false
				break
			}
		}
		if free {
			s.body, s.dir, s.turns, s.grow, s.alive = body, dir, nil, 0, true
			for _, p := range body {
				g.eat(p)
			}
			return true
		}
	}
	return false
}

func (g *Game) respawn() {
	for i, s := range g.snakes {
		if s != nil && !s.alive && g.tick >= s.respawnAt && g.spawn(i, s) {
			g.fillFood()
		}
	}
}

func (g *Game) inside(p point) bool {
	return p.X >= 0 && p.Y >= 0 && p.X < g.o.Width && p.Y < g.o.Height
}
func (g *Game) cell(p point) int { return p.Y*g.o.Width + p.X }

// fillGrid marks every cell of every living snake.
func (g *Game) fillGrid() {
	clear(g.grid)
	for i, s := range g.snakes {
		if s != nil && s.alive {
			for _, p := range s.body {
				g.grid[g.cell(p)] = int8(i + 1)
			}
		}
	}
}

// move advances every living snake one cell, all at once.
func (g *Game) move() {
	var heads [MaxPlayers]point
	var grows [MaxPlayers]bool
	for i, s := range g.snakes {
		if s == nil || !s.alive {
			continue
		}
		if len(s.turns) > 0 {
			if t := s.turns[0]; t != s.dir.opposite() {
				s.dir = t
			}
			s.turns = s.turns[1:]
		}
		heads[i] = s.body[0].add(steps[s.dir])
		grows[i] = s.grow > 0 || g.foodAt(heads[i])
	}
	// The cells taken after the move: bodies without the tails that move
	// away.
	clear(g.grid)
	for i, s := range g.snakes {
		if s == nil || !s.alive {
			continue
		}
		body := s.body
		if !grows[i] {
			body = body[:len(body)-1]
		}
		for _, p := range body {
			g.grid[g.cell(p)] = int8(i + 1)
		}
	}
	var dead [MaxPlayers]bool
	for i, s := range g.snakes {
		if s == nil || !s.alive {
			continue
		}
		h := heads[i]
		if !g.inside(h) {
			dead[i] = true
			continue
		}
		if o := int(g.grid[g.cell(h)]) - 1; o >= 0 {
			dead[i] = true
			if o != i {
				g.credit(o)
			}
		}
		for j := i + 1; j < MaxPlayers; j++ {
			if t := g.snakes[j]; t != nil && t.alive && heads[j] == h {
				dead[i], dead[j] = true, true
			}
		}
	}
	for i, s := range g.snakes {
		if s == nil || !s.alive {
			continue
		}
		if dead[i] {
			g.kill(s)
			continue
		}
		s.body = slices.Insert(s.body, 0, heads[i])
		if g.eat(heads[i]) {
			s.grow++
			if g.phase == Playing {
				s.score++
			}
		}
		if s.grow > 0 {
			s.grow--
		} else {
			s.body = s.body[:len(s.body)-1]
		}
	}
	g.fillFood()
}

func (g *Game) credit(slot int) {
	if s := g.snakes[slot]; s != nil && g.phase == Playing {
		s.kills++
		s.score += 3
	}
}

// kill ends s: it drops food on every other cell of its body (up to
// six) and waits to respawn.
func (g *Game) kill(s *snake) {
	if g.phase == Playing {
		s.deaths++
	}
	for i := 1; i < len(s.body) && i <= 12; i += 2 {
		if p := s.body[i]; !g.foodAt(p) {
			g.addFood(p)
		}
	}
	s.alive, s.body, s.turns, s.grow = false, nil, nil, 0
	s.respawnAt = g.tick + uint64(g.o.Respawn)
}

func cmpPoint(a, b point) int {
	if a.Y != b.Y {
		return a.Y - b.Y
	}
	return a.X - b.X
}

func (g *Game) foodAt(p point) bool {
	_, ok := slices.BinarySearchFunc(g.food, p, cmpPoint)
	return ok
}

func (g *Game) addFood(p point) {
	if i, ok := slices.BinarySearchFunc(g.food, p, cmpPoint); !ok {
		g.food = slices.Insert(g.food, i, p)
	}
}

// eat removes the food at p, if any, and reports whether there was some.
func (g *Game) eat(p point) bool {
	i, ok := slices.BinarySearchFunc(g.food, p, cmpPoint)
	if ok {
		g.food = slices.Delete(g.food, i, i+1)
	}
	return ok
}

// fillFood tops the food up to Food plus one per player, on random free
// cells.
func (g *Game) fillFood() {
	want := g.o.Food + g.Players()
	if len(g.food) >= want {
		return
	}
	g.fillGrid()
	n := g.o.Width * g.o.Height
	for len(g.food) < want {
		c := g.random(n)
		for k := 0; k < n; k++ { // the next free cell from c
			p := point{(c + k) % n % g.o.Width, (c + k) % n / g.o.Width}
			if g.grid[g.cell(p)] == 0 && !g.foodAt(p) {
				g.addFood(p)
				break
			}
			if k == n-1 {
				return // the board is full
			}
		}
	}
}

var (
	dirChars = [4]byte{'u', 'r', 'd', 'l'}
	one      = []byte("1")
)

func foodID(cell int) string {
	b := []byte("f0000")
	for i := 4; i > 0 && cell > 0; i-- {
		b[i] = byte('0' + cell%10)
		cell /= 10
	}
	return string(b)
}

// AppendEntities implements [engine.Game]: "f<cell>" for each food (the
// cell y*w+x in four digits, data 1), "m" for the round, and two entities
// per player: "p<slot>" for its snake, which changes at every move, and
// "s<slot>" for its name and score, which rarely do, so that deltas carry
// only what changed:
//
//	m   {"p":"play","e":1890,"r":2,"w":40,"h":28,"v":3}
//	p0  {"h":[5,4],"b":"lll","d":1,"q":"2"}
//	s0  {"n":"ada","s":3,"k":1,"x":0,"w":false}
//
// The round: "p" the phase, "e" the tick it ends (0: none), "r" the round
// number, "w" and "h" the arena, "v" ticks per move. A snake: "h" its head
// (absent while it is dead), "b" the way from each cell to the next one
// behind it ('u', 'r', 'd', 'l'), "d" its direction (0 up, 1 right, 2
// down, 3 left), "q" the turns waiting ("0".."3"). A player: "n" name,
// "s" "k" "x" score, kills, deaths, "w" whether the player is away.
func (g *Game) AppendEntities(dst []engine.Entity) []engine.Entity {
	// Food is sorted by cell, and so are its zero-padded IDs; then
	// "f..." < "m" < "p0".."p7" < "s0".."s7" keeps the list sorted.
	for _, p := range g.food {
		dst = append(dst, engine.Entity{ID: foodID(g.cell(p)), Data: one})
	}
	g.meta = reuse(g.meta, appendMeta(nil, g))
	dst = append(dst, engine.Entity{ID: "m", Data: g.meta})
	for i, s := range g.snakes {
		if s != nil {
			s.body0 = reuse(s.body0, s.appendBody(nil))
			dst = append(dst, engine.Entity{ID: "p" + strconv.Itoa(i), Data: s.body0})
		}
	}
	for i, s := range g.snakes {
		if s != nil {
			s.card = reuse(s.card, s.appendCard(nil))
			dst = append(dst, engine.Entity{ID: "s" + strconv.Itoa(i), Data: s.card})
		}
	}
	return dst
}

// reuse returns old when it holds the same bytes as new: an unchanged
// entity keeps its bytes, which snapshots share.
func reuse(old, new []byte) []byte {
	if string(old) == string(new) {
		return old
	}
	return new
}

func appendMeta(b []byte, g *Game) []byte {
	b = append(b, `{"p":"`...)
	b = append(b, g.phase...)
	b = append(b, `","e":`...)
	b = strconv.AppendUint(b, g.phaseEnd, 10)
	for _, f := range []struct {
		k string
		v int
	}{{"r", g.round}, {"w", g.o.Width}, {"h", g.o.Height}, {"v", g.o.MoveEvery}} {
		b = append(b, `,"`+f.k+`":`...)
		b = strconv.AppendInt(b, int64(f.v), 10)
	}
	return append(b, '}')
}

func (s *snake) appendBody(b []byte) []byte {
	b = append(b, '{')
	if len(s.body) > 0 {
		b = append(b, `"h":[`...)
		b = strconv.AppendInt(b, int64(s.body[0].X), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(s.body[0].Y), 10)
		b = append(b, `],"b":"`...)
		for i := 1; i < len(s.body); i++ {
			d := point{s.body[i].X - s.body[i-1].X, s.body[i].Y - s.body[i-1].Y}
			b = append(b, dirChars[slices.Index(steps[:], d)])
		}
		b = append(b, `",`...)
	}
	b = append(b, `"d":`...)
	b = strconv.AppendInt(b, int64(s.dir), 10)
	b = append(b, `,"q":"`...)
	for _, t := range s.turns {
		b = append(b, byte('0'+t))
	}
	return append(b, `"}`...)
}

func (s *snake) appendCard(b []byte) []byte {
	name, _ := json.Marshal(s.name)
	b = append(b, `{"n":`...)
	b = append(b, name...)
	for _, f := range []struct {
		k string
		v int
	}{{"s", s.score}, {"k", s.kills}, {"x", s.deaths}} {
		b = append(b, `,"`+f.k+`":`...)
		b = strconv.AppendInt(b, int64(f.v), 10)
	}
	b = append(b, `,"w":`...)
	b = strconv.AppendBool(b, s.away)
	return append(b, '}')
}
