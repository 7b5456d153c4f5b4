package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/stretchr/testify/require"
)

// TestGracePeriodAndEmptyMatch drives a match's runner on synctest's fake
// clock, with control messages published the way the calls publish them:
// a silent player is shown away, keeps the slot through the grace period
// if it comes back, loses it after; the loop stops once nobody is left.
func TestGracePeriodAndEmptyMatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.Grace = 10 * time.Second
		a, err := newApp(cfg, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		defer func() { require.NoError(t, a.shutdown(context.Background())) }()
		ctx := context.Background()
		send := func(c control) {
			raw, _ := json.Marshal(c)
			_, err := a.bp.Publish(ctx, controlTopic("m1"), raw, rtkit.PublishOptions{Ephemeral: true})
			require.NoError(t, err)
		}
		seatOf := func(user string) bool {
			_, ok, err := a.lobby.Seat(ctx, user)
			require.NoError(t, err)
			return ok
		}
		away := func(slot int) bool {
			r := a.runnerOf("m1")
			var card struct{ W bool }
			require.NoError(t, json.Unmarshal(r.m.Snapshot().Get("s"+string(rune('0'+slot))), &card))
			return card.W
		}
		for i, user := range []string{"ada", "bob"} {
			s, err := a.lobby.Join(ctx, user, user)
			require.NoError(t, err)
			require.Equal(t, seat{"m1", i}, s)
		}
		a.adopt(ctx, "m1")
		require.Equal(t, []string{"m1"}, a.running())

		// Both acknowledge for 3 s; then bob goes silent.
		for range 30 {
			send(control{Kind: "ack", User: "ada"})
			send(control{Kind: "ack", User: "bob"})
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		require.False(t, away(1))
		for range 25 { // 2.5 s
			send(control{Kind: "ack", User: "ada"})
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		require.True(t, away(1), "silent for more than AwayAfter")
		require.True(t, seatOf("bob"), "within the grace period")
		send(control{Kind: "ack", User: "bob"}) // back
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		require.False(t, away(1), "resumed")

		// Silent past the grace period: the slot is freed.
		for range 105 {
			send(control{Kind: "ack", User: "ada"})
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Second) // the I/O goroutine frees it in the lobby
		synctest.Wait()
		require.False(t, seatOf("bob"), "grace period over")
		require.True(t, seatOf("ada"))
		_, err = a.lobby.Join(ctx, "cy", "cy")
		require.NoError(t, err)
		s, _, _ := a.lobby.Seat(ctx, "cy")
		require.Equal(t, seat{"m1", 1}, s, "bob's slot went to the next player")

		// Everyone leaves; the loop stops within a housekeeping round.
		for _, u := range []string{"ada", "cy"} {
			require.NoError(t, a.lobby.Leave(ctx, "m1", u))
			send(control{Kind: "leave", User: u})
		}
		time.Sleep(cfg.LeaseTTL + 5*time.Second) // viewers time out, then the match closes
		synctest.Wait()
		require.Empty(t, a.running())
		ms, err := a.lobby.Matches(ctx)
		require.NoError(t, err)
		require.Empty(t, ms, "the empty match left the lobby")
	})
}
