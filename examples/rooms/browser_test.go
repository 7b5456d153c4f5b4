package main

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/rtkit/rtkit/realtime"
)

// waitJS waits until the JavaScript expression is true in the page.
func waitJS(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
	require.NoError(t, err, "waiting for %s", expr)
}

func textHas(sel, want string) string {
	return "(document.querySelector(" + strconv.Quote(sel) + ")?.textContent ?? '').includes(" + strconv.Quote(want) + ")"
}

func TestPageInBrowser(t *testing.T) {
	ctx := browsertest.New(t)
	base := startRooms(t)
	bg := context.Background()

	// Bob (a Go client) talked in general before Ada came.
	bob := dial(t, base, "bob", realtime.DialOptions{})
	_, err := bob.Join(bg, "general", realtime.JoinOptions{})
	require.NoError(t, err)
	_, err = bob.Publish(bg, "general", map[string]string{"text": "<b>history</b> works"})
	require.NoError(t, err)

	// Ada signs in through the page: she sees the history (as text, not
	// HTML), Bob in the member list, and the room counts.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(base+"/"),
		chromedp.SendKeys(chromedp.CSS("#name"), "ada"),
		chromedp.Click(chromedp.CSS("#login button")),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
	))
	waitJS(t, ctx, textHas("#status", "live"))
	waitJS(t, ctx, textHas("#messages", "<b>history</b> works"))
	waitJS(t, ctx, textHas("#members", "bob"))
	waitJS(t, ctx, textHas("#rooms", "general2"))
	bolds, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#messages b").length`))
	require.NoError(t, err)
	assert.Zero(t, bolds, "messages are shown as text")
	assert.Equal(t, "join", nextPresence(t, bob, "ada"))

	// Ada writes; Bob gets it.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#text"), "hi bob"),
		chromedp.Click(chromedp.CSS("#send button")),
	))
	for {
		if e := next(t, bob, "msg"); e.From.User == "ada" {
			assert.Equal(t, "hi bob", text(e))
			break
		}
	}
	_, err = bob.Publish(bg, "general", map[string]string{"text": "welcome ada"})
	require.NoError(t, err)
	waitJS(t, ctx, textHas("#messages", "welcome ada"))
	browsertest.Screenshot(t, ctx, "rooms-desktop")

	// Ada moves to help: Bob sees her leave; the page shows the empty room.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#rooms button:nth-child(3)`))))
	waitJS(t, ctx, textHas("#title", "# help"))
	assert.Equal(t, "leave", nextPresence(t, bob, "ada"))
	waitJS(t, ctx, `!`+textHas("#members", "bob"))

	// Back to general on a phone-sized screen.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
		chromedp.Click(chromedp.CSS(`#rooms button:nth-child(1)`)),
	))
	waitJS(t, ctx, textHas("#messages", "welcome ada"))
	waitJS(t, ctx, textHas("#members", "bob"))
	width, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	require.NoError(t, err)
	assert.LessOrEqual(t, width, 390, "nothing sticks out sideways on a phone")
	browsertest.Screenshot(t, ctx, "rooms-phone")
}
