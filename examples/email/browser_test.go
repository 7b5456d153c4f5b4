package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
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
		waitText("#accepted", "202 Accepted"),
	))
	signUp(t, base, "flaky@example.com")
	dead := signUp(t, base, "fail@example.com")
	require.NoError(t, chromedp.Do(ctx,
		waitText("#log", "retrying"),
		waitText("#log", "dead"),
		waitText("#tasks", "flaky@example.com"),
		waitText("#t-"+dead, "dead"),
		waitText("#nodes", "Finished by"),
	))
	browsertest.Screenshot(t, ctx, "email-tasks-desktop")

	// Retry the dead one: it starts over at attempt 1. (A click from the
	// page's script: the table may be redrawn under a simulated mouse.)
	_, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.getElementById("log").replaceChildren();
		document.querySelector("#t-`+dead+` button").click()`))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, waitText("#log", "welcome.send "+dead[len(dead)-8:]+" attempt 1")))
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)))
	browsertest.Screenshot(t, ctx, "email-tasks-phone")
}

// waitText waits until the text of the element sel (a CSS selector)
// contains want. It reads the text in the page, so that an element the
// page re-renders meanwhile is simply read again.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	text := chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			got, err := text(ctx, t)
			if err != nil {
				return chromedp.Void{}, err
			}
			if strings.Contains(got, want) {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("waiting for %q in %s (it has %q): %w", want, sel, got, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
