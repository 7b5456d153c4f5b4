package main

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The admin's way to the task inspector: the dashboard starts empty and
// says so, a mention of an offline user queues a mail, and the dashboard's
// link opens the inspector on the task, whose payload (what the user
// typed) shows as text. Members see neither the link nor the inspector.
func TestTaskInspectorInBrowser(t *testing.T) {
	cfg := testConfig()
	cfg.StatsEvery = 200 * 1e6 // 200ms
	base := startApp(t, cfg)
	ana := signUp(t, base, "ana", "Ana María") // admin
	require.NoError(t, chromedp.Do(ana,
		chromedp.WaitVisible(chromedp.CSS("#tasks-link")),
		chromedp.Navigate(base+"/dashboard.html"),
		chromedp.WaitVisible(chromedp.CSS("#dash")),
		waitText("#status", "live"),
		chromedp.WaitVisible(chromedp.CSS("#feed-empty")),
		chromedp.WaitVisible(chromedp.CSS("#task-feed-empty")),
	))
	browsertest.Screenshot(t, ana, "dashboard-empty")

	register(t, base, "bob") // offline: a mention mails him
	require.NoError(t, chromedp.Do(ana,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#chat")),
		waitText("#status", "live"),
		sendText(`@bob <img src=x onerror="document.body.dataset.pwned=1"> is the new logo`),
		waitText("#messages", "is the new logo"),
		chromedp.Navigate(base+"/dashboard.html"),
		chromedp.WaitVisible(chromedp.CSS("#dash")),
		waitText("#task-feed", "mail to bob: mention in #general — succeeded"),
		waitJS(`document.getElementById("task-feed-empty").hidden && document.getElementById("feed-empty").hidden`),
		waitText("#feed", "is the new logo"),
	))

	// The dashboard's link opens the inspector; the succeeded mail is on
	// its list and its page.
	// (Following the link by its href: a query racing a click's navigation
	// may hit the old page's context.)
	require.NoError(t, chromedp.Do(ana, chromedp.WaitVisible(chromedp.CSS("#tasks-link"))))
	href, err := chromedp.Run(ana, chromedp.Evaluate[string](`document.getElementById("tasks-link").href`))
	require.NoError(t, err)
	assert.Equal(t, base+"/admin/tasks/", href)
	require.NoError(t, chromedp.Do(ana,
		chromedp.Navigate(href),
		waitText("body", "Queues"),
		waitText("body", "default"),
	))
	browsertest.Screenshot(t, ana, "inspector")
	require.NoError(t, chromedp.Do(ana, chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile)))
	require.NoError(t, chromedp.Do(ana, waitJS(`document.documentElement.scrollWidth === 390`)), "nothing scrolls sideways at phone width")
	browsertest.Screenshot(t, ana, "inspector-phone")
	require.NoError(t, chromedp.Do(ana,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(base+"/admin/tasks/queues/default/succeeded"),
		waitText("body", "email.send"),
	))
	// The list redraws itself live: read the link in the page rather than
	// click a node that may be gone.
	link, err := chromedp.Run(ana, chromedp.Evaluate[string](`[...document.querySelectorAll('a[href*="task?id="]')].find((a) => a.textContent.includes("email.send")).href`))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ana,
		chromedp.Navigate(link),
		waitText("body", "Payload"),
		waitText("body", "is the new logo"),
	))
	pwned, err := chromedp.Run(ana, chromedp.Evaluate[bool](`"pwned" in document.body.dataset || document.querySelector("main img, pre img") !== null`))
	require.NoError(t, err)
	assert.False(t, pwned, "a payload is shown as text")
	browsertest.Screenshot(t, ana, "inspector-task")

	// A member: no link, no feeds, and the inspector says why.
	bob := browsertest.New(t)
	require.NoError(t, chromedp.Do(bob,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.SendKeys(chromedp.CSS("#login-handle"), "bob"),
		chromedp.SendKeys(chromedp.CSS("#login-password"), "password-bob"),
		chromedp.Click(chromedp.CSS("#login-form button")),
		waitText("#status", "live"),
		chromedp.Navigate(base+"/dashboard.html"),
		chromedp.WaitVisible(chromedp.CSS("#dash")),
		waitText("#status", "live"),
		chromedp.WaitVisible(chromedp.CSS("#tasks-note")),
	))
	hidden, err := chromedp.Run(bob, chromedp.Evaluate[[]bool](`["tasks-link", "outbox-link", "feed-empty", "task-feed-empty"].map((id) => document.getElementById(id).hidden)`))
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true, true, true}, hidden, "tasks link, outbox link and the admins' empty notes are hidden")
	require.NoError(t, chromedp.Do(bob,
		chromedp.Navigate(base+"/admin/tasks/"),
		waitText("body", "the task inspector is for the chat's admins"),
	))
}
