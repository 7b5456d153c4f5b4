package realtime

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/require"
)

// Two hubs on a 3-primary + 3-replica Redis Cluster; the primary that
// holds bob's inbox and a room's messages and presence is killed. After
// the replica takes over, a direct message reaches bob on the other hub,
// joins (presence) work again, and the room's members get new messages.
func TestHubsSurviveClusterFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Replicas: 1, NodeTimeout: 2 * time.Second})
	ctx := context.Background()
	victim := cl.Primary(t, "rtkit:{"+inboxTopic("bob")+"}")
	room := ""
	for i := 0; room == ""; i++ {
		if name := fmt.Sprintf("room-%d", i); cl.Primary(t, "rtkit:{"+name+"}") == victim {
			room = name
		}
	}
	node := func() (*Hub, string) {
		// Separate clients, so that presence recovers by itself, not
		// through the backplane's slot map refreshes.
		bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: cl.Client(t), Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = bp.Close() })
		pr, err := NewRedisPresence(RedisPresenceOptions{Client: cl.Client(t)})
		require.NoError(t, err)
		return testHub(t, Options{Authenticate: bearer, Backplane: bp, Presence: pr})
	}
	hubA, urlA := node()
	hubB, urlB := node()
	ada, bob := dialClient(t, urlA, "ada"), dialClient(t, urlB, "bob")
	bobCol := collect(bob)
	_, err := bob.Join(ctx, room, JoinOptions{})
	require.NoError(t, err)
	before, err := ada.Direct(ctx, "bob", "before")
	require.NoError(t, err)
	waitFor(t, "the direct message before the failover", func() bool { return slices.Contains(bobCol.ids(), before) })

	killed := time.Now()
	victim.Kill(t)
	// retry calls f until it succeeds and returns how long after the kill.
	retry := func(what string, f func(ctx context.Context) error) time.Duration {
		t.Helper()
		for {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			err := f(cctx)
			cancel()
			if err == nil {
				return time.Since(killed)
			}
			require.Less(t, time.Since(killed), 30*time.Second, "%s: %v", what, err)
			time.Sleep(50 * time.Millisecond)
		}
	}
	var after rtkit.ID
	directAfter := retry("direct", func(ctx context.Context) (err error) {
		after, err = ada.Direct(ctx, "bob", "after")
		return err
	})
	waitFor(t, "the direct message after the failover", func() bool { return slices.Contains(bobCol.ids(), after) })
	carol := dialClient(t, urlA, "carol")
	carolCol := collect(carol)
	joinAfter := retry("join", func(ctx context.Context) error {
		_, err := carol.Join(ctx, room, JoinOptions{})
		return err
	})
	members, err := hubB.Presence(ctx, room)
	require.NoError(t, err)
	var users []string
	for _, m := range members {
		users = append(users, m.User)
	}
	require.Contains(t, users, "carol", "presence across hubs after the failover")
	id, err := hubA.Publish(ctx, room, "news")
	require.NoError(t, err)
	waitFor(t, "bob and carol get the room's new message", func() bool {
		return slices.Contains(bobCol.ids(), id) && slices.Contains(carolCol.ids(), id)
	})
	t.Logf("after the kill: a direct message went through after %v, a join (presence) after %v", directAfter.Round(10*time.Millisecond), joinAfter.Round(10*time.Millisecond))
}
