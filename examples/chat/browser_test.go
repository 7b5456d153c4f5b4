package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rtkit/rtkit/examples/internal/browsertest"
	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/require"
)

// browser starts a headless Chromium for the test (see browsertest.New).
func browser(t *testing.T) context.Context { return browsertest.New(t) }

// screenshot saves the page as a PNG for people to look at (see
// browsertest.Screenshot).
func screenshot(t *testing.T, ctx context.Context, name string) {
	browsertest.Screenshot(t, ctx, name)
}

func TestChatPageInBrowser(t *testing.T) {
	ctx := browser(t)
	base := startApp(t, testConfig())

	// Ada signs in through the page.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")), // the page's module has run
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), "ada"),
		chromedp.Click(chromedp.CSS("#login button")), // a click fires the submit event; form.submit() would not
		chromedp.WaitVisible(chromedp.CSS("#chat")),
		chromedp.WaitNotVisible(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#status.live")),
		chromedp.WaitVisible(chromedp.CSS(`#rooms button[aria-current="true"]`)),
	))

	// Bob joins over the Go client: the page shows him online, typing, and
	// his message (escaped, not interpreted as HTML).
	bgctx := context.Background()
	bob := dial(t, base, login(t, base, "bob"))
	_, err := bob.Join(bgctx, "general", realtime.JoinOptions{})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, waitText(`#online`, "bob")))
	require.NoError(t, bob.PublishEphemeral(bgctx, "general", map[string]bool{"typing": true}))
	require.NoError(t, chromedp.Do(ctx, waitText(`#typing`, "bob is typing")))
	_, err = bob.Publish(bgctx, "general", map[string]string{"text": "<img src=x onerror=alert(1)> hello ada"})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, waitText(`#messages`, "<img src=x onerror=alert(1)> hello ada")))
	imgs, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#messages img").length`))
	require.NoError(t, err)
	require.Zero(t, imgs, "message text is never interpreted as HTML")

	// Ada answers from the page; Bob receives it.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#text"), "hi bob"),
		chromedp.Click(chromedp.CSS("#send button")),
		waitText(`#messages`, "hi bob"),
	))
	for {
		e := nextMsg(t, bob)
		if e.From.User == "ada" {
			require.JSONEq(t, `{"text":"hi bob"}`, string(e.Data))
			break
		}
	}
	screenshot(t, ctx, "chat")
}

// waitText waits until the text of the element sel (a CSS selector)
// contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	text := chromedp.Text(chromedp.CSS(sel))
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
				return chromedp.Void{}, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
