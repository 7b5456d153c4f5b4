package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/rtkit/rtkit/sse"
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

// The dashboard's stream goes on where its history ends: a message sent
// after the page read /api/dashboard and before its EventSource opened
// still comes, first, and no reset.
func TestDashboardStreamResumesFromHistory(t *testing.T) {
	t.Parallel()
	base := startApp(t, testConfig())
	admin := register(t, base, "ana")
	status, body := get(t, base, "/api/dashboard", admin)
	require.Equal(t, http.StatusOK, status)
	var h struct{ Since string }
	require.NoError(t, json.Unmarshal([]byte(body), &h))
	// stats, the task feed and the two public rooms, in the order of
	// their sorted names; none has a message yet but the stats may.
	require.Len(t, strings.Split(h.Since, ","), 4, "one position per streamed topic: %q", h.Since)

	c := dial(t, base, admin)
	enter(t, c, "random")
	say(t, c, "random", "sent while the page was loading")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?last_event_id="+url.QueryEscape(h.Since), nil)
	require.NoError(t, err)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: admin})
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sc := bufio.NewScanner(resp.Body)
	var typ string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
			require.NotEqual(t, sse.ResetEvent, typ, "the history's position resumes every topic")
		case strings.HasPrefix(line, "data: ") && typ == "msg":
			assert.Contains(t, line, "sent while the page was loading")
			return
		case line == "":
			typ = ""
		}
	}
	t.Fatalf("the stream ended without the message: %v", sc.Err())
}
