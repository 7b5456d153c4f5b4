package main

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Ada's page on a desktop over WebSocket, Bob's on a phone over SSE: both
// show events live, Ada marks one read, Bob sends one from his page, and
// nothing a user typed is ever taken as HTML.
func TestNotifyPagesInBrowser(t *testing.T) {
	ada := browsertest.New(t)
	_, base := startApp(t, "BATCH_WINDOW", "1h")

	require.NoError(t, chromedp.Do(ada,
		chromedp.EmulateViewport(1280, 860),
		chromedp.Navigate(base+"/?user=ada&via=ws"),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="ws"]`)),
		chromedp.WaitVisible(chromedp.CSS("#status.live")),
	))
	bob := browsertest.Tab(t, ada)
	require.NoError(t, chromedp.Do(bob,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(base+"/?user=bob&via=sse"),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="sse"]`)),
		chromedp.WaitVisible(chromedp.CSS("#status.live")),
	))

	post(t, base, "orders", "Order #1042 shipped: 3 items, arriving Thursday", "")
	post(t, base, "comments", `Eve commented: <img src=x onerror="document.body.dataset.pwned=1"> nice post!`, "")
	post(t, base, "security", "New sign-in to your account from Lisbon, Portugal", "")
	for _, tab := range []context.Context{ada, bob} {
		require.NoError(t, chromedp.Do(tab,
			browsertest.WaitText("#inbox", "Order #1042 shipped"),
			browsertest.WaitText("#inbox", "<img src=x"),
			browsertest.WaitText("#inbox", "New sign-in"),
			browsertest.WaitText("#unread", "3"),
		))
		pwned, err := chromedp.Run(tab, chromedp.Evaluate[bool](`"pwned" in document.body.dataset || document.querySelector("#inbox img") !== null`))
		require.NoError(t, err)
		require.False(t, pwned, "notification text is never interpreted as HTML")
	}

	// Ada reads the newest; Bob sends a comment from his page.
	require.NoError(t, chromedp.Do(ada,
		chromedp.Click(chromedp.CSS("#inbox li:first-child button")),
		browsertest.WaitText("#unread", "2"),
	))
	require.NoError(t, chromedp.Do(bob,
		chromedp.SetValue(chromedp.CSS("#kind"), "comments"),
		chromedp.SendKeys(chromedp.CSS("#text"), "Bob replied to your comment"),
		chromedp.Click(chromedp.CSS("#send button")),
		browsertest.WaitText("#result", "stored for 2, live to 2"),
		browsertest.WaitText("#inbox", "Bob replied"),
	))
	require.NoError(t, chromedp.Do(ada, browsertest.WaitText("#inbox", "Bob replied"), browsertest.WaitText("#unread", "3")))
	browsertest.Screenshot(t, ada, "notify-desktop-ada-websocket")
	browsertest.Screenshot(t, bob, "notify-phone-bob-sse")

	// Bob leaves the page: it closes its stream (the browser would keep
	// it open for its back/forward cache), whose end (the broker's
	// OnStream) makes him offline, so what comes next is stored and
	// mailed, not sent live; his page shows it when he is back.
	require.NoError(t, chromedp.Do(bob, chromedp.Navigate("about:blank")))
	var away sent
	require.Eventually(t, func() bool {
		away = post(t, base, "security", "Password changed while you were away", "bob")
		return away.Live == 0
	}, 10*time.Second, 50*time.Millisecond, "bob's closed stream still counts him online")
	assert.Equal(t, sent{Stored: 1, Live: 0, Mail: 1}, away, "stored for bob and his mail scheduled")
	require.NoError(t, chromedp.Do(bob,
		chromedp.Navigate(base+"/?user=bob&via=sse"),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="sse"]`)),
		browsertest.WaitText("#inbox", "Password changed while you were away"),
	))
}

// A link with a name the server refuses shows why on the form, not an
// empty inbox that never fills.
func TestNotifyPageRefusedName(t *testing.T) {
	ctx := browsertest.New(t)
	_, base := startApp(t)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(base+"/?user=Ada%20Lovelace"),
		browsertest.WaitText("#signin-error", "?user= must be 1 to 32 of a-z"),
	))
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("app").hidden`))
	require.NoError(t, err)
	assert.True(t, hidden, "no inbox for a refused name")
	browsertest.Screenshot(t, ctx, "notify-refused-name-phone")
}
