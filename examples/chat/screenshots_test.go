package main

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/stretchr/testify/require"
)

// The README's pictures: a conversation at desktop width and the admin's
// dashboard, saved by browsertest.Screenshot. To refresh docs/, run from
// the repository's root with RTKIT_SCREENSHOTS=$PWD/examples/chat/docs;
// the phone picture comes from TestChatOnPhone.
func TestGuideScreenshots(t *testing.T) {
	cfg := testConfig()
	cfg.StatsEvery = 200 * time.Millisecond
	base := startApp(t, cfg)
	ana := signUp(t, base, "ana", "Ana María") // admin
	bob := dial(t, base, register(t, base, "bob"))
	enter(t, bob, "general")
	require.NoError(t, chromedp.Do(ana, waitText("#online", "@bob")))
	say(t, bob, "general", "Good morning! Is the release still on for Friday?")
	require.NoError(t, chromedp.Do(ana,
		waitText("#messages", "release still on"),
		sendText("Yes — the notes are in https://example.com/release, please review them @bob"),
		waitText("#messages", "please review them"),
	))
	say(t, bob, "general", "On it, thanks!")
	require.NoError(t, chromedp.Do(ana, waitText("#messages", "On it")))
	browsertest.Screenshot(t, ana, "chat-desktop")

	require.NoError(t, chromedp.Do(ana,
		chromedp.Navigate(base+"/dashboard.html"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.WaitVisible(chromedp.CSS("#dash")),
		waitText("#status", "live"),
		waitJS(`document.querySelectorAll(".chart .uplot canvas").length === 2`),
		chromedp.Sleep(2*time.Second), // a few points on the charts; only the picture depends on it
	))
	browsertest.Screenshot(t, ana, "dashboard")
}
