package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/require"
)

const (
	tokA = "token-for-ada-0000000000"
	tokB = "token-for-bob-0000000000"
	tokC = "token-for-cy-00000000000"
)

func TestMatchEndToEnd(t *testing.T) {
	a, base := startApp(t, testConfig())
	ada := join(t, base, tokA, "ada")
	bob := join(t, base, tokB, "bob")
	cy := join(t, base, tokC, "cy")
	require.Equal(t, seat{"m1", 0}, ada.seat)
	require.Equal(t, seat{"m1", 1}, bob.seat)
	require.Equal(t, seat{"m1", 2}, cy.seat)
	require.Equal(t, []string{"m1"}, a.running())

	// Everyone sees the three snakes; ada turns and everyone sees it.
	eventually(t, "three snakes", func() bool {
		for _, p := range []*gamer{ada, bob, cy} {
			for slot := range 3 {
				if _, ok := p.snakeOf(slot); !ok {
					return false
				}
			}
		}
		return true
	})
	eventually(t, "round on", func() bool {
		s, _ := bob.snakeOf(0)
		return s.A && string(bob.latest().Get("m"))[:12] == `{"p":"play",`
	})
	require.Empty(t, ada.input(0, 2, nil))
	eventually(t, "bob sees ada turn down", func() bool {
		s, _ := bob.snakeOf(0)
		return s.D == 2 || !s.A
	})
	eventually(t, "ada's input acknowledged", func() bool { return ada.ackOf(0) == 1 })

	// Refused: another's player, a position, a bad direction, a flood.
	require.Equal(t, realtime.CodeForbidden, ada.input(1, 1, nil), "ada cannot move bob")
	require.Equal(t, realtime.CodeBadRequest, ada.input(0, 1, map[string]any{"x": 3, "y": 4}), "no teleport")
	require.Equal(t, realtime.CodeBadRequest, ada.input(0, 7, nil))
	require.Equal(t, realtime.CodeForbidden, bob.input(0, 3, map[string]any{"m": "m2"}), "not bob's match")
	// A flood, all at once (sequential calls on a slow machine could stay
	// under the rate).
	codes := make(chan string, 60)
	var flood sync.WaitGroup
	for range 60 {
		flood.Add(1)
		go func() {
			defer flood.Done()
			codes <- ada.input(0, 1, nil)
		}()
	}
	flood.Wait()
	close(codes)
	limited := 0
	for c := range codes {
		if c == realtime.CodeRateLimited {
			limited++
		}
	}
	require.Positive(t, limited, "inputs are rate limited")
	ctx := context.Background()
	_, err := ada.c.Join(ctx, matchRoom("m1"), realtime.JoinOptions{})
	require.NoError(t, err)
	_, err = ada.c.Publish(ctx, matchRoom("m1"), "cheat")
	require.Error(t, err, "clients never publish")

	// All three rebuilt the same states, byte for byte.
	time.Sleep(500 * time.Millisecond)
	sa, sb, sc := ada.snapshots(), bob.snapshots(), cy.snapshots()
	common := 0
	for tick, s := range sa {
		if o, ok := sb[tick]; ok {
			require.Equal(t, s, o, "tick %d", tick)
			common++
		}
		if o, ok := sc[tick]; ok {
			require.Equal(t, s, o, "tick %d", tick)
		}
	}
	require.Greater(t, common, 30)

	// Bob drops and comes back within the grace period: same slot, same
	// snake, same score, and his inputs work again.
	eventually(t, "bob has a score", func() bool { return bob.latest() != nil })
	bob.disconnect()
	eventually(t, "bob shown away", func() bool { s, _ := ada.snakeOf(1); return s.W })
	bob.connect(base, "bob")
	require.Equal(t, seat{"m1", 1}, bob.seat, "resumed")
	eventually(t, "bob back", func() bool { s, ok := ada.snakeOf(1); return ok && !s.W && s.N == "bob" })
	require.Empty(t, bob.input(1, 0, nil))
	eventually(t, "bob's input after the reconnect acknowledged", func() bool { return ada.ackOf(1) == bob.seq })

	// Everyone leaves: the match's loop stops.
	for _, p := range []*gamer{ada, bob, cy} {
		require.NoError(t, p.c.Call(ctx, "game.leave", ackReq{Match: "m1"}, nil))
		p.disconnect()
	}
	eventually(t, "loop stopped", func() bool { return len(a.running()) == 0 })
}
