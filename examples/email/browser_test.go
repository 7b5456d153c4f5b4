package main

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The /tasks page: a sign-up from its form, a flaky and a failing address
// (the log-only mailer pretends), the log and table live, and a retry of
// the dead task from its button.
func TestTasksPageInBrowser(t *testing.T) {
	ctx := browsertest.New(t)
	base := startApp(t, "MAIL_BACKOFF", "50ms", "MAIL_ATTEMPTS", "3")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(base+"/"), // redirects to /tasks
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.WaitVisible(chromedp.CSS("#status.live")),
		chromedp.SendKeys(chromedp.CSS("#email"), "ada@example.com"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Ada"),
		chromedp.Click(chromedp.CSS("#signup button")),
		browsertest.WaitText("#accepted", "202 Accepted"),
	))
	signUp(t, base, "flaky@example.com")
	dead := signUp(t, base, "fail@example.com")
	require.NoError(t, chromedp.Do(ctx,
		browsertest.WaitText("#log", "retrying"),
		browsertest.WaitText("#log", "dead"),
		browsertest.WaitText("#tasks", "flaky@example.com"),
		browsertest.WaitText("#t-"+dead, "dead"),
		browsertest.WaitText("#nodes", "Finished by"),
	))
	browsertest.Screenshot(t, ctx, "email-tasks-desktop")

	// Retry the dead one: it starts over at attempt 1. (A click from the
	// page's script: the table may be redrawn under a simulated mouse.)
	_, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.getElementById("log").replaceChildren();
		document.querySelector("#t-`+dead+` button").click()`))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, browsertest.WaitText("#log", "welcome.send "+dead[len(dead)-8:]+" attempt 1")))
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)))
	browsertest.Screenshot(t, ctx, "email-tasks-phone")
}

// Leaving the page closes its stream (the browser would keep it open for
// its back/forward cache); coming back to it from that cache reloads it,
// with a new stream.
func TestTasksPageClosesItsStreamWhenLeft(t *testing.T) {
	ctx := browsertest.New(t)
	a, base := runApp(t)
	streams := func() int { return a.events.Stats().Streams }
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/tasks"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.WaitVisible(chromedp.CSS("#status.live")),
	))
	require.Eventually(t, func() bool { return streams() == 1 }, 10*time.Second, 20*time.Millisecond, "the page's stream is open")

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")))
	require.Eventually(t, func() bool { return streams() == 0 }, 10*time.Second, 20*time.Millisecond, "the page left still has its stream open")

	// Restored from the cache without its reload, the page would fire no
	// load (NavigateBack waits for one) and its closed stream would stay
	// closed.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.NavigateBack(),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
		chromedp.WaitVisible(chromedp.CSS("#status.live")),
	), "back on the page, it reloads and goes live")
	nav, err := chromedp.Run(ctx, chromedp.Evaluate[string](`performance.getEntriesByType("navigation")[0].type`))
	require.NoError(t, err)
	assert.Equal(t, "reload", nav, "restored from the back/forward cache, the page reloads itself")
	require.Eventually(t, func() bool { return streams() == 1 }, 10*time.Second, 20*time.Millisecond, "the page's stream is open again")
}
