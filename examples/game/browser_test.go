package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/stretchr/testify/require"
)

// poll waits until the page's expression is true.
func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))
}

// TestTwoPlayersInBrowsers: ada on a desktop browser and bob on a phone
// join one match, and each sees the other's snake turn and move.
func TestTwoPlayersInBrowsers(t *testing.T) {
	cfg := testConfig()
	cfg.Snake.Duration = 1800
	_, base := startApp(t, cfg)
	ada, bob := browsertest.New(t), browsertest.New(t)
	require.NoError(t, chromedp.Do(ada,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(base+"/?name=ada"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.WaitVisible(chromedp.CSS("#status.live")),
	))
	require.NoError(t, chromedp.Do(bob,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(base+"/?name=bob"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.WaitVisible(chromedp.CSS("#status.live")),
		chromedp.WaitVisible(chromedp.CSS("#pad")), // touch controls on a phone
	))
	for _, ctx := range []context.Context{ada, bob} {
		require.NoError(t, chromedp.Do(ctx,
			poll(`Object.keys(snakeGame.snakes()).length === 2`),
			poll(`snakeGame.phase() === "play"`),
		))
	}
	slots, err := chromedp.Run(ada, chromedp.Evaluate[int](`snakeGame.state.slot`))
	require.NoError(t, err)
	require.Equal(t, 0, slots, "ada has slot 0, bob slot 1")

	// Ada turns down with the keyboard; bob's page sees her snake turn
	// and move.
	head, err := chromedp.Run(bob, chromedp.Evaluate[[]int](`snakeGame.snakes()[0].head`))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ada, chromedp.KeyEvent(kb.ArrowDown)))
	require.NoError(t, chromedp.Do(bob,
		poll(`snakeGame.snakes()[0].dir === 2`),
		poll(fmt.Sprintf(`(h => h && (h[0] !== %d || h[1] !== %d))(snakeGame.snakes()[0].head)`, head[0], head[1])),
	))
	// Bob taps "up" on the touch pad; ada sees his snake turn.
	require.NoError(t, chromedp.Do(bob, chromedp.Click(chromedp.CSS(`#pad [data-dir="0"]`))))
	require.NoError(t, chromedp.Do(ada, poll(`snakeGame.snakes()[1].dir === 0`)))
	// Both turn again, away from the walls, for the pictures.
	require.NoError(t, chromedp.Do(ada, chromedp.KeyEvent(kb.ArrowRight)))
	require.NoError(t, chromedp.Do(bob, chromedp.Click(chromedp.CSS(`#pad [data-dir="3"]`))))
	time.Sleep(500 * time.Millisecond) // let them crawl a little for the pictures
	browsertest.Screenshot(t, bob, "game-phone")
	browsertest.Screenshot(t, ada, "game-desktop")

	// The canvas is drawn: both snakes' colours are on ada's board (a
	// snake may be waiting to respawn, hence the polling).
	require.NoError(t, chromedp.Do(ada, poll(`(() => {
		const c = document.querySelector("#board"), g = c.getContext("2d");
		const d = g.getImageData(0, 0, c.width, c.height).data;
		const has = (r, gg, b) => { for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i]-r) < 8 && Math.abs(d[i+1]-gg) < 8 && Math.abs(d[i+2]-b) < 8) return true; return false; };
		return has(0x7e, 0xe7, 0x87) && has(0x79, 0xc0, 0xff); // green ada, blue bob
	})()`)))
}

// TestLeaderboardPageUpdatesLive: the leaderboard page shows a round the
// moment it ends, over SSE, without a reload.
func TestLeaderboardPageUpdatesLive(t *testing.T) {
	cfg := testConfig()
	cfg.Snake.Duration = 60
	_, base := startApp(t, cfg)
	ctx := browsertest.New(t)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/leaderboard.html"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.WaitVisible(chromedp.CSS("#status.live")),
		poll(`document.querySelector("#top").textContent.includes("No finished round yet")`),
	))
	join(t, base, tokA, "ada")
	join(t, base, tokB, "bob")
	require.NoError(t, chromedp.Do(ctx,
		poll(`document.querySelector("#recent").textContent.includes("m1 #1")`),
		poll(`["ada", "bob"].every(n => document.querySelector("#top").textContent.includes(n))`),
	))
	browsertest.Screenshot(t, ctx, "leaderboard")
}
