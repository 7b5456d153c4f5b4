package engine_test

import (
	"fmt"
	"strconv"

	"github.com/rtkit/rtkit/examples/game/engine"
)

// tally is the smallest game: each player's input adds to its total.
type tally struct{ totals map[int]int }

func (g *tally) Step(_ uint64, inputs []engine.Input[int]) {
	for _, in := range inputs {
		g.totals[in.Player] += in.Value
	}
}

func (g *tally) AppendEntities(dst []engine.Entity) []engine.Entity {
	for p := range 2 { // players 0 and 1, in ID order
		if v, ok := g.totals[p]; ok {
			dst = append(dst, engine.Entity{ID: "p" + strconv.Itoa(p), Data: []byte(strconv.Itoa(v))})
		}
	}
	return dst
}

func ExampleMatch() {
	m := engine.NewMatch[int](&tally{totals: map[int]int{}}, engine.MatchOptions{})
	_ = m.Submit(engine.Input[int]{Player: 0, Seq: 1, Value: 5})
	_ = m.Submit(engine.Input[int]{Player: 1, Seq: 1, Value: 7})
	m.Step()
	fmt.Printf("%s\n", m.DeltaFor("viewer")) // nothing acknowledged: a full snapshot

	_ = m.Ack("viewer", 1)
	_ = m.Submit(engine.Input[int]{Player: 0, Seq: 2, Value: 1})
	fmt.Println(m.Submit(engine.Input[int]{Player: 0, Seq: 2, Value: 1})) // a replay
	m.Step()
	fmt.Printf("%s\n", m.DeltaFor("viewer")) // only what changed since tick 1
	// Output:
	// {"t":1,"b":0,"s":{"p0":5,"p1":7,"~acks":{"0":1,"1":1}}}
	// engine: input sequence number not after the last one: 2 after 2
	// {"t":2,"b":1,"s":{"p0":6,"~acks":{"0":2,"1":1}}}
}
