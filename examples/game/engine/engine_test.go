package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rtkit/rtkit/examples/game/engine"
	"github.com/rtkit/rtkit/examples/game/snake"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type match = engine.Match[snake.Input]

func newMatch(seed uint64, players int) (*match, *snake.Game) {
	g := snake.New(seed, snake.Options{})
	for i := range players {
		g.Join(i, "p"+string(rune('a'+i)))
	}
	return engine.NewMatch[snake.Input](g, engine.MatchOptions{}), g
}

func encode(t *testing.T, s *engine.Snapshot) string {
	t.Helper()
	b, err := s.MarshalJSON()
	require.NoError(t, err)
	require.True(t, json.Valid(b), "%s", b)
	return string(b)
}

// script plays the same pseudo-random inputs into any match: every player
// turns now and then, sometimes twice in a tick.
func script(seed uint64) func(m *match, tick uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	seq := map[int]uint32{}
	return func(m *match, tick uint64) {
		for p := range 4 {
			for r.IntN(6) == 0 {
				seq[p]++
				_ = m.Submit(engine.Input[snake.Input]{Player: p, Seq: seq[p], Tick: tick, Value: snake.Input{Dir: snake.Dir(r.IntN(4))}})
			}
		}
	}
}

func TestDeterminism(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, _ := newMatch(42, 4)
		b, _ := newMatch(42, 4)
		c, _ := newMatch(43, 4)
		sa, sb, sc := script(1), script(1), script(1)
		differ := false
		for tick := uint64(1); tick <= 3000; tick++ {
			sa(a, tick)
			sb(b, tick)
			sc(c, tick)
			ea, eb := encode(t, a.Step()), encode(t, b.Step())
			require.Equal(t, ea, eb, "tick %d: same seed and inputs, different state", tick)
			differ = differ || ea != encode(t, c.Step())
		}
		require.True(t, differ, "another seed should give another game")
	})
}

func TestDeltasReconstructState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := newMatch(7, 4)
		play := script(3)
		r := rand.New(rand.NewPCG(5, 5))
		// Three viewers: one acknowledges everything, one now and then,
		// one so rarely that its base leaves the history.
		type viewer struct {
			name  string
			every int
			held  map[uint64]*engine.Snapshot
			acked uint64
		}
		vs := []*viewer{{name: "fast", every: 1}, {name: "lagging", every: 5}, {name: "lost", every: 100}}
		for _, v := range vs {
			v.held = map[uint64]*engine.Snapshot{}
		}
		fulls := map[string]int{}
		for tick := uint64(1); tick <= 1500; tick++ {
			play(m, tick)
			cur := m.Step()
			for _, v := range vs {
				raw := m.DeltaFor(v.name)
				d, err := engine.DecodeDelta(raw)
				require.NoError(t, err)
				require.Equal(t, tick, d.Tick)
				if d.Base == 0 {
					if v.acked != 0 {
						fulls[v.name]++
					}
				} else {
					require.Equal(t, v.acked, d.Base, "%s: delta against its acknowledged snapshot", v.name)
				}
				got, err := v.held[d.Base].Apply(d)
				require.NoError(t, err)
				require.Equal(t, encode(t, cur), encode(t, got), "%s at tick %d", v.name, tick)
				v.held[tick] = got
				if r.IntN(v.every) == 0 {
					require.NoError(t, m.Ack(v.name, tick))
					v.acked = tick
				}
			}
		}
		require.Zero(t, fulls["fast"], "once a snapshot is acknowledged, deltas")
		require.Zero(t, fulls["lagging"])
		require.Greater(t, fulls["lost"], 5, "a base older than the history gives a full snapshot")

		// A delta goes only on its own base.
		require.Nil(t, m.DeltaFor("fast"), "nothing new for a viewer that holds the newest snapshot")
		m.Step()
		d, err := engine.DecodeDelta(m.DeltaFor("fast"))
		require.NoError(t, err)
		_, err = vs[0].held[d.Base-1].Apply(d)
		require.ErrorIs(t, err, engine.ErrBaseMismatch)
		require.ErrorIs(t, m.Ack("fast", m.Tick()+1), engine.ErrFuture)
	})
}

func TestDeltaIsSmallerThanSnapshot(t *testing.T) {
	m, _ := newMatch(9, 8)
	play := script(9)
	var full, delta int
	for tick := uint64(1); tick <= 300; tick++ {
		play(m, tick)
		s := m.Step()
		b, _ := s.MarshalJSON()
		full += len(b)
		delta += len(m.DeltaFor("v"))
		require.NoError(t, m.Ack("v", tick))
	}
	require.Less(t, delta*3, full, "deltas against the previous tick are a fraction of full snapshots")
}

// TestLateInput runs a match on engine.Run's clock: an input meant for a
// tick up to MaxLate ticks ago is applied at the next tick; an older one
// is refused and counted as processed.
func TestLateInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, g := newMatch(1, 2)
		ctx, cancel := context.WithCancel(t.Context())
		ticks := make(chan uint64, 1000)
		done := make(chan error)
		go func() {
			done <- engine.Run(ctx, 30, func(late time.Duration, skipped int) bool {
				if late != 0 || skipped != 0 {
					t.Errorf("late %v, skipped %d under a fake clock", late, skipped)
				}
				ticks <- m.Step().Tick
				return true
			})
		}()
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		require.Equal(t, uint64(30), m.Tick(), "30 ticks in a second")
		require.Equal(t, snake.Countdown, g.Phase())

		now := m.Tick()
		require.NoError(t, m.Submit(engine.Input[snake.Input]{Player: 0, Seq: 1, Tick: now + 1 - 15, Value: snake.Input{Dir: snake.Down}}))
		err := m.Submit(engine.Input[snake.Input]{Player: 1, Seq: 1, Tick: now + 1 - 16, Value: snake.Input{Dir: snake.Up}})
		require.ErrorIs(t, err, engine.ErrLate)
		require.ErrorIs(t, m.Submit(engine.Input[snake.Input]{Player: 1, Seq: 1, Value: snake.Input{Dir: snake.Up}}), engine.ErrStale)
		require.ErrorIs(t, m.Submit(engine.Input[snake.Input]{Player: 1, Seq: 2, Tick: now + 17, Value: snake.Input{Dir: snake.Up}}), engine.ErrFuture)

		time.Sleep(time.Second / 30)
		synctest.Wait()
		s := m.Snapshot()
		require.Equal(t, now+1, s.Tick)
		require.JSONEq(t, `{"0":1,"1":2}`, string(s.Get(engine.AcksEntity)), "both processed: one applied, the others refused")
		var p0 struct{ Q string }
		require.NoError(t, json.Unmarshal(s.Get("p0"), &p0))
		require.Equal(t, "2", p0.Q, "the late input is applied at the next tick: a turn down waits for the next move")

		// A full queue refuses; one input leaves it per tick.
		for seq := uint32(2); seq <= 9; seq++ {
			require.NoError(t, m.Submit(engine.Input[snake.Input]{Player: 0, Seq: seq}))
		}
		require.ErrorIs(t, m.Submit(engine.Input[snake.Input]{Player: 0, Seq: 10}), engine.ErrQueueFull)

		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	})
}

func TestRunSkipsAfterAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls int
		var lates []time.Duration
		var skips []int
		err := engine.Run(t.Context(), 10, func(late time.Duration, skipped int) bool {
			calls++
			lates, skips = append(lates, late), append(skips, skipped)
			switch calls {
			case 2:
				time.Sleep(250 * time.Millisecond) // 2.5 periods: caught up
			case 4:
				time.Sleep(time.Second) // 10 periods: skipped
			}
			return calls < 7
		})
		require.NoError(t, err)
		require.Equal(t, []time.Duration{0, 0, 150 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 0, 0}, lates)
		require.Equal(t, []int{0, 0, 0, 0, 9, 0, 0}, skips)
	})
}

func TestDecodeDeltaRefuses(t *testing.T) {
	for _, in := range []string{
		``, `[]`, `{}`, `{"t":0}`, `{"t":3,"b":3}`, `{"t":3,"b":4}`,
		`{"t":2,"b":0,"x":["a"]}`, `{"t":2,"b":1,"s":{"":1}}`,
		`{"t":2,"b":1,"s":{"a":1},"x":["a"]}`, `{"t":2,"b":1,"x":["a","a"]}`,
		`{"t":2,"s":{"a":}}`, `{"t":-1}`,
	} {
		_, err := engine.DecodeDelta([]byte(in))
		require.True(t, errors.Is(err, engine.ErrBadDelta), "%q: %v", in, err)
	}
}

func FuzzDecodeDelta(f *testing.F) {
	for _, s := range []string{`{"t":5,"b":3,"s":{"m":{"p":"play"},"p0":{"n":"a"}},"x":["f0012"]}`, `{"t":1,"b":0}`, `{"t":2,"b":1,"x":["a"]}`} {
		f.Add([]byte(s))
	}
	base := &engine.Snapshot{Tick: 3, Entities: []engine.Entity{{ID: "a", Data: []byte("1")}, {ID: "f0012", Data: []byte("1")}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := engine.DecodeDelta(data)
		if err != nil {
			return
		}
		s, err := base.Apply(d)
		if err != nil {
			require.ErrorIs(t, err, engine.ErrBaseMismatch)
			return
		}
		// What decodes re-encodes to an equivalent delta.
		again, err := engine.DecodeDelta(d.AppendJSON(nil))
		require.NoError(t, err)
		require.Equal(t, len(d.Set), len(again.Set))
		for i := 1; i < len(s.Entities); i++ {
			require.Less(t, s.Entities[i-1].ID, s.Entities[i].ID, "sorted, no duplicate")
		}
	})
}
