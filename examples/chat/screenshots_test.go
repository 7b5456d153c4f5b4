package main

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/rtkit/rtkit/realtime"
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
	// As his page would: his own topic (which makes him online in the
	// admin's list of everyone) and the lobby.
	for _, topic := range []string{"user:bob", lobbyTopic} {
		_, err := bob.Join(context.Background(), topic, realtime.JoinOptions{})
		require.NoError(t, err)
	}
	enter(t, bob, "general")
	require.NoError(t, chromedp.Do(ana, waitText("#online", "@bob"),
		waitJS(`[...document.querySelectorAll("#all-users li")].some((li) => li.textContent.includes("@bob") && li.querySelector(".dot.on"))`)))
	say(t, bob, "general", "Good morning! Is the release still on for Friday?")
	require.NoError(t, chromedp.Do(ana,
		waitText("#messages", "release still on"),
		sendText("Yes — the notes are in https://example.com/release, please review them @bob"),
		waitText("#messages", "please review them"),
	))
	say(t, bob, "general", "On it, thanks!")
	require.NoError(t, chromedp.Do(ana, waitText("#messages", "On it")))
	browsertest.Screenshot(t, ana, "chat-desktop")
	register(t, base, "carol") // offline: her mention is mailed, a task on the dashboard
	require.NoError(t, chromedp.Do(ana, sendText("@carol could you check the build before Friday?"), waitText("#messages", "check the build")))

	require.NoError(t, chromedp.Do(ana,
		chromedp.Navigate(base+"/dashboard.html"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.WaitVisible(chromedp.CSS("#dash")),
		waitText("#status", "live"),
		waitText("#task-feed", "mail to carol: mention in #general — succeeded"),
		waitJS(`document.querySelectorAll(".chart .uplot canvas").length === 2`),
		chromedp.Sleep(2*time.Second), // a few points on the charts; only the picture depends on it
	))
	browsertest.Screenshot(t, ana, "dashboard")
}
