package main

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/examples/internal/browsertest"
)

// waitJS waits until the JavaScript expression is true in the page.
func waitJS(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err, "waiting for %s", expr)
}

func textOf(sel string) string {
	return "(document.querySelector(" + strconv.Quote(sel) + ")?.textContent ?? '')"
}

func TestDashboardInBrowser(t *testing.T) {
	ctx := browsertest.New(t)
	cfg := testConfig()
	cfg.Every = 100 * time.Millisecond
	cfg.ReportCost = 300 * time.Millisecond
	a, base := startLive(t, cfg)
	simCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.simulate(simCtx) }()
	t.Cleanup(func() { stop(); <-done })

	// Orders stream in and the chart draws them.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("body[data-ready]")),
	))
	waitJS(t, ctx, textOf("#status")+` === "live"`)
	waitJS(t, ctx, `Number(`+textOf("#count")+`) >= 5`)
	waitJS(t, ctx, textOf("#lastid")+`.startsWith("last event id ")`)
	waitJS(t, ctx, `document.querySelectorAll("#recent li").length >= 5`)
	waitJS(t, ctx, `document.querySelector("#chart canvas")?.width > 0`)

	// Offline for 5 s, then back with ?last_event_id=: the orders taken
	// meanwhile are replayed and none is missing.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#pause"))))
	waitJS(t, ctx, textOf("#status")+` === "offline"`)
	waitJS(t, ctx, `document.body.dataset.resumed !== undefined`)
	waitJS(t, ctx, textOf("#status")+` === "live"`)
	waitJS(t, ctx, `/ (\d+) orders missed while offline were replayed, none lost/.test(`+textOf("#resume")+`)`)
	replayed, err := chromedp.Run(ctx, chromedp.Evaluate[string](textOf("#resume")))
	require.NoError(t, err)
	t.Log(replayed)
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Number(/ (\d+) orders missed/.exec(`+textOf("#resume")+`)[1])`))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, 10, "5 s offline at an order every 100ms")
	gaps, err := chromedp.Run(ctx, chromedp.Evaluate[string](textOf("#gaps")))
	require.NoError(t, err)
	assert.Equal(t, "0", gaps)

	// The report, three ways: the page shows each timing, the 304 and the
	// hit ratio.
	click := func(sel string) { require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)))) }
	click(`button[data-url="/api/report/uncached"]`)
	waitJS(t, ctx, textOf("#t-uncached")+`.endsWith(" ms")`)
	click(`button[data-url="/api/report"]`)
	waitJS(t, ctx, textOf("#t-cached")+`.endsWith(" ms")`)
	waitJS(t, ctx, textOf("#stats")+`.includes("hit ratio 0%")`)
	click(`button[data-url="/api/report"]`)
	waitJS(t, ctx, textOf("#stats")+`.includes("hit ratio 50%")`)
	click(`button[data-url="/api/report/http"]`)
	waitJS(t, ctx, textOf("#t-http")+`.endsWith(" ms")`)
	waitJS(t, ctx, textOf("#stats")+`.includes("computed 3 times")`)
	click(`button[data-url="/api/report/http"]`)
	waitJS(t, ctx, textOf("#t-http")+`.endsWith("(304 Not Modified)")`)
	waitJS(t, ctx, textOf("#report")+`.startsWith("Report computed at")`)

	// A stampede of 20 requests on a cold cache computes the report once.
	click("#herd")
	waitJS(t, ctx, `document.body.dataset.herd !== undefined`)
	herd, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.herd`))
	require.NoError(t, err)
	assert.Equal(t, "1", herd)
	waitJS(t, ctx, textOf("#stampede")+`.includes("computed 1 time.")`)
	browsertest.Screenshot(t, ctx, "live-desktop")

	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))))
	waitJS(t, ctx, `document.querySelector("#chart canvas").getBoundingClientRect().right <= 390`)
	width, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	require.NoError(t, err)
	assert.LessOrEqual(t, width, 390, "nothing sticks out sideways on a phone")
	browsertest.Screenshot(t, ctx, "live-phone")
}
