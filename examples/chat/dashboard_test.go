package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDashboardInBrowser(t *testing.T) {
	cfg := testConfig()
	cfg.StatsEvery = 200 * 1e6 // 200ms
	base := startApp(t, cfg)
	ctx := signUp(t, base, "ana", "Ana María") // admin
	register(t, base, "bob")                   // offline
	require.NoError(t, chromedp.Do(ctx,
		sendText("good morning, everyone"),
		sendText("@bob please review the release notes"),
		waitText("#messages", "release notes"),
	))
	carol := dial(t, base, register(t, base, "carol"))
	enter(t, carol, "general")
	require.NoError(t, carol.PublishEphemeral(context.Background(), "general", map[string]bool{"typing": true}))

	// The dashboard link opens signed in, with the recent past.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/dashboard.html"]`)),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.WaitVisible(chromedp.CSS("#dash")),
		waitText("#feed", "ana: good morning, everyone"),
		waitText("#status", "live"),
		waitText("#task-feed", "mail to bob: mention in #general — succeeded"),
		waitText("#nodes", "1"),
	))
	charts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(".chart .uplot canvas").length`))
	require.NoError(t, err)
	assert.Equal(t, 2, charts, "two uPlot charts")

	// Live: a message shows; typing never shows as an empty message.
	require.NoError(t, carol.PublishEphemeral(context.Background(), "general", map[string]bool{"typing": true}))
	say(t, carol, "general", "coffee is ready")
	require.NoError(t, chromedp.Do(ctx, waitText("#feed", "carol: coffee is ready")))
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#feed li")].map((li) => li.textContent)`))
	require.NoError(t, err)
	for _, l := range lines {
		assert.False(t, strings.HasSuffix(strings.TrimSpace(l), ":"), "an empty message in the feed: %q", l)
	}
	browsertest.Screenshot(t, ctx, "dashboard")
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile)))
	require.NoError(t, chromedp.Do(ctx, waitJS(`document.documentElement.scrollWidth === 390`)), "nothing scrolls sideways at phone width")
	browsertest.Screenshot(t, ctx, "dashboard-phone")
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)))

	// The outbox (admins only) has the mail.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#outbox-link")),
		waitText("#mails .to", "bob@example.com"),
		waitText("#mails .body", "please review the release notes"),
	))
}

func TestNodeName(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	assert.Equal(t, host+":8080", nodeName(":8080"))
	assert.Equal(t, host+":8081", nodeName("127.0.0.1:8081"), "the port, not the address glued to the host")
	assert.Equal(t, host+":9000", nodeName("[::1]:9000"))
}
