package main

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/require"
)

// TestNodesShareTheLobbyOverRedis: players connect to two processes (two
// apps here, each with its own hub and Redis connections); they land in
// one match, which exactly one node runs, and everyone plays the same
// game. When that node shuts down, the other takes the match over.
func TestNodesShareTheLobbyOverRedis(t *testing.T) {
	db := redistest.New(t)
	cfg := testConfig()
	cfg.RedisURL, cfg.Prefix = os.Getenv("REDIS_URL"), db.Prefix
	if cfg.RedisURL == "" {
		cfg.RedisURL = "redis://" + db.Opts.Addr
	}
	cfg.LeaseTTL = 1500 * time.Millisecond
	cfgA, cfgB := cfg, cfg
	cfgA.Node, cfgB.Node = "node-a", "node-b"
	a, baseA := startApp(t, cfgA)
	b, baseB := startApp(t, cfgB)
	nodes := map[string]*app{"node-a": a, "node-b": b}

	ada := join(t, baseA, tokA, "ada")
	bob := join(t, baseB, tokB, "bob")
	cy := join(t, baseB, tokC, "cy")
	for i, p := range []*gamer{ada, bob, cy} {
		require.Equal(t, seat{"m1", i}, p.seat, "one lobby across nodes")
	}

	owner := func() []string {
		var out []string
		for name, n := range nodes {
			if slices.Contains(n.running(), "m1") {
				out = append(out, name)
			}
		}
		return out
	}
	eventually(t, "a node runs m1", func() bool { return len(owner()) == 1 })
	first := owner()[0]
	for range 50 { // and no other node ever does meanwhile
		require.Equal(t, []string{first}, owner())
		time.Sleep(20 * time.Millisecond)
	}
	rdb := redis.NewClient(db.Opts)
	t.Cleanup(func() { _ = rdb.Close() })
	lease, err := rdb.Get(context.Background(), db.Prefix+"lobby:lease:m1").Result()
	require.NoError(t, err)
	require.Equal(t, first, lease)

	// Inputs through either node reach the match; everyone sees the same
	// states.
	require.Empty(t, bob.input(1, 0, nil))
	require.Empty(t, ada.input(0, 2, nil))
	eventually(t, "both inputs applied", func() bool { return cy.ackOf(1) == 1 && cy.ackOf(0) == 1 })
	sa, sb, sc := ada.snapshots(), bob.snapshots(), cy.snapshots()
	common := 0
	for tick, s := range sb {
		if o, ok := sa[tick]; ok {
			require.Equal(t, s, o, "tick %d", tick)
			common++
		}
		if o, ok := sc[tick]; ok {
			require.Equal(t, s, o, "tick %d", tick)
		}
	}
	require.Greater(t, common, 10)

	// The owner shuts down; the other node adopts the match and its
	// players keep playing (a new game: state lives in the owner's memory).
	survivor, survivors := "node-b", []*gamer{bob, cy}
	if first == "node-b" {
		survivor, survivors = "node-a", []*gamer{ada}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := map[*gamer]int{}
	for _, p := range survivors {
		before[p] = p.restarts()
	}
	require.NoError(t, nodes[first].shutdown(ctx))
	eventually(t, "the survivor runs m1", func() bool { return slices.Contains(nodes[survivor].running(), "m1") })
	for _, p := range survivors {
		eventually(t, "states of the new runner arrive", func() bool { return p.restarts() > before[p] })
	}
}
