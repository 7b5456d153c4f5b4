package snake

import (
	"testing"

	"github.com/rtkit/rtkit/examples/game/engine"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// arena returns a 10×10 game in the Playing phase where snakes move every
// tick, no food appears by itself, and the given snakes are placed.
func arena(t *testing.T, snakes map[int][]point, dirs map[int]Dir, food ...point) *Game {
	t.Helper()
	g := New(1, Options{Width: 10, Height: 10, MoveEvery: 1, MinPlayers: 1})
	g.o.Food = -MaxPlayers // no refill: the test places the food
	g.food = nil
	for _, f := range food {
		g.addFood(f)
	}
	for i, body := range snakes {
		require.True(t, g.Join(i, "p"))
		s := g.snakes[i]
		s.body, s.dir, s.alive = body, dirs[i], true
	}
	g.setPhase(Playing, 1000)
	g.tick = 10
	return g
}

func step(g *Game, inputs ...engine.Input[Input]) { g.Step(g.tick+1, inputs) }

func TestEatingScoresAndGrows(t *testing.T) {
	g := arena(t, map[int][]point{0: {{2, 2}, {1, 2}, {0, 2}}}, map[int]Dir{0: Right}, point{3, 2})
	step(g)
	s := g.snakes[0]
	require.Equal(t, []point{{3, 2}, {2, 2}, {1, 2}, {0, 2}}, s.body, "one longer")
	require.Equal(t, 1, s.score)
	require.Empty(t, g.food)
	step(g)
	require.Len(t, s.body, 4, "grows once per food")
}

func TestWallKills(t *testing.T) {
	g := arena(t, map[int][]point{0: {{9, 5}, {8, 5}}}, map[int]Dir{0: Right})
	step(g)
	s := g.snakes[0]
	require.False(t, s.alive)
	require.Equal(t, 1, s.deaths)
	require.Zero(t, s.score)
	require.Equal(t, []point{{8, 5}}, g.food, "a dead snake drops food on every other cell behind its head")
}

func TestHittingABodyCreditsItsOwner(t *testing.T) {
	g := arena(t, map[int][]point{
		0: {{2, 2}, {1, 2}, {0, 2}},
		1: {{3, 1}, {3, 2}, {3, 3}, {3, 4}},
	}, map[int]Dir{0: Right, 1: Up})
	step(g)
	require.False(t, g.snakes[0].alive, "0 ran into 1's neck")
	require.True(t, g.snakes[1].alive)
	require.Equal(t, 3, g.snakes[1].score)
	require.Equal(t, 1, g.snakes[1].kills)
	require.True(t, g.foodAt(point{1, 2}), "the dead snake left food")
}

func TestHeadOnKillsBoth(t *testing.T) {
	g := arena(t, map[int][]point{
		0: {{2, 2}, {1, 2}},
		1: {{4, 2}, {5, 2}},
	}, map[int]Dir{0: Right, 1: Left})
	step(g)
	require.False(t, g.snakes[0].alive)
	require.False(t, g.snakes[1].alive)
	require.Zero(t, g.snakes[0].score+g.snakes[1].score)
}

func TestMovingIntoAVacatingTailIsFine(t *testing.T) {
	// 1's tail leaves (3,2) as 0's head arrives.
	g := arena(t, map[int][]point{
		0: {{2, 2}, {1, 2}},
		1: {{3, 4}, {3, 3}, {3, 2}},
	}, map[int]Dir{0: Right, 1: Down})
	step(g)
	require.True(t, g.snakes[0].alive)
	require.True(t, g.snakes[1].alive)
}

func TestTurnsQueueAndReversalIsIgnored(t *testing.T) {
	g := arena(t, map[int][]point{0: {{5, 5}, {4, 5}, {3, 5}}}, map[int]Dir{0: Right})
	step(g, engine.Input[Input]{Player: 0, Seq: 1, Value: Input{Dir: Left}})
	require.Equal(t, point{6, 5}, g.snakes[0].body[0], "reversing is ignored")
	step(g, engine.Input[Input]{Player: 0, Seq: 2, Value: Input{Dir: Up}})
	require.Equal(t, point{6, 4}, g.snakes[0].body[0])
	// Two quick turns wait for two moves.
	g.o.MoveEvery = 2
	g.tick = 20
	g.Step(21, []engine.Input[Input]{{Player: 0, Seq: 3, Value: Input{Dir: Left}}})
	g.Step(22, []engine.Input[Input]{{Player: 0, Seq: 4, Value: Input{Dir: Down}}})
	require.Equal(t, point{5, 4}, g.snakes[0].body[0])
	g.Step(23, []engine.Input[Input]{{Player: 0, Seq: 5, Value: Input{Dir: Dir(9)}}})
	require.Equal(t, []Dir{Down}, g.snakes[0].turns, "an invalid direction is ignored")
	g.Step(24, nil)
	require.Equal(t, point{5, 5}, g.snakes[0].body[0])
}

func TestRoundLifecycle(t *testing.T) {
	g := New(3, Options{Countdown: 3, Duration: 10, EndPause: 2})
	require.True(t, g.Join(0, "ada"))
	require.False(t, g.Join(0, "bob"), "taken")
	var tick uint64
	run := func(n int) {
		for range n {
			tick++
			g.Step(tick, nil)
		}
	}
	run(5)
	require.Equal(t, Waiting, g.Phase(), "one player practises")
	require.True(t, g.Join(1, "bob"))
	run(1)
	require.Equal(t, Countdown, g.Phase())
	run(3)
	require.Equal(t, Playing, g.Phase())
	g.snakes[1].score = 4
	run(10)
	require.Equal(t, Ended, g.Phase())
	res, ok := g.TakeResult()
	require.True(t, ok)
	require.Equal(t, 1, res.Round)
	require.Equal(t, "bob", res.Players[0].Name, "best first")
	_, ok = g.TakeResult()
	require.False(t, ok, "once")
	run(2)
	require.Equal(t, Countdown, g.Phase(), "a new round")
	require.Zero(t, g.Score(1), "scores reset")
	g.Leave(1)
	run(1)
	require.Equal(t, Waiting, g.Phase())
}
