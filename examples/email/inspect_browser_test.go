package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/examples/internal/browsertest"
)

// count is a JS expression: the number shown for queue|state.
func count(key string) string {
	return `(document.querySelector('[data-count="` + key + `"]') || {}).textContent`
}

// The library's inspector at /admin/tasks/: counts move live as the test
// signs people up (no reload), a dead task is retried from its page, and
// both pages fit a phone.
func TestInspectorInBrowser(t *testing.T) {
	ctx := browsertest.New(t)
	base := startApp(t, "MAIL_BACKOFF", "50ms", "MAIL_ATTEMPTS", "2")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(base+"/admin/tasks/"),
		chromedp.WaitVisible(chromedp.CSS("#live.on")), // the live stream is open
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`),
	))

	// Tasks enqueued by the test appear, and finish, without a reload.
	signUp(t, base, "ada@example.com")
	signUp(t, base, "grace@example.com")
	res, err := http.Post(base+"/signup", "application/json", strings.NewReader(`{"email":"eve@example.com","name":"<script>alert(1)</script>"}`))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	dead := signUp(t, base, "fail@example.com")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Poll[chromedp.Void](count("welcome|succeeded")+` === "3"`),
		chromedp.Poll[chromedp.Void](count("welcome|dead")+` === "1"`),
		chromedp.Poll[chromedp.Void](`window.notReloaded === true`),
	))
	browsertest.Screenshot(t, ctx, "inspector-overview-desktop")

	// The dead task's page, then its Retry button: it starts over at
	// attempt 1, and dies again (the address always fails), live.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/admin/tasks/task?id="+url.QueryEscape(dead)),
		chromedp.WaitVisible(chromedp.CSS(`button[value="retry"]`)),
		browsertest.WaitText("#state", "dead"),
	))
	browsertest.Screenshot(t, ctx, "inspector-task-desktop")
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[value="retry"]`))))
	// The click posts a form and the browser loads the task's page anew; a
	// query sent while the old page's context is being torn down fails with
	// "Cannot find context with specified id" or "Inspected target navigated
	// or closed": ask again on the new page.
	for attempt := 0; ; attempt++ {
		err := chromedp.Do(ctx,
			chromedp.WaitVisible(chromedp.CSS("#live.on")),
			// Two runs of attempt 1 among the task's events: before and after the retry.
			chromedp.Poll[chromedp.Void](`[...document.querySelectorAll(".events li")].filter(li => /started attempt 1 /.test(li.textContent)).length === 2`),
			browsertest.WaitText("#state", "dead"),
		)
		if err == nil || attempt == 5 || !(strings.Contains(err.Error(), "Cannot find context") || strings.Contains(err.Error(), "navigated or closed")) {
			require.NoError(t, err)
			break
		}
	}
	browsertest.Screenshot(t, ctx, "inspector-task-retried")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(base+"/admin/tasks/"),
		chromedp.WaitVisible(chromedp.CSS("#live.on")),
		// nothing wider than the phone but the scrolling tables
		chromedp.Poll[chromedp.Void](`document.documentElement.scrollWidth <= window.innerWidth`),
	))
	browsertest.Screenshot(t, ctx, "inspector-overview-phone")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/admin/tasks/queues/welcome/succeeded"),
		chromedp.WaitVisible(chromedp.CSS("table.tasks")),
		chromedp.Poll[chromedp.Void](`document.documentElement.scrollWidth <= window.innerWidth`),
	))
	browsertest.Screenshot(t, ctx, "inspector-list-phone")
}
